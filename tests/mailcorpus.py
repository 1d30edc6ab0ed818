"""Real-looking messages and a dkimpy verifier, shared by the DKIM/message/ESP/CLI tests."""

from __future__ import annotations

import base64
import quopri
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import dkim  # dkimpy: the independent verifier

CORPUS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "real-newsletters"

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"


def dnsfunc(records: Mapping[str, str]) -> Callable[..., bytes | None]:
    """A dkimpy ``dnsfunc`` answering ``selector._domainkey.domain`` from ``records``."""
    table = {(name.rstrip(".") + ".").encode(): txt.encode() for name, txt in records.items()}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return table.get(name)

    return lookup


def verify_all(message: bytes, records: Mapping[str, str]) -> list[bool]:
    """dkimpy's verdict for every DKIM-Signature of ``message``, top first."""
    d = dkim.DKIM(message)
    count = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")
    lookup = dnsfunc(records)

    def one(i: int) -> bool:
        try:
            return bool(dkim.DKIM(message).verify(idx=i, dnsfunc=lookup))
        except dkim.DKIMException:  # e.g. "body hash mismatch": a failed verification
            return False

    return [one(i) for i in range(count)]


def _qp(text: str, charset: str = "utf-8") -> str:
    return quopri.encodestring(text.encode(charset).replace(b"\n", b"\r\n")).decode("ascii")


HTML_DOC = (
    "<!DOCTYPE html>\n<html>\n  <head><meta charset=\"utf-8\"><title>News</title></head>\n"
    "  <body>\n    <h1>Grüße aus Köln</h1>\n"
    "    <p style=\"margin:0;   padding:0\">Unsere Angebote\tdieser   Woche — jetzt 20 % günstiger."
    "</p>\n" + "    <p>Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>\n" * 20
    + "  </BODY>\n</html>\n"
)


def plain_ascii() -> bytes:
    return (
        b"From: Example News <news@example.com>\r\n"
        b"To: Jane Doe <jane@example.org>\r\n"
        b"Subject: Weekly digest\r\n"
        b"Date: Thu, 01 Jan 2026 10:00:00 +0000\r\n"
        b"Message-ID: <digest-1@example.com>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"Content-Transfer-Encoding: 7bit\r\n"
        b"\r\n"
        b"Hello Jane,\r\n\r\nHere is   what happened\tthis week.  \r\n\r\n\r\n"
    )


def html_qp() -> bytes:
    return (
        "From: =?utf-8?q?K=C3=B6lner_Laden?= <shop@example.com>\r\n"
        "To: jane@example.org\r\n"
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_und_Angebote_der_Woche_=E2=80=94_bis_zu_20_%25_?=\r\n"
        " =?utf-8?q?g=C3=BCnstiger?=\r\n"
        "Date: Thu, 01 Jan 2026 10:00:00 +0000\r\n"
        "Message-ID: <html-1@example.com>\r\n"
        "X-Campaign: spring-2026-a-very-long-campaign-identifier-that-goes-past-the-usual-"
        "seventy-eight-columns-and-must-not-be-refolded\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n" + _qp(HTML_DOC)
    ).encode("ascii")


def alternative_with_attachments() -> bytes:
    """multipart/mixed( multipart/alternative(text QP latin-1, html base64), pdf, txt file)."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "Newsletter <news@example.com>"
    msg["To"] = "jane@example.org"
    msg["Subject"] = "Ünsere Neuigkeiten im Januar"  # non-ASCII: an encoded word
    msg["Date"] = "Thu, 01 Jan 2026 10:00:00 +0000"
    msg["Message-ID"] = "<alt-1@example.com>"
    msg.set_content("Liebe Leserin,\n\nhier sind die Neuigkeiten für Januar.\nGrüße\n",
                    charset="iso-8859-1", cte="quoted-printable")
    msg.add_alternative(HTML_DOC, subtype="html", charset="utf-8", cte="base64")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="angebot.pdf")
    msg.add_attachment("Terms: plain text file, not a body part.\n", filename="terms.txt")
    return msg.as_bytes()


def eight_bit_lf() -> bytes:
    """8bit UTF-8, LF line endings, folded headers, trailing blank lines."""
    return (
        "From: news@example.com\n"
        "To: \"Jane Doe\"\n"
        "\t<jane@example.org>\n"
        "Subject: Ein sehr langer Betreff, der über mehrere Zeilen\n"
        " gefaltet ist\n"
        "Date: Thu, 01 Jan 2026 10:00:00 +0000\n"
        "Message-ID: <8bit-1@example.com>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
        "Hallo Jürgen,\n\n   eingerückt  mit   Leerzeichen\t\tund Tabs.\n\n\n\n"
    ).encode()


def placeholders() -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "news@example.com"
    msg["To"] = "jane@example.org"
    msg["Subject"] = "Template"
    msg["Date"] = "Thu, 01 Jan 2026 10:00:00 +0000"
    msg["Message-ID"] = "<tpl-1@example.com>"
    msg.set_content("Hi!\nUnsubscribe here: {{unsubscribe_url}}\n")
    msg.add_alternative(
        '<html><body><p>Hi!</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a> | '
        '<a href="%7B%7Bunsubscribe_url%7D%7D">again</a></p></body></html>\n',
        subtype="html",
    )
    return msg.as_bytes()


def forwarded() -> bytes:
    inner = (
        b"From: someone@example.net\r\nTo: x@example.net\r\nSubject: inner\r\n\r\n"
        b"Inner text that is not ours.\r\n"
    )
    return (
        b"From: news@example.com\r\nTo: jane@example.org\r\nSubject: Fwd\r\n"
        b"Date: Thu, 01 Jan 2026 10:00:00 +0000\r\nMessage-ID: <fwd-1@example.com>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
        b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee below.\r\n"
        b"--b1\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"--b1--\r\n"
    )


def existing_unsubscribe() -> bytes:
    return (
        b"From: news@example.com\r\nTo: jane@example.org\r\nSubject: Old fields\r\n"
        b"Date: Thu, 01 Jan 2026 10:00:00 +0000\r\nMessage-ID: <old-1@example.com>\r\n"
        b"List-Unsubscribe: <https://old.example.net/unsub?u=1>\r\n"
        b"list-unsubscribe: <mailto:old@example.net>\r\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.net; s=old; h=from; bh=AAAA; b=AAAA\r\n"
        b"Content-Type: text/plain\r\n\r\nOld body\r\n"
    )


def base64_text() -> bytes:
    body = base64.encodebytes("Zeile eins\r\nZeile zwei — äöü\r\n".encode()).replace(b"\n", b"\r\n")
    return (
        b"From: news@example.com\r\nTo: jane@example.org\r\nSubject: b64\r\n"
        b"Date: Thu, 01 Jan 2026 10:00:00 +0000\r\nMessage-ID: <b64-1@example.com>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body
    )


SAMPLES: dict[str, Callable[[], bytes]] = {
    "plain_ascii": plain_ascii,
    "html_qp": html_qp,
    "alternative_with_attachments": alternative_with_attachments,
    "eight_bit_lf": eight_bit_lf,
    "placeholders": placeholders,
    "forwarded": forwarded,
    "existing_unsubscribe": existing_unsubscribe,
    "base64_text": base64_text,
}


def real_newsletters() -> list[Path]:
    return sorted(CORPUS_DIR.glob("*.eml"))
