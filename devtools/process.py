"""The real bot as a separate process (`python -m bot`), pointed at the local
Bot API test server, so reliability tests can SIGKILL it at any point and start
it again, exactly as a crash in production would."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from core.clock import Clock, OffsetClock
from devtools.botapi_server import BotAPIServer
from devtools.harness import ADMIN_ID, COORDINATOR_CHAT, ESCALATION_CHAT, STUDY_PHONE, TOKEN

ROOT = Path(__file__).resolve().parent.parent
PROCESS_START = "2026-10-30T10:00:00+06:00"
"""Where process tests' clocks start (a Friday morning in Dhaka) unless TEST_START says
otherwise, e.g. TEST_START=2026-10-30T23:59:00+06:00 to run them across Dhaka midnight."""


def test_clock() -> OffsetClock:
    """The clock a process test and its `python -m bot` children share: it starts at
    TEST_START (default PROCESS_START, to the minute) and runs at real speed."""
    start = datetime.fromisoformat(os.environ.get("TEST_START") or PROCESS_START)
    if start.tzinfo is None:
        raise ValueError("TEST_START needs a UTC offset, e.g. 2026-10-30T23:59:00+06:00")
    return OffsetClock(start.replace(second=0, microsecond=0))


test_clock.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


@dataclass
class BotProcess:
    """One `python -m bot` child process."""

    server: BotAPIServer
    database_url: str
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    clock: Clock | None = None
    """The test's clock: each start hands its current time to the child (TEST_CLOCK), so
    the child runs on it, across restarts. None: the real clock."""
    process: asyncio.subprocess.Process | None = None
    starts: int = 0

    def env(self) -> dict[str, str]:
        """The child's environment: explicit settings only, nothing from the developer's .env."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONPATH": str(ROOT),
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_URL": self.server.base_url,
            "DATABASE_URL": self.database_url,
            "ADMIN_USER_IDS": str(ADMIN_ID),
            "COORDINATOR_CHAT_IDS": str(COORDINATOR_CHAT),
            "ESCALATION_CHAT_IDS": str(ESCALATION_CHAT),
            "STUDY_CONTACT_PHONE": STUDY_PHONE,
            "TIMEZONE": "Asia/Dhaka",
            "WEEKLY_OVERVIEW": "false",  # as in the in-process harness: the Sunday picture only when asked
            "AUDIT_HEAD_CHAT_IDS": "",  # as in the harness: no daily head in the counted chats
            **({"TEST_CLOCK": self.clock.now().isoformat()} if self.clock is not None else {}),
            **self.extra_env,
        }

    serving_method: ClassVar[str] = "getUpdates"
    """The Bot API call that shows the bot is serving (long polling: its first poll)."""

    async def start(self, within: float = 30.0) -> None:
        """Start the bot and wait until it is serving (``serving_method`` reached the server)."""
        method = self.serving_method.lower()
        before = sum(1 for r in self.server.requests if r.method.lower() == method)
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=str(self.log_path.parent), env=self.env(), stdout=log, stderr=log
        )
        log.close()
        self.starts += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            try:
                await self.server.wait_for_request(self.serving_method, count=before + 1, timeout=0.5)
                return
            except AssertionError:
                if self.process.returncode is not None:
                    raise RuntimeError(f"the bot exited with {self.process.returncode}: see {self.log_path}") from None
                if loop.time() > deadline:
                    raise TimeoutError(
                        f"the bot did not start serving within {within} s: see {self.log_path}"
                    ) from None

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
        self.process = None

    async def stop(self) -> None:
        """SIGTERM and wait: the graceful path."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), timeout=30)
        self.process = None


class WebhookProcess(BotProcess):
    """A `python -m bot` process in webhook mode (see `webhook_env`): serving once it has
    registered its webhook."""

    serving_method: ClassVar[str] = "setWebhook"


def webhook_env(port: int, *, url: str | None = None, secret: str = "test-webhook-secret") -> dict[str, str]:
    """The settings of webhook mode on ``port`` of 127.0.0.1; ``url``: what Telegram posts
    to (default: that port itself; a load balancer's address for several processes)."""
    return {
        "WEBHOOK_URL": url or f"http://127.0.0.1:{port}/telegram",
        "WEBHOOK_LISTEN": "127.0.0.1",
        "WEBHOOK_PORT": str(port),
        "WEBHOOK_SECRET": secret,
    }


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
