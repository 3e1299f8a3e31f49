"""The `corrections` table, as SQLAlchemy Core: one row per correction.

Alembic's revisions in `migrations/versions/` create and change the table in a database;
this description is what the code reads and writes, and a test checks that the two agree.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# The longest `label` kept: "not_digit", or a number of up to this many digits.
MAX_LABEL_CHARS = 32
MAX_MODEL_VERSION_CHARS = 64
MAX_IDEMPOTENCY_KEY_CHARS = 64

corrections = sa.Table(
    "corrections",
    metadata,
    # Insertion order, for paging through an export; never shown to anyone.
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    # The public name of a correction: a random UUID, so ids reveal neither order nor count.
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("label", sa.String(MAX_LABEL_CHARS), nullable=False),
    # Exactly one of `ink` (width, height, line_width, strokes) and `image` (picture bytes).
    sa.Column("ink", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("image", sa.LargeBinary(), nullable=True),
    sa.Column("answer", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("model_version", sa.String(MAX_MODEL_VERSION_CHARS), nullable=True),
    # The client's name for one correction (the `Idempotency-Key` header), so that a retry
    # whose first answer was lost is stored once. Random, so it identifies no one.
    sa.Column("idempotency_key", sa.String(MAX_IDEMPOTENCY_KEY_CHARS), nullable=True),
    sa.CheckConstraint("(ink IS NULL) <> (image IS NULL)", name="ink_or_image"),
    sa.UniqueConstraint("idempotency_key", name="uq_corrections_idempotency_key"),
)
