"""DKIM keys for the checker: key files given offline, and the DNS adapter against a real
(tiny) DNS server on a loopback port, including a server that never answers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import dns.message
import dns.rcode
import dns.rrset
import pytest
from cryptography.hazmat.primitives import serialization

from _audit_support import ed_key, ed_record, fixture, rsa_key, rsa_record, sign
from unsubkit.audit import CheckOptions, StaticKeys, check_message, dns_lookup, key_record_from_bytes
from unsubkit.errors import DKIMError


def test_pem_public_private_zone_and_bare_records() -> None:
    key = rsa_key()
    want = rsa_record(key)
    pem, spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    pub = key.public_key().public_bytes(pem, spki)
    priv = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert key_record_from_bytes(pub) == want
    assert key_record_from_bytes(priv) == want
    p = want.split("p=")[1]
    zone = f'sel._domainkey IN TXT ( "v=DKIM1; k=rsa; "\n  "p={p[:100]}" "{p[100:]}" )'.encode()
    assert key_record_from_bytes(zone) == want
    assert key_record_from_bytes(want.encode() + b"\n") == want
    ed_pub = ed_key().public_key().public_bytes(pem, spki)
    assert key_record_from_bytes(ed_pub) == ed_record(ed_key())


@pytest.mark.parametrize("junk", [b"hello", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"])
def test_unusable_key_files(junk: bytes) -> None:
    with pytest.raises(DKIMError):
        key_record_from_bytes(junk)


def test_static_keys_normalize_names() -> None:
    keys = StaticKeys({"Sel._DomainKey.Example.COM.": "v=DKIM1; p=x"})
    assert keys("sel._domainkey.example.com") == "v=DKIM1; p=x"
    assert keys("other._domainkey.example.com") is None


def test_unusable_published_record_is_a_failure() -> None:
    raw = sign(fixture("compliant.eml"))
    junk = StaticKeys({"sel._domainkey.example.com": "v=DKIM1; k=rsa; p=bm9ub25zZW5zZQ=="})
    report = check_message(raw, CheckOptions(keys=junk))
    assert "LU103" in report.codes
    assert "unusable" in next(f for f in report.findings if f.code == "LU103").detail


class DnsServer:
    """A UDP DNS server on 127.0.0.1 answering TXT queries from a dict (or never, if mute)."""

    def __init__(self, records: dict[str, str], *, mute: bool = False) -> None:
        self.records = {k.lower().rstrip(".") + ".": v for k, v in records.items()}
        self.mute = mute
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            name = query.question[0].name.to_text().lower()
            self.queries.append(name)
            if self.mute:
                continue
            response = dns.message.make_response(query)
            record = self.records.get(name)
            if record is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                # Long records travel as several character-strings of at most 255 octets.
                chunks = " ".join(f'"{record[i:i + 200]}"' for i in range(0, len(record), 200))
                response.answer.append(dns.rrset.from_text(name, 300, "IN", "TXT", chunks))
            self.sock.sendto(response.to_wire(), addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    srv = DnsServer({"sel._domainkey.example.com": rsa_record(rsa_key())})
    yield srv
    srv.close()


def test_dns_lookup_finds_the_key_and_the_message_verifies(dns_server: DnsServer) -> None:
    lookup = dns_lookup(2.0, nameservers=["127.0.0.1"], port=dns_server.port)
    assert lookup("sel._domainkey.example.com") == rsa_record(rsa_key())
    assert lookup("nope._domainkey.example.com") is None
    report = check_message(sign(fixture("compliant.eml")), CheckOptions(keys=lookup))
    assert report.codes == []
    assert "sel._domainkey.example.com." in dns_server.queries


def test_dns_lookup_missing_selector_is_a_warning(dns_server: DnsServer) -> None:
    lookup = dns_lookup(2.0, nameservers=["127.0.0.1"], port=dns_server.port)
    report = check_message(sign(fixture("compliant.eml"), selector="gone"), CheckOptions(keys=lookup))
    assert report.codes == ["LU105"]


def test_dns_timeout_is_bounded_and_reported() -> None:
    srv = DnsServer({}, mute=True)
    try:
        lookup = dns_lookup(0.5, nameservers=["127.0.0.1"], port=srv.port)
        start = time.monotonic()
        with pytest.raises(DKIMError, match="timed out"):
            lookup("sel._domainkey.example.com")
        assert time.monotonic() - start < 3
        report = check_message(sign(fixture("compliant.eml")), CheckOptions(keys=lookup))
        assert report.codes == ["LU105"]
        assert "timed out" in report.findings[0].detail
    finally:
        srv.close()
