"""Peak memory of a bot process: run as a child process (``python -m bench.memory``) so
that its peak RSS is the bot's alone, not the benchmark's or the test server's. It builds
the bot exactly as ``python -m bot`` does (settings, services, Application), on a
database already holding N participants' plans, and runs the scheduler's beats with a
manual clock: empty beats, then a loaded minute. It prints one JSON line."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from typing import Any

from bench.common import settings_for
from bot.app import build_application
from bot.jobs import run_all
from bot.services import build_services
from core.clock import ManualClock


class _Server:
    """Just enough of BotAPIServer for settings_for: the base URL."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url


def _status_mb(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec(), so a child
    # would report its parent's peak (the benchmark's) when that was higher.
    return _status_mb("VmHWM")


async def _measure(base_url: str, url: str, start: datetime, loaded: datetime) -> dict[str, Any]:
    clock = ManualClock(start)
    services = build_services(settings_for(_Server(base_url), url), clock)  # type: ignore[arg-type]
    app = build_application(services)
    try:
        async with app:
            after_start = _rss_mb()
            for _ in range(3):
                await run_all(app)
            clock.set(loaded)
            await run_all(app)
            await run_all(app)
            at_end = _rss_mb()
    finally:
        await services.engine.dispose()
    peak = _peak_mb()
    return {
        "rss_after_start_mb": round(after_start, 1),
        "rss_at_end_mb": round(at_end, 1),
        "peak_rss_mb": round(peak, 1),
    }


async def measure_in_child(base_url: str, url: str, start: datetime, loaded: datetime) -> dict[str, Any]:
    """Run this module as a child process and return what it measured."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.memory",
        base_url,
        url,
        start.isoformat(),
        loaded.isoformat(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed: {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def main() -> None:
    """Entry point of the child: base URL, database URL, start and loaded times."""
    base_url, url, start, loaded = sys.argv[1:5]
    result = asyncio.run(_measure(base_url, url, datetime.fromisoformat(start), datetime.fromisoformat(loaded)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
