"""The heartbeat: APScheduler calls every tick on a short interval; what is due
is decided inside each tick from the injected clock and the rows, never from
APScheduler's own timers. So reminders survive restarts, several processes can
share the work, and tests move the clock and call `run_all` instead of sleeping.

The beat knows nothing of what its jobs do: the caller (the bot: bot/jobs.py)
gives it the ticks, `async def tick(app) -> None`, in the order a beat runs them.
Ticks never run two at once in one process, and a failing tick is logged and
retried on the next beat (it must be idempotent). The heartbeat goes on after a
failure, but `run_tick` and `run_all` also return what failed, so a caller (the
tests' harness) can tell a beat that did nothing from a beat that crashed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.aio import PerLoop

log = logging.getLogger(__name__)

Tick = Callable[[Any], Awaitable[None]]
Ticks = Mapping[str, Tick]
HEARTBEAT_SECONDS = 30

_locks: dict[int, PerLoop[asyncio.Lock]] = {}


def _lock(app: object) -> asyncio.Lock:
    # Keyed by id(app), per event loop: an id can be reused by a later Application on
    # another event loop (tests), and a Lock is bound to one loop.
    return _locks.setdefault(id(app), PerLoop(asyncio.Lock)).get()


async def run_tick(app: object, name: str, ticks: Ticks) -> Exception | None:
    """Run one of `ticks` now (also called right after a commit that raised an alert);
    returns its failure (logged, and retried on the next beat), or None."""
    tick = ticks.get(name)
    if tick is None:
        return None
    async with _lock(app):
        try:
            await tick(app)
        except Exception as exc:
            log.error("tick %s failed: %s", name, type(exc).__name__, exc_info=exc)
            return exc
    return None


async def run_all(app: object, ticks: Ticks) -> dict[str, Exception]:
    """One beat: every tick in order; returns the failed ticks' errors by tick name."""
    failures: dict[str, Exception] = {}
    for name in ticks:
        failure = await run_tick(app, name, ticks)
        if failure is not None:
            failures[name] = failure
    return failures


def build_heartbeat(app: object, ticks: Ticks, seconds: float = HEARTBEAT_SECONDS) -> AsyncIOScheduler:
    """The APScheduler that beats every `seconds`: one job, never overlapping,
    a late beat still runs (misfire grace), missed beats collapse into one."""
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(
        run_all,
        "interval",
        seconds=seconds,
        args=[app, ticks],
        id="heartbeat",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=int(seconds * 4),
    )
    return scheduler
