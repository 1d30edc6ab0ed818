"""Telling other systems: the transactional outbox, signed webhooks and custom handlers.

Every consent event writes an outbox row in the transaction that records it
(:meth:`unsubkit.store.SQLStore.record`). A :class:`DeliveryWorker` turns outbox rows into one
delivery per matching target (webhook endpoint or handler) and attempts them with timeouts,
exponential backoff with jitter, a maximum age and a dead-letter state. Webhooks are signed per
Standard Webhooks. See ``docs/webhooks.md``.
"""

from .backoff import RetryPolicy
from .handlers import GROUP, HandlerRegistry, load_handler
from .model import (
    EVENT_TYPES,
    OPTED_IN,
    OPTED_OUT,
    Delivery,
    DeliveryStatus,
    Endpoint,
    EventFacts,
    TargetKind,
    event_payload,
)
from .signing import new_secret, sign_headers
from .store import Claim, HookStore, Outcome
from .worker import DeliveryWorker, hook_store, webhook_service

__all__ = [
    "EVENT_TYPES",
    "GROUP",
    "OPTED_IN",
    "OPTED_OUT",
    "Claim",
    "Delivery",
    "DeliveryStatus",
    "DeliveryWorker",
    "Endpoint",
    "EventFacts",
    "HandlerRegistry",
    "HookStore",
    "Outcome",
    "RetryPolicy",
    "TargetKind",
    "event_payload",
    "hook_store",
    "load_handler",
    "new_secret",
    "sign_headers",
    "webhook_service",
]
