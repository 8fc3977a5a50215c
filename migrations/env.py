"""Alembic environment: async engine, URL from DATABASE_URL unless the caller
(tests, `bot.db_tools`) set `sqlalchemy.url`, batch mode on SQLite."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from pydantic import ValidationError
from sqlalchemy.engine import Connection

import models  # noqa: F401  (registers every table on Base.metadata)
from core.settings import DatabaseSettings, describe_error
from models.base import Base
from models.db import create_engine, run_sync

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    """The caller's URL, else DATABASE_URL; a bad one stops with one line that does not
    echo it (pydantic's own message would print the password)."""
    given = config.get_main_option("sqlalchemy.url")
    if given:
        return given
    try:
        return DatabaseSettings().database_url
    except ValidationError as error:
        raise SystemExit(describe_error(error)) from None


def run_migrations_offline() -> None:
    """Emit SQL without a connection (`alembic upgrade head --sql`)."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    """Run against the live database."""
    engine = create_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_sync(run_migrations_online())
