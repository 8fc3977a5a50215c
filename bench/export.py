"""How long the export holds its read snapshot while the bot serves: N participants
in steady state (baselines over the last 24 weeks) with their history (every dose
reminder and answer, visits, weekly check-ins, alerts), inserted in bulk; then the
real export (`export.run.export_trial_record`, validation on) runs while the bot's
own work goes on beside it: dispatcher ticks and the write every inbound update
makes (its `processed_updates` row), each timed."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import register_team_chats, running_app, summary_ms
from bench.seed import (
    Profile,
    _copy,
    _jsonb_decode,
    _jsonb_encode,
    _sqlite_insert,
    local_to_utc,
    seed,
    spread_profiles,
)
from bot.dispatch import dispatch_tick
from devtools.botapi_server import BotAPIServer
from devtools.harness import DEFAULT_START, TOKEN
from domain.content import load_content
from export.run import export_trial_record
from models import ProcessedUpdate
from scheduler.calendar import to_local

SERVE_PAUSE_S = 0.02  # between two pieces of the bot's work while the export runs


def _history(n: int, profiles: Sequence[Profile], today: date) -> dict[str, Iterator[dict[str, Any]]]:
    """Each participant's history up to yesterday, as the bot would have stored it."""

    def doses() -> Iterator[dict[str, Any]]:
        for i in range(n):
            p = profiles[i % len(profiles)]
            days = (today - p.baseline).days
            for d in range(days):
                day = p.baseline + timedelta(days=d)
                regimens = [("baricitinib", "4 mg")] if p.arm == "A" else []
                if p.arm == "B" and d % 7 == 0:
                    regimens = [("methotrexate", "25 mg")]
                elif p.arm == "B" and d % 7 == 1:
                    regimens = [("folic_acid", "5 mg")]
                for regimen, drug in regimens:
                    reminded = local_to_utc(day, p.reminder_time)
                    answer = ("taken", "taken", "taken", "skipped", "no_answer")[(i + d) % 5]
                    yield {
                        "participant_id": i + 1,
                        "reminder_key": f"dose:{regimen}:{day.isoformat()}",
                        "regimen": regimen,
                        "drug": drug,
                        "dose_date": day,
                        "planned_time": p.reminder_time,
                        "reminded_at": reminded,
                        "answer": answer,
                        "answered_at": reminded + timedelta(minutes=7) if answer != "no_answer" else None,
                        "later_count": 0,
                    }

    def visits() -> Iterator[dict[str, Any]]:
        for i in range(n):
            p = profiles[i % len(profiles)]
            for week in (0, 4, 12, 24):
                target = p.baseline + timedelta(weeks=week)
                done = target < today
                yield {
                    "participant_id": i + 1,
                    "week": week,
                    "target_date": target,
                    "visit_date": target,
                    "window_start": target - timedelta(days=3),
                    "window_end": target + timedelta(days=3),
                    "status": "done" if done else "planned",
                    "attended_on": target if done else None,
                    "recorded_by": "admin:1" if done else None,
                    "recorded_at": local_to_utc(target, p.reminder_time) if done else None,
                }

    def checkins() -> Iterator[dict[str, Any]]:
        for i in range(n):
            p = profiles[i % len(profiles)]
            for week in range(1, (today - p.baseline).days // 7 + 1):
                at = local_to_utc(p.baseline + timedelta(weeks=week), p.reminder_time)
                yield {
                    "participant_id": i + 1,
                    "instrument_id": "weekly_checkin",
                    "instrument_version": "1.0",
                    "status": "completed",
                    "origin": "prompt",
                    "state": {"answers": {"skin_any": False, "breathing_any": False, "anything_else": None}},
                    "started_at": at,
                    "updated_at": at + timedelta(minutes=3),
                    "completed_at": at + timedelta(minutes=3),
                    "scores": {},
                    "triage": {"result": {"level": "ROUTINE", "grade": 0, "red_flags": [], "seriousness": []}},
                }

    def alerts() -> Iterator[dict[str, Any]]:
        for i in range(0, n, 20):
            at = local_to_utc(today - timedelta(days=1 + i % 30), profiles[i % len(profiles)].reminder_time)
            yield {
                "participant_id": i + 1,
                "kind": "red_flag",
                "level": "same_day",
                "summary": "benchmark alert",
                "reasons": ["benchmark"],
                "details": {},
                "aware_at": at,
                "acknowledged_at": at + timedelta(hours=1),
                "acknowledged_by": "admin:1",
            }

    return {"dose_log": doses(), "clinic_visits": visits(), "questionnaire_sessions": checkins(), "alerts": alerts()}


def _lists_as_json(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """SQLite stores JSON lists as text (bench.seed converts dicts, not lists)."""
    for row in rows:
        yield {k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()}


async def _seed_history(url: str, n: int, profiles: Sequence[Profile], today: date) -> dict[str, int]:
    counts: dict[str, int] = {}
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.partition(":///")[2])
        try:
            conn.execute("PRAGMA synchronous=OFF")
            for table, rows in _history(n, profiles, today).items():
                counts[table] = _sqlite_insert(conn, table, _lists_as_json(rows))
            conn.commit()
            conn.execute("ANALYZE")
            conn.commit()
        finally:
            conn.close()
        return counts
    import asyncpg

    pg = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await pg.set_type_codec(
            "jsonb", encoder=_jsonb_encode, decoder=_jsonb_decode, schema="pg_catalog", format="binary"
        )
        async with pg.transaction():
            for table, rows in _history(n, profiles, today).items():
                counts[table] = await _copy(pg, table, rows)
        for table in counts:
            await pg.execute(f"ANALYZE {table}")
    finally:
        await pg.close()
    return counts


async def run_export(url: str, n: int) -> dict[str, Any]:
    """Seed ``n`` participants with their history, then export while the bot works."""
    protocol = load_content().protocol
    today = to_local(DEFAULT_START, protocol.tz).date()
    now: datetime = DEFAULT_START
    profiles = spread_profiles(today)
    await seed(url, n, profiles, protocol, now, keep="none")
    rows = await _seed_history(url, n, profiles, today)
    async with BotAPIServer(token=TOKEN) as server:
        register_team_chats(server)
        async with running_app(server, url, now) as (app, _clock):
            services = app.services
            await dispatch_tick(app)  # warm-up
            work: list[float] = []
            done = asyncio.Event()

            async def serve() -> None:
                update_id = 1
                while not done.is_set():
                    t0 = time.perf_counter()
                    await dispatch_tick(app)
                    async with services.one_writer(), services.sessions() as session:
                        session.add(ProcessedUpdate(update_id=update_id, processed_at=now, outcome="ok"))
                        await session.commit()
                    work.append(time.perf_counter() - t0)
                    update_id += 1
                    await asyncio.sleep(SERVE_PAUSE_S)

            server_task = asyncio.create_task(serve())
            with tempfile.TemporaryDirectory(prefix="ssc-bench-export-") as tmp:
                t0 = time.perf_counter()
                result = await export_trial_record(
                    services.engine,
                    Path(tmp) / "export",
                    services.settings.tz,
                    protocol=services.protocol,
                    instruments=services.instruments,
                    now=now,
                    validate=True,
                )
                total = time.perf_counter() - t0
                size_mb = sum(f.stat().st_size for f in result.files) / 1e6
            done.set()
            await server_task
    assert result.validation is not None
    return {
        "participants": n,
        "rows": rows,
        "exported_rows": sum(result.row_counts.values()),
        "snapshot_s": round(result.snapshot_seconds, 2),
        "export_s": round(total, 2),
        "files_mb": round(size_mb, 1),
        "odm_schema_errors": len(result.validation.errors),
        "bot_work_during_export": {"count": len(work), **summary_ms(work)},
    }
