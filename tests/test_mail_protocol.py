"""The cheap envelope address parser gives exactly what aiosmtpd's own parser gives."""

from __future__ import annotations

from types import SimpleNamespace

from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from unsubkit.mail.protocol import CheapAddr

ALPHABET = "aZ09.+-_=<>@\"()\\ \t,:;[]!#~\x0b\u00e9"


def original(arg: str, limit: int = 0) -> tuple[str | None, str | None]:
    try:
        addr, rest = SMTP._getaddr(SimpleNamespace(local_part_limit=limit), arg)
    except Exception:  # noqa: BLE001 - aiosmtpd answers "500 Error"; ours "553 malformed address"
        return None, None
    return addr, None if rest is None else str(rest)


def cheap(arg: str, limit: int = 0) -> tuple[str | None, str | None]:
    parser = CheapAddr()
    parser.local_part_limit = limit
    return parser._getaddr(arg)


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=40), st.sampled_from([0, 3]))
@example("<unsubscribe+AbC-_9@example.com> SIZE=1000 BODY=8BITMIME", 0)
@example("  <a.b@c.d>  ", 0)
@example("<a..b@c.d>", 0)
@example("<a@b.c>x", 0)
@example("<>", 0)
@example('<"quoted local"@example.com>', 0)
@example("<@route:a@b.c>", 0)
@example("<toolong@b.c>", 3)
@example('"', 0)
@example("0@", 0)
@example("0@[", 0)
def test_same_result_as_aiosmtpd(arg: str, limit: int) -> None:
    assert cheap(arg, limit) == original(arg, limit)


def test_common_forms() -> None:
    assert cheap("<unsubscribe+T0k-en_@Example.com> SIZE=10") == ("unsubscribe+T0k-en_@Example.com", "SIZE=10")
    assert cheap("<>") == original("<>")
    assert cheap("") == ("", "")


@settings(max_examples=1000, deadline=None)
@given(st.from_regex(r"[ \t]?<[a-zA-Z0-9+_.=-]{1,12}@[a-z0-9.-]{1,12}>( [A-Z]{1,5}=[0-9]{1,4})?", fullmatch=True))
def test_envelope_shaped_input(arg: str) -> None:
    assert cheap(arg) == original(arg)
