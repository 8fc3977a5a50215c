"""Settings refuse bad values with one line naming the variable, and never show the token."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import CoordinatorSettings, DatabaseSettings, Settings, describe_error

TOKEN = "123456:ABCDEFGHIJKLMNOP"
ROOT = Path(__file__).resolve().parent.parent
PEOPLE = {"coordinator_chat_ids": "-1001", "escalation_chat_ids": "-1002", "study_contact_phone": "+8801711000000"}
"""The people to reach, without which the bot does not start."""


def make(**values: object) -> Settings:
    return Settings(_env_file=None, **({"telegram_bot_token": TOKEN} | PEOPLE | values))  # type: ignore[arg-type]


def error_line(**values: object) -> str:
    with pytest.raises(ValidationError) as info:
        make(**values)
    return describe_error(info.value)


def test_defaults_follow_the_spec() -> None:
    s = make()
    assert s.telegram_api_url == "https://api.telegram.org/bot"
    assert s.base_file_url == "https://api.telegram.org/file/bot"
    assert s.database_url == "sqlite+aiosqlite:///trial.db"
    assert s.admin_user_ids == [] and s.coordinator_chat_ids == [-1001] and s.escalation_chat_ids == [-1002]
    assert s.escalate_after_minutes == 30
    assert s.timezone == "Asia/Dhaka" and str(s.tz) == "Asia/Dhaka"
    assert s.webhook_url is None and s.webhook_secret is None
    assert s.enrollment_code_days == 14


def test_id_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("ADMIN_USER_IDS", "11, 22,33")
    monkeypatch.setenv("COORDINATOR_CHAT_IDS", "-100123")
    monkeypatch.setenv("ESCALATION_CHAT_IDS", "-100124; 77")
    monkeypatch.setenv("STUDY_CONTACT_PHONE", " +880 1711-000000 ")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.admin_user_ids == [11, 22, 33]
    assert s.coordinator_chat_ids == [-100123]
    assert s.escalation_chat_ids == [-100124, 77]
    assert s.study_contact_phone == "+8801711000000"  # kept as dialled


def test_heroku_style_postgres_url_is_accepted() -> None:
    assert make(database_url="postgres://u:p@h:5432/db").database_url == "postgresql+asyncpg://u:p@h:5432/db"
    assert make(database_url="postgresql://h/db").database_url == "postgresql+asyncpg://h/db"
    assert make(database_url="sqlite:///x.db").database_url == "sqlite+aiosqlite:///x.db"


@pytest.mark.parametrize(
    ("values", "name"),
    [
        ({"telegram_bot_token": "not-a-token"}, "TELEGRAM_BOT_TOKEN"),
        ({"admin_user_ids": "1,two"}, "ADMIN_USER_IDS"),
        ({"coordinator_chat_ids": "x"}, "COORDINATOR_CHAT_IDS"),
        ({"escalate_after_minutes": 0}, "ESCALATE_AFTER_MINUTES"),
        ({"escalate_after_minutes": "soon"}, "ESCALATE_AFTER_MINUTES"),
        ({"timezone": "Mars/Olympus"}, "TIMEZONE"),
        ({"database_url": "mysql://x"}, "DATABASE_URL"),
        ({"telegram_api_url": "ftp://x"}, "TELEGRAM_API_URL"),
        ({"webhook_url": "http://example.org/hook"}, "WEBHOOK_URL"),
        ({"webhook_port": 70000}, "WEBHOOK_PORT"),
        ({"webhook_secret": "has spaces"}, "WEBHOOK_SECRET"),
        ({"escalation_chat_ids": "1,x"}, "ESCALATION_CHAT_IDS"),
        ({"study_contact_phone": "call the clinic"}, "STUDY_CONTACT_PHONE"),
        ({"study_contact_phone": "12"}, "STUDY_CONTACT_PHONE"),
        ({"webhook_url": "https://bot.example.org/telegram"}, "WEBHOOK_SECRET"),
    ],
)
def test_a_malformed_value_is_named_in_one_line(values: dict[str, object], name: str) -> None:
    line = error_line(**values)
    assert line.startswith(f"Configuration error: {name} ")
    assert "\n" not in line


REQUIRED_PEOPLE = ["coordinator_chat_ids", "escalation_chat_ids", "study_contact_phone"]


@pytest.mark.parametrize("name", REQUIRED_PEOPLE)
@pytest.mark.parametrize("how", ["unset", "empty", "blank"])
def test_no_start_without_people_to_reach(name: str, how: str) -> None:
    values: dict[str, object] = {"telegram_bot_token": TOKEN} | {k: v for k, v in PEOPLE.items() if k != name}
    if how != "unset":
        values[name] = "" if how == "empty" else ("   " if name == "study_contact_phone" else " , ")
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None, **values)  # type: ignore[arg-type]
    line = describe_error(info.value)
    assert line.startswith(f"Configuration error: {name.upper()} is not set; ")
    assert "\n" not in line and "see .env.example" in line


def test_with_nothing_set_the_token_is_named_first() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert describe_error(info.value).startswith("Configuration error: TELEGRAM_BOT_TOKEN is not set")


def test_admin_cli_and_migrations_need_no_chats_or_phone_but_sae_needs_coordinators() -> None:
    assert DatabaseSettings(_env_file=None).database_url  # type: ignore[call-arg]  # alembic, most CLI commands
    with pytest.raises(ValidationError) as info:
        CoordinatorSettings(_env_file=None)  # type: ignore[call-arg]  # `cli.admin sae` queues an alert
    assert describe_error(info.value).startswith("Configuration error: COORDINATOR_CHAT_IDS is not set")
    assert CoordinatorSettings(_env_file=None, coordinator_chat_ids="-5").coordinator_chat_ids == [-5]  # type: ignore[call-arg]


def test_missing_token_says_how_to_set_it() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None)  # type: ignore[call-arg]
    line = describe_error(info.value)
    assert "TELEGRAM_BOT_TOKEN is not set" in line and "@BotFather" in line


def test_the_token_never_appears_in_repr_or_errors() -> None:
    s = make()
    assert TOKEN not in repr(s) and TOKEN not in str(s)
    secret_but_bad = "123:" + "x" * 5  # too short: refused
    assert secret_but_bad not in error_line(telegram_bot_token=secret_but_bad)


def test_database_settings_do_not_need_a_token() -> None:
    assert DatabaseSettings(_env_file=None).database_url.startswith("sqlite+aiosqlite")  # type: ignore[call-arg]


def test_starting_without_a_token_exits_with_one_clear_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env=env | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "TELEGRAM_BOT_TOKEN is not set" in result.stderr


@pytest.mark.parametrize("name", [n.upper() for n in REQUIRED_PEOPLE])
def test_starting_without_people_to_reach_exits_with_one_line_naming_it(tmp_path: Path, name: str) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": "http://127.0.0.1:9/bot",  # never reached: the start stops first
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
    } | {k.upper(): v for k, v in PEOPLE.items() if k.upper() != name}
    result = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert f"{name} is not set" in result.stderr
    assert not (tmp_path / "x.db").exists()  # stopped before touching anything


@pytest.mark.parametrize("name", [n.upper() for n in REQUIRED_PEOPLE])
async def test_the_real_bot_on_each_database_refuses_to_start_without_people_to_reach(
    db_url: str, tmp_path: Path, name: str
) -> None:
    import asyncio

    from sqlalchemy import func, select

    from models import AuditEntry
    from models.db import create_engine, create_session_factory

    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": "http://127.0.0.1:9/bot",
        "DATABASE_URL": db_url,
    } | {k.upper(): v for k, v in PEOPLE.items() if k.upper() != name}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    line = stderr.decode().strip()
    assert process.returncode == 2
    assert "\n" not in line and line.startswith(f"Configuration error: {name} is not set; ")
    engine = create_engine(db_url)
    try:
        async with create_session_factory(engine)() as session:
            assert await session.scalar(select(func.count()).select_from(AuditEntry)) == 0  # nothing happened
    finally:
        await engine.dispose()


def _run_bot_with_content(tmp_path: Path, break_it: tuple[str, str, str]) -> subprocess.CompletedProcess[str]:
    import shutil

    content = tmp_path / "content"
    shutil.copytree(ROOT / "content", content)
    path, old, new = break_it
    target = content / path
    text = target.read_text(encoding="utf-8")
    assert old in text
    target.write_text(text.replace(old, new, 1), encoding="utf-8")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": "http://127.0.0.1:9/bot",  # never reached: the start stops first
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        "CONTENT_DIR": str(content),
    } | {k.upper(): v for k, v in PEOPLE.items()}
    return subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_broken_instrument_file_stops_the_start_naming_file_and_item(tmp_path: Path) -> None:
    result = _run_bot_with_content(tmp_path, ("instruments/patient_global.yaml", "type: scale_0_10", "type: slider"))
    assert result.returncode == 2
    assert "Content error" in result.stderr and "patient_global.yaml" in result.stderr and "pga" in result.stderr


def test_a_broken_protocol_file_stops_the_start_naming_the_place(tmp_path: Path) -> None:
    result = _run_bot_with_content(tmp_path, ("protocol.yaml", "window_days: 3", "window_days: -3"))
    assert result.returncode == 2
    assert "Content error" in result.stderr and "protocol.yaml" in result.stderr and "window_days" in result.stderr
