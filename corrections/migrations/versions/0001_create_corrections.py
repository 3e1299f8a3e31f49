"""Create the corrections table.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "corrections",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("ink", sa.JSON(), nullable=True),
        sa.Column("image", sa.LargeBinary(), nullable=True),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.CheckConstraint("(ink IS NULL) <> (image IS NULL)", name="ink_or_image"),
    )


def downgrade() -> None:
    op.drop_table("corrections")
