"""List-Unsubscribe / List-Unsubscribe-Post: build, fold, parse, and survive the stdlib."""

from __future__ import annotations

import copy
import email
import re
from email import policy
from email.message import EmailMessage, Message

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unsubkit.errors import HeaderError
from unsubkit.headers import (
    LIST_UNSUBSCRIBE,
    LIST_UNSUBSCRIBE_POST,
    ONE_CLICK,
    HeaderTemplate,
    UnsubscribeHeaders,
    body_url,
    build_list_unsubscribe,
    fold,
    mailto_address,
    mailto_uri,
    one_click_url,
    parse_list_unsubscribe,
    remove_unsubscribe_headers,
    set_unsubscribe_headers,
)

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
URI_CHARS = B64 + ".~:/?#[]@!$&'()*+,;=%"

# Any string of URI characters (commas, semicolons, '=' and '?' included); a URI that happens to
# read as an RFC 2047 encoded word is refused by build, so the property is "refused or round trip".
any_uri = st.text(alphabet=URI_CHARS, min_size=1, max_size=300)
tokens = st.text(alphabet=B64, min_size=20, max_size=400)
bases = st.sampled_from(["https://unsub.example.com", "https://e.example.org/mail/", "http://127.0.0.1:8080"])
locals_ = st.sampled_from(["unsubscribe", "list-unsub", "u.nsub", "bounce"])


@st.composite
def unsubscribe_headers(draw: st.DrawFn) -> UnsubscribeHeaders:
    token = draw(tokens)
    url = one_click_url(draw(bases), token) if draw(st.booleans()) else None
    mailto = mailto_uri(mailto_address(f"{draw(locals_)}@example.com", token)) if draw(st.booleans()) else None
    if url is None and mailto is None:
        url = one_click_url("https://unsub.example.com", token)
    return UnsubscribeHeaders(url=url, mailto=mailto, one_click=draw(st.booleans()))


def unfold(value: str) -> str:
    return re.sub(r"\r?\n[ \t]", " ", value).strip()


