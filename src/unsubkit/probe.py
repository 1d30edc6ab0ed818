"""Probe a one-click unsubscribe endpoint the way a mailbox provider does.

The core builds the requests and judges the answers (pure: no sockets); :class:`HttpxSender` is
the adapter that performs them. The sequence, each request on a fresh connection with no
cookies, no redirects followed:

1. ``GET`` (a link scanner, or the user from the body link): must answer with a page.
2. With ``token_check``: ``HEAD`` and ``GET`` again, then the POSTs must show nothing changed yet.
3. ``POST`` as Gmail sends it: ``application/x-www-form-urlencoded``, ``Content-Length: 26``,
   body ``List-Unsubscribe=One-Click``. Must answer 2xx, not redirect.
4. ``POST`` as RFC 8058 prefers, ``multipart/form-data``, built correctly (the RFC's own example
   in section 8.3 is malformed), and a ``POST`` with an empty body (some clients send none).

``token_check`` is for unsubkit servers, which answer each one-click POST with
``X-Unsubkit-Changed: 1`` (this request opted out) or ``0`` (already opted out). The first POST
must say ``1`` (so neither GET nor HEAD changed anything) and the later ones ``0`` (idempotent).
Use a fresh token: the probe really unsubscribes it.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .audit.model import Finding, RuleInfo, Severity, Verdict, verdict_of
from .headers import ONE_CLICK

__all__ = [
    "CHANGED_HEADER",
    "PROBE_CODES",
    "HttpxSender",
    "ProbeReport",
    "ProbeRequest",
    "ProbeResponse",
    "Send",
    "TlsInfo",
    "empty_post",
    "landing_get",
    "landing_head",
    "multipart_body",
    "multipart_post",
    "run_probe",
    "urlencoded_post",
]

CHANGED_HEADER = "X-Unsubkit-Changed"
USER_AGENT = "unsubkit-probe/1 (RFC 8058 one-click check)"
ONE_CLICK_BODY = ONE_CLICK.encode("ascii")
#: Only this much of a response body is kept (the size is still counted in full).
SAMPLE = 4096

# -- findings -------------------------------------------------------------------------------

UNREACHABLE = RuleInfo("LP001", Severity.ERROR, "request failed",
                       "Make the endpoint reachable from the internet over HTTPS, answering within a few seconds.")
POST_STATUS = RuleInfo("LP002", Severity.ERROR, "one-click POST not answered with 2xx",
                       "Answer 200 (or 202) to a POST with no cookies and no login; accept all three body shapes.")
POST_REDIRECT = RuleInfo("LP003", Severity.ERROR, "one-click POST answered with a redirect",
                         "Process the POST where it lands; providers do not follow redirects.")
POST_COOKIE = RuleInfo("LP004", Severity.WARNING, "one-click POST sets a cookie",
                       "Keep the route stateless: no session, CSRF or consent cookies.")
SLOW = RuleInfo("LP005", Severity.WARNING, "slow answer",
                "Record the opt-out quickly (queue side work); providers give up on slow endpoints.")
GET_STATUS = RuleInfo("LP006", Severity.ERROR, "GET does not answer with a page",
                      "Answer GET with 200 and an HTML page (link scanners and users open it), changing nothing.")
GET_REDIRECT = RuleInfo("LP007", Severity.WARNING, "GET redirects",
                        "Serve the landing page at the URL itself; redirect chains confuse scanners.")
GET_NOT_HTML = RuleInfo("LP008", Severity.WARNING, "GET answers 2xx but not with an HTML page",
                        "Answer GET with a small HTML page that names what will be unsubscribed.")
NOT_HTTPS = RuleInfo("LP009", Severity.ERROR, "URL is not HTTPS",
                     "Serve the one-click URL over HTTPS; RFC 8058 requires it.")
LOOPBACK_HTTP = RuleInfo("LP010", Severity.INFO, "plain HTTP on a loopback address",
                         "Fine for testing; use HTTPS in production.")
OLD_TLS = RuleInfo("LP011", Severity.WARNING, "TLS older than 1.2",
                   "Enable TLS 1.2 and 1.3 on the endpoint.")
NO_CHANGED_HEADER = RuleInfo("LP020", Severity.ERROR, "server does not report changes",
                             "Point --token-check at an unsubkit server (it sends X-Unsubkit-Changed).")
GET_CHANGED = RuleInfo("LP021", Severity.ERROR,
                       "the first POST changed nothing: GET/HEAD or an earlier use already opted out",
                       "Never change state on GET or HEAD; re-run with a fresh token to be sure.")
NOT_IDEMPOTENT = RuleInfo("LP022", Severity.ERROR, "a repeated POST reported a change",
                          "Make repeated one-click POSTs idempotent (200, no new change).")

PROBE_CODES = (UNREACHABLE, POST_STATUS, POST_REDIRECT, POST_COOKIE, SLOW, GET_STATUS, GET_REDIRECT,
               GET_NOT_HTML, NOT_HTTPS, LOOPBACK_HTTP, OLD_TLS, NO_CHANGED_HEADER, GET_CHANGED,
               NOT_IDEMPOTENT)


# -- requests -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ProbeRequest:
    name: str
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    @property
    def is_post(self) -> bool:
        return self.method == "POST"


def urlencoded_post(url: str) -> ProbeRequest:
    """Exactly what Gmail sends: 26 octets, form-urlencoded, nothing else."""
    return ProbeRequest("POST urlencoded", "POST", url, (
        ("User-Agent", USER_AGENT),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Content-Length", str(len(ONE_CLICK_BODY))),
    ), ONE_CLICK_BODY)


def multipart_body(boundary: str) -> bytes:
    """A well-formed multipart/form-data body (RFC 7578) with the one-click pair.

    RFC 8058's example (section 8.3) writes its delimiter lines as the declared boundary alone,
    without the ``--`` that must precede it; here the part opens with ``--boundary`` and the body
    closes with ``--boundary--``, as RFC 2046 section 5.1.1 requires.
    """
    name, _, value = ONE_CLICK.partition("=")
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{name}"\r\n'
        "\r\n"
        f"{value}\r\n"
        f"--{boundary}--\r\n"
    ).encode("ascii")


def multipart_post(url: str, boundary: str | None = None) -> ProbeRequest:
    boundary = boundary or "unsubkit" + os.urandom(12).hex()
    body = multipart_body(boundary)
    return ProbeRequest("POST multipart", "POST", url, (
        ("User-Agent", USER_AGENT),
        ("Content-Type", f"multipart/form-data; boundary={boundary}"),
        ("Content-Length", str(len(body))),
    ), body)


def empty_post(url: str) -> ProbeRequest:
    return ProbeRequest("POST empty", "POST", url, (("User-Agent", USER_AGENT), ("Content-Length", "0")))


def landing_get(url: str, name: str = "GET") -> ProbeRequest:
    return ProbeRequest(name, "GET", url, (("User-Agent", USER_AGENT), ("Accept", "text/html,*/*;q=0.5")))


def landing_head(url: str) -> ProbeRequest:
    return ProbeRequest("HEAD", "HEAD", url, (("User-Agent", USER_AGENT),))


# -- responses ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TlsInfo:
    version: str | None
    cipher: str | None
    subject: str | None = None
    issuer: str | None = None
    not_after: str | None = None


@dataclass(frozen=True, slots=True)
class ProbeResponse:
    request: ProbeRequest
    status: int | None
    headers: tuple[tuple[str, str], ...] = ()
    body_size: int = 0
    body_sample: bytes = b""
    elapsed: float = 0.0
    tls: TlsInfo | None = None
    #: Set when no HTTP answer came (connection refused, timeout, TLS failure).
    error: str | None = None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def location(self) -> str | None:
        return self.header("Location")

    @property
    def set_cookies(self) -> list[str]:
        return self.all("Set-Cookie")

    @property
    def redirected(self) -> bool:
        return self.status is not None and 300 <= self.status < 400

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "request": self.request.name,
            "method": self.request.method,
            "status": self.status,
            "elapsed_ms": round(self.elapsed * 1000, 1),
            "body_size": self.body_size,
            "content_type": self.header("Content-Type"),
            "location": self.location,
            "set_cookie": [c.split(";", 1)[0].split("=", 1)[0] for c in self.set_cookies],
            CHANGED_HEADER.lower(): self.header(CHANGED_HEADER),
        }
        if self.tls:
            out["tls"] = {"version": self.tls.version, "cipher": self.tls.cipher, "subject": self.tls.subject,
                          "issuer": self.tls.issuer, "not_after": self.tls.not_after}
        if self.error:
            out["error"] = self.error
        return out


Send = Callable[[ProbeRequest], ProbeResponse]


@dataclass(frozen=True, slots=True)
class ProbeReport:
    url: str
    exchanges: tuple[ProbeResponse, ...]
    findings: tuple[Finding, ...]
    token_check: bool = False

    @property
    def verdict(self) -> Verdict:
        return verdict_of(self.findings)

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "verdict": self.verdict.value,
            "token_check": self.token_check,
            "exchanges": [e.to_dict() for e in self.exchanges],
            "findings": [f.to_dict() for f in self.findings],
        }


# -- judging --------------------------------------------------------------------------------

def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _judge_exchange(r: ProbeResponse, slow_after: float) -> list[Finding]:
    out: list[Finding] = []
    name = r.request.name
    if r.error is not None:
        return [UNREACHABLE.finding(f"{name}: {r.error}")]
    assert r.status is not None
    if r.elapsed > slow_after:
        out.append(SLOW.finding(f"{name}: {r.elapsed:.2f}s (over {slow_after:g}s)"))
    if r.tls and r.tls.version in ("SSLv3", "TLSv1", "TLSv1.1"):
        out.append(OLD_TLS.finding(f"{name}: {r.tls.version}"))
    if r.request.is_post:
        if r.redirected:
            out.append(POST_REDIRECT.finding(f"{name}: {r.status} to {r.location or '(no Location)'}"))
        elif not 200 <= r.status < 300:
            out.append(POST_STATUS.finding(f"{name}: {r.status}"))
        if r.set_cookies:
            names = ", ".join(c.split("=", 1)[0] for c in r.set_cookies)
            out.append(POST_COOKIE.finding(f"{name}: Set-Cookie {names}"))
    elif r.request.method == "GET":
        ctype = (r.header("Content-Type") or "").lower()
        if r.redirected:
            out.append(GET_REDIRECT.finding(f"{name}: {r.status} to {r.location or '(no Location)'}"))
        elif not 200 <= r.status < 300:
            out.append(GET_STATUS.finding(f"{name}: {r.status}"))
        elif "html" not in ctype or r.body_size == 0:
            out.append(GET_NOT_HTML.finding(f"{name}: {ctype or 'no Content-Type'}, {r.body_size} bytes"))
    elif r.request.method == "HEAD" and r.status >= 400:
        out.append(GET_STATUS.finding(f"{name}: {r.status}"))
    return out


def _judge_token_check(exchanges: list[ProbeResponse]) -> list[Finding]:
    posts = [r for r in exchanges if r.request.is_post and r.status is not None and 200 <= r.status < 300]
    if not posts:
        return []  # nothing to compare; the POST failures are reported already
    flags = [r.header(CHANGED_HEADER) for r in posts]
    if any(f is None for f in flags):
        return [NO_CHANGED_HEADER.finding(f"no {CHANGED_HEADER} header on {posts[flags.index(None)].request.name}")]
    out: list[Finding] = []
    for r in exchanges:
        if not r.request.is_post and r.header(CHANGED_HEADER) == "1":
            out.append(GET_CHANGED.finding(f"{r.request.name} answered {CHANGED_HEADER}: 1"))
    if flags[0] != "1":
        out.append(GET_CHANGED.finding(f"{posts[0].request.name} answered {CHANGED_HEADER}: {flags[0]}"))
    for r, flag in zip(posts[1:], flags[1:], strict=True):
        if flag != "0":
            out.append(NOT_IDEMPOTENT.finding(f"{r.request.name} answered {CHANGED_HEADER}: {flag}"))
    return out


def judge(url: str, exchanges: list[ProbeResponse], *, token_check: bool, slow_after: float) -> list[Finding]:
    findings: list[Finding] = []
    parts = urlsplit(url)
    if parts.scheme != "https":
        host = parts.hostname or ""
        findings.append((LOOPBACK_HTTP if _is_loopback(host) else NOT_HTTPS).finding(f"{parts.scheme}://{host}"))
    seen: set[tuple[str, str]] = set()
    errors = [r for r in exchanges if r.error is not None]
    for r in exchanges:
        for f in _judge_exchange(r, slow_after):
            key = (f.code, f.detail.split(": ", 1)[-1]) if f.code == "LP001" else (f.code, f.detail)
            if key not in seen:
                seen.add(key)
                findings.append(f)
    if token_check and not errors:
        findings.extend(_judge_token_check(exchanges))
    findings.sort(key=lambda f: (f.severity.rank, f.code))
    return findings


def run_probe(
    url: str,
    send: Send,
    *,
    token_check: bool = False,
    slow_after: float = 2.0,
    boundary: str | None = None,
) -> ProbeReport:
    """Run the sequence against ``url`` through ``send`` and judge it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    plan = [landing_get(url)]
    if token_check:
        plan += [landing_head(url), landing_get(url, "GET again")]
    plan += [urlencoded_post(url), multipart_post(url, boundary), empty_post(url)]
    exchanges: list[ProbeResponse] = []
    for request in plan:
        response = send(request)
        exchanges.append(response)
        if response.error is not None and "refused" in response.error:
            break  # nothing listens: the rest would only repeat the same failure
    findings = judge(url, exchanges, token_check=token_check, slow_after=slow_after)
    return ProbeReport(url, tuple(exchanges), tuple(findings), token_check)


