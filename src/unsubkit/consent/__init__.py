"""Consent vocabulary and decisions (pure). See :mod:`unsubkit.consent.model`."""

from .decisions import ConsentState, Decision, decide
from .model import (
    Action,
    ConsentChange,
    ConsentLevel,
    Event,
    Mechanism,
    Purpose,
    PurposeKind,
    Reason,
    RequestMeta,
    Scope,
    Source,
    Topic,
)

__all__ = [
    "Action",
    "ConsentChange",
    "ConsentLevel",
    "ConsentState",
    "Decision",
    "Event",
    "Mechanism",
    "Purpose",
    "PurposeKind",
    "Reason",
    "RequestMeta",
    "Scope",
    "Source",
    "Topic",
    "decide",
]
