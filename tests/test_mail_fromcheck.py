"""The DKIM-aligned From fallback: signatures made with dkimpy, DNS injected (a TXT file, a
dict, or dnspython against a real DNS server on a loopback port)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import dkim
import dns.message
import dns.rcode
import dns.rrset
import pytest

from mail_support import dkim_key, message, sign_without_from
from unsubkit.errors import ConfigError, SenderNotVerified
from unsubkit.mail.fromcheck import DnsTxt, FromChecker, TxtFile, txt_lookup_for

ORG = dkim_key("example.org")
OTHER = dkim_key("attacker.example")


def lookup_from(*keys: object) -> dict[str, bytes]:
    return {k.dns_name: k.txt.encode() for k in keys}  # type: ignore[attr-defined]


def checker(*keys: object) -> FromChecker:
    records = lookup_from(*keys)
    return FromChecker(lambda name, timeout: records.get(name.rstrip(".")))


def test_aligned_signature_proves_from() -> None:
    signed = ORG.sign(message(frm="Jane Doe <Jane@Example.org>"))
    assert checker(ORG).verify(signed) == "jane@example.org"


def test_subdomain_from_is_aligned_with_parent_signature() -> None:
    signed = ORG.sign(message(frm="news@mail.example.org"))
    assert checker(ORG).verify(signed) == "news@mail.example.org"


def test_unaligned_signature_is_no_proof() -> None:
    # A valid signature from another domain says nothing about the From address.
    signed = OTHER.sign(message(frm="jane@example.org"))
    with pytest.raises(SenderNotVerified, match="aligned"):
        checker(OTHER, ORG).verify(signed)


def test_tampered_message_fails() -> None:
    signed = ORG.sign(message(frm="jane@example.org"))
    with pytest.raises(SenderNotVerified):
        checker(ORG).verify(signed.replace(b"jane@example.org", b"john@example.org", 1))
    with pytest.raises(SenderNotVerified):
        checker(ORG).verify(signed.replace(b"unsubscribe\r\n", b"something else\r\n"))


def test_unsigned_or_unknown_key_fails() -> None:
    with pytest.raises(SenderNotVerified, match="no DKIM signature"):
        checker(ORG).verify(message())
    with pytest.raises(SenderNotVerified):
        checker().verify(ORG.sign(message()))  # no key published


def test_signature_must_cover_from() -> None:
    signed = sign_without_from(ORG, message())
    # The signature itself is valid; it just does not vouch for From (RFC 6376 5.4).
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: ORG.txt.encode())
    with pytest.raises(SenderNotVerified, match="aligned"):
        checker(ORG).verify(signed)


def test_one_from_with_one_address() -> None:
    two = ORG.sign(message(frm="jane@example.org, john@example.org"))
    with pytest.raises(SenderNotVerified, match="exactly one address"):
        checker(ORG).verify(two)
    dup = ORG.sign(message(extra="From: john@example.org\r\n"))
    with pytest.raises(SenderNotVerified, match="exactly one From"):
        checker(ORG).verify(dup)


def test_second_signature_can_be_the_proof() -> None:
    signed = ORG.sign(OTHER.sign(message(frm="jane@example.org")))
    assert checker(OTHER, ORG).verify(signed) == "jane@example.org"
    signed = OTHER.sign(ORG.sign(message(frm="jane@example.org")))
    assert checker(OTHER, ORG).verify(signed) == "jane@example.org"


def test_dns_timeout_is_temporary() -> None:
    def down(name: str, timeout: float) -> bytes | None:
        raise TimeoutError("resolver down")

    with pytest.raises(SenderNotVerified) as info:
        FromChecker(down).verify(ORG.sign(message()))
    assert info.value.temporary


def test_garbage_is_refused_not_crashed() -> None:
    for junk in (b"", b"\x00\xff" * 100, b"From: jane@example.org\r\nDKIM-Signature: v=1; garbage\r\n\r\nx"):
        with pytest.raises(SenderNotVerified):
            checker(ORG).verify(junk)


def test_txt_file(tmp_path: Path) -> None:
    f = tmp_path / "zone.txt"
    f.write_text("# keys\n" + ORG.zone_line() + 'plain.example "v=DKIM1; " "p="\n')
    lookup = TxtFile(f)
    assert lookup(ORG.dns_name + ".", 1.0) == ORG.txt.encode()
    assert lookup("PLAIN.example", 1.0) == b"v=DKIM1; p="
    assert lookup("missing.example", 1.0) is None
    assert FromChecker(lookup).verify(ORG.sign(message())) == "jane@example.org"
    assert isinstance(txt_lookup_for(f), TxtFile)
    assert isinstance(txt_lookup_for(None), DnsTxt)


def test_txt_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        TxtFile(tmp_path / "missing")
    bad = tmp_path / "bad.txt"
    bad.write_text('name "unbalanced\n')
    with pytest.raises(ConfigError, match=r"bad\.txt:1"):
        TxtFile(bad)


# -- dnspython against a real DNS server on loopback ---------------------------------------


class TinyDns:
    """Answers TXT queries from a dict over UDP; ``silent`` drops queries (a dead server)."""

    def __init__(self, records: dict[str, str], silent: bool = False) -> None:
        self.records = {k.lower().rstrip("."): v for k, v in records.items()}
        self.silent = silent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                wire, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.queries += 1
            if self.silent:
                continue
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            name = query.question[0].name.to_text().lower().rstrip(".")
            value = self.records.get(name)
            if value is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                chunks = " ".join(f'"{value[i:i + 200]}"' for i in range(0, len(value), 200))
                response.answer.append(dns.rrset.from_text(name + ".", 60, "IN", "TXT", chunks))
            self.sock.sendto(response.to_wire(), addr)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def tiny_dns() -> Iterator[TinyDns]:
    server = TinyDns({ORG.dns_name: ORG.txt})
    yield server
    server.close()


def test_dnspython_adapter_against_a_real_server(tiny_dns: TinyDns) -> None:
    lookup = DnsTxt(["127.0.0.1"], port=tiny_dns.port)
    assert lookup(ORG.dns_name + ".", 2.0) == ORG.txt.encode()
    assert lookup("nothing.example.org.", 2.0) is None
    assert FromChecker(lookup, timeout=2.0).verify(ORG.sign(message())) == "jane@example.org"
    assert tiny_dns.queries >= 3


def test_dnspython_adapter_times_out_temporarily() -> None:
    dead = TinyDns({}, silent=True)
    try:
        lookup = DnsTxt(["127.0.0.1"], port=dead.port)
        with pytest.raises(TimeoutError):
            lookup(ORG.dns_name + ".", 0.5)
        with pytest.raises(SenderNotVerified) as info:
            FromChecker(lookup, timeout=0.5).verify(ORG.sign(message()))
        assert info.value.temporary
    finally:
        dead.close()
