"""Throw-away databases for tests, the demo and the benchmark, migrated with the
real Alembic migrations (never `create_all`): one migrated template per
backend, cloned for each use (a file copy on SQLite, `CREATE DATABASE …
TEMPLATE` on PostgreSQL), so each test starts from a fresh schema in
milliseconds."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from alembic import command
from alembic.config import Config

from models.db import run_sync

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def alembic_config(url: str) -> Config:
    """The project's alembic.ini pointed at `url`, without touching logging."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["configure_logger"] = False
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade `url` to `revision` (synchronous: call it outside an event loop)."""
    command.upgrade(alembic_config(url), revision)


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _pg_exec(url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_pg_dsn(url), timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def postgres_available(url: str = POSTGRES_URL) -> bool:
    """Whether the PostgreSQL server answers."""
    try:
        run_sync(_pg_exec(url, "SELECT 1"))
        return True
    except Exception:
        return False


class SqliteTemplate:
    """A migrated SQLite file, copied for each user."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "template.db"
        migrate(f"sqlite+aiosqlite:///{self.path}")

    def clone(self, directory: Path) -> str:
        """A fresh copy; returns its URL."""
        target = directory / f"trial-{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(self.path, target)
        return f"sqlite+aiosqlite:///{target}"


class PostgresTemplate:
    """A migrated PostgreSQL database used as TEMPLATE for per-test databases."""

    def __init__(self, url: str = POSTGRES_URL) -> None:
        self.admin_url = url
        self.name = f"ssc_tmpl_{uuid.uuid4().hex[:10]}"
        run_sync(_pg_exec(url, f'CREATE DATABASE "{self.name}"'))
        migrate(_with_database(url, self.name))

    async def clone(self) -> str:
        """A fresh database from the template; returns its URL."""
        name = f"ssc_t_{uuid.uuid4().hex[:12]}"
        await _pg_exec(self.admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')
        # A test proves behaviour, not the disk: commits return before the WAL is flushed
        # (a server restart in fast mode still flushes it, so nothing acknowledged is lost).
        await _pg_exec(self.admin_url, f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        return _with_database(self.admin_url, name)

    async def drop(self, url: str) -> None:
        """Drop a clone."""
        name = url.rpartition("/")[2]
        await _pg_exec(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        """Drop the template itself."""
        run_sync(_pg_exec(self.admin_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
