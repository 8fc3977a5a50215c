"""What every benchmark scenario shares: throw-away migrated databases, the real
Application built for a database and a clock, and small statistics helpers."""

from __future__ import annotations

import contextlib
import gc
import statistics
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.app import TrialApplication, build_application
from bot.runner import settle_heap
from bot.services import build_services
from core.clock import ManualClock
from core.settings import Settings
from devtools.botapi_server import BotAPIServer
from devtools.databases import PostgresTemplate, SqliteTemplate, postgres_available
from devtools.harness import ADMIN_ID, COORDINATOR_CHAT, ESCALATION_CHAT, STUDY_PHONE, TOKEN


@dataclass
class Databases:
    """Migrated templates for both backends; ``fresh(kind)`` gives an empty database."""

    workdir: Path
    sqlite: SqliteTemplate
    postgres: PostgresTemplate | None

    @contextlib.asynccontextmanager
    async def fresh(self, kind: str) -> AsyncIterator[str]:
        """A fresh migrated database of ``kind`` ("sqlite" or "postgresql"), dropped after."""
        if kind == "sqlite":
            url = self.sqlite.clone(self.workdir)
            try:
                yield url
            finally:
                path = Path(url.partition(":///")[2])
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240 - a file delete, instant
            return
        assert self.postgres is not None
        url = await self.postgres.clone()
        try:
            yield url
        finally:
            await self.postgres.drop(url)


@contextlib.contextmanager
def databases() -> Any:
    """Both templates (PostgreSQL only when the server answers)."""
    with tempfile.TemporaryDirectory(prefix="ssc-bench-") as tmp:
        pg = PostgresTemplate() if postgres_available() else None
        try:
            yield Databases(Path(tmp), SqliteTemplate(Path(tmp)), pg)
        finally:
            if pg is not None:
                pg.close()


def settings_for(server: BotAPIServer, url: str, **overrides: Any) -> Settings:
    """The harness's settings (no .env), pointed at ``server`` and ``url``."""
    values: dict[str, Any] = {
        "telegram_bot_token": TOKEN,
        "telegram_api_url": server.base_url,
        "database_url": url,
        "admin_user_ids": [ADMIN_ID],
        "coordinator_chat_ids": [COORDINATOR_CHAT],
        "escalation_chat_ids": [ESCALATION_CHAT],
        "study_contact_phone": STUDY_PHONE,
        "timezone": "Asia/Dhaka",
        "webhook_url": None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@contextlib.asynccontextmanager
async def running_app(
    server: BotAPIServer, url: str, now: datetime, *, rate_limiter: Any = False, **overrides: Any
) -> AsyncIterator[tuple[TrialApplication, ManualClock]]:
    """The real Application, initialised (its Bot can send), not serving updates:
    the scenarios call the ticks themselves. ``overrides``: settings. On a settled heap
    (`settled_heap`)."""
    clock = ManualClock(now)
    services = build_services(settings_for(server, url, **overrides), clock)
    app = build_application(services, rate_limiter=rate_limiter)
    try:
        async with app:
            with settled_heap():
                yield app, clock
    finally:
        await services.engine.dispose()


@contextlib.contextmanager
def settled_heap() -> Iterator[None]:
    """The heap settled as `python -m bot` settles it once started (`bot.runner.settle_heap`),
    then unfrozen, so that the next scenario starts from the heap it would have had."""
    settle_heap()
    try:
        yield
    finally:
        gc.unfreeze()


def register_team_chats(server: BotAPIServer) -> None:
    """The coordinator and escalation chats exist on the server (alerts can be delivered)."""
    server.group(COORDINATOR_CHAT, "coordinators")
    server.group(ESCALATION_CHAT, "escalation")


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of durations in seconds, as milliseconds."""
    return {
        "p50_ms": round(percentile(values_s, 50) * 1000, 2),
        "p95_ms": round(percentile(values_s, 95) * 1000, 2),
        "p99_ms": round(percentile(values_s, 99) * 1000, 2),
        "max_ms": round(max(values_s, default=0.0) * 1000, 2),
        "mean_ms": round(statistics.fmean(values_s) * 1000, 2) if values_s else 0.0,
    }
