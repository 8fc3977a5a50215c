"""TEST_CLOCK: process tests choose the hour; a bot that talks to Telegram cannot."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.test_clock import TestClockSettings, is_loopback
from core.clock import ManualClock, OffsetClock, SystemClock
from core.settings import describe_error

ROOT = Path(__file__).resolve().parent.parent
LOCAL = "http://127.0.0.1:8081/bot"


def settings(**values: str) -> TestClockSettings:
    return TestClockSettings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:1/bot", True),
        ("http://127.3.4.5/bot", True),
        ("http://[::1]:9/bot", True),
        ("http://localhost:9/bot", True),
        ("https://api.telegram.org/bot", False),
        ("http://10.0.0.1/bot", False),
        ("http://127.0.0.1.example.com/bot", False),
    ],
)
def test_only_loopback_addresses_count_as_local(url: str, local: bool) -> None:
    assert is_loopback(url) is local


def test_without_test_clock_the_bot_runs_on_the_real_clock() -> None:
    assert isinstance(settings(telegram_api_url=LOCAL).clock(), SystemClock)


def test_an_offset_clock_starts_at_the_given_instant_and_runs_on() -> None:
    clock = settings(telegram_api_url=LOCAL, test_clock="2026-10-30T23:59:00+06:00").clock()
    assert isinstance(clock, OffsetClock)
    start = datetime(2026, 10, 30, 17, 59, tzinfo=UTC)
    assert start <= clock.now() < start + timedelta(seconds=5)


def test_a_fixed_clock_stays_where_it_was_put() -> None:
    clock = settings(telegram_api_url=LOCAL, test_clock="fixed:2026-10-30T17:59:00+00:00").clock()
    assert isinstance(clock, ManualClock) and clock.now() == datetime(2026, 10, 30, 17, 59, tzinfo=UTC)


@pytest.mark.parametrize("url", ["https://api.telegram.org/bot", "http://192.168.1.5:8081/bot"])
def test_a_test_clock_is_refused_against_a_remote_bot_api(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(telegram_api_url=url, test_clock="2026-10-30T08:59:00+06:00")
    assert describe_error(caught.value) == (
        "Configuration error: TEST_CLOCK is for tests: refused unless TELEGRAM_API_URL points at a loopback address."
    )


@pytest.mark.parametrize("value", ["tomorrow", "2026-10-30T08:59:00", "fixed:30/10/2026"])
def test_a_bad_test_clock_is_refused_with_its_name(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(telegram_api_url=LOCAL, test_clock=value)
    assert describe_error(caught.value).startswith("Configuration error: TEST_CLOCK ")


def test_python_m_bot_refuses_a_test_clock_against_telegram(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "TELEGRAM_BOT_TOKEN": "123456789:TEST-token-for-the-local-server",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        "TEST_CLOCK": "2026-10-30T08:59:00+06:00",
        "COORDINATOR_CHAT_IDS": "-1001",
        "ESCALATION_CHAT_IDS": "-1002",
        "STUDY_CONTACT_PHONE": "+8801711000000",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "TEST_CLOCK is for tests" in done.stderr
