"""SQLAlchemy Core tables. Alembic migrations (``migrations/versions``) create them; this module
is what queries are written against. Keep the two in step (``tests/test_store_migrations.py``
compares them).

Purpose and topic ids in consent rows carry no foreign key on purpose: a token's ids stay
authoritative after the purpose or topic is renamed or deleted (send-time capture).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "consent_state",
    "contact_points",
    "contacts",
    "events",
    "metadata",
    "outbox",
    "purposes",
    "topics",
    "webhook_attempts",
    "webhook_deliveries",
    "webhook_endpoints",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identity.
Id = BigInteger().with_variant(Integer(), "sqlite")

purposes = Table(
    "purposes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("kind", String(20), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("deleted_at", Float, nullable=True),
)

topics = Table(
    "topics",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("purpose_id", Id, ForeignKey("purposes.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("deleted_at", Float, nullable=True),
    UniqueConstraint("purpose_id", "name", name="uq_topics_purpose_name"),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("external_id", String(200), nullable=True, unique=True),
    Column("created_at", Float, nullable=False),
    Column("deleted_at", Float, nullable=True),
    # Deleting a contact frees its external id for a new contact and keeps it here (0002_consent).
    Column("former_external_id", String(200), nullable=True),
)

contact_points = Table(
    "contact_points",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("address", String(320), nullable=False, unique=True),
    Column("contact_id", Id, ForeignKey("contacts.id"), nullable=True, index=True),
    Column("created_at", Float, nullable=False),
)

# Current state, one row per (subject, scope). subject_type is 'point' (contact_points.id) or
# 'contact' (contacts.id); purpose_id/topic_id use 0 for "none" so the unique key has no NULLs.
consent_state = Table(
    "consent_state",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("subject_type", String(10), nullable=False),
    Column("subject_id", Id, nullable=False),
    Column("scope_kind", String(20), nullable=False),
    Column("purpose_id", Id, nullable=False),
    Column("topic_id", Id, nullable=False),
    Column("opted_out", Boolean, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("event_id", Id, nullable=False),
    UniqueConstraint(
        "subject_type", "subject_id", "scope_kind", "purpose_id", "topic_id",
        name="uq_consent_state_key",
    ),
)
# Covering index for the send-time filter: every opted-out subject of a scope, in subject order,
# without touching the table (0002_consent; replaces 0001's ix_consent_state_scope).
Index("ix_consent_state_scope_subject", consent_state.c.scope_kind, consent_state.c.purpose_id,
      consent_state.c.topic_id, consent_state.c.opted_out, consent_state.c.subject_type,
      consent_state.c.subject_id)

# Append-only: rows are inserted, never updated or deleted.
events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("address", String(320), nullable=False),
    Column("contact_point_id", Id, nullable=True),
    Column("contact_id", Id, nullable=True),
    Column("scope_kind", String(20), nullable=False),
    Column("purpose_id", Id, nullable=True),
    Column("topic_id", Id, nullable=True),
    Column("action", String(10), nullable=False),
    Column("source", String(100), nullable=False),
    Column("reason", String(200), nullable=False),
    Column("mechanism", String(30), nullable=False),
    Column("brand", String(100), nullable=False),
    Column("message_id", String(998), nullable=True),
    Column("client_ip", String(64), nullable=True),
    Column("user_agent", String(512), nullable=True),
    Column("changed", Boolean, nullable=False),
    Column("suspected_automated", Boolean, nullable=False, default=False),
    Column("evidence", Text, nullable=True),
    # 'identity' when an opt-out was written on the contact, else 'channel' (0002_consent).
    Column("level", String(10), nullable=False, server_default="channel"),
)
Index("ix_events_address", events.c.address)
Index("ix_events_at", events.c.at)
Index("ix_events_contact_point_id", events.c.contact_point_id)
Index("ix_events_contact_id", events.c.contact_id)

# Transactional outbox: written in the same transaction as its event, drained by workers.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", Id, ForeignKey("events.id"), nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("processed_at", Float, nullable=True),
    # Set when a brand's handler replaced the default action (migration 0002_webhooks).
    Column("replaced_by", String(300), nullable=True),
)
Index("ix_outbox_pending", outbox.c.processed_at, outbox.c.id)

# Webhook endpoints (migration 0002_webhooks). Filters are JSON arrays; empty means "all".
# Secrets are stored so that workers can sign; they are shown once, when created or rotated.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("url", String(2000), nullable=False),
    Column("description", Text, nullable=False),
    Column("secret", String(200), nullable=False),
    Column("previous_secret", String(200), nullable=True),
    Column("previous_secret_until", Float, nullable=True),
    Column("brands", Text, nullable=False),
    Column("purposes", Text, nullable=False),
    Column("event_types", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("deleted_at", Float, nullable=True),
)

# One row per (event, target): a webhook endpoint or a handler. status is pending, delivered,
# dead or cancelled; a pending row with locked_until in the future is in flight on locked_by.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", Id, ForeignKey("events.id"), nullable=False, index=True),
    Column("target_kind", String(10), nullable=False),
    Column("target", String(300), nullable=False),
    Column("msg_id", String(100), nullable=False),
    Column("event_type", String(50), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(12), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("locked_until", Float, nullable=True),
    Column("locked_by", String(64), nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", Float, nullable=True),
    Column("replay_of", Id, nullable=True),
)
Index("ix_webhook_deliveries_due", webhook_deliveries.c.status, webhook_deliveries.c.next_attempt_at)
Index("ix_webhook_deliveries_target", webhook_deliveries.c.target, webhook_deliveries.c.status)

# Append-only log of every attempt (for `webhooks dead` and debugging receivers).
webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("delivery_id", Id, ForeignKey("webhook_deliveries.id"), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(64), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
)
