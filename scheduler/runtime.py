"""The heartbeat: APScheduler calls every tick on a short interval; what is due
is decided inside each tick from the injected clock and the rows, never from
APScheduler's own timers. So reminders survive restarts, several processes can
share the work, and tests move the clock and call `run_all` instead of sleeping.

A tick is `async def tick(app) -> None`. Ticks run in the order of `ticks()`,
never two at once in one process, and a failing tick is logged and retried on
the next beat (it must be idempotent). The heartbeat goes on after a failure, but
`run_tick` and `run_all` also return what failed, so a caller (the tests' harness)
can tell a beat that did nothing from a beat that crashed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.aio import PerLoop

if TYPE_CHECKING:
    from bot.app import TrialApplication

log = logging.getLogger(__name__)

Tick = Callable[["TrialApplication"], Awaitable[None]]
HEARTBEAT_SECONDS = 30


def ticks() -> dict[str, Tick]:
    """Every periodic job, in the order a beat runs them."""
    from bot.alerting import alerts_tick
    from bot.audit_publish import publish_tick
    from bot.handlers.questionnaire import expiry_tick
    from bot.team_reports import weekly_overview_tick
    from scheduler.dispatch import dispatch_tick  # imports the bot's texts: load lazily

    return {
        "dispatch": dispatch_tick,
        "questionnaires": expiry_tick,  # closes check-ins whose week ended and idle reports
        "alerts": alerts_tick,  # after the others: it sends what they raised
        "overview": weekly_overview_tick,  # Sundays from 08:00: the trial at a glance, once
        "audit_seal": audit_seal_tick,  # chains the audit rows every tick wrote
        "audit_publish": publish_tick,  # once a day: the chain's head, outside the database
    }


async def audit_seal_tick(app: TrialApplication) -> None:
    """Link new audit rows into the tamper-evident chain (domain.audit_chain)."""
    from domain.audit_chain import seal

    async with app.services.sessions() as session:
        sealed = await seal(session)
    if sealed:
        log.debug("audit: %d row(s) sealed", sealed)


_locks: dict[int, PerLoop[asyncio.Lock]] = {}


def _lock(app: TrialApplication) -> asyncio.Lock:
    # Keyed by id(app), per event loop: an id can be reused by a later Application on
    # another event loop (tests), and a Lock is bound to one loop.
    return _locks.setdefault(id(app), PerLoop(asyncio.Lock)).get()


async def run_tick(app: TrialApplication, name: str) -> Exception | None:
    """Run one tick now (also called right after a commit that raised an alert); returns
    its failure (logged, and retried on the next beat), or None."""
    tick = ticks().get(name)
    if tick is None:
        return None
    async with _lock(app):
        try:
            await tick(app)
        except Exception as exc:
            log.error("tick %s failed: %s", name, type(exc).__name__, exc_info=exc)
            return exc
    return None


async def run_all(app: TrialApplication) -> dict[str, Exception]:
    """One beat: every tick in order; returns the failed ticks' errors by tick name."""
    failures: dict[str, Exception] = {}
    for name in ticks():
        failure = await run_tick(app, name)
        if failure is not None:
            failures[name] = failure
    return failures


def build_heartbeat(app: TrialApplication, seconds: float = HEARTBEAT_SECONDS) -> AsyncIOScheduler:
    """The APScheduler that beats every `seconds`: one job, never overlapping,
    a late beat still runs (misfire grace), missed beats collapse into one."""
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(
        run_all,
        "interval",
        seconds=seconds,
        args=[app],
        id="heartbeat",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=int(seconds * 4),
    )
    return scheduler
