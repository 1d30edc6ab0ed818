"""``unsubkit check``: files, stdin, mbox, offline keys, own tokens, JSON and exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from _audit_support import CORPUS, fixture, rsa_key, sign
from conftest import cli_env, run_cli
from unsubkit.cli import app

runner = CliRunner()


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def pubkey_file(tmp_path: Path) -> str:
    pem = rsa_key().public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return write(tmp_path, "sel.pub.pem", pem)


def test_compliant_message_exits_zero(tmp_path: Path) -> None:
    eml = write(tmp_path, "ok.eml", sign(fixture("compliant.eml")))
    res = runner.invoke(app, ["check", eml, "--dkim-key", f"sel._domainkey.example.com={pubkey_file(tmp_path)}"])
    assert res.exit_code == 0, res.output
    assert "compliant" in res.output and "not compliant" not in res.output


def test_errors_exit_one_and_json_has_every_finding(tmp_path: Path) -> None:
    eml = write(tmp_path, "bad.eml", fixture("esp-sendgrid-legacy-doc.eml"))
    res = runner.invoke(app, ["check", eml, "--json"])
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    [msg] = out["messages"]
    assert msg["verdict"] == "fail" and msg["source"] == eml
    assert {f["code"] for f in msg["findings"]} == {"LU003", "LU020", "LU022", "LU100"}
    for f in msg["findings"]:
        assert set(f) >= {"code", "severity", "title", "detail", "fix"}
    assert out["summary"] == {"messages": 1, "pass": 0, "warn": 0, "fail": 1,
                              "codes": {"LU003": 1, "LU020": 1, "LU022": 1, "LU100": 1}}


def test_warnings_only_exit_zero(tmp_path: Path) -> None:
    eml = write(tmp_path, "w.eml", sign(fixture("compliant.eml"), oversign=False))
    key = f"sel._domainkey.example.com={pubkey_file(tmp_path)}"
    res = runner.invoke(app, ["check", eml, "--json", "--dkim-key", key])
    assert res.exit_code == 0
    assert json.loads(res.stdout)["messages"][0]["verdict"] == "warn"


def test_stdin(tmp_path: Path) -> None:
    res = runner.invoke(app, ["check", "-", "--json"], input=fixture("missing-post.eml"))
    assert res.exit_code == 1
    msg = json.loads(res.stdout)["messages"][0]
    assert msg["source"] == "<stdin>" and "LU003" in [f["code"] for f in msg["findings"]]


def test_mbox_summary(tmp_path: Path) -> None:
    names = sorted(CORPUS.glob("*.eml"))[:4]
    mbox = b"".join(b"From x@example.com Thu Jan  1 00:00:00 2026\n" + p.read_bytes().replace(b"\nFrom ", b"\n>From ")
                    + b"\n" for p in names)
    path = write(tmp_path, "box.mbox", mbox)
    res = runner.invoke(app, ["check", "--mbox", path])
    assert res.exit_code == 1
    assert "4 message(s)" in res.output and "summary" in res.output
    res = runner.invoke(app, ["check", "--mbox", path, "--json"])
    out = json.loads(res.stdout)
    assert [m["source"] for m in out["messages"]] == [f"{path}[{i}]" for i in range(1, 5)]
    assert out["summary"]["messages"] == 4
    assert out["summary"]["codes"]["LU106"] == 2  # both CleverReach messages


def test_usage_errors_exit_two(tmp_path: Path) -> None:
    env = cli_env(tmp_path, f"sqlite:///{tmp_path / 'x.db'}")
    missing = run_cli("check", str(tmp_path / "nope.eml"), env=env, check=False)
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "cannot read" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_spec = run_cli("check", "-", "--dkim-key", "example.com=/x", env=env, check=False, input=b"")
    assert bad_spec.returncode == 2
    assert b"SELECTOR._domainkey.DOMAIN=FILE" in bad_spec.stderr
    junk_key = write(tmp_path, "junk.key", b"hello")
    res = run_cli("check", "-", "--dkim-key", f"s._domainkey.example.com={junk_key}", env=env, check=False, input=b"")
    assert res.returncode == 2 and b"not a DKIM key record" in res.stderr
    assert run_cli("check", env=env, check=False).returncode == 2


def test_garbage_input_is_reported_not_crashed(tmp_path: Path) -> None:
    path = write(tmp_path, "junk.eml", bytes(range(256)) * 10)
    res = runner.invoke(app, ["check", path, "--json"])
    assert res.exit_code == 1
    assert [f["code"] for f in json.loads(res.stdout)["messages"][0]["findings"]] == ["LU900"]


def test_own_tokens_with_a_local_configuration(tmp_path: Path) -> None:
    env = cli_env(tmp_path, f"sqlite:///{tmp_path / 'k.db'}")
    run_cli("init", env=env)
    out = run_cli("headers", "--to", "jane@example.org", "--purpose", "marketing", "--json", env=env)
    data = json.loads(out.stdout)
    headers = "".join(f"{k}: {v}\r\n" for k, v in data["headers"].items()).encode()
    raw = fixture("compliant.eml")
    start, end = raw.index(b"List-Unsubscribe:"), raw.index(b"Content-Type: multipart")
    raw = raw[:start] + headers + raw[end:]
    raw = raw.replace(b"https://unsub.example.com/p/K7hZ2kLmN4pQ9rS1", data["body_url"].encode())
    res = run_cli("check", "-", "--json", env=env, input=raw, check=False)
    out = json.loads(res.stdout)
    [opens] = [f for f in out["messages"][0]["findings"] if f["code"] == "LU400"]
    assert opens["data"]["purpose"] == "marketing" and opens["data"]["brand"] == "default"
    assert opens["data"]["address"] == "j***@example.org"
    # Without the configuration the same message is only checked generically.
    res = run_cli("check", "-", "--json", "--no-tokens", env=env, input=raw, check=False)
    assert not [f for f in json.loads(res.stdout)["messages"][0]["findings"] if f["code"].startswith("LU4")]
