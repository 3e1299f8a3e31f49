"""Alembic's entry point: run the revisions on the configured database, asynchronously.

In PostgreSQL the revisions run in one transaction that first takes an advisory lock, so
that server processes on several hosts starting at once migrate one at a time.
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from corrections.schema import metadata
from corrections.store import MIGRATION_LOCK_KEY


def run_migrations(connection: Connection) -> None:
    """Run every pending revision in one transaction."""
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


async def run_online() -> None:
    """Connect with the async driver and migrate."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_async_engine(url, poolclass=sa.pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("digits migrates online only: give a database URL")
asyncio.run(run_online())
