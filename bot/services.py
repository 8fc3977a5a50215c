"""What the bot is built from, created once per process and shared by handlers
and jobs through the application (`context.services`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from core.aio import PerLoop
from core.clock import Clock
from core.settings import Settings
from domain.content import Content, load_content
from domain.questionnaires import Instrument
from domain.secrets import derive_key
from models.db import SessionFactory, create_engine, create_session_factory
from scheduler.protocol import Protocol


@dataclass
class Services:
    """The process's long-lived dependencies."""

    settings: Settings
    engine: AsyncEngine
    sessions: SessionFactory
    clock: Clock
    content: Content
    _writer: PerLoop[asyncio.Lock] = field(default_factory=lambda: PerLoop(asyncio.Lock), repr=False)

    @property
    def protocol(self) -> Protocol:
        """The trial's protocol (from the content loaded at start)."""
        return self.content.protocol

    @property
    def instruments(self) -> dict[str, Instrument]:
        """The questionnaires (from the content loaded at start)."""
        return self.content.instruments

    def secret_key(self, purpose: str) -> bytes:
        """A key kept outside the database, one per purpose, derived from the bot token
        (see domain.secrets): a database dump alone cannot recover what it protects."""
        return derive_key(self.settings.telegram_bot_token.get_secret_value(), purpose)

    @contextlib.asynccontextmanager
    async def one_writer(self) -> AsyncIterator[None]:
        """Around a transaction that writes. SQLite has one writer at a time: here the
        process's writers queue in order on an asyncio.Lock, instead of meeting inside
        SQLite, whose busy handler makes a waiting writer sleep and poll (and the
        updates of different chats run concurrently, see TrialApplication). Another
        process still meets us inside SQLite (busy timeout). PostgreSQL: no gate.
        Never nest: a holder that asks again waits for itself."""
        if self.engine.dialect.name != "sqlite":
            yield
            return
        async with self._writer.get():
            yield


def build_services(settings: Settings, clock: Clock, content_dir: Path | None = None) -> Services:
    """Everything a bot process needs, built once."""
    content = load_content(content_dir or settings.content_dir)
    engine = create_engine(settings.database_url)
    return Services(settings, engine, create_session_factory(engine), clock, content)
