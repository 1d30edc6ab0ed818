"""Consent in depth: event level (channel/identity), former external ids of deleted contacts,
indexes for per-address and per-contact history, a covering index for send-time filtering.

Revision ID: 0002_consent
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_consent"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no table rebuild): SQLite cannot rebuild a table other rows refer to
    # while foreign keys are enforced.
    op.add_column(
        "events",
        sa.Column("level", sa.String(10), nullable=False, server_default="channel"),
    )
    op.add_column("contacts", sa.Column("former_external_id", sa.String(200), nullable=True))
    op.create_index("ix_events_contact_point_id", "events", ["contact_point_id"])
    op.create_index("ix_events_contact_id", "events", ["contact_id"])
    # The send-time filter reads every opted-out subject of one scope: make that an index-only
    # range scan (the old index is a prefix of this one).
    op.create_index(
        "ix_consent_state_scope_subject", "consent_state",
        ["scope_kind", "purpose_id", "topic_id", "opted_out", "subject_type", "subject_id"],
    )
    op.drop_index("ix_consent_state_scope", "consent_state")


def downgrade() -> None:
    op.create_index(
        "ix_consent_state_scope", "consent_state",
        ["scope_kind", "purpose_id", "topic_id", "opted_out"],
    )
    op.drop_index("ix_consent_state_scope_subject", "consent_state")
    op.drop_index("ix_events_contact_id", "events")
    op.drop_index("ix_events_contact_point_id", "events")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("former_external_id")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("level")
