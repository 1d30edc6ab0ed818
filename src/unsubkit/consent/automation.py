"""Heuristics that flag opt-outs likely made by a machine rather than the recipient (pure).

Security gateways (Microsoft Defender Safe Links and Safe Attachments, Proofpoint, Mimecast,
Barracuda, ...) fetch every URL of an incoming message, some in a headless browser that also
submits forms, usually within seconds of delivery. Two signals are cheap and explainable:

- the request came within ``window_seconds`` of the token's issue time (the send);
- its user agent contains a fragment from a configurable scanner list.

The flag is **evidence for review only**: the opt-out is recorded and honoured exactly as any
other (a false negative here would mean mailing someone who asked us to stop).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .model import ConsentChange

__all__ = ["DEFAULT_SCANNER_USER_AGENTS", "AutomationHeuristics"]

#: Case-insensitive user-agent fragments of link scanners and headless clients.
DEFAULT_SCANNER_USER_AGENTS: tuple[str, ...] = (
    "safelinks",             # Microsoft Defender for Office 365 Safe Links
    "ms-office",             # Office apps pre-fetching links
    "microsoft office",
    "bingpreview",           # Microsoft link previews
    "proofpoint",            # Proofpoint URL Defense / TAP
    "mimecast",              # Mimecast URL Protect
    "barracuda",             # Barracuda Link Protection / Sentinel
    "ironport",              # Cisco Secure Email (IronPort)
    "forcepoint",
    "fireeye",
    "trend micro",
    "trendmicro",
    "sophos",
    "symantec",
    "zscaler",
    "headlesschrome",        # sandboxes that render and submit pages
    "phantomjs",
    "python-requests",
    "go-http-client",
    "curl/",
    "wget/",
)


@dataclass(frozen=True, slots=True)
class AutomationHeuristics:
    """Callable as the store's ``annotate`` hook: ``(change, at) -> (suspected, evidence)``."""

    window_seconds: float = 10.0
    scanner_user_agents: tuple[str, ...] = DEFAULT_SCANNER_USER_AGENTS

    @classmethod
    def build(cls, window_seconds: float, fragments: Iterable[str]) -> AutomationHeuristics:
        cleaned = tuple(f.strip().lower() for f in fragments if f and f.strip())
        return cls(float(window_seconds), cleaned)

    def __call__(self, change: ConsentChange, at: float) -> tuple[bool, str | None]:
        evidence: list[str] = []
        issued = change.token_issued_at
        if issued and self.window_seconds > 0:
            # A negative delay means the issuing instance's clock runs ahead of ours: the token
            # is fresh either way.
            delay = at - issued
            if delay <= self.window_seconds:
                evidence.append(
                    f"request {max(delay, 0.0):.1f}s after the token was issued "
                    f"(window {self.window_seconds:g}s)"
                )
        ua = (change.meta.user_agent or "").lower()
        if ua:
            for fragment in self.scanner_user_agents:
                if fragment in ua:
                    evidence.append(f"user agent matches scanner pattern {fragment!r}")
                    break
        if not evidence:
            return False, None
        return True, "; ".join(evidence)
