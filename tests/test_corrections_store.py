"""The corrections store on real databases: a SQLite file and a PostgreSQL cluster."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from corrections.schema import metadata
from corrections.store import (
    EXPORT_PAGE_ROWS,
    Correction,
    CorrectionStore,
    StoreError,
    alembic_config,
    create_engine,
    engine_url,
    migrate,
)

INK = {"width": 280, "height": 280, "line_width": 18.0, "strokes": [[[10.0, 20.0], [30.5, 40.0]]]}


async def test_a_correction_goes_in_and_comes_out_whole(database_url: str) -> None:
    """What is added is exported with its id, its time and every field; delete removes it."""
    await asyncio.to_thread(migrate, database_url)
    store = CorrectionStore.open(database_url)
    try:
        before = datetime.now(UTC)
        ink_id = await store.add(
            Correction("4", ink=INK, answer={"digit": 9, "confidence": 0.8}, model_version="v1")
        )
        image_id = await store.add(Correction("not_digit", image=b"\x89PNG\r\n\x1a\n"))
        lines = [stored.as_json() async for stored in store.export()]
        assert [line["id"] for line in lines] == [ink_id, image_id]
        assert lines[0] == {
            "id": ink_id, "label": "4", "created_at": lines[0]["created_at"], "ink": INK,
            "answer": {"digit": 9, "confidence": 0.8}, "model_version": "v1",
        }
        created = datetime.fromisoformat(lines[0]["created_at"].replace("Z", "+00:00"))
        assert before - timedelta(seconds=1) <= created <= datetime.now(UTC)
        assert lines[1]["image"] == "data:image/png;base64,iVBORw0KGgo="
        assert "ink" not in lines[1] and lines[1]["answer"] is None
        assert await store.delete(ink_id)
        assert not await store.delete(ink_id)
        assert [stored.id async for stored in store.export()] == [image_id]
    finally:
        await store.close()


async def test_export_pages_through_every_row_once(database_url: str) -> None:
    """An export longer than one page yields each correction once, oldest first."""
    await asyncio.to_thread(migrate, database_url)
    store = CorrectionStore.open(database_url)
    try:
        ids = [await store.add(Correction(str(n % 10), ink=INK))
               for n in range(2 * EXPORT_PAGE_ROWS + 7)]
        assert [stored.id async for stored in store.export()] == ids
        assert await store.count() == len(ids)
    finally:
        await store.close()


async def test_the_database_refuses_a_correction_without_a_drawing(database_url: str) -> None:
    """The table's own check keeps out a row with neither ink nor image, or both."""
    await asyncio.to_thread(migrate, database_url)
    store = CorrectionStore.open(database_url)
    try:
        with pytest.raises(StoreError):
            await store.add(Correction("1"))
        with pytest.raises(StoreError):
            await store.add(Correction("1", ink=INK, image=b"png"))
        assert await store.count() == 0
    finally:
        await store.close()


def test_migrations_build_the_schema_the_code_uses(database_url: str) -> None:
    """Alembic's revisions and `corrections/schema.py` describe the same table."""
    migrate(database_url)
    migrate(database_url)

    async def differences() -> list[object]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
                )
        finally:
            await engine.dispose()

    assert asyncio.run(differences()) == []


def _migrate_and_add(database_url: str) -> None:
    migrate(database_url)

    async def add() -> None:
        store = CorrectionStore.open(database_url)
        try:
            await store.add(Correction("7", ink=INK))
        finally:
            await store.close()

    asyncio.run(add())


def test_processes_starting_together_migrate_once(database_url: str) -> None:
    """Four processes migrating one new database at once all succeed, and all can write."""
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_migrate_and_add, args=(database_url,)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]

    async def count() -> int:
        store = CorrectionStore.open(database_url)
        try:
            return await store.count()
        finally:
            await store.close()

    assert asyncio.run(count()) == 4


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path: object) -> None:
    """A SQLite store commits durably: WAL journal, synchronous FULL."""
    url = f"sqlite:///{tmp_path}/store/c.sqlite3"
    migrate(url)

    async def pragmas() -> tuple[object, object]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                journal = await connection.scalar(sa.text("PRAGMA journal_mode"))
                synchronous = await connection.scalar(sa.text("PRAGMA synchronous"))
                return journal, synchronous
        finally:
            await engine.dispose()

    assert asyncio.run(pragmas()) == ("wal", 2)


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///data/c.sqlite3", "sqlite+aiosqlite"),
        ("postgresql://u:p@db.internal/digits", "postgresql+asyncpg"),
        ("postgresql+psycopg2://u@h/d", "postgresql+asyncpg"),
    ],
)
def test_urls_get_the_async_driver(url: str, driver: str) -> None:
    """People write plain URLs; the store picks the async driver."""
    assert engine_url(url).drivername == driver


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "mysql://u@h/d", "not a url", ""]
)
def test_unusable_urls_are_refused(url: str) -> None:
    """An in-memory SQLite, another database, or no URL at all is a clear ValueError."""
    with pytest.raises(ValueError, match=r"sqlite|database URL|unsupported"):
        engine_url(url)


async def test_a_retry_with_the_same_idempotency_key_is_stored_once(database_url: str) -> None:
    """The same key gives back the first id and stores nothing more; other keys store anew."""
    await asyncio.to_thread(migrate, database_url)
    store = CorrectionStore.open(database_url)
    try:
        first = await store.add(Correction("4", ink=INK), "key-1")
        assert await store.add(Correction("4", ink=INK), "key-1") == first
        assert await store.add(Correction("5", ink=INK), "key-2") != first
        assert await store.add(Correction("6", ink=INK)) != first
        assert await store.count() == 3
        with pytest.raises(StoreError):
            # A key is no excuse for a row the table refuses.
            await store.add(Correction("1"), "key-3")
    finally:
        await store.close()


def test_upgrading_keeps_the_corrections_already_stored(database_url: str) -> None:
    """Corrections stored under revision 0001 are all there, whole, after upgrading to head."""
    command.upgrade(alembic_config(database_url), "0001")
    row = {"id": "0b7e", "created_at": datetime.now(UTC), "label": "3", "ink": INK}
    old_table = sa.table(
        "corrections", *(sa.column(name) for name in ("id", "created_at", "label", "ink"))
    )

    async def insert_then_read() -> list[str]:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    old_table.insert().values(**{**row, "ink": json.dumps(INK)})
                )
            await asyncio.to_thread(migrate, database_url)
            store = CorrectionStore(engine)
            return [stored.as_json()["label"] async for stored in store.export()]
        finally:
            await engine.dispose()

    assert asyncio.run(insert_then_read()) == ["3"]


async def test_concurrent_adds_commit_together_and_each_gets_its_answer(
    database_url: str,
) -> None:
    """Many adds at once (one group commit): every good row once, retried keys once, bad refused."""
    await asyncio.to_thread(migrate, database_url)
    store = CorrectionStore.open(database_url)
    try:
        good = [store.add(Correction(str(n % 10), ink=INK)) for n in range(40)]
        same_key = [store.add(Correction("3", ink=INK), "shared-key") for _ in range(5)]
        outcomes = await asyncio.gather(
            *good, *same_key, store.add(Correction("1")), return_exceptions=True
        )
        assert all(isinstance(outcome, str) for outcome in outcomes[:45])
        assert len(set(outcomes[:40])) == 40
        assert len(set(outcomes[40:45])) == 1
        assert isinstance(outcomes[45], StoreError)
        assert await store.count() == 41
    finally:
        await store.close()
