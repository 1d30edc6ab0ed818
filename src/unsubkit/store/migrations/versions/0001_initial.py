"""Initial schema: purposes, topics, contacts, contact points, consent state, events, outbox.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "purposes",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("deleted_at", sa.Float, nullable=True),
        sa.UniqueConstraint("name", name="uq_purposes_name"),
    )
    op.create_table(
        "topics",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "purpose_id", Id, sa.ForeignKey("purposes.id", name="fk_topics_purpose_id_purposes"), nullable=False
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("deleted_at", sa.Float, nullable=True),
        sa.UniqueConstraint("purpose_id", "name", name="uq_topics_purpose_name"),
    )
    op.create_table(
        "contacts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("deleted_at", sa.Float, nullable=True),
        sa.UniqueConstraint("external_id", name="uq_contacts_external_id"),
    )
    op.create_table(
        "contact_points",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column(
            "contact_id", Id, sa.ForeignKey("contacts.id", name="fk_contact_points_contact_id_contacts"), nullable=True
        ),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("address", name="uq_contact_points_address"),
    )
    op.create_index("ix_contact_points_contact_id", "contact_points", ["contact_id"])
    op.create_table(
        "consent_state",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("subject_type", sa.String(10), nullable=False),
        sa.Column("subject_id", Id, nullable=False),
        sa.Column("scope_kind", sa.String(20), nullable=False),
        sa.Column("purpose_id", Id, nullable=False),
        sa.Column("topic_id", Id, nullable=False),
        sa.Column("opted_out", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("event_id", Id, nullable=False),
        sa.UniqueConstraint(
            "subject_type", "subject_id", "scope_kind", "purpose_id", "topic_id",
            name="uq_consent_state_key",
        ),
    )
    op.create_index(
        "ix_consent_state_scope", "consent_state",
        ["scope_kind", "purpose_id", "topic_id", "opted_out"],
    )
    op.create_table(
        "events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("contact_point_id", Id, nullable=True),
        sa.Column("contact_id", Id, nullable=True),
        sa.Column("scope_kind", sa.String(20), nullable=False),
        sa.Column("purpose_id", Id, nullable=True),
        sa.Column("topic_id", Id, nullable=True),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("mechanism", sa.String(30), nullable=False),
        sa.Column("brand", sa.String(100), nullable=False),
        sa.Column("message_id", sa.String(998), nullable=True),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("changed", sa.Boolean, nullable=False),
        sa.Column("suspected_automated", sa.Boolean, nullable=False),
        sa.Column("evidence", sa.Text, nullable=True),
    )
    op.create_index("ix_events_address", "events", ["address"])
    op.create_index("ix_events_at", "events", ["at"])
    op.create_table(
        "outbox",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "event_id", Id, sa.ForeignKey("events.id", name="fk_outbox_event_id_events"), nullable=False
        ),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("processed_at", sa.Float, nullable=True),
    )
    op.create_index("ix_outbox_event_id", "outbox", ["event_id"])
    op.create_index("ix_outbox_pending", "outbox", ["processed_at", "id"])


def downgrade() -> None:
    for table in ("outbox", "events", "consent_state", "contact_points", "contacts", "topics", "purposes"):
        op.drop_table(table)
