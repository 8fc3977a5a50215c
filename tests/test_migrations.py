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


async def _sql(url: str, statement: str) -> list[tuple[object, ...]]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        await engine.dispose()


def weekdays_kept_across_0017(url: str) -> None:
    """0017 renames the drug-named weekday columns in place: the days chosen survive the
    upgrade and the downgrade."""
    import asyncio

    config = databases.alembic_config(url)
    command.upgrade(config, "0015")
    asyncio.run(
        _sql(
            url,
            "INSERT INTO participants (study_id, arm, baseline_date, language, status, mtx_weekday, "
            "folic_weekday, created_at, updated_at) VALUES ('BSM-001', 'B', '2026-10-25', 'bn', 'invited', 4, 5, "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        )
    )
    command.upgrade(config, "0017")
    assert asyncio.run(_sql(url, "SELECT own_weekday, follow_weekday FROM participants")) == [(4, 5)]
    command.downgrade(config, "0015")
    assert asyncio.run(_sql(url, "SELECT mtx_weekday, folic_weekday FROM participants")) == [(4, 5)]


def test_0017_keeps_the_chosen_weekdays_on_sqlite(tmp_path: Path) -> None:
    weekdays_kept_across_0017(f"sqlite+aiosqlite:///{tmp_path / 'weekdays.db'}")


@pytest.mark.postgres
def test_0017_keeps_the_chosen_weekdays_on_postgres(postgres_template: databases.PostgresTemplate) -> None:
    import asyncio

    url = asyncio.run(postgres_template.clone())
    try:
        command.downgrade(databases.alembic_config(url), "base")
        weekdays_kept_across_0017(url)
    finally:
        asyncio.run(postgres_template.drop(url))
