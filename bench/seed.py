"""Bulk data for the benchmark: linked participants and their planned rows, inserted in
bulk (COPY on PostgreSQL, executemany on SQLite) from the real planner's output.

Planning 100,000 participants one by one would take the planner ~1 ms each; instead the
participants are spread over ``PROFILES`` distinct profiles (arm, baseline, reminder time)
and each profile is planned once with :func:`scheduler.planner.plan`; its rows are then
stamped for every participant of that profile. Every row is exactly what the bot would
have stored for that participant (same keys, due times, payloads)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from scheduler.planner import PlanInput, PlannedMessage, plan
from scheduler.protocol import Protocol

PROFILES = 840
SLOTS = 180  # reminder times 07:00, 07:05 … 21:55 (local)
CHAT_BASE = 10_000_000  # participant i chats from Telegram id CHAT_BASE + i
LOCAL_OFFSET = timedelta(hours=6)  # Asia/Dhaka, no DST


@dataclass(frozen=True)
class Profile:
    """One kind of participant: what the schedule depends on."""

    arm: str
    baseline: date
    reminder_time: time

    def plan_input(self, study_id: str) -> PlanInput:
        """The planner's input for a participant of this profile."""
        weekdays: dict[str, int | str] = {}
        if self.arm == "B":
            weekdays["methotrexate"] = self.baseline.weekday()
        return PlanInput(
            study_id=study_id,
            arm=self.arm,
            baseline=self.baseline,
            reminder_time=self.reminder_time,
            dose_weekdays=weekdays,
        )