def header_block(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n", 1)[0]
    return re.split(rb"\r?\n", head)


def field_lines(raw: bytes, name: str = LIST_UNSUBSCRIBE) -> list[str]:
    """The physical lines of one field (first line without the ``Name:`` prefix)."""
    lines = header_block(raw)
    prefix = name.encode() + b":"
    for i, line in enumerate(lines):
        if line.startswith(prefix):
            out = [line[len(prefix) :].decode()]
            for cont in lines[i + 1 :]:
                if cont[:1] not in (b" ", b"\t"):
                    break
                out.append(cont.decode())
            return out
    raise AssertionError(f"{name} not in message")


def assert_well_folded(raw: bytes, expected: str) -> None:
    assert b"=?" not in b"\n".join(header_block(raw))
    for line in header_block(raw):
        assert len(line) <= 998
    lines = field_lines(raw)
    # Folding only after a comma, never inside <...>: every physical line holds whole items.
    assert lines[0].strip(), "folded right after the field name"
    for prev in lines[:-1]:
        assert prev.rstrip().endswith(","), lines
    for line in lines:
        item_text = line.strip().rstrip(",")
        for item in item_text.split(">, <") if item_text else []:
            assert item.count("<") <= 1 and item.count(">") <= 1
        assert line.count("<") == line.count(">"), line
        assert line.strip().startswith("<"), line
    assert unfold("".join(f"\n{x}" if i else x for i, x in enumerate(lines))) == expected


# -- build / parse --------------------------------------------------------------------------------


@given(uris=st.lists(any_uri, min_size=1, max_size=4))
@settings(max_examples=400)
def test_parse_build_round_trip_any_uri(uris: list[str]) -> None:
    try:
        value = build_list_unsubscribe(uris)
    except HeaderError:
        assert any(re.search(r"=\?[^?\s]+\?[BbQq]\?[^?\s]*\?=", u) for u in uris)
        return
    assert parse_list_unsubscribe(value) == uris
    for limit in (78, 998):
        try:
            folded = fold(LIST_UNSUBSCRIBE, value, limit=limit)
        except HeaderError:
            assert any(len(u) + 20 > 998 for u in uris)
            continue
        assert parse_list_unsubscribe(folded) == uris
        assert parse_list_unsubscribe(folded.replace("\r\n", "\n")) == uris


@given(h=unsubscribe_headers())
@settings(max_examples=300)
def test_parse_build_round_trip_real_headers(h: UnsubscribeHeaders) -> None:
    assert parse_list_unsubscribe(h.list_unsubscribe) == h.uris
    assert parse_list_unsubscribe(fold(LIST_UNSUBSCRIBE, h.list_unsubscribe)) == h.uris
    assert "=?" not in h.list_unsubscribe


def test_header_values_and_order() -> None:
    h = UnsubscribeHeaders(
        url="https://u.example.com/u/TOK", mailto="mailto:unsubscribe+TOK@example.com?subject=unsubscribe"
    )
    assert h.as_dict() == {
        LIST_UNSUBSCRIBE: "<https://u.example.com/u/TOK>, <mailto:unsubscribe+TOK@example.com?subject=unsubscribe>",
        LIST_UNSUBSCRIBE_POST: "List-Unsubscribe=One-Click",
    }
    assert h.lines() == (
        "List-Unsubscribe: <https://u.example.com/u/TOK>,\r\n"
        " <mailto:unsubscribe+TOK@example.com?subject=unsubscribe>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    )
    # RFC 8058: no Post field without an HTTP(S) URI, nor when one-click is off.
    assert LIST_UNSUBSCRIBE_POST not in UnsubscribeHeaders(url=None, mailto="mailto:a@example.com").as_dict()
    assert LIST_UNSUBSCRIBE_POST not in UnsubscribeHeaders(url="https://x/u/1", mailto=None, one_click=False).as_dict()


def test_urls_for_a_token() -> None:
    assert one_click_url("https://u.example.com/", "TOK") == "https://u.example.com/u/TOK"
    assert body_url("https://u.example.com", "TOK") == "https://u.example.com/p/TOK"
    assert mailto_address("unsubscribe@example.com", "TOK") == "unsubscribe+TOK@example.com"
    with pytest.raises(HeaderError):
        mailto_address("no-at-sign", "TOK")


def test_mailto_uri_percent_encodes_per_rfc6068() -> None:
    assert mailto_uri("unsubscribe+T-_k@example.com") == "mailto:unsubscribe+T-_k@example.com?subject=unsubscribe"
    assert mailto_uri("a%b?c@example.com", "un sub") == "mailto:a%25b%3Fc@example.com?subject=un%20sub"
    with pytest.raises(HeaderError):
        mailto_uri("nobody")


def test_short_value_stays_on_one_line_and_long_folds_after_commas() -> None:
    assert fold(LIST_UNSUBSCRIBE, "<https://a.example/u/1>") == "<https://a.example/u/1>"
    long_value = build_list_unsubscribe(["https://a.example/u/" + "x" * 80, "mailto:u@example.com", "https://b/"])
    assert fold(LIST_UNSUBSCRIBE, long_value, linesep="\n") == (
        "<https://a.example/u/" + "x" * 80 + ">,\n <mailto:u@example.com>,\n <https://b/>"
    )


def test_unfoldable_item_is_an_error() -> None:
    value = build_list_unsubscribe(["https://a.example/u/" + "x" * 990])
    with pytest.raises(HeaderError, match="998"):
        fold(LIST_UNSUBSCRIBE, value)
    msg = EmailMessage()
    with pytest.raises(HeaderError):
        set_unsubscribe_headers(msg, {LIST_UNSUBSCRIBE: value})
    assert LIST_UNSUBSCRIBE not in msg


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "https://no-brackets.example/u/1",
        "<https://a.example/u/1",
        "<https://a.example/u/ 1>",
        "<https://a.example/<u>>",
        "=?utf-8?q?=3Chttps=3A//a=2Eexample/u/1=3E?=",
        "<https://a.example/u/1>, =?utf-8?q?=3Cmailto=3Aa=40example=2Ecom=3E?=",
        "<>",
    ],
)
def test_parse_rejects_malformed(bad: str) -> None:
    with pytest.raises(HeaderError):
        parse_list_unsubscribe(bad)


