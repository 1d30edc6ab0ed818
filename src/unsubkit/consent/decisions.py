"""Send-time consent decisions (pure): given the recorded state, may this mail go out?"""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import Purpose

__all__ = ["ConsentState", "Decision", "decide"]


@dataclass(frozen=True, slots=True)
class ConsentState:
    """The current opt-outs that apply to one address (already resolved through its contact)."""

    purposes_out: frozenset[int] = field(default_factory=frozenset)
    topics_out: frozenset[int] = field(default_factory=frozenset)
    bulk_email_blocked: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


ALLOWED = Decision(True, "allowed")


def decide(purpose: Purpose, topic_id: int | None, state: ConsentState) -> Decision:
    # Transactional mail (receipts, password resets) is never blocked by a marketing opt-out.
    if not purpose.commercial:
        return Decision(True, "transactional")
    if state.bulk_email_blocked:
        return Decision(False, "bulk email not allowed")
    if purpose.id in state.purposes_out:
        return Decision(False, "opted out of purpose")
    if topic_id is not None and topic_id in state.topics_out:
        return Decision(False, "opted out of topic")
    return ALLOWED
