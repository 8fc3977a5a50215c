"""`python -m bot`: check the settings, then serve until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
import traceback

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from telegram.error import InvalidToken

from bot.app import build_application
from bot.logs import mask, setup_logging
from bot.runner import serve
from bot.services import build_services
from bot.test_clock import clock_from_environment
from core.clock import Clock
from core.settings import Settings, describe_error
from domain.questionnaires import InstrumentError
from domain.triage import TriageTableError
from scheduler.protocol import ProtocolError


async def _main(settings: Settings, clock: Clock) -> None:
    services = build_services(settings, clock)
    app = build_application(services)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve(app, stop, heartbeat_seconds=settings.heartbeat_seconds)
    finally:
        await services.engine.dispose()


def main() -> int:
    """Entry point; exit code 2 with one clear line on a configuration error."""
    try:
        settings = Settings()
        clock = clock_from_environment()  # the real clock unless TEST_CLOCK (local test server only)
    except ValidationError as error:
        print(describe_error(error), file=sys.stderr)
        return 2
    secrets = secrets_of(settings)
    setup_logging(secrets)
    try:
        asyncio.run(_main(settings, clock))
    except (InstrumentError, ProtocolError, TriageTableError) as error:
        print(f"Content error: {error}", file=sys.stderr)
        return 2
    except InvalidToken:  # PTB's message quotes the token
        print(
            "Start-up error: the Bot API refused the token (401 or 404): check TELEGRAM_BOT_TOKEN "
            "and TELEGRAM_API_URL.",
            file=sys.stderr,
        )
        return 2
    except Exception as error:  # an operator needs the traceback, never the secrets in it
        print(mask("".join(traceback.format_exception(error)), secrets), file=sys.stderr, end="")
        return 1
    return 0


def secrets_of(settings: Settings) -> list[str]:
    """What must never reach the console: the token and the database password."""
    try:
        password = make_url(settings.database_url).password
    except ArgumentError:
        password = None
    return [s for s in (settings.telegram_bot_token.get_secret_value(), password) if s]


if __name__ == "__main__":
    sys.exit(main())
