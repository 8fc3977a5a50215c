"""TEST_CLOCK: `python -m bot` on a clock of the test's choosing, so process tests (a
SIGKILLed bot, several bots on one database) never depend on the hour they run at.

``TEST_CLOCK=2026-10-30T08:59:00+06:00`` starts the clock at that instant and lets it
run at real speed (leases and heartbeats still pass); ``TEST_CLOCK=fixed:…`` stops it
there. Refused unless TELEGRAM_API_URL points at a loopback address: a bot that talks
to the real Telegram must run on the real clock."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from urllib.parse import urlsplit

from pydantic import ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.clock import Clock, ManualClock, OffsetClock, SystemClock

FIXED = "fixed:"


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine (127.0.0.0/8, ::1 or localhost)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TestClockSettings(BaseSettings):
    """The test clock and the one setting it depends on."""

    __test__ = False  # not a pytest test class
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    telegram_api_url: str = "https://api.telegram.org/bot"
    test_clock: str | None = None

    @field_validator("test_clock")
    @classmethod
    def _instant(cls, value: str | None, info: ValidationInfo) -> str | None:
        """An aware ISO 8601 instant, optionally after "fixed:"; only against a local server."""
        if value is None or not value.strip():
            return None
        if not is_loopback(str(info.data.get("telegram_api_url", ""))):
            raise ValueError("is for tests: refused unless TELEGRAM_API_URL points at a loopback address")
        value = value.strip()
        try:
            start = datetime.fromisoformat(value.removeprefix(FIXED))
        except ValueError:
            raise ValueError("must be an ISO 8601 time with its UTC offset, optionally after 'fixed:'") from None
        if start.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-10-30T08:59:00+06:00")
        return value

    def clock(self) -> Clock:
        """The clock `python -m bot` runs on."""
        if self.test_clock is None:
            return SystemClock()
        start = datetime.fromisoformat(self.test_clock.removeprefix(FIXED))
        return ManualClock(start) if self.test_clock.startswith(FIXED) else OffsetClock(start)


def clock_from_environment() -> Clock:
    """The clock for `python -m bot`; raises ValidationError on a bad or refused TEST_CLOCK."""
    return TestClockSettings().clock()


__all__ = ["TestClockSettings", "ValidationError", "clock_from_environment", "is_loopback"]
