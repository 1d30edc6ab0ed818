"""``prepare``/``prepare_each`` on a real facade: per-recipient tokens, brand keys, errors."""

from __future__ import annotations

import email
import email.policy
import time
from pathlib import Path

import pytest

from conftest import build_kit
from mailcorpus import SAMPLES, verify_all
from unsubkit.clock import FrozenClock
from unsubkit.dkimkeys import create_key
from unsubkit.errors import AddressError, MessageError
from unsubkit.headers import parse_list_unsubscribe
from unsubkit.prepare import Preparer, prepare, prepare_each
from unsubkit.service import Unsubkit
from unsubkit.settings import Brand, Settings

GROUP = (
    b"From: News <news@example.com>\r\nTo: Ann <ann@example.org>, bob@example.org\r\n"
    b"Bcc: carl@example.org\r\nSubject: Team news\r\nDate: Thu, 01 Jan 2026 10:00:00 +0000\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello all\r\n"
)


@pytest.fixture
def setup(tmp_path: Path):
    data = tmp_path / "data"
    keys = ["r1._domainkey.example.com", "e1._domainkey.example.com"]
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'u.db'}",
        data_dir=data,
        base_url="https://unsub.example.com",
        mailto_address="unsubscribe@example.com",
        brands={"default": Brand(dkim_keys=keys), "off": Brand(enabled=False, dkim_keys=keys[:1])},
    )
    r = create_key(settings.dkim_dir, domain="example.com", selector="r1")
    e = create_key(settings.dkim_dir, domain="example.com", selector="e1", algorithm="ed25519")
    kit = build_kit(settings, FrozenClock(time.time()))
    yield kit, {r.dns_name: r.txt, e.dns_name: e.txt}
    kit.close()


def token_of(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    url = parse_list_unsubscribe(str(msg["List-Unsubscribe"]))[0]
    return url.rsplit("/", 1)[1]


def test_prepare_binds_one_recipient(setup) -> None:
    kit, records = setup
    out = prepare(kit, SAMPLES["alternative_with_attachments"](), to="Jane@Example.org",
                  purpose="marketing")
    assert verify_all(out, records) == [True, True]
    claims = kit.open_token(token_of(out))
    assert claims.address == "jane@example.org"
    assert kit.purpose_name(claims.purpose_id) == "marketing"
    assert claims.message_id == "<alt-1@example.com>"  # the message's own id
    assert f"https://unsub.example.com/p/{token_of(out)}".encode() in out.replace(b"=\r\n", b"")


def test_message_id_argument_goes_into_the_token(setup) -> None:
    kit, _ = setup
    out = prepare(kit, SAMPLES["plain_ascii"](), to="jane@example.org", purpose="marketing",
                  message_id="campaign-42")
    assert kit.open_token(token_of(out)).message_id == "campaign-42"
    assert b"Message-ID: <digest-1@example.com>" in out  # the field itself is kept


def test_transactional_and_disabled_brand_are_signed_without_fields(setup) -> None:
    kit, records = setup
    for kwargs in ({"purpose": "transactional"}, {"purpose": "marketing", "brand": "off"}):
        out = prepare(kit, GROUP, to="ann@example.org", **kwargs)
        msg = email.message_from_bytes(out)
        assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None
        assert b"carl@example.org" not in out  # Bcc removed
        assert all(verify_all(out, records))
        assert out.endswith(b"\r\n\r\nHello all\r\n")  # no footer


@pytest.mark.parametrize("to", [["a@example.org"], ("a@example.org", "b@example.org"),
                                "a@example.org, b@example.org"])
def test_several_recipients_are_a_clear_error(setup, to) -> None:
    kit, _ = setup
    with pytest.raises(MessageError, match="per recipient"):
        prepare(kit, SAMPLES["plain_ascii"](), to=to, purpose="marketing")


def test_commercial_message_to_a_group_needs_prepare_each(setup) -> None:
    kit, _ = setup
    with pytest.raises(MessageError, match="prepare_each"):
        prepare(kit, GROUP, to="ann@example.org", purpose="marketing")


def test_prepare_each_gives_every_recipient_their_own_token(setup) -> None:
    kit, records = setup
    copies = list(prepare_each(kit, GROUP, purpose="marketing"))
    assert [r for r, _ in copies] == ["ann@example.org", "bob@example.org", "carl@example.org"]
    ids = set()
    for rcpt, raw in copies:
        assert verify_all(raw, records) == [True, True]
        claims = kit.open_token(token_of(raw))
        assert claims.address == rcpt
        assert b"carl@example.org" not in raw.split(b"\r\n\r\n")[0]
        ids.add(email.message_from_bytes(raw)["Message-ID"])
        assert claims.message_id == next(iter(ids))
    assert len(ids) == 1  # one message, one (generated) Message-ID, several copies
    assert next(iter(ids)).endswith("@example.com>")


def test_prepare_each_with_explicit_recipients(setup) -> None:
    kit, _ = setup
    pairs = dict(prepare_each(kit, SAMPLES["plain_ascii"](), ["x@example.net", "Y@example.net"],
                              purpose="marketing"))
    assert set(pairs) == {"x@example.net", "Y@example.net"}
    assert kit.open_token(token_of(pairs["Y@example.net"])).address == "y@example.net"


def test_preparer_loads_brand_keys_once(setup) -> None:
    kit, _ = setup
    p = Preparer(kit)
    first = p.signers("default")
    p.prepare(SAMPLES["plain_ascii"](), to="a@example.org", purpose="marketing")
    assert p.signers("default") is first
    assert len(first) == 2


def test_bad_input_errors(setup) -> None:
    kit, _ = setup
    with pytest.raises(AddressError):
        prepare(kit, SAMPLES["plain_ascii"](), to="not an address", purpose="marketing")
    with pytest.raises(MessageError):
        list(prepare_each(kit, b"From: a@example.com\r\n\r\nx\r\n", purpose="marketing"))


def test_missing_brand_key_is_a_clear_error(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'u.db'}", data_dir=tmp_path / "d",
                        brands={"default": Brand(dkim_keys=["gone._domainkey.example.com"])})
    kit: Unsubkit = build_kit(settings)
    try:
        with pytest.raises(Exception, match="keygen"):
            prepare(kit, SAMPLES["plain_ascii"](), to="a@example.org", purpose="marketing")
    finally:
        kit.close()
