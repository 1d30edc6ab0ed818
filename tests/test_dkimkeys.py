"""DKIM keys on disk: modes, sidecars, DNS records, brand signers."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from mailcorpus import plain_ascii, verify_all
from unsubkit.clock import FrozenClock
from unsubkit.dkim import sign_message
from unsubkit.dkimkeys import (
    create_key,
    default_name,
    list_keys,
    load_key,
    load_signer,
    signers_for_brand,
    txt_strings,
    zone_record,
)
from unsubkit.errors import DKIMError, UnknownBrand
from unsubkit.settings import Brand, Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_rsa_key_files_modes_and_record(tmp_path: Path) -> None:
    d = tmp_path / "data" / "dkim"
    info = create_key(d, domain="Example.COM", selector="s2026", now=1_767_225_600.0)
    assert info.name == "s2026._domainkey.example.com" == default_name("example.com", "s2026")
    pem = d / f"{info.name}.pem"
    assert mode(pem) == 0o600
    assert mode(d) == 0o700
    assert b"PRIVATE KEY" in pem.read_bytes()
    meta = json.loads((d / f"{info.name}.json").read_text())
    assert meta == {"domain": "example.com", "selector": "s2026", "algorithm": "rsa",
                    "created_at": 1_767_225_600.0}
    assert info.txt.startswith("v=DKIM1; k=rsa; p=")
    assert info.dns_name == "s2026._domainkey.example.com"
    # No leftovers of the atomic write.
    assert sorted(p.name for p in d.iterdir()) == [f"{info.name}.json", f"{info.name}.pem"]


def test_txt_strings_and_zone_record(tmp_path: Path) -> None:
    info = create_key(tmp_path, domain="example.com", selector="big", bits=4096)
    parts = txt_strings(info.txt)
    assert len(parts) >= 3
    assert all(len(p) <= 255 for p in parts)
    assert "".join(parts) == info.txt
    line = zone_record(info, ttl=3600)
    assert line.startswith('big._domainkey.example.com. 3600 IN TXT ( "v=DKIM1; k=rsa; p=')
    assert line.count('"') == 2 * len(parts)
    assert "".join(line.split('"')[1::2]) == info.txt


def test_ed25519_record_is_the_bare_key(tmp_path: Path) -> None:
    info = create_key(tmp_path, domain="example.com", selector="ed", algorithm="ed25519")
    assert info.algorithm == "ed25519"
    assert info.txt.startswith("v=DKIM1; k=ed25519; p=")
    _, key = load_key(tmp_path, info.name)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.b64decode(info.txt.split("p=")[1]) == raw
    assert zone_record(info) == f'ed._domainkey.example.com. IN TXT ( "{info.txt}" )'


def test_loaded_signers_verify_with_dkimpy(tmp_path: Path) -> None:
    r = create_key(tmp_path, domain="example.com", selector="r1", name="brand-rsa")
    e = create_key(tmp_path, domain="example.com", selector="e1", algorithm="ed25519")
    clock = FrozenClock()
    signers = [load_signer(tmp_path, "brand-rsa", clock=clock), load_signer(tmp_path, e.name)]
    out = sign_message(plain_ascii(), signers)
    assert verify_all(out, {r.dns_name: r.txt, e.dns_name: e.txt}) == [True, True]
    assert f"t={int(clock())};".encode() in out


def test_signers_for_brand(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        brands={"shop": Brand(dkim_keys=["s1._domainkey.shop.example", "e1._domainkey.shop.example"])},
    )
    create_key(settings.dkim_dir, domain="shop.example", selector="s1")
    create_key(settings.dkim_dir, domain="shop.example", selector="e1", algorithm="ed25519")
    signers = signers_for_brand(settings, "shop")
    assert [(s.domain, s.selector, s.algorithm) for s in signers] == [
        ("shop.example", "s1", "rsa-sha256"), ("shop.example", "e1", "ed25519-sha256")]
    assert signers_for_brand(settings, None) == []  # the default brand names no keys
    with pytest.raises(UnknownBrand):
        signers_for_brand(settings, "nope")


def test_existing_name_is_not_overwritten(tmp_path: Path) -> None:
    first = create_key(tmp_path, domain="example.com", selector="s1", algorithm="ed25519")
    with pytest.raises(DKIMError, match="already exists"):
        create_key(tmp_path, domain="example.com", selector="s1", algorithm="ed25519")
    assert load_key(tmp_path, first.name)[0].txt == first.txt
    again = create_key(tmp_path, domain="example.com", selector="s1", algorithm="ed25519",
                       overwrite=True)
    assert again.txt != first.txt


def test_pem_without_sidecar_named_after_dns_name(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    (tmp_path / "mail._domainkey.example.org.pem").write_bytes(pem)
    signer = load_signer(tmp_path, "mail._domainkey.example.org")
    assert (signer.domain, signer.selector) == ("example.org", "mail")
    (tmp_path / "plain.pem").write_bytes(pem)
    with pytest.raises(DKIMError, match="domain and selector"):
        load_key(tmp_path, "plain")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"algorithm": "rsa", "bits": 1024}, "2048"),
    ({"algorithm": "dsa"}, "unknown DKIM algorithm"),
    ({"name": "../escape"}, "invalid DKIM key name"),
    ({"name": "a/b"}, "invalid DKIM key name"),
])
def test_bad_keygen_requests(tmp_path: Path, kwargs, match) -> None:
    with pytest.raises(DKIMError, match=match):
        create_key(tmp_path / "k", domain="example.com", selector="s", **kwargs)
    assert not (tmp_path / "k").exists() or not any((tmp_path / "k").iterdir())


def test_bad_domain_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(DKIMError, match="domain"):
        create_key(tmp_path / "k", domain="not a domain", selector="s", algorithm="ed25519")
    assert not (tmp_path / "k").exists()


def test_missing_and_corrupt_keys_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DKIMError, match="keygen"):
        load_key(tmp_path, "s1._domainkey.example.com")
    (tmp_path / "bad._domainkey.example.com.pem").write_bytes(b"SECRET-MATERIAL not a pem")
    with pytest.raises(DKIMError) as err:
        load_key(tmp_path, "bad._domainkey.example.com")
    assert "SECRET" not in str(err.value)
    info = create_key(tmp_path, domain="example.com", selector="j", algorithm="ed25519")
    (tmp_path / f"{info.name}.json").write_text("[not json")
    with pytest.raises(DKIMError, match="cannot read"):
        load_key(tmp_path, info.name)


def test_list_keys(tmp_path: Path) -> None:
    assert list_keys(tmp_path / "missing") == []
    create_key(tmp_path, domain="example.com", selector="b", algorithm="ed25519")
    create_key(tmp_path, domain="example.com", selector="a", algorithm="ed25519")
    infos = list_keys(tmp_path)
    assert [i.name for i in infos] == ["a._domainkey.example.com", "b._domainkey.example.com"]
    js = infos[0].as_json()
    assert js["dns_name"] == "a._domainkey.example.com"
    assert "PRIVATE" not in json.dumps(js)
