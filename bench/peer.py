"""The peer design beside ours: one APScheduler job per reminder (PTB's JobQueue, as
common reminder bots do it) against our outbox of rows, on the same data.

N participants with their remaining 24-week plans (as for the tick cost) are seeded
once; then two child processes, each measured alone (its own peak RSS, ``VmHWM``):

- ``ours``: the bot built as ``python -m bot`` builds it, started, one scheduler beat;
- ``peer``: a PTB Application with its JobQueue started, which loads every future
  reminder (in due order, so APScheduler's job list grows at its end, its best case)
  and schedules one ``run_once`` job for each.

Start-up: from the child's entry (imports done) until it could send the next reminder
on time, wall and CPU seconds. The weekly overview picture is off in ours (the peer
draws none). Run as ``python -m bench.peer ours|peer BASE_URL DB_URL NOW``; it prints one
JSON line."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime
from typing import Any

from sqlalchemy import select

from bench.memory import _peak_mb, _rss_mb, _Server


async def _ours(base_url: str, url: str, now: datetime) -> dict[str, Any]:
    from bench.common import settings_for
    from bot.app import build_application
    from bot.jobs import run_all
    from bot.services import build_services
    from core.clock import ManualClock

    started, cpu = time.perf_counter(), time.process_time()
    settings = settings_for(_Server(base_url), url, weekly_overview=False)  # type: ignore[arg-type]
    services = build_services(settings, ManualClock(now))
    app = build_application(services)
    try:
        async with app:
            await run_all(app)
            ready, cpu = time.perf_counter() - started, time.process_time() - cpu
            rss = _rss_mb()
    finally:
        await services.engine.dispose()
    return {"design": "ours", **_figures(ready, cpu, rss)}


async def _peer(base_url: str, url: str, now: datetime) -> dict[str, Any]:
    from telegram.ext import Application, ContextTypes

    from devtools.harness import TOKEN
    from models import MessageStatus, ScheduledMessage
    from models.db import create_engine

    async def send_reminder(context: ContextTypes.DEFAULT_TYPE) -> None:  # never runs here: all in the future
        assert context.job is not None
        await context.bot.send_message(int(context.job.chat_id or 0), "reminder")

    started, cpu = time.perf_counter(), time.process_time()
    app = Application.builder().token(TOKEN).base_url(base_url).build()
    assert app.job_queue is not None
    engine = create_engine(url)
    jobs = 0
    try:
        async with app:
            await app.start()
            async with engine.connect() as conn:
                result = await conn.stream(
                    select(ScheduledMessage.id, ScheduledMessage.participant_id, ScheduledMessage.next_attempt_at)
                    .where(ScheduledMessage.status == MessageStatus.PLANNED, ScheduledMessage.next_attempt_at > now)
                    .order_by(ScheduledMessage.next_attempt_at, ScheduledMessage.id)
                    .execution_options(yield_per=10_000)
                )
                async for row_id, participant_id, at in result:
                    app.job_queue.run_once(
                        send_reminder, when=at, data=row_id, chat_id=participant_id, name=f"reminder:{row_id}"
                    )
                    jobs += 1
            await asyncio.sleep(0)  # the scheduler has woken with its jobs
            ready, cpu = time.perf_counter() - started, time.process_time() - cpu
            rss = _rss_mb()
            await app.stop()
    finally:
        await engine.dispose()
    return {"design": "peer", "jobs": jobs, **_figures(ready, cpu, rss)}


def _figures(ready: float, cpu: float, rss: float) -> dict[str, float]:
    """Start-up as wall and CPU seconds (CPU is what contention on a shared machine does
    not move), RSS when ready, and the peak."""
    return {
        "startup_s": round(ready, 2),
        "startup_cpu_s": round(cpu, 2),
        "rss_mb": round(rss, 1),
        "peak_rss_mb": round(_peak_mb(), 1),
    }


async def measure_in_child(design: str, base_url: str, url: str, now: datetime) -> dict[str, Any]:
    """Run one design as a child process and return what it measured."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.peer",
        design,
        base_url,
        url,
        now.isoformat(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{design} child failed: {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def run_peer(url: str, n: int) -> dict[str, Any]:
    """Seed ``n`` participants' future plans, then start both designs on them."""
    from bench.seed import seed, spread_profiles
    from devtools.botapi_server import BotAPIServer
    from devtools.harness import DEFAULT_START, TOKEN
    from domain.content import load_content
    from scheduler.calendar import to_local

    protocol = load_content().protocol
    today = to_local(DEFAULT_START, protocol.tz).date()
    seeded = await seed(url, n, spread_profiles(today), protocol, DEFAULT_START, keep="future")
    async with BotAPIServer(token=TOKEN) as server:
        ours = await measure_in_child("ours", server.base_url, url, DEFAULT_START)
        peer = await measure_in_child("peer", server.base_url, url, DEFAULT_START)
    return {"participants": n, "planned_rows": seeded.rows, "ours": ours, "peer": peer}


def main() -> None:
    """Entry point of a child: design, base URL, database URL, now."""
    design, base_url, url, now = sys.argv[1:5]
    measure = {"ours": _ours, "peer": _peer}[design]
    print(json.dumps(asyncio.run(measure(base_url, url, datetime.fromisoformat(now)))))


if __name__ == "__main__":
    main()
