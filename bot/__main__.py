"""`python -m bot`: check the settings, then serve until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

from pydantic import ValidationError

from bot.app import build_application
from bot.config import Settings, describe_error
from bot.logs import setup_logging
from bot.runner import serve
from bot.services import build_services
from bot.test_clock import clock_from_environment
from domain.clock import Clock
from domain.questionnaires import InstrumentError
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
    setup_logging([settings.telegram_bot_token.get_secret_value()])
    try:
        asyncio.run(_main(settings, clock))
    except (InstrumentError, ProtocolError) as error:
        print(f"Content error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
