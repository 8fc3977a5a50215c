"""Migrations: a stairway (upgrade, downgrade, upgrade each revision) on both
databases, and the models agree with what the migrations build."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from devtools import databases


def revisions() -> list[str]:
    script = ScriptDirectory.from_config(databases.alembic_config("sqlite://"))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def stairway(url: str) -> None:
    config = databases.alembic_config(url)
    previous = "base"
    for revision in revisions():
        command.upgrade(config, revision)
        command.downgrade(config, previous)
        command.upgrade(config, revision)
        previous = revision
    command.check(config)  # raises when models and migrations disagree


def test_there_is_exactly_one_head() -> None:
    script = ScriptDirectory.from_config(databases.alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1


def test_stairway_on_sqlite(tmp_path: Path) -> None:
    stairway(f"sqlite+aiosqlite:///{tmp_path / 'stairway.db'}")


@pytest.mark.postgres
def test_stairway_on_postgres(postgres_template: databases.PostgresTemplate) -> None:
    import asyncio

    url = asyncio.run(postgres_template.clone())
    try:
        command.downgrade(databases.alembic_config(url), "base")
        stairway(url)
    finally:
        asyncio.run(postgres_template.drop(url))
