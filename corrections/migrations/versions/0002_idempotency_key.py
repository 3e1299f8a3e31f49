"""Add the idempotency key: a client's retry of a correction is stored once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch_alter_table: SQLite cannot add a constraint in place; Alembic copies the table.
    with op.batch_alter_table("corrections") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(64), nullable=True))
        batch.create_unique_constraint("uq_corrections_idempotency_key", ["idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("corrections") as batch:
        batch.drop_constraint("uq_corrections_idempotency_key", type_="unique")
        batch.drop_column("idempotency_key")
