"""Message preparation: fields replaced, a clickable body link, encodings kept, DKIM last."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage, Message
from html.parser import HTMLParser

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailcorpus import PDF, SAMPLES, real_newsletters, verify_all
from unsubkit.dkim import DKIMSigner, txt_record
from unsubkit.errors import MessageError
from unsubkit.headers import UnsubscribeHeaders, parse_list_unsubscribe
from unsubkit.message import Footer, add_body_links, parse_message, prepare_message, recipients

TOKEN = "AbC-123_xyz"
URL = f"https://unsub.example.com/u/{TOKEN}"
BODY_URL = f"https://unsub.example.com/p/{TOKEN}?a=1&b=2"  # '&' must be escaped in HTML
MAILTO = f"mailto:unsubscribe+{TOKEN}@example.com?subject=unsubscribe"
HEADERS = UnsubscribeHeaders(url=URL, mailto=MAILTO)


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey]:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048), \
        ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def signers(keys) -> list[DKIMSigner]:
    return [DKIMSigner(keys[0], domain="example.com", selector="r1"),
            DKIMSigner(keys[1], domain="example.com", selector="e1")]


@pytest.fixture(scope="module")
def records(keys) -> dict[str, str]:
    return {"r1._domainkey.example.com": txt_record(keys[0]),
            "e1._domainkey.example.com": txt_record(keys[1])}


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


def hrefs(html_text: str) -> list[str]:
    p = Links()
    p.feed(html_text)
    return p.hrefs


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def body_parts(msg: Message) -> list[EmailMessage]:
    """Body text parts as a reader sees them (not attachments, not forwarded messages)."""
    if msg.get_content_maintype() == "message":
        return []
    if msg.is_multipart():
        return [p for sub in msg.get_payload() for p in body_parts(sub)]
    if msg.get_content_type() in ("text/plain", "text/html") and \
            msg.get_content_disposition() != "attachment" and not msg.get_filename():
        return [msg]  # type: ignore[list-item]
    return []


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def check_prepared(out: bytes, records: dict[str, str], *, link: str = BODY_URL) -> EmailMessage:
    """Everything a prepared commercial message must satisfy."""
    assert verify_all(out, records)[:2] == [True, True]
    head = header_block(out)
    assert max(len(line) for line in out.split(b"\r\n")) <= 998
    assert b"=?" not in b"".join(
        line for line in head.split(b"\r\n") if line.lower().startswith(b"list-unsubscribe")
    )
    msg = parse(out)
    assert len(msg.get_all("List-Unsubscribe")) == 1
    assert len(msg.get_all("List-Unsubscribe-Post")) == 1
    assert parse_list_unsubscribe(str(msg["List-Unsubscribe"])) == [URL, MAILTO]
    assert str(msg["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    parts = body_parts(msg)
    assert parts
    for part in parts:
        text = part.get_content()
        if part.get_content_type() == "text/html":
            assert link in hrefs(text), "no clickable link in the HTML part"
        else:
            assert link in text
        assert "{{" not in text and "%7B%7B" not in text
    return msg


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_corpus_prepared_signed_and_linked(name, signers, records) -> None:
    raw = SAMPLES[name]()
    out = prepare_message(raw, headers=HEADERS, body_url=BODY_URL, signers=signers)
    check_prepared(out, records)


def test_encodings_and_charsets_are_kept(signers, records) -> None:
    raw = SAMPLES["alternative_with_attachments"]()
    before = body_parts(parse(raw))
    out = prepare_message(raw, headers=HEADERS, body_url=BODY_URL, signers=signers)
    msg = check_prepared(out, records)
    after = body_parts(msg)
    assert [(p.get_content_type(), p.get_content_charset(), p["Content-Transfer-Encoding"])
            for p in after] == \
        [(p.get_content_type(), p.get_content_charset(), p["Content-Transfer-Encoding"])
         for p in before] == \
        [("text/plain", "iso-8859-1", "quoted-printable"), ("text/html", "utf-8", "base64")]
    # The original text survives the decode/re-encode round trip.
    assert "Neuigkeiten für Januar" in after[0].get_content()
    assert "Grüße aus Köln" in after[1].get_content()
    assert "&amp;b=2" in after[1].get_content()  # the URL is HTML-escaped
    html_text = after[1].get_content()
    assert html_text.index(BODY_URL.replace("&", "&amp;")) < html_text.lower().rindex("</body>")
    # Attachments are untouched, the .txt file gets no footer.
    atts = {p.get_filename(): p.get_payload(decode=True) for p in msg.walk() if p.get_filename()}
    orig = {p.get_filename(): p.get_payload(decode=True) for p in parse(raw).walk()
            if p.get_filename()}
    assert atts == orig
    assert atts["angebot.pdf"] == PDF
    assert atts["terms.txt"] == b"Terms: plain text file, not a body part.\r\n"
    # Subject stays an encoded word as written (a non-ASCII subject must be one).
    assert str(msg["Subject"]) == "Ünsere Neuigkeiten im Januar"


def test_source_fields_come_out_byte_for_byte(signers) -> None:
    raw = SAMPLES["html_qp"]()
    out = prepare_message(raw, headers=HEADERS, body_url=BODY_URL, signers=signers)
    head_in = header_block(raw)
    head_out = header_block(out)
    # Every original field (long, folded, encoded-word) is present unchanged.
    fields = re.split(rb"\r\n(?![ \t])", head_in)
    assert len(fields) == 9
    for field in fields:
        assert field in head_out, field


def test_placeholders_replaced_instead_of_footer(signers, records) -> None:
    out = prepare_message(SAMPLES["placeholders"](), headers=HEADERS, body_url=BODY_URL,
                          signers=signers)
    msg = check_prepared(out, records)
    text, html_part = body_parts(msg)
    assert text.get_content().replace("\r\n", "\n") == f"Hi!\nUnsubscribe here: {BODY_URL}\n"
    assert hrefs(html_part.get_content()) == [BODY_URL, BODY_URL]
    assert "again</a></p></body>" in html_part.get_content()
    assert html_part.get_content().count("<p") == 2  # no footer paragraph added


def test_forwarded_message_is_not_touched(signers, records) -> None:
    out = prepare_message(SAMPLES["forwarded"](), headers=HEADERS, body_url=BODY_URL,
                          signers=signers)
    msg = check_prepared(out, records)
    inner = next(p for p in msg.walk() if p.get_content_type() == "message/rfc822")
    inner_text = inner.get_payload()[0].get_content()
    assert inner_text.rstrip() == "Inner text that is not ours."


def test_existing_fields_replaced_not_duplicated(signers, records) -> None:
    out = prepare_message(SAMPLES["existing_unsubscribe"](), headers=HEADERS, body_url=BODY_URL,
                          signers=signers)
    msg = check_prepared(out, records)
    assert b"old.example.net" not in out
    # The old ESP signature is gone; only ours remain.
    assert len(msg.get_all("DKIM-Signature")) == 2
    assert "d=example.net" not in str(msg.get_all("DKIM-Signature"))


def test_second_list_unsubscribe_after_prepare_breaks_dkim(signers, records) -> None:
    out = prepare_message(SAMPLES["plain_ascii"](), headers=HEADERS, body_url=BODY_URL,
                          signers=signers)
    assert verify_all(out, records) == [True, True]
    evil = b"List-Unsubscribe: <https://evil.example/u/1>\r\n"
    at = out.index(b"\r\nFrom: ") + 2
    assert verify_all(out[:at] + evil + out[at:], records) == [False, False]


def test_transactional_gets_no_fields_no_footer_but_is_signed(signers, records) -> None:
    raw = SAMPLES["alternative_with_attachments"]()
    out = prepare_message(raw, headers=None, body_url=None, signers=signers)
    assert verify_all(out, records) == [True, True]
    msg = parse(out)
    assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None
    assert [p.get_content() for p in body_parts(msg)] == \
        [p.get_content() for p in body_parts(parse(raw))]


def test_lf_input_prepares_to_crlf(signers, records) -> None:
    raw = SAMPLES["eight_bit_lf"]()
    assert b"\r\n" not in raw
    out = prepare_message(raw, headers=HEADERS, body_url=BODY_URL, signers=signers)
    msg = check_prepared(out, records)
    part = body_parts(msg)[0]
    assert part["Content-Transfer-Encoding"] == "8bit"
    assert part.get_content().startswith("Hallo Jürgen,")
    assert "Hallo J\u00fcrgen".encode() in out  # still raw 8-bit UTF-8


def test_missing_date_and_message_id_are_added_and_signed(signers, records) -> None:
    raw = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: x\r\n\r\nHello\r\n"
    out = prepare_message(raw, headers=HEADERS, body_url=BODY_URL, signers=signers,
                          date=1_767_225_600, message_id="m-1@example.com")
    msg = check_prepared(out, records)
    assert b"\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n" in out
    assert msg["Message-ID"] == "<m-1@example.com>"
    kept = prepare_message(SAMPLES["plain_ascii"](), headers=None, date=0, message_id="other@x")
    assert parse(kept)["Message-ID"] == "<digest-1@example.com>"


def test_bcc_is_removed() -> None:
    raw = b"From: a@example.com\r\nTo: b@example.org\r\nBcc: secret@example.org\r\n\r\nHi\r\n"
    out = prepare_message(raw, headers=None)
    assert b"secret@example.org" not in out


def test_emailmessage_input_is_not_modified(signers, records) -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg["To"] = "b@example.org"
    msg["Subject"] = "Grüße"
    msg["List-Unsubscribe"] = "<https://old.example/u/1>"
    msg.set_content("Hello\n")
    before = msg.as_bytes()
    out = prepare_message(msg, headers=HEADERS, body_url=BODY_URL, signers=signers)
    check_prepared(out, records)
    assert msg.as_bytes() == before


def test_html_footer_goes_before_body_end_and_escapes() -> None:
    raw = (b"From: a@example.com\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n"
           b"<html><body><p>x</p></body></html>\r\n")
    footer = Footer(text="", html='<p><a href="{unsubscribe_url}">Abbestellen \u2013 hier</a></p>')
    out = prepare_message(raw, headers=HEADERS, body_url=BODY_URL, footer=footer)
    part = body_parts(parse(out))[0]
    text = part.get_content()
    assert part.get_content_charset() == "us-ascii"
    assert "Abbestellen &#8211; hier" in text  # not representable in us-ascii: a reference
    assert text.index("Abbestellen") < text.index("</body>")
    assert hrefs(text) == [BODY_URL]


def test_text_footer_needing_utf8_moves_the_part_to_utf8() -> None:
    raw = b"From: a@example.com\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello\r\n"
    footer = Footer(text="\n-- \nAbbestellen \u2013 {unsubscribe_url}\n", html="")
    out = prepare_message(raw, headers=HEADERS, body_url=BODY_URL, footer=footer)
    part = body_parts(parse(out))[0]
    assert part.get_content_charset() == "utf-8"
    assert f"Abbestellen \u2013 {BODY_URL}" in part.get_content()
    assert part["Content-Transfer-Encoding"] == "quoted-printable"  # was 7bit, now 8-bit data


def test_long_single_line_8bit_html_is_reencoded_when_too_long() -> None:
    html_line = "<html><body>" + "<p>x</p>" * 123 + "</body></html>"  # 1003 chars after insert
    raw = ("From: a@example.com\r\nContent-Type: text/html; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\n" + html_line[:-14] + "</body></html>"
           ).encode()
    out = prepare_message(raw, headers=HEADERS, body_url=BODY_URL)
    assert max(len(line) for line in out.split(b"\r\n")) <= 998
    part = body_parts(parse(out))[0]
    assert BODY_URL in hrefs(part.get_content())


def test_no_body_part_is_an_error() -> None:
    raw = (b"From: a@example.com\r\nContent-Type: image/png\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n")
    with pytest.raises(MessageError, match="body part"):
        prepare_message(raw, headers=HEADERS, body_url=BODY_URL)
    # Transactional mail needs no link, so the same message is fine.
    assert prepare_message(raw, headers=None).startswith(b"From: a@example.com")


@pytest.mark.parametrize("raw", [b"", b"   \r\n", "text"])
def test_unusable_input_is_a_clear_error(raw) -> None:
    with pytest.raises(MessageError):
        prepare_message(raw, headers=HEADERS, body_url=BODY_URL)


def test_missing_from_is_an_error() -> None:
    with pytest.raises(MessageError, match="From"):
        prepare_message(b"To: b@example.org\r\n\r\nHi\r\n", headers=None)


def test_unknown_transfer_encoding_is_an_error() -> None:
    raw = (b"From: a@example.com\r\nContent-Type: text/plain\r\n"
           b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n")
    with pytest.raises(MessageError, match="x-uuencode"):
        prepare_message(raw, headers=HEADERS, body_url=BODY_URL)


def test_recipients_and_add_body_links_helpers() -> None:
    msg = parse_message(b"From: a@example.com\r\nTo: A <x@example.org>, y@example.org\r\n"
                        b"Cc: X@example.org\r\nBcc: z@example.org\r\n\r\nHi\r\n")
    assert recipients(msg) == ["x@example.org", "y@example.org"]
    assert recipients(msg, include_bcc=True) == ["x@example.org", "y@example.org",
                                                 "z@example.org"]
    assert add_body_links(msg, BODY_URL) == 1
    assert BODY_URL in msg.get_payload()


@pytest.mark.parametrize("path", real_newsletters(), ids=lambda p: p.name)
def test_real_newsletters(path, signers, records) -> None:
    raw = path.read_bytes()
    assert raw.lower().count(b"\nlist-unsubscribe:") >= 1  # they all come with their own
    out = prepare_message(raw, headers=HEADERS, body_url=BODY_URL, signers=signers)
    msg = check_prepared(out, records)
    assert len(msg.get_all("DKIM-Signature")) == 2
    # Everything else in the header is still there.
    for name in ("From", "To", "Subject", "Date", "Message-ID", "Received"):
        assert len(msg.get_all(name) or []) == len(parse(raw).get_all(name) or []), name


def test_legacy_compat32_message_input(signers, records) -> None:
    legacy = email.message_from_bytes(SAMPLES["plain_ascii"]())  # compat32 policy
    out = prepare_message(legacy, headers=HEADERS, body_url=BODY_URL, signers=signers)
    check_prepared(out, records)
