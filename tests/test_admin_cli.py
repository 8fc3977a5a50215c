"""`python -m cli`: the same actions as the Telegram admin commands, audited."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from cli.admin import run
from core.clock import ManualClock
from devtools.harness import DEFAULT_START
from models import AuditEntry, Participant, ParticipantStatus
from models.db import create_engine, create_session_factory

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", db_url)
    # Codes are keyed with the token; the Bot API itself is out of reach (no username).
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456789:TEST-token-for-the-local-server")
    monkeypatch.setenv("TELEGRAM_API_URL", "http://127.0.0.1:9/bot")
    return db_url


async def rows(url: str) -> tuple[list[Participant], list[AuditEntry]]:
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session:
            people = list(await session.scalars(select(Participant).order_by(Participant.study_id)))
            audit = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
            return people, audit
    finally:
        await engine.dispose()


async def test_enroll_list_withdraw_from_the_shell(cli_db: str) -> None:
    clock = ManualClock(DEFAULT_START)
    code, text = await run(["enroll", "BSM-001", "B", "2026-10-25", "bn", "fri"], clock)
    assert code == 0 and "One-time code:" in text and "https://t.me/<bot username>?start=" in text
    code, text = await run(["participants"], clock)
    assert code == 0 and "BSM-001 · arm B · baseline 2026-10-25 · bn · invited · MTX fri, folic sat" in text
    code, text = await run(["withdraw", "BSM-001", "moved", "away"], clock)
    assert code == 0 and "withdrawn" in text
    people, audit = await rows(cli_db)
    assert people[0].status == ParticipantStatus.WITHDRAWN and people[0].withdrawal_reason == "moved away"
    assert [a.action for a in audit] == ["participant.enroll", "enrollment_code.issue", "participant.withdraw"]
    assert all(a.actor.startswith("cli:") for a in audit)
    assert audit[-1].before is not None and audit[-1].before["status"] == "invited"
    assert audit[-1].after is not None and audit[-1].after["status"] == "withdrawn"


async def test_shell_mistakes_exit_non_zero_and_change_nothing(cli_db: str) -> None:
    assert (await run(["enroll", "BSM-001", "Z", "2026-10-25"]))[0] == 1
    assert (await run(["withdraw", "BSM-404"]))[0] == 1
    people, audit = await rows(cli_db)
    assert people == [] and audit == []


def test_the_module_runs_as_a_command(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": url, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    result = subprocess.run(
        [sys.executable, "-m", "cli.admin", "participants"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0 and "No participants yet" in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "cli.admin", "withdraw", "BSM-404"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "no participant with study id BSM-404" in bad.stderr
