"""``unsubkit dkim`` and ``unsubkit prepare`` as subprocesses, outputs checked by dkimpy."""

from __future__ import annotations

import email
import email.policy
import json
import stat
from pathlib import Path

import pytest

from conftest import cli_env, run_cli
from mailcorpus import SAMPLES, real_newsletters, verify_all

BRAND_TOML = (
    "\n[brands.default]\n"
    'dkim_keys = ["s1._domainkey.example.com", "e1._domainkey.example.com"]\n'
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh config and data dir (no `init`: `dkim` does not need the database)."""
    return cli_env(tmp_path, f"sqlite:///{tmp_path / 'u.db'}", BRAND_TOML)


@pytest.fixture(scope="module")
def signed_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], dict[str, str]]:
    """One initialized instance with the brand's two keys, shared by the prepare tests
    (each CLI run starts a whole interpreter, so this saves a lot of time)."""
    tmp = tmp_path_factory.mktemp("cli")
    e = cli_env(tmp, f"sqlite:///{tmp / 'u.db'}", BRAND_TOML)
    run_cli("init", env=e)
    records = {}
    for args in (["--selector", "s1"], ["--selector", "e1", "--algorithm", "ed25519"]):
        res = run_cli("dkim", "keygen", "--domain", "example.com", *args, "--json", env=e)
        info = json.loads(res.stdout)
        records[info["dns_name"]] = info["txt"]
    return e, records


def one_error_line(res) -> str:
    stderr = res.stderr if isinstance(res.stderr, str) else res.stderr.decode()
    assert res.returncode != 0
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_keygen_writes_private_key_and_prints_only_the_record(env, tmp_path: Path) -> None:
    res = run_cli("dkim", "keygen", "--domain", "example.com", "--selector", "s1", env=env)
    pem_path = tmp_path / "data" / "dkim" / "s1._domainkey.example.com.pem"
    assert stat.S_IMODE(pem_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(pem_path.parent.stat().st_mode) == 0o700
    assert res.stdout.startswith('s1._domainkey.example.com. IN TXT ( "v=DKIM1; k=rsa; p=')
    assert len(res.stdout.strip().splitlines()) == 1
    assert all(len(s) <= 255 for s in res.stdout.split('"')[1::2])
    secret_lines = [ln for ln in pem_path.read_text().splitlines() if "-----" not in ln]
    for text in (res.stdout, res.stderr):
        assert "PRIVATE" not in text
        assert not any(line in text for line in secret_lines)
    assert str(pem_path) in res.stderr


def test_keygen_json_list_and_record(env) -> None:
    res = run_cli("dkim", "keygen", "--domain", "example.com", "--selector", "e1",
                  "--algorithm", "ed25519", "--name", "brand-ed", "--json", env=env)
    info = json.loads(res.stdout)
    assert info["name"] == "brand-ed" and info["algorithm"] == "ed25519"
    assert info["txt"].startswith("v=DKIM1; k=ed25519; p=")
    listed = json.loads(run_cli("dkim", "list", "--json", env=env).stdout)
    assert [k["name"] for k in listed] == ["brand-ed"]
    rec = run_cli("dkim", "record", "brand-ed", env=env).stdout
    assert rec.strip() == f'e1._domainkey.example.com. IN TXT ( "{info["txt"]}" )'


@pytest.mark.parametrize("args", [
    ["--domain", "not a domain", "--selector", "s"],
    ["--domain", "example.com", "--selector", "s", "--bits", "1024"],
])
def test_keygen_bad_input_is_one_line(env, args) -> None:
    line = one_error_line(run_cli("dkim", "keygen", *args, env=env, check=False))
    assert line.startswith("error:")


def test_keygen_refuses_to_overwrite(env) -> None:
    run_cli("dkim", "keygen", "--domain", "example.com", "--selector", "x", "--algorithm",
            "ed25519", env=env)
    res = run_cli("dkim", "keygen", "--domain", "example.com", "--selector", "x", env=env,
                  check=False)
    assert "already exists" in one_error_line(res)


def test_dkim_record_of_missing_key(env) -> None:
    assert "keygen" in one_error_line(run_cli("dkim", "record", "nope", env=env, check=False))


def test_prepare_file_to_stdout(signed_setup, tmp_path: Path) -> None:
    env, records = signed_setup
    src = tmp_path / "in.eml"
    src.write_bytes(SAMPLES["alternative_with_attachments"]())
    res = run_cli("prepare", str(src), "--to", "jane@example.org", "--purpose", "marketing",
                  env=env, input=b"")
    out = res.stdout
    assert verify_all(out, records) == [True, True]
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert len(msg.get_all("List-Unsubscribe")) == 1
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html_part = next(p for p in msg.walk() if p.get_content_type() == "text/html")
    assert 'href="https://unsub.example.com/p/' in html_part.get_content()


def test_prepare_stdin_lf_to_output_file(signed_setup, tmp_path: Path) -> None:
    env, records = signed_setup
    raw = SAMPLES["eight_bit_lf"]()
    target = tmp_path / "out.eml"
    run_cli("prepare", "-", "--to", "jane@example.org", "--purpose", "marketing",
            "--message-id", "campaign-7", "-o", str(target), env=env, input=raw)
    out = target.read_bytes()
    assert b"\r" not in out  # LF in, LF out
    assert verify_all(out, records) == [True, True]
    assert b"Hallo J\xc3\xbcrgen" in out


def test_prepare_transactional_is_signed_without_fields(signed_setup, tmp_path: Path) -> None:
    env, records = signed_setup
    src = tmp_path / "in.eml"
    src.write_bytes(SAMPLES["plain_ascii"]())
    out = run_cli("prepare", str(src), "--to", "jane@example.org", "--purpose", "transactional",
                  env=env, input=b"").stdout
    assert verify_all(out, records) == [True, True]
    assert email.message_from_bytes(out)["List-Unsubscribe"] is None
    assert out.endswith(SAMPLES["plain_ascii"]().split(b"\r\n\r\n", 1)[1])


def test_prepare_real_newsletter_replaces_fields(signed_setup) -> None:
    env, records = signed_setup
    path = next(p for p in real_newsletters() if p.name.startswith("sendinblue"))
    res = run_cli("prepare", str(path), "--to", "hpot2212u1@untrack.email", "--purpose",
                  "marketing", env=env, input=b"")
    msg = email.message_from_bytes(res.stdout, policy=email.policy.default)
    assert len(msg.get_all("List-Unsubscribe")) == 1
    assert len(msg.get_all("List-Unsubscribe-Post")) == 1
    assert "unsub.example.com/u/" in msg["List-Unsubscribe"]
    assert verify_all(res.stdout, records) == [True, True]


@pytest.mark.parametrize(("args", "needle"), [
    (["--to", "a@example.org, b@example.org", "--purpose", "marketing"], "per recipient"),
    (["--to", "a@example.org", "--purpose", "nope"], "nope"),
    (["--to", "not-an-address", "--purpose", "marketing"], "address"),
])
def test_prepare_bad_input_is_one_line(signed_setup, tmp_path: Path, args, needle) -> None:
    env, _ = signed_setup
    src = tmp_path / "in.eml"
    src.write_bytes(SAMPLES["plain_ascii"]())
    res = run_cli("prepare", str(src), *args, env=env, check=False, input=b"")
    assert needle in one_error_line(res)
    assert res.stdout == b""


def test_prepare_missing_file_and_empty_stdin(signed_setup) -> None:
    env, _ = signed_setup
    res = run_cli("prepare", "missing.eml", "--to", "a@example.org", "--purpose", "marketing",
                  env=env, check=False, input=b"")
    assert "missing.eml" in one_error_line(res)
    res = run_cli("prepare", "-", "--to", "a@example.org", "--purpose", "marketing",
                  env=env, check=False, input=b"")
    assert "empty" in one_error_line(res)


def test_prepare_with_missing_brand_key(env, tmp_path: Path) -> None:
    run_cli("init", env=env)
    src = tmp_path / "in.eml"
    src.write_bytes(SAMPLES["plain_ascii"]())
    res = run_cli("prepare", str(src), "--to", "a@example.org", "--purpose", "marketing",
                  env=env, check=False, input=b"")
    assert "keygen" in one_error_line(res)
