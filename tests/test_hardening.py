"""Issue 17's security review, one attack per finding, each performed through the
real bot (the harness or a `python -m bot` process) against the local Bot API test
server. Each of these passed on the code before the fix, i.e. the attack worked."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from devtools.botapi_server import BotAPIServer
from devtools.harness import ADMIN_ID, TOKEN
from devtools.process import ROOT, free_port, webhook_env


def _bot_env(server: BotAPIServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A `python -m bot` environment on a throw-away SQLite file, nothing from .env."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": server.base_url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        "ADMIN_USER_IDS": str(ADMIN_ID),
        **extra,
    }


async def _run(args: list[str], env: dict[str, str], cwd: Path, within: float = 60.0) -> tuple[int, str]:
    """Run a child process to its end (killed and reported if it is still running after
    `within` seconds: a server that should have refused to start); returns (code, output)."""
    child = await asyncio.create_subprocess_exec(
        *args, cwd=str(cwd), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(child.communicate(), timeout=within)
    except TimeoutError:
        child.kill()
        output, _ = await child.communicate()
        raise AssertionError(f"still running after {within} s:\n{output.decode(errors='replace')}") from None
    assert child.returncode is not None
    return child.returncode, output.decode(errors="replace")


# 1. Webhook mode without WEBHOOK_SECRET accepted forged updates from anyone.
async def test_1_webhook_mode_does_not_start_without_its_secret(server: BotAPIServer, tmp_path: Path) -> None:
    env = _bot_env(server, tmp_path, **webhook_env(free_port()))
    del env["WEBHOOK_SECRET"]
    code, output = await _run([sys.executable, "-m", "bot"], env, tmp_path, within=30)
    assert code == 2, output
    (line,) = output.strip().splitlines()
    assert line.startswith("Configuration error: WEBHOOK_SECRET is required when WEBHOOK_URL is set")
    assert not any(r.method == "setWebhook" for r in server.requests)  # nothing was ever listening
