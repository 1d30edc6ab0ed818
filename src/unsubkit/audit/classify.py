"""Does a message look transactional (receipt, password reset) or like marketing? A hint only.

Keyword signals in the subject count double, the first part of the body once, and bulk-mail
header fields (List-Id, Precedence: bulk, ESP campaign fields) count for marketing. English and
German keywords, since the reference corpus is German newsletters; extend the lists as needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from .message import ParsedMessage

__all__ = ["Classification", "Kind", "classify"]

BODY_CHARS = 3000

_TRANSACTIONAL = re.compile(
    r"\b(?:receipt|invoice|order\s+(?:confirm\w*|#|number|no\.?)|your\s+order|"
    r"(?:shipping|shipment|delivery|booking|payment|purchase)\s+(?:confirm\w*|received|failed|update)|"
    r"has\s+shipped|password|passcode|verification\s+code|security\s+(?:code|alert)|"
    r"verify\s+your|confirm\s+your\s+(?:e-?mail|account|address|subscription)|one-time\s+code|"
    r"sign[- ]?in\s+(?:attempt|code|link)|log[- ]?in\s+(?:attempt|code|link)|two-factor|2fa|"
    r"rechnung|quittung|bestellbest\w*|ihre\s+bestellung|versandbest\w*|passwort|"
    r"zahlungs\w*|kontobest\w*|best[äa]tigen\s+sie|anmeldebest\w*)",
    re.IGNORECASE,
)
_MARKETING = re.compile(
    r"(?:\bnewsletter|\bsale\b|\d+\s?%|\bdiscount|\bdeals?\b|\boffers?\b|\bcoupon|\bpromo\w*|"
    r"\bfree\s+shipping|\blimited\s+time|\bblack\s+friday|\bnew\s+arrivals|\bshop\s+now|"
    r"\brabatt|\bangebot\w*|\bgutschein|\baktion\b|\bsparen|\bjetzt\s+(?:kaufen|shoppen|entdecken)|"
    r"\bversandkostenfrei)",
    re.IGNORECASE,
)
_BULK_FIELDS = ("List-Id", "X-Campaign", "X-CampaignID", "X-MC-User", "Feedback-ID", "X-CSA-Complaints")


class Kind(StrEnum):
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Classification:
    kind: Kind
    signals: tuple[str, ...]


def _hits(pattern: re.Pattern[str], text: str) -> list[str]:
    seen: list[str] = []
    for m in pattern.finditer(text):
        word = " ".join(m.group(0).lower().split())
        if word not in seen:
            seen.append(word)
    return seen


def _body_text(msg: ParsedMessage) -> str:
    plain = msg.parts_of("plain")
    if plain:
        return plain[0].text[:BODY_CHARS]
    html = msg.parts_of("html")
    if html:
        return re.sub(r"<[^>]*>", " ", html[0].text[: BODY_CHARS * 4])[:BODY_CHARS]
    return ""


def classify(msg: ParsedMessage) -> Classification:
    subject = msg.subject
    body = _body_text(msg)
    t_subject, m_subject = _hits(_TRANSACTIONAL, subject), _hits(_MARKETING, subject)
    t_body, m_body = _hits(_TRANSACTIONAL, body), _hits(_MARKETING, body)
    bulk = [name for name in _BULK_FIELDS if msg.count(name)]
    precedence = msg.first("Precedence")
    if precedence and precedence.value.lower() in ("bulk", "list"):
        bulk.append(f"Precedence: {precedence.value.lower()}")
    t_score = 2 * len(t_subject) + min(len(t_body), 2)
    m_score = 2 * len(m_subject) + min(len(m_body), 2) + len(bulk)
    if t_score >= 2 and t_score > m_score:
        signals = [f"subject: {w}" for w in t_subject] + [f"body: {w}" for w in t_body[:2]]
        return Classification(Kind.TRANSACTIONAL, tuple(signals))
    if m_score >= 2 and m_score > t_score:
        signals = (
            [f"subject: {w}" for w in m_subject]
            + [f"body: {w}" for w in m_body[:2]]
            + [f"header: {b}" for b in bulk]
        )
        return Classification(Kind.MARKETING, tuple(signals))
    return Classification(Kind.UNKNOWN, ())
