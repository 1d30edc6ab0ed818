"""The checker's rules, in the order they run (like Mailman's handler pipeline).

Each module holds one rule: its codes (:class:`~unsubkit.audit.model.RuleInfo`, stable) and a
``check(ctx)`` generator of findings. Add a rule by writing a module and listing it here.
"""

from __future__ import annotations

from ..model import RuleInfo
from . import (
    body_link,
    classification,
    dkim_alignment,
    dkim_coverage,
    dkim_oversign,
    dkim_present,
    dkim_verify,
    encoding,
    line_length,
    mailto,
    one_click_post,
    own_tokens,
    presence,
    rfc2369,
    uris,
)
from .base import Rule

__all__ = ["RULES", "Rule", "all_codes"]

RULES: tuple[Rule, ...] = (
    presence.RULE,
    rfc2369.RULE,
    uris.RULE,
    mailto.RULE,
    one_click_post.RULE,
    encoding.RULE,
    line_length.RULE,
    dkim_present.RULE,
    dkim_coverage.RULE,
    dkim_oversign.RULE,
    dkim_verify.RULE,
    dkim_alignment.RULE,
    body_link.RULE,
    classification.RULE,
    own_tokens.RULE,
)


def all_codes() -> list[RuleInfo]:
    """Every code a check can report, sorted (the rules' and the pipeline's own)."""
    from ..pipeline import PIPELINE_CODES

    infos = [info for rule in RULES for info in rule.codes] + list(PIPELINE_CODES)
    return sorted(infos, key=lambda i: i.code)
