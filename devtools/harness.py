"""The real bot, running against the local Bot API test server on a real
database, with a clock the caller moves. Used by the tests, `make demo` and the
benchmark, so all three exercise exactly what `python -m bot` runs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bot.app import TrialApplication, build_application
from bot.jobs import run_all
from bot.runner import serve
from bot.services import Services, build_services
from core.clock import ManualClock
from core.settings import Settings
from devtools.botapi_server import BotAPIServer
from export.run import ExportResult, export_trial_record

TOKEN = "123456789:TEST-token-for-the-local-server"
ADMIN_ID = 900
COORDINATOR_CHAT = -1001
ESCALATION_CHAT = -1002
STUDY_PHONE = "+8801711000000"  # as dialled: Telegram makes it tappable
# Sunday 25 October 2026, 09:00 in Dhaka.
DEFAULT_START = datetime(2026, 10, 25, 3, 0, tzinfo=UTC)


class TickFailed(Exception):
    """A scheduler beat in a test had a tick that raised (see BotHarness.tick)."""

    def __init__(self, failures: dict[str, Exception]) -> None:
        names = ", ".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in failures.items())
        super().__init__(f"tick failed: {names}")
        self.failures = failures


@dataclass(repr=False)
class BotHarness:
    """One bot process (an Application) serving through the test server."""

    server: BotAPIServer
    database_url: str
    clock: ManualClock = field(default_factory=lambda: ManualClock(DEFAULT_START))
    overrides: dict[str, Any] = field(default_factory=dict)
    rate_limiter: bool = True
    """False: no AIORateLimiter, so a 429 reaches the dispatcher's own RetryAfter handling."""
    freeze_heap: bool = False
    """True: serve as `python -m bot` does, the heap frozen once started (`bot.runner.settle_heap`).
    Off by default: a test process serves hundreds of bots, and a frozen one is never collected."""
    app: TrialApplication | None = None
    services: Services | None = None
    _stop: asyncio.Event | None = None
    _task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"BotHarness({self.database_url.split('://')[0]}, running={self.app is not None})"

    def settings(self) -> Settings:
        """Settings for this harness: explicit values, never the developer's .env."""
        values: dict[str, Any] = {
            "telegram_bot_token": TOKEN,
            "telegram_api_url": self.server.base_url,
            "database_url": self.database_url,
            "admin_user_ids": [ADMIN_ID],
            "coordinator_chat_ids": [COORDINATOR_CHAT],
            "escalation_chat_ids": [ESCALATION_CHAT],
            "study_contact_phone": STUDY_PHONE,
            "escalate_after_minutes": 30,
            "timezone": "Asia/Dhaka",
            "webhook_url": None,
            # The harness starts on a Sunday after 08:00: a test that wants the Sunday
            # picture in the coordinator chat asks for it (tests/test_summary.py).
            "weekly_overview": False,
            # The daily audit head would be one more message in the coordinator chat,
            # which most tests count: published only where a test asks for it.
            "audit_head_chat_ids": [],
        }
        values.update(self.overrides)
        return Settings(_env_file=None, **values)

    async def start(self) -> None:
        """Build the Application and serve with long polling until `stop`."""
        settings = self.settings()
        self.services = build_services(settings, self.clock)
        self.app = build_application(self.services, rate_limiter=self.rate_limiter)
        self._stop = asyncio.Event()
        ready = asyncio.Event()
        self._task = asyncio.create_task(
            serve(
                self.app,
                self._stop,
                poll_timeout=1,
                ready=ready,
                heartbeat_seconds=None,
                freeze_heap=self.freeze_heap,
            )
        )
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            waiter.cancel()
            self._task.result()  # raises what went wrong
            raise RuntimeError("the bot stopped while starting")

    async def tick(self, *, may_fail: bool = False) -> dict[str, Exception]:
        """One scheduler beat at the clock's current time (the tests' heartbeat).

        A tick that failed raises TickFailed here (the heartbeat itself logs it and goes
        on), so "nothing was sent" cannot pass because the tick crashed; fault-injection
        tests that expect a failing beat pass ``may_fail=True`` and get the failures."""
        assert self.app is not None
        failures = await run_all(self.app)
        if failures and not may_fail:
            raise TickFailed(failures)
        return failures

    async def stop(self) -> None:
        """Shut the bot down cleanly and release the database."""
        if self._stop is not None and self._task is not None:
            self._stop.set()
            await self._task
        if self.services is not None:
            await self.services.engine.dispose()
        self.app = self.services = self._stop = self._task = None

    async def export(
        self, out_dir: Path, *, since: date | None = None, validate: bool = False, with_files: bool = False
    ) -> ExportResult:
        """The trial record of this bot's database written to ``out_dir``, as /export
        writes it, at the bot's clock."""
        assert self.services is not None
        services = self.services
        return await export_trial_record(
            services.engine,
            out_dir,
            services.settings.tz,
            protocol=services.protocol,
            instruments=services.instruments,
            now=self.clock.now(),
            since=since,
            validate=validate,
            with_files=with_files,
        )

    async def restart(self) -> None:
        """Stop and start a new Application on the same database and clock."""
        await self.stop()
        await self.start()

    async def __aenter__(self) -> BotHarness:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
