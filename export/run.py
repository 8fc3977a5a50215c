"""Running an export: one consistent read snapshot, then the files.

Safe while the bot runs: it only reads, inside one transaction that sees a
single point in time (PostgreSQL REPEATABLE READ, READ ONLY; on SQLite an
explicit read transaction over WAL, which never blocks the bot's writers), and
it holds that transaction only while reading, not while writing files."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from domain.questionnaires import Instrument
from export.datasets import Scope, build_all
from export.odm import write_odm
from export.spec import Dataset
from export.writers import write_csv, write_dictionary, write_sav
from models import AuditChainHead, AuditEntry
from scheduler.protocol import Protocol


@dataclass(frozen=True)
class ExportResult:
    """The files written and how many rows each dataset had."""

    directory: Path
    files: list[Path]
    row_counts: dict[str, int]


async def read_snapshot(
    engine: AsyncEngine,
    tz: ZoneInfo,
    since: date | None,
    protocol: Protocol,
    instruments: dict[str, Instrument],
) -> list[Dataset]:
    """Every dataset, read at one point in time."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        else:
            await conn.exec_driver_sql("BEGIN")  # pysqlite would otherwise read each SELECT apart
        session = AsyncSession(bind=conn)
        try:
            ids = None
            if since is not None:
                start = datetime.combine(since, time(0), tz)
                ids = frozenset(
                    pid
                    for pid in await session.scalars(
                        select(AuditEntry.participant_id).where(AuditEntry.at >= start).distinct()
                    )
                    if pid is not None
                )
            return await build_all(session, Scope(tz, ids, protocol, instruments))
        finally:
            await session.close()
            await conn.rollback()


async def export_trial_record(
    engine: AsyncEngine,
    out_dir: Path,
    tz: ZoneInfo,
    *,
    protocol: Protocol,
    instruments: dict[str, Instrument],
    now: datetime,
    since: date | None = None,
) -> ExportResult:
    """Write the CSV files, the .sav files, the data dictionary and the ODM file
    into `out_dir`, for everyone or for the participants changed since `since`."""
    datasets = await read_snapshot(engine, tz, since, protocol, instruments)
    # File writing is blocking work: off the event loop, so the bot keeps serving.
    files = await asyncio.to_thread(write_files, datasets, out_dir, tz, protocol.trial_id, now)
    files.append(await asyncio.to_thread(write_audit_head, out_dir, *await read_audit_head(engine), now))
    return ExportResult(out_dir, files, {d.name: len(d.rows) for d in datasets})


async def read_audit_head(engine: AsyncEngine) -> tuple[int, str]:
    """The audit chain's head now (its last sealed row)."""
    from domain.audit_chain import GENESIS

    async with engine.connect() as conn:
        row = (await conn.execute(select(AuditChainHead.seq, AuditChainHead.row_hash))).first()
    return (row[0], row[1]) if row else (0, GENESIS)


def write_audit_head(out_dir: Path, seq: int, digest: str, now: datetime) -> Path:
    """`audit_chain_head.txt`: the audit chain's head at export time, kept with the
    export outside the database (see bot.audit_publish)."""
    path = out_dir / "audit_chain_head.txt"
    path.write_text(
        f"Audit chain head at {now.isoformat(timespec='seconds')}: #{seq} {digest}\n"
        f"Check it later: python -m bot.admin audit-verify --published {seq}:{digest}\n",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def write_files(datasets: list[Dataset], out_dir: Path, tz: ZoneInfo, study_oid: str, now: datetime) -> list[Path]:
    """Every file of the export, from datasets already read."""
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    out_dir.chmod(0o700)  # trial data: the owner only, whatever the umask
    files: list[Path] = []
    for dataset in datasets:
        files.append(write_csv(dataset, out_dir, tz))
        files.append(write_sav(dataset, out_dir, tz))
    files.append(write_dictionary(datasets, out_dir))
    files.append(write_odm(datasets, out_dir, study_oid=study_oid, tz=tz, created=now))
    for file in files:
        file.chmod(0o600)
    return files
