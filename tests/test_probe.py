"""The prober against small, deliberately broken servers on loopback ports, over TLS, and
against a real ``unsubkit serve``."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from python_multipart.multipart import parse_options_header
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from conftest import cli_env, free_port, run_cli, start_server
from unsubkit.probe import HttpxSender, multipart_body, multipart_post, run_probe, urlencoded_post

PAGE = "<html><body><form method=post><button>Unsubscribe</button></form></body></html>"


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.state: dict[str, int] = {}


async def ok(request: Request) -> Response:
    rec: Recorder = request.app.state.rec
    body = await request.body()
    entry = {"method": request.method, "headers": dict(request.headers), "body": body}
    if request.method == "POST" and body.startswith(b"--"):
        form = await request.form()
        entry["form"] = dict(form)
    rec.requests.append(entry)
    if request.method == "POST":
        return PlainTextResponse("unsubscribed\n")
    return HTMLResponse(PAGE)


async def redirect(request: Request) -> Response:
    return RedirectResponse("/login?next=/unsub", status_code=302)


async def cookie_wall(request: Request) -> Response:
    if "session" not in request.cookies:
        resp: Response = PlainTextResponse("CSRF check failed\n", status_code=403)
        resp.set_cookie("session", "abc")
        return resp
    return PlainTextResponse("ok\n")


async def error(request: Request) -> Response:
    return PlainTextResponse("boom\n", status_code=500)


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("s", "0.6")))
    return HTMLResponse(PAGE) if request.method == "GET" else PlainTextResponse("ok\n")


async def text_get(request: Request) -> Response:
    if request.method == "GET":
        return PlainTextResponse("not a page")
    return PlainTextResponse("ok\n", headers={"Set-Cookie": "tracking=1; Path=/"})


async def changes(request: Request) -> Response:
    """Emulates unsubkit's X-Unsubkit-Changed; ``mode`` picks a behaviour, ``key`` the token."""
    rec: Recorder = request.app.state.rec
    mode = request.path_params["mode"]
    key = request.path_params["key"]
    if request.method in ("GET", "HEAD"):
        if mode == "get-changes":
            rec.state[key] = 1
        return HTMLResponse(PAGE)
    first = rec.state.get(key, 0) == 0
    rec.state[key] = 1
    headers = {}
    if mode != "no-header":
        flag = "1" if (first or mode == "not-idempotent") else "0"
        headers["X-Unsubkit-Changed"] = flag
    return PlainTextResponse("ok\n", headers=headers)


def make_app() -> Starlette:
    app = Starlette(routes=[
        Route("/ok/{token}", ok, methods=["GET", "HEAD", "POST"]),
        Route("/redirect", redirect, methods=["GET", "POST"]),
        Route("/cookie", cookie_wall, methods=["GET", "POST"]),
        Route("/error", error, methods=["GET", "POST"]),
        Route("/slow", slow, methods=["GET", "POST"]),
        Route("/text", text_get, methods=["GET", "POST"]),
        Route("/changes/{mode}/{key}", changes, methods=["GET", "HEAD", "POST"]),
    ])
    app.state.rec = Recorder()
    return app


class ThreadServer:
    def __init__(self, app: Starlette, **ssl: Any) -> None:
        self.port = free_port()
        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", **ssl)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise AssertionError("test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def broken() -> Iterator[tuple[str, Recorder]]:
    app = make_app()
    srv = ThreadServer(app)
    yield f"http://127.0.0.1:{srv.port}", app.state.rec
    srv.stop()


SEND = HttpxSender(timeout=30)
#: Where slowness is not the subject, a loaded 2-core machine must not turn it into a finding.
RELAXED = 60.0


