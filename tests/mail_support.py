"""Helpers for the mailto tests: DKIM keys and signatures made with dkimpy, message builders,
and a token-address factory."""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from unsubkit.service import Unsubkit


@dataclass(frozen=True)
class DkimKey:
    selector: str
    domain: str
    private_pem: bytes
    txt: str

    @property
    def dns_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def zone_line(self) -> str:
        return f'{self.dns_name}. IN TXT "{self.txt}"\n'

    def sign(self, message: bytes, headers: tuple[bytes, ...] = (b"from", b"to", b"subject")) -> bytes:
        sig = dkim.sign(message, self.selector.encode(), self.domain.encode(), self.private_pem,
                        include_headers=list(headers))
        return bytes(sig) + message


@functools.lru_cache(maxsize=8)
def dkim_key(domain: str, selector: str = "s1") -> DkimKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    txt = f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    return DkimKey(selector, domain, pem, txt)


def message(frm: str = "jane@example.org", to: str = "unsubscribe@example.com",
            subject: str = "unsubscribe", extra: str = "", body: str = "unsubscribe\r\n") -> bytes:
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <m1@example.org>\r\n{extra}\r\n{body}").encode()


APPLE = ("Auto-Submitted: auto-replied\r\nX-Apple-Unsubscribe: true\r\n"
         "Content-Type: text/plain; charset=us-ascii\r\n")


def dsn(to: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.net\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\nThe mail system could not deliver.\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n"
        "\r\nFinal-Recipient: rfc822; nobody@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "--b1--\r\n"
    ).encode()


def token_address(kit: Unsubkit, to: str = "jane@example.org", purpose: str = "marketing",
                  **kw: str) -> str:
    mailto = kit.headers_for(to, purpose, **kw).mailto  # type: ignore[arg-type]
    assert mailto is not None
    return mailto.removeprefix("mailto:").split("?", 1)[0]


def sign_without_from(key: DkimKey, msg: bytes) -> bytes:
    """A valid relaxed/relaxed signature whose h= leaves From out (signers refuse to make one,
    so it is computed here; RFC 6376 sections 3.4.2, 3.4.4 and 3.7)."""
    import hashlib
    import re

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    head, _, body = msg.partition(b"\r\n\r\n")
    lines = [ln.rstrip() for ln in body.split(b"\r\n")]
    while lines and not lines[-1]:
        lines.pop()
    canon_body = b"".join(re.sub(rb"[ \t]+", b" ", ln) + b"\r\n" for ln in lines)
    bh = base64.b64encode(hashlib.sha256(canon_body).digest()).decode()

    def relaxed(name: str, value: str) -> bytes:
        return f"{name.lower()}:{' '.join(value.split())}".encode()

    fields = dict(ln.split(":", 1) for ln in head.decode().split("\r\n"))
    signed = b"".join(relaxed(n, fields[n.capitalize()]) + b"\r\n"
                      for n in ("to", "subject"))
    value = (f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={key.domain}; s={key.selector}; "
             f"h=to:subject; bh={bh}; b=")
    data = signed + relaxed("DKIM-Signature", value)
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    b = base64.b64encode(private.sign(data, padding.PKCS1v15(), hashes.SHA256())).decode()
    return f"DKIM-Signature: {value}{b}\r\n".encode() + msg


class RawSMTP:
    """A bare SMTP/LMTP client on a socket: sends exactly what a test says, reads each reply."""

    def __init__(self, port: int, timeout: float = 20) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, str]:
        lines: list[str] = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            lines.append(line[4:].decode().rstrip("\r\n"))
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def cmd(self, line: str) -> tuple[int, str]:
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def data(self, content: bytes) -> tuple[int, str]:
        code, text = self.cmd("DATA")
        if code != 354:
            return code, text
        return self.send_content(content)

    def send_content(self, content: bytes) -> tuple[int, str]:
        lines = content.replace(b"\r\n", b"\n").split(b"\n")
        stuffed = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines)
        self.send(stuffed.rstrip(b"\r\n") + b"\r\n.\r\n")
        return self.reply()

    def close(self) -> None:
        try:
            self.cmd("QUIT")
        except OSError:
            pass
        self.file.close()
        self.sock.close()