def test_parse_tolerates_comments_and_folding() -> None:
    value = "<https://a.example/u/1> (one click),\r\n\t<mailto:u@example.com?subject=unsubscribe>"
    assert parse_list_unsubscribe(value) == ["https://a.example/u/1", "mailto:u@example.com?subject=unsubscribe"]
    # A bare "=?" inside a URI's query is not an encoded word.
    assert parse_list_unsubscribe("<https://a.example/u?x=?y>") == ["https://a.example/u?x=?y"]


def test_build_rejects_bad_uris() -> None:
    for bad in ([], ["https://a.example/u 1"], ["https://a.example/<x>"], ["https://a.example/é"], [""]):
        with pytest.raises(HeaderError):
            build_list_unsubscribe(bad)


@pytest.mark.parametrize("tail", ["\n", "\r\n", "\r\nBcc: victim@example.com", "\nX: y\n"])
def test_no_header_injection_through_a_uri(tail: str) -> None:
    with pytest.raises(HeaderError):
        build_list_unsubscribe(["https://a.example/u/TOKEN" + tail])
    with pytest.raises(HeaderError):
        UnsubscribeHeaders(url=None, mailto=mailto_uri("unsubscribe@example.com") + tail).as_dict()
    msg = EmailMessage()
    with pytest.raises(HeaderError):
        set_unsubscribe_headers(msg, UnsubscribeHeaders(url="https://a.example/u/T" + tail, mailto=None))
    msg[LIST_UNSUBSCRIBE] = "<mailto:old@example.com>"
    for name in (LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST):
        with pytest.raises(HeaderError):
            set_unsubscribe_headers(msg, {LIST_UNSUBSCRIBE: "<https://ok.example/u/T>", name: "<x:y>" + tail})
    assert msg.get_all(LIST_UNSUBSCRIBE) == ["<mailto:old@example.com>"]  # left as it was


# -- through the stdlib -----------------------------------------------------------------------------


def new_message(kind: str) -> Message:
    if kind == "compat32":
        msg = Message()
        msg["From"] = "news@example.com"
        msg["Subject"] = "Hello"
        msg.set_payload("hi\n")
        return msg
    pol = {"default": policy.default, "SMTP": policy.SMTP, "SMTPUTF8": policy.SMTPUTF8}[kind]
    em = EmailMessage(policy=pol)
    em["From"] = "news@example.com"
    em["Subject"] = "Hello"
    em.set_content("hi\n")
    return em


def serializations(msg: Message) -> list[bytes]:
    """As the message's own policy writes it, and as the stdlib's SMTP paths write it."""
    return [msg.as_bytes(), msg.as_bytes(policy=policy.SMTP), msg.as_bytes(policy=policy.default)]


@given(h=unsubscribe_headers(), kind=st.sampled_from(["default", "SMTP", "SMTPUTF8", "compat32"]))
@settings(max_examples=200)
def test_stdlib_reads_set_headers_back_unchanged(h: UnsubscribeHeaders, kind: str) -> None:
    msg = new_message(kind)
    set_unsubscribe_headers(msg, h)
    assert str(msg[LIST_UNSUBSCRIBE]) == h.list_unsubscribe
    for raw in serializations(msg):
        assert_well_folded(raw, h.list_unsubscribe)
        parsed = email.message_from_bytes(raw, policy=policy.default)
        assert str(parsed[LIST_UNSUBSCRIBE]) == h.list_unsubscribe
        assert parse_list_unsubscribe(str(parsed[LIST_UNSUBSCRIBE])) == h.uris
        legacy = email.message_from_bytes(raw, policy=policy.compat32)
        assert unfold(str(legacy[LIST_UNSUBSCRIBE])) == h.list_unsubscribe
        if h.list_unsubscribe_post:
            assert str(parsed[LIST_UNSUBSCRIBE_POST]) == ONE_CLICK
            assert str(legacy[LIST_UNSUBSCRIBE_POST]) == ONE_CLICK
        else:
            assert parsed[LIST_UNSUBSCRIBE_POST] is None


@pytest.mark.parametrize("kind", ["default", "SMTP", "compat32"])
def test_long_uri_with_commas_is_never_folded_inside_brackets(kind: str) -> None:
    # Commas and semicolons inside a URI are where the stdlib's own folder would break it.
    url = "https://unsub.example.com/u/a,b;c?x=1,2&" + "C" * 70 + ",d;e" + "D" * 40
    h = UnsubscribeHeaders(url=url, mailto="mailto:unsubscribe@example.com?subject=unsubscribe")
    msg = new_message(kind)
    set_unsubscribe_headers(msg, h)
    for raw in serializations(msg):
        assert_well_folded(raw, h.list_unsubscribe)
        assert field_lines(raw) == [f" <{url}>,", " <mailto:unsubscribe@example.com?subject=unsubscribe>"]