def test_gmail_shaped_and_multipart_posts_are_exactly_right(broken: tuple[str, Recorder]) -> None:
    base, rec = broken
    rec.requests.clear()
    report = run_probe(f"{base}/ok/tok1", SEND, slow_after=RELAXED)
    assert report.codes == ["LP010"]  # plain http, but on loopback: info only
    assert report.verdict.value == "pass"
    get, urlenc, multi, empty = rec.requests
    assert get["method"] == "GET"
    assert urlenc["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert urlenc["headers"]["content-length"] == "26"
    assert urlenc["body"] == b"List-Unsubscribe=One-Click"
    assert multi["form"] == {"List-Unsubscribe": "One-Click"}  # a real parser reads it
    assert empty["body"] == b"" and empty["headers"]["content-length"] == "0"
    for r in rec.requests:
        assert "cookie" not in r["headers"]
    assert [e.status for e in report.exchanges] == [200, 200, 200, 200]
    assert report.exchanges[0].body_size == len(PAGE)


def test_redirecting_endpoint(broken: tuple[str, Recorder]) -> None:
    base, _ = broken
    report = run_probe(f"{base}/redirect", SEND, slow_after=RELAXED)
    assert set(report.codes) == {"LP003", "LP007", "LP010"}
    assert report.verdict.value == "fail"
    assert all(e.location == "/login?next=/unsub" for e in report.exchanges)  # reported, not followed
    assert all(e.status == 302 for e in report.exchanges)


def test_endpoint_needing_a_cookie(broken: tuple[str, Recorder]) -> None:
    base, _ = broken
    report = run_probe(f"{base}/cookie", SEND, slow_after=RELAXED)
    assert set(report.codes) == {"LP002", "LP004", "LP006", "LP010"}
    assert report.exchanges[0].set_cookies[0].startswith("session=abc;")
    assert all(e.status == 403 for e in report.exchanges)  # the GET's cookie was never sent back


def test_server_error(broken: tuple[str, Recorder]) -> None:
    base, _ = broken
    report = run_probe(f"{base}/error", SEND, slow_after=RELAXED)
    assert set(report.codes) == {"LP002", "LP006", "LP010"}
    assert [f.detail for f in report.findings if f.code == "LP002"] == [
        "POST urlencoded: 500", "POST multipart: 500", "POST empty: 500"]


def test_slow_endpoint_and_timeout(broken: tuple[str, Recorder]) -> None:
    base, _ = broken
    report = run_probe(f"{base}/slow?s=0.4", SEND, slow_after=0.2)
    assert set(report.codes) == {"LP005", "LP010"}
    assert all(e.elapsed >= 0.4 for e in report.exchanges)
    timed_out = run_probe(f"{base}/slow?s=3", HttpxSender(timeout=0.5))
    assert set(timed_out.codes) == {"LP001", "LP010"}
    assert "timed out after 0.5s" in timed_out.findings[0].detail


def test_get_not_a_page_and_post_cookie(broken: tuple[str, Recorder]) -> None:
    base, _ = broken
    report = run_probe(f"{base}/text", SEND, slow_after=RELAXED)
    assert set(report.codes) == {"LP004", "LP008", "LP010"}


def test_nothing_listening() -> None:
    report = run_probe(f"http://127.0.0.1:{free_port()}/u/x", SEND, slow_after=RELAXED)
    assert set(report.codes) == {"LP001", "LP010"}
    assert len(report.exchanges) == 1  # stops after "connection refused"
    assert "connection refused" in report.findings[0].detail


@pytest.mark.parametrize(
    ("mode", "codes"),
    [
        ("good", ["LP010"]),
        ("get-changes", ["LP021", "LP010"]),
        ("not-idempotent", ["LP022", "LP022", "LP010"]),
        ("no-header", ["LP020", "LP010"]),
    ],
)
def test_token_check(broken: tuple[str, Recorder], mode: str, codes: list[str]) -> None:
    base, _ = broken
    report = run_probe(f"{base}/changes/{mode}/k-{mode}", SEND, token_check=True, slow_after=RELAXED)
    assert report.codes == codes
    assert [e.request.name for e in report.exchanges] == [
        "GET", "HEAD", "GET again", "POST urlencoded", "POST multipart", "POST empty"]


def test_requests_as_built() -> None:
    req = urlencoded_post("https://x.example/u/t")
    assert req.body == b"List-Unsubscribe=One-Click" and len(req.body) == 26
    assert multipart_body("B") == (b'--B\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
                                   b"One-Click\r\n--B--\r\n")
    ctype = dict(multipart_post("https://x.example/u/t", "B").headers)["Content-Type"]
    assert parse_options_header(ctype) == (b"multipart/form-data", {b"boundary": b"B"})
    with pytest.raises(ValueError, match="not an http"):
        run_probe("ftp://x.example/", SEND)


def test_public_http_url_is_an_error_without_sending() -> None:
    sent: list[str] = []

    def refuse(request):  # type: ignore[no-untyped-def]
        sent.append(request.name)
        from unsubkit.probe import ProbeResponse
        return ProbeResponse(request, None, error="connection failed: connection refused")

    report = run_probe("http://unsub.example.com/u/t", refuse)
    assert "LP009" in report.codes and "LP010" not in report.codes


# -- TLS -----------------------------------------------------------------------------------

def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unsub.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_endpoint_reports_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    srv = ThreadServer(make_app(), ssl_certfile=str(cert), ssl_keyfile=str(key))
    try:
        url = f"https://127.0.0.1:{srv.port}/ok/tls"
        report = run_probe(url, HttpxSender(timeout=30, verify=str(cert)), slow_after=RELAXED)
        assert report.codes == []
        tls = report.exchanges[0].tls
        assert tls is not None and tls.version in ("TLSv1.2", "TLSv1.3")
        assert tls.subject == "commonName=unsub.test" and tls.not_after
        assert report.to_dict()["exchanges"][1]["tls"]["version"] == tls.version
        untrusted = run_probe(url, HttpxSender(timeout=30), slow_after=RELAXED)
        assert untrusted.codes == ["LP001"]
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.findings[0].detail
    finally:
        srv.stop()


# -- a real unsubkit server ----------------------------------------------------------------

def test_against_unsubkit_serve(tmp_path: Path) -> None:
    env = cli_env(tmp_path, f"sqlite:///{tmp_path / 'probe.db'}")
    run_cli("init", env=env)
    server = start_server(env, tmp_path)
    try:
        data = json.loads(server.cli("headers", "--to", "jane@example.com", "--purpose", "marketing",
                                     "--json").stdout)
        url = f"{server.url}/u/{data['token']}"
        report = run_probe(url, SEND, token_check=True, slow_after=RELAXED)
        assert report.codes == ["LP010"], report.findings
        assert [e.header("X-Unsubkit-Changed") for e in report.exchanges if e.request.is_post] == ["1", "0", "0"]
        status = json.loads(server.cli("consent", "status", "jane@example.com", "--json").stdout)
        assert any(c["purpose"] == "marketing" and c["opted_out"] for c in status["consent"])
        # The same token again: the first POST now changes nothing, which the check reports.
        again = run_probe(url, SEND, token_check=True, slow_after=RELAXED)
        assert again.codes == ["LP021", "LP010"]
        # And through the command line, with a fresh token.
        data = json.loads(server.cli("headers", "--to", "john@example.com", "--purpose", "marketing",
                                     "--json").stdout)
        res = server.cli("probe", f"{server.url}/u/{data['token']}", "--token-check", "--json", "--slow", "60")
        out = json.loads(res.stdout)
        assert out["verdict"] == "pass" and [f["code"] for f in out["findings"]] == ["LP010"]
        bad = server.cli("probe", f"{server.url}/u/not-a-token", "--json", check=False)
        assert bad.returncode == 1
        assert {f["code"] for f in json.loads(bad.stdout)["findings"]} >= {"LP002", "LP006"}
    finally:
        server.stop()


# -- the command line ----------------------------------------------------------------------

def test_cli_probe_table_and_exit_status(broken: tuple[str, Recorder], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from unsubkit.cli import app

    runner = CliRunner()
    base, _ = broken
    res = runner.invoke(app, ["probe", f"{base}/redirect", "--slow", "60"], env={"COLUMNS": "160"})
    assert res.exit_code == 1
    assert "POST urlencoded" in res.output and "/login?next=/unsub" in res.output
    assert "LP003" in res.output and "not compliant" in res.output
    ok = runner.invoke(app, ["probe", f"{base}/ok/cli", "--json", "--slow", "60"])
    assert ok.exit_code == 0
    out = json.loads(ok.stdout)
    assert out["verdict"] == "pass"
    assert [e["status"] for e in out["exchanges"]] == [200, 200, 200, 200]
    assert runner.invoke(app, ["probe", "ftp://x.example/"]).exit_code == 2
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    res = runner.invoke(app, ["probe", f"{base}/ok/x", "--cacert", str(junk)])
    assert res.exit_code == 2