def spread_profiles(today: date, count: int = PROFILES) -> list[Profile]:
    """Participants in steady state: arms alternate, baselines over the last 24 weeks,
    reminder times every 5 minutes from 07:00 to 21:55."""
    out = []
    for k in range(count):
        minutes = 7 * 60 + 5 * (k % SLOTS)
        out.append(
            Profile(
                arm="A" if k % 2 == 0 else "B",
                baseline=today - timedelta(days=k % 168),
                reminder_time=time(minutes // 60, minutes % 60),
            )
        )
    return out


def same_minute_profiles(today: date, at: time) -> list[Profile]:
    """For the fan-out: every participant's dose reminder falls due at ``at`` today."""
    return [Profile(arm="A", baseline=today, reminder_time=at)]


@dataclass
class Seeded:
    """What was inserted."""

    participants: int
    rows: int


def _participant_rows(n: int, profiles: Sequence[Profile], now: datetime, first: int) -> Iterator[dict[str, Any]]:
    for i in range(first, first + n):
        p = profiles[i % len(profiles)]
        yield {
            "id": i + 1,
            "study_id": f"BEN-{i + 1:06d}",
            "arm": p.arm,
            "baseline_date": p.baseline,
            "language": "bn" if i % 3 else "en",
            "status": "active",
            "reminder_time": p.reminder_time,
            "own_weekday": p.baseline.weekday() if p.arm == "B" else None,
            "created_at": now,
            "updated_at": now,
        }


_PLAN_COLUMNS = ("key", "kind", "due_at", "stale_after", "respects_quiet_hours", "payload", "next_attempt_at")


def _template_rows(
    profiles: Sequence[Profile], plans: Sequence[list[PlannedMessage]], now: datetime, keep: str
) -> Iterator[dict[str, Any]]:
    """Each profile's planned rows once (the participants' rows are stamped from these in SQL)."""
    for k, messages in enumerate(plans):
        for m in messages:
            if keep == "none" or (keep == "due" and m.due_at > now) or (keep == "future" and m.due_at <= now):
                continue
            yield {
                "profile": k,
                "key": m.key,
                "kind": m.kind.value,
                "due_at": m.due_at,
                "stale_after": m.stale_after,
                "respects_quiet_hours": m.respects_quiet_hours,
                "payload": m.payload,
                "next_attempt_at": m.due_at,
            }


def _stamp_sql(profiles: int, now_literal: str, first: int) -> str:
    """One INSERT … SELECT: every participant gets its profile's rows (participant i has
    profile (i - 1) % profiles, as in _participant_rows)."""
    cols = ", ".join(_PLAN_COLUMNS)
    tcols = ", ".join(f"t.{c}" for c in _PLAN_COLUMNS)
    return (
        f"INSERT INTO scheduled_messages (participant_id, {cols}, status, attempts, created_at, updated_at) "
        f"SELECT p.id, {tcols}, 'planned', 0, {now_literal}, {now_literal} "
        f"FROM participants p JOIN bench_plan t ON t.profile = (p.id - 1) % {profiles} WHERE p.id > {int(first)}"
    )


# The secondary indexes of scheduled_messages (as the migrations make them), dropped
# during the bulk insert and built again after it: several times faster than keeping
# them up to date row by row, and the same indexes in the end.
_INDEXES = (
    (
        "ix_scheduled_messages_due",
        "CREATE INDEX ix_scheduled_messages_due ON scheduled_messages (status, next_attempt_at)",
    ),
    (
        "ix_scheduled_messages_participant_id",
        "CREATE INDEX ix_scheduled_messages_participant_id ON scheduled_messages (participant_id)",
    ),
)


_UNIQUE = "uq_scheduled_messages_participant_key"


def _index_sql(dialect: str) -> list[tuple[str, str]]:
    """(drop, create) statements for the secondary indexes that exist in this schema."""
    return [(f"DROP INDEX {name}", create) for name, create in _INDEXES]


def plans_for(profiles: Sequence[Profile], protocol: Protocol, now: datetime) -> list[list[PlannedMessage]]:
    """The real planner's output, once per profile."""
    return [plan(p.plan_input("BEN-PROFILE"), protocol, now) for p in profiles]


async def seed(
    url: str,
    n: int,
    profiles: Sequence[Profile],
    protocol: Protocol,
    now: datetime,
    *,
    keep: str = "all",
    first: int = 0,
    kinds: frozenset[str] | None = None,
) -> Seeded:
    """Insert ``n`` ACTIVE participants with linked chats and their planned rows.
    ``keep``: "all" (the plan as made at ``now``), "due" (only rows already due: the
    fan-out), "future" (only rows due after ``now``: a steady state where everything
    earlier was already sent). ``first``: participants already in the database (the new
    ones are numbered after them). ``kinds``: only rows of these kinds (what is due
    "now" otherwise depends on the time of day: after 10:00 a baseline day has more)."""
    plans = plans_for(profiles, protocol, now)
    if kinds is not None:
        plans = [[m for m in messages if m.kind.value in kinds] for messages in plans]
    if url.startswith("sqlite"):
        return _seed_sqlite(url.partition(":///")[2], n, profiles, plans, now, keep, first)
    return await _seed_postgres(url, n, profiles, plans, now, keep, first)


# ---- SQLite ------------------------------------------------------------------------------


def _sqlite_value(value: Any) -> Any:
    # The storage formats SQLAlchemy's SQLite types use (naive UTC, microseconds).
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M:%S.%f")
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _sqlite_insert(conn: sqlite3.Connection, table: str, rows: Iterator[dict[str, Any]], chunk: int = 50_000) -> int:
    total = 0
    head = next(rows, None)
    if head is None:
        return 0
    columns = list(head)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    batch = [tuple(_sqlite_value(head[c]) for c in columns)]
    for row in rows:
        batch.append(tuple(_sqlite_value(row[c]) for c in columns))
        if len(batch) >= chunk:
            conn.executemany(sql, batch)
            total += len(batch)
            batch.clear()
    conn.executemany(sql, batch)
    return total + len(batch)


def _seed_sqlite(
    path: str,
    n: int,
    profiles: Sequence[Profile],
    plans: Sequence[list[PlannedMessage]],
    now: datetime,
    keep: str,
    first: int,
) -> Seeded:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        _sqlite_insert(conn, "participants", _participant_rows(n, profiles, now, first))
        _sqlite_insert(conn, "chat_links", _link_rows(n, now, first))
        conn.execute(
            "CREATE TEMP TABLE bench_plan (profile INTEGER, key TEXT, kind TEXT, due_at TEXT, stale_after TEXT, "
            "respects_quiet_hours INTEGER, payload TEXT, next_attempt_at TEXT)"
        )
        _sqlite_insert(conn, "bench_plan", _template_rows(profiles, plans, now, keep))
        existing = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        indexes = [(d, c) for (d, c), (name, _) in zip(_index_sql("sqlite"), _INDEXES, strict=True) if name in existing]
        for drop, _create in indexes:
            conn.execute(drop)
        rows = conn.execute(_stamp_sql(len(profiles), "'" + _sqlite_value(now) + "'", first)).rowcount
        for _drop, create in indexes:
            conn.execute(create)
        conn.commit()
        conn.execute("ANALYZE")
        conn.commit()
    finally:
        conn.close()
    return Seeded(n, rows)


def _link_rows(n: int, now: datetime, first: int) -> Iterator[dict[str, Any]]:
    for i in range(first, first + n):
        yield {"participant_id": i + 1, "chat_id": CHAT_BASE + i, "user_id": CHAT_BASE + i, "linked_at": now}


# ---- PostgreSQL --------------------------------------------------------------------------


async def _copy(conn: Any, table: str, rows: Iterator[dict[str, Any]], chunk: int = 100_000) -> int:
    total = 0
    head = next(rows, None)
    if head is None:
        return 0
    columns = list(head)

    def record(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[c] for c in columns)

    batch = [record(head)]
    for row in rows:
        batch.append(record(row))
        if len(batch) >= chunk:
            await conn.copy_records_to_table(table, records=batch, columns=columns)
            total += len(batch)
            batch.clear()
    await conn.copy_records_to_table(table, records=batch, columns=columns)
    return total + len(batch)


def _jsonb_encode(value: Any) -> bytes:
    return b"\x01" + json.dumps(value).encode()  # jsonb binary format: version 1, then text


def _jsonb_decode(data: bytes) -> Any:
    return json.loads(data[1:])


async def _seed_postgres(
    url: str,
    n: int,
    profiles: Sequence[Profile],
    plans: Sequence[list[PlannedMessage]],
    now: datetime,
    keep: str,
    first: int,
) -> Seeded:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.set_type_codec(
            "jsonb", encoder=_jsonb_encode, decoder=_jsonb_decode, schema="pg_catalog", format="binary"
        )
        async with conn.transaction():
            await _copy(conn, "participants", _participant_rows(n, profiles, now, first))
            await _copy(conn, "chat_links", _link_rows(n, now, first))
            await conn.execute(
                "CREATE TEMP TABLE bench_plan (profile integer, key text, kind text, due_at timestamptz, "
                "stale_after timestamptz, respects_quiet_hours boolean, payload jsonb, next_attempt_at timestamptz) "
                "ON COMMIT DROP"
            )
            await _copy(conn, "bench_plan", _template_rows(profiles, plans, now, keep))
            existing = {
                r[0]
                for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'scheduled_messages'")
            }
            indexes = [(d, c) for (d, c), (name, _) in zip(_index_sql("pg"), _INDEXES, strict=True) if name in existing]
            for drop, _create in indexes:
                await conn.execute(drop)
            await conn.execute(f"ALTER TABLE scheduled_messages DROP CONSTRAINT {_UNIQUE}")
            status = await conn.execute(_stamp_sql(len(profiles), "$1::timestamptz", first), now)
            rows = int(status.split()[-1])
            await conn.execute(f"ALTER TABLE scheduled_messages ADD CONSTRAINT {_UNIQUE} UNIQUE (participant_id, key)")
            for _drop, create in indexes:
                await conn.execute(create)
        for table in ("participants", "chat_links", "scheduled_messages"):
            await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            await conn.execute(f"ANALYZE {table}")
    finally:
        await conn.close()
    return Seeded(n, rows)


def local_to_utc(day: date, at: time) -> datetime:
    """A Dhaka wall-clock time as an aware UTC datetime."""
    return datetime.combine(day, at, tzinfo=UTC) - LOCAL_OFFSET