@pytest.mark.parametrize("kind", ["default", "compat32"])
def test_set_replaces_existing_fields_and_survives_copies(kind: str) -> None:
    msg = new_message(kind)
    msg[LIST_UNSUBSCRIBE] = "<mailto:old@example.com>"
    msg[LIST_UNSUBSCRIBE_POST] = "List-Unsubscribe=One-Click"
    h = UnsubscribeHeaders(url="https://u.example.com/u/" + "T" * 150, mailto=None)
    set_unsubscribe_headers(msg, h)
    assert msg.get_all(LIST_UNSUBSCRIBE) is not None and len(msg.get_all(LIST_UNSUBSCRIBE, [])) == 1
    assert len(msg.get_all(LIST_UNSUBSCRIBE_POST, [])) == 1
    raw = msg.as_bytes()
    assert copy.deepcopy(msg).as_bytes() == raw
    assert b"old@example.com" not in raw
    remove_unsubscribe_headers(msg)
    assert LIST_UNSUBSCRIBE not in msg and LIST_UNSUBSCRIBE_POST not in msg


def test_the_stdlib_trap_is_real() -> None:
    """Why set_unsubscribe_headers exists: a plain long value gets RFC 2047 encoded words."""
    value = build_list_unsubscribe(["https://unsub.example.com/u/a,b?" + "x" * 90, "mailto:u@example.com"])
    plain = EmailMessage(policy=policy.default)
    plain[LIST_UNSUBSCRIBE] = value
    plain.set_content("x")
    assert b"=?" in plain.as_bytes()
    safe = EmailMessage(policy=policy.default)
    set_unsubscribe_headers(safe, {LIST_UNSUBSCRIBE: value})
    safe.set_content("x")
    assert b"=?" not in safe.as_bytes()


# -- HeaderTemplate: the per-brand fast path must give exactly what the generic functions give ---

template_locals = st.sampled_from(["unsubscribe", "list-unsub", "u.nsub", "a b", "caf\u00e9", "x%y", "q?r"])


@settings(max_examples=200)
@given(base=st.none() | bases, local=st.none() | template_locals, one_click=st.booleans(),
       token=st.text(alphabet=B64 + ".~", min_size=1, max_size=300))
def test_template_equals_generic_building(base: str | None, local: str | None, one_click: bool, token: str) -> None:
    mailto = f"{local}@example.com" if local else None
    tpl = HeaderTemplate(base, mailto, one_click=one_click)
    url = one_click_url(base, token) if base is not None and one_click else None
    m = mailto_uri(mailto_address(mailto, token)) if mailto else None
    got = tpl.headers(token)
    if url is None and m is None:
        assert got is None
        return
    want = UnsubscribeHeaders(url=url, mailto=m, one_click=one_click)
    assert got == want
    assert got is not None and got.as_dict() == want.as_dict()
    assert got.lines() == want.lines()
    assert tpl.body_url(token) == (body_url(base, token) if base is not None else None)
    assert parse_list_unsubscribe(got.as_dict()[LIST_UNSUBSCRIBE]) == [u for u in (url, m) if u]
    got.as_dict().clear()  # a caller's copy: the headers object keeps its fields
    assert got.as_dict() == want.as_dict()


@pytest.mark.parametrize("token", ["", "a b", "a\r\nBcc: x", "tok>en", "t=?x", "caf\u00e9", "a/b", "a?b"])
def test_template_refuses_tokens_that_need_escaping(token: str) -> None:
    with pytest.raises(HeaderError):
        HeaderTemplate("https://unsub.example.com", "u@example.com").headers(token)


def test_template_validates_the_brand_once() -> None:
    with pytest.raises(HeaderError):
        HeaderTemplate("https://unsub.example.com/a b", None)
    with pytest.raises(HeaderError):
        HeaderTemplate(None, "no-at-sign")
    with pytest.raises(HeaderError):
        HeaderTemplate("https://x.example/=?utf-8?q?abc?=", None)