# -- the adapter ----------------------------------------------------------------------------

def _tls_info(ssl_object: Any) -> TlsInfo | None:
    # The sync transport hands out the socket's internal ``_ssl._SSLSocket``, the async one an
    # ``ssl.SSLObject``: both have these three methods.
    if not all(hasattr(ssl_object, m) for m in ("version", "cipher", "getpeercert")):
        return None
    # getpeercert() is an empty dict when the certificate was not verified.
    cert: dict[str, Any] = dict(ssl_object.getpeercert() or {})

    def name_of(key: str) -> str | None:
        parts = [f"{k}={v}" for rdn in cert.get(key, ()) for k, v in rdn]
        return ", ".join(parts) or None

    cipher = ssl_object.cipher()
    not_after = cert.get("notAfter")
    return TlsInfo(
        version=ssl_object.version(),
        cipher=cipher[0] if cipher else None,
        subject=name_of("subject"),
        issuer=name_of("issuer"),
        not_after=not_after if isinstance(not_after, str) else None,
    )


class HttpxSender:
    """Performs a :class:`ProbeRequest` with httpx: a fresh client each time (so no cookie is
    ever sent back), redirects not followed, environment proxies ignored (a provider does not
    use yours). ``verify`` is passed to httpx (``True``, ``False`` or a CA bundle path)."""

    def __init__(self, timeout: float = 10.0, verify: bool | str = True) -> None:
        self.timeout = timeout
        self.verify: bool | ssl.SSLContext = verify if isinstance(verify, bool) else _context(verify)

    def __call__(self, request: ProbeRequest) -> ProbeResponse:
        import httpx

        start = time.perf_counter()
        try:
            with (
                httpx.Client(timeout=self.timeout, follow_redirects=False, verify=self.verify,
                             trust_env=False) as client,
                client.stream(request.method, request.url, headers=list(request.headers),
                              content=request.body if request.body else None) as r,
            ):
                stream = r.extensions.get("network_stream")
                tls = _tls_info(stream.get_extra_info("ssl_object")) if stream is not None else None
                size = 0
                sample = b""
                for chunk in r.iter_raw():
                    size += len(chunk)
                    if len(sample) < SAMPLE:
                        sample += chunk[: SAMPLE - len(sample)]
                return ProbeResponse(request, r.status_code, tuple(r.headers.multi_items()), size,
                                     sample, time.perf_counter() - start, tls)
        except httpx.TimeoutException:
            error = f"timed out after {self.timeout:g}s"
        except httpx.ConnectError as exc:
            error = f"connection failed: {_reason(exc)}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {_reason(exc)}"
        return ProbeResponse(request, None, elapsed=time.perf_counter() - start, error=error)


def _context(cafile: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot use CA bundle {cafile}: {exc}") from None


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text[:160]
