"""What the bot is built from, created once per process and shared by handlers
and jobs through the application (`context.services`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.aio import PerLoop
from bot.config import Settings
from domain.clock import Clock
from domain.questionnaires import Instrument, load_instruments
from domain.secrets import derive_key
from domain.triage import check_cross_checks, default_triage_table
from models.db import SessionFactory, create_engine, create_session_factory
from scheduler.protocol import Protocol, load_protocol

CONTENT_DIR = Path(__file__).resolve().parent.parent / "content"


@dataclass
class Services:
    """The process's long-lived dependencies."""

    settings: Settings
    engine: AsyncEngine
    sessions: SessionFactory
    clock: Clock
    protocol: Protocol
    instruments: dict[str, Instrument]
    _writer: PerLoop[asyncio.Lock] = field(default_factory=lambda: PerLoop(asyncio.Lock), repr=False)

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


def load_content(content_dir: Path = CONTENT_DIR) -> tuple[Protocol, dict[str, Instrument]]:
    """The study team's files: instruments, then the protocol checked against
    them. A mistake raises InstrumentError or ProtocolError naming file and place,
    so a broken file stops the start instead of a questionnaire at 2 a.m."""
    instruments = load_instruments(content_dir / "instruments")
    protocol = load_protocol(content_dir / "protocol.yaml", known_instruments=set(instruments))
    check_cross_checks(default_triage_table(), instruments)
    return protocol, instruments


def build_services(settings: Settings, clock: Clock, content_dir: Path | None = None) -> Services:
    """Everything a bot process needs, built once."""
    protocol, instruments = load_content(content_dir or settings.content_dir or CONTENT_DIR)
    engine = create_engine(settings.database_url)
    return Services(settings, engine, create_session_factory(engine), clock, protocol, instruments)
