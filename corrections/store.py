"""The corrections store: one async API over SQLite (the default) or PostgreSQL.

    store = CorrectionStore.open("sqlite:///data/corrections.sqlite3")
    correction_id = await store.add(Correction(label="4", ink={...}))
    async for stored in store.export(): ...

- `database_url` is what people write (`sqlite:///PATH`, `postgresql://USER@HOST/DB`); the
  store picks the async driver (aiosqlite, asyncpg) itself.
- `migrate(url)` brings the schema to Alembic's newest revision. Every server process calls
  it at start-up; a lock (a file lock beside a SQLite file, an advisory lock in PostgreSQL)
  lets one of them migrate while the others wait, on one host or many.
- `add` returns only once the row is committed: SQLite runs in WAL mode with
  `synchronous=FULL`, so a correction that was answered survives a killed process and a
  power cut alike.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from corrections.schema import corrections

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_DATABASE_URL = "sqlite:///data/corrections.sqlite3"
# How long a SQLite writer waits for another process's transaction before giving up.
SQLITE_BUSY_TIMEOUT_S = 30.0
# Most corrections committed in one transaction.
MAX_GROUP_ROWS = 256
# Rows read per query while exporting: enough to stream quickly, few enough to hold little.
EXPORT_PAGE_ROWS = 200
# Any 64-bit number works; this one names the digits project in PostgreSQL's lock table.
MIGRATION_LOCK_KEY = 0x6469676974730001


class StoreError(Exception):
    """The database could not be reached or refused the write."""


@dataclass(frozen=True)
class Correction:
    """What a person said a drawing shows, with the drawing: its ink or its picture."""

    label: str
    ink: dict[str, Any] | None = None
    # A PNG, re-encoded by the server so that no metadata of the upload survives.
    image: bytes | None = None
    answer: dict[str, Any] | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class StoredCorrection:
    """A correction as stored: with its id and the time it was stored."""

    id: str
    created_at: datetime
    correction: Correction

    def as_json(self) -> dict[str, Any]:
        """One line of the NDJSON export, as PROTOCOL.md ("Corrections") lists its fields."""
        correction = self.correction
        line: dict[str, Any] = {
            "id": self.id,
            "label": correction.label,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
        }
        if correction.ink is not None:
            line["ink"] = correction.ink
        if correction.image is not None:
            line["image"] = "data:image/png;base64," + base64.b64encode(correction.image).decode()
        line["answer"] = correction.answer
        line["model_version"] = correction.model_version
        return line


def engine_url(database_url: str) -> sa.URL:
    """The SQLAlchemy URL, with the async driver, of a `sqlite:` or `postgresql:` URL."""
    try:
        url = sa.make_url(database_url)
    except sa.exc.ArgumentError:
        raise ValueError(f"not a database URL: {database_url!r}") from None
    backend = url.drivername.partition("+")[0]
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            # Every connection would see a database of its own, and lose it on closing.
            raise ValueError("a SQLite database URL needs a file: sqlite:///PATH")
        return url.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+asyncpg")
    raise ValueError(
        f"unsupported database {backend!r}: use sqlite:///PATH or postgresql://USER@HOST/NAME"
    )


def create_engine(database_url: str) -> AsyncEngine:
    """An async engine for the URL; a SQLite file and its folder are created on first use."""
    url = engine_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)
    assert url.database is not None
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @sa.event.listens_for(engine.sync_engine, "connect")
    def configure(connection: Any, record: Any) -> None:
        cursor = connection.cursor()
        # WAL: readers (an export) never block the writers; FULL: a commit is on disk
        # before it returns, so a 201 survives a power cut, not only a killed process.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    return engine


def alembic_config(database_url: str) -> Config:
    """Alembic's configuration for the URL, without an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's options are ConfigParser values: a % in a password must be doubled.
    url = engine_url(database_url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(database_url: str) -> None:
    """Upgrade the database to the newest revision; safe to run from many processes at once.

    Blocking: it runs its own event loop, so call it from a thread in async code.
    """
    with _sqlite_lock(database_url):
        command.upgrade(alembic_config(database_url), "head")


@contextmanager
def _sqlite_lock(database_url: str) -> Iterator[None]:
    """For a SQLite file, hold a lock file beside it; PostgreSQL locks inside the migration."""
    url = engine_url(database_url)
    if url.get_backend_name() != "sqlite":
        yield
        return
    assert url.database is not None
    database = Path(url.database)
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".migrating"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class CorrectionStore:
    """Add, export and delete corrections; every call runs on the event loop without blocking it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Rows waiting for the next group commit, each with the future its request awaits.
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[str]]] = []
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, database_url: str) -> CorrectionStore:
        """A store on the URL's database (already migrated: see `migrate`)."""
        return cls(create_engine(database_url))

    async def add(self, correction: Correction, idempotency_key: str | None = None) -> str:
        """Store one correction and return its id, once it is committed.

        With an `idempotency_key` already stored, nothing is added and the id of the
        correction stored under it is returned: a client's retry is stored once.

        Corrections that arrive while a commit is under way wait for the next one and go
        in together (group commit): one transaction and one sync to disk for many, rather
        than a queue of them fighting for SQLite's single write lock.
        """
        row = {
            "id": str(uuid.uuid4()),
            "created_at": datetime.now(UTC),
            "label": correction.label,
            "ink": correction.ink,
            "image": correction.image,
            "answer": correction.answer,
            "model_version": correction.model_version,
            "idempotency_key": idempotency_key,
        }
        stored: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, stored))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting())
        # Shielded: a request that goes away leaves its row to be written (or not) with the
        # others, rather than cancelling the writer that other requests wait on.
        return await asyncio.shield(stored)

    async def _write_waiting(self) -> None:
        """Commit the waiting rows, a group at a time, until none wait."""
        while self._waiting:
            group = self._waiting[:MAX_GROUP_ROWS]
            del self._waiting[:MAX_GROUP_ROWS]
            try:
                async with self.engine.begin() as connection:
                    await connection.execute(corrections.insert(), [row for row, _ in group])
            except sa.exc.IntegrityError:
                # A retried key (or a row the table refuses) spoils the group's transaction:
                # its rows go one at a time, so that each gets its own answer.
                for row, stored in group:
                    await _settle(stored, self._insert_one(row))
                continue
            except (sa.exc.SQLAlchemyError, OSError) as error:
                for _, stored in group:
                    _fail(stored, StoreError(f"the correction could not be stored: {error}"))
                continue
            for row, stored in group:
                if not stored.done():
                    stored.set_result(row["id"])

    async def _insert_one(self, row: dict[str, Any]) -> str:
        """Store one row in a transaction of its own; a retried key gives the stored id."""
        try:
            async with self.engine.begin() as connection:
                await connection.execute(corrections.insert().values(**row))
        except sa.exc.IntegrityError as error:
            stored_id = await self._stored_under(row["idempotency_key"])
            if stored_id is None:
                raise StoreError(f"the correction could not be stored: {error}") from error
            return stored_id
        except (sa.exc.SQLAlchemyError, OSError) as error:
            raise StoreError(f"the correction could not be stored: {error}") from error
        return str(row["id"])

    async def _stored_under(self, idempotency_key: str | None) -> str | None:
        """The id of the correction stored with this key, if any."""
        if idempotency_key is None:
            return None
        query = sa.select(corrections.c.id).where(
            corrections.c.idempotency_key == idempotency_key
        )
        try:
            async with self.engine.connect() as connection:
                return await connection.scalar(query)
        except (sa.exc.SQLAlchemyError, OSError) as error:
            raise StoreError(f"the correction could not be stored: {error}") from error

    async def export(self) -> AsyncIterator[StoredCorrection]:
        """Every stored correction, oldest first, read a page at a time."""
        after = 0
        while True:
            query = (
                sa.select(corrections)
                .where(corrections.c.seq > after)
                .order_by(corrections.c.seq)
                .limit(EXPORT_PAGE_ROWS)
            )
            async with self.engine.connect() as connection:
                rows = (await connection.execute(query)).mappings().all()
            for row in rows:
                yield _stored(row)
            if len(rows) < EXPORT_PAGE_ROWS:
                return
            after = rows[-1]["seq"]

    async def delete(self, correction_id: str) -> bool:
        """Remove one correction; False when there is none with that id."""
        async with self.engine.begin() as connection:
            result = await connection.execute(
                corrections.delete().where(corrections.c.id == correction_id)
            )
        return bool(result.rowcount)

    async def count(self) -> int:
        """How many corrections are stored."""
        async with self.engine.connect() as connection:
            total = await connection.scalar(sa.select(sa.func.count()).select_from(corrections))
        return int(total or 0)

    async def close(self) -> None:
        """Finish the writes under way, then close the pool's connections."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        await self.engine.dispose()


async def _settle(future: asyncio.Future[str], outcome: Awaitable[str]) -> None:
    """Give the future the outcome's id, or its StoreError."""
    try:
        correction_id = await outcome
    except StoreError as error:
        _fail(future, error)
        return
    if not future.done():
        future.set_result(correction_id)


def _fail(future: asyncio.Future[str], error: StoreError) -> None:
    if not future.done():
        future.set_exception(error)


def _stored(row: sa.RowMapping) -> StoredCorrection:
    created_at: datetime = row["created_at"]
    if created_at.tzinfo is None:
        # SQLite keeps no zone; the store writes UTC only.
        created_at = created_at.replace(tzinfo=UTC)
    return StoredCorrection(
        id=row["id"],
        created_at=created_at,
        correction=Correction(
            label=row["label"],
            ink=row["ink"],
            image=row["image"],
            answer=row["answer"],
            model_version=row["model_version"],
        ),
    )


def read_all(database_url: str) -> list[StoredCorrection]:
    """Every stored correction, for scripts (training): blocking, with its own event loop."""

    async def read() -> list[StoredCorrection]:
        store = CorrectionStore.open(database_url)
        try:
            return [stored async for stored in store.export()]
        finally:
            await store.close()

    return asyncio.run(read())
