"""Running an export: one consistent read snapshot, then the files.

Safe while the bot runs: it only reads, inside one transaction that sees a
single point in time (PostgreSQL REPEATABLE READ, READ ONLY; on SQLite an
explicit read transaction over WAL, which never blocks the bot's writers), and
it holds that transaction only while reading, not while writing files.

With `since`, every dataset holds only the records one of whose own times
(listed beside each dataset's columns in export/datasets.py and
export/followup.py) falls on or after the start of that day in the trial time
zone. With `validate`, the ODM file is checked against the official CDISC ODM
1.3.2 schema (export/odm_schema.py) and the result comes back with the files."""

from __future__ import annotations

import asyncio
import time as timer
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from domain.questionnaires import Instrument
from export.build import build_all
from export.datasets import Scope, plain_values
from export.media import write_media_files
from export.odm import write_odm
from export.odm_schema import Validation, validate_odm
from export.redcap import write_redcap
from export.spec import Dataset
from export.writers import write_csv, write_dictionary, write_sav
from models import AuditChainHead
from scheduler.protocol import Protocol

ODM_FILE = "trial_record_odm.xml"


@dataclass(frozen=True)
class ExportResult:
    """The files written, how many rows each dataset had, how long the read
    snapshot was held, and (when asked) the ODM schema check."""

    directory: Path
    files: list[Path]
    row_counts: dict[str, int]
    snapshot_seconds: float = 0.0
    validation: Validation | None = None


async def read_snapshot(
    engine: AsyncEngine,
    tz: ZoneInfo,
    since: date | None,
    protocol: Protocol,
    instruments: dict[str, Instrument],
) -> list[Dataset]:
    """Every dataset, read at one point in time (records changed since `since`, or all)."""
    return plain_values(await _read(engine, tz, since, protocol, instruments))


async def _read(
    engine: AsyncEngine,
    tz: ZoneInfo,
    since: date | None,
    protocol: Protocol,
    instruments: dict[str, Instrument],
) -> list[Dataset]:
    """The snapshot itself: held only while the datasets are read."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        else:
            await conn.exec_driver_sql("BEGIN")  # pysqlite would otherwise read each SELECT apart
        session = AsyncSession(bind=conn)
        try:
            start = datetime.combine(since, time(0), tz) if since is not None else None
            return await build_all(session, Scope(tz, None, protocol, instruments, since=start))
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
    validate: bool = False,
    with_files: bool = False,
) -> ExportResult:
    """Write the CSV files, the .sav files, the data dictionary, the ODM file and
    the REDCap folder into `out_dir`, for every record or for the records
    created or changed since `since`; with `validate`, check the ODM file; with
    `with_files`, the photos and voice notes the media manifest lists, under `media/`
    (large and personal: only when asked)."""
    started = timer.perf_counter()
    read = await _read(engine, tz, since, protocol, instruments)
    held = timer.perf_counter() - started
    datasets = plain_values(read)
    # File writing is blocking work: off the event loop, so the bot keeps serving.
    files = await asyncio.to_thread(write_files, datasets, out_dir, tz, protocol, now)
    files.append(await asyncio.to_thread(write_audit_head, out_dir, *await read_audit_head(engine), now))
    if with_files:
        manifest = next(d for d in datasets if d.name == "media")
        files.extend(await write_media_files(engine, out_dir, manifest))
    validation = await asyncio.to_thread(validate_odm, out_dir / ODM_FILE) if validate else None
    return ExportResult(out_dir, files, {d.name: len(d.rows) for d in datasets}, held, validation)


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
        f"Check it later: python -m cli audit-verify --published {seq}:{digest}\n",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def write_files(datasets: list[Dataset], out_dir: Path, tz: ZoneInfo, protocol: Protocol, now: datetime) -> list[Path]:
    """Every file of the export, from datasets already read."""
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    out_dir.chmod(0o700)  # trial data: the owner only, whatever the umask
    files: list[Path] = []
    for dataset in datasets:
        files.append(write_csv(dataset, out_dir, tz))
        files.append(write_sav(dataset, out_dir, tz))
    files.append(write_dictionary(datasets, out_dir))
    visits: list[tuple[int, str, str | None]] = [
        (v.week, v.name.en or f"Week {v.week}", v.name.bn) for v in protocol.visits
    ]
    files.append(
        write_odm(
            datasets, out_dir, study_oid=protocol.trial_id, tz=tz, created=now, visits=visits, study_name=protocol.title
        )
    )
    files.extend(write_redcap(datasets, out_dir, protocol, tz))
    for file in files:
        file.chmod(0o600)
        if file.parent != out_dir:  # redcap/: trial data too, the owner only
            file.parent.chmod(0o700)
    return files
