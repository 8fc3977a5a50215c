"""Running the bot: the same code path for `python -m bot`, the tests, the demo
and the benchmark. Long polling by default; webhook mode when WEBHOOK_URL is set.

Long polling is our own loop, not PTB's Updater: the Updater confirms a
fetched batch to Telegram (by asking for the next offset) while the batch is
still waiting to be processed, so a crash at that moment loses those updates.
Here an update is confirmed only after it was processed and committed; a crash
before that makes Telegram deliver it again, and the processed-update table
makes sure it is applied once."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from telegram import Update
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError

from bot.app import TrialApplication
from bot.commands import set_menus
from scheduler.runtime import HEARTBEAT_SECONDS, build_heartbeat

log = logging.getLogger(__name__)


async def serve(
    app: TrialApplication,
    stop: asyncio.Event,
    *,
    poll_timeout: int = 10,
    ready: asyncio.Event | None = None,
    heartbeat_seconds: float | None = HEARTBEAT_SECONDS,
) -> None:
    """Start the bot, serve until `stop` is set, then shut down cleanly (pending
    updates finish, nothing half-written). `heartbeat_seconds=None` leaves the
    scheduler off (tests drive the ticks themselves with a manual clock)."""
    async with app:  # initialize() … shutdown()
        await set_menus(app)
        await app.start()
        heartbeat = build_heartbeat(app, heartbeat_seconds) if heartbeat_seconds else None
        webhook = bool(app.services.settings.webhook_url)
        try:
            if webhook:
                await _start_webhook(app)
            else:
                await app.bot.delete_webhook(drop_pending_updates=False)
            if heartbeat is not None:
                heartbeat.start()
            if ready is not None:
                ready.set()
            if webhook:
                await stop.wait()
            else:
                log.info("serving with long polling")
                await poll(app, stop, poll_timeout)
        finally:
            if heartbeat is not None:
                heartbeat.shutdown(wait=True)
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            await app.stop()
    log.info("stopped")


async def _start_webhook(app: TrialApplication) -> None:
    """Webhook mode (served at /telegram, the secret header checked by PTB)."""
    settings = app.services.settings
    assert app.updater is not None, "webhook mode needs PTB's Updater (see build_application)"
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    await app.updater.start_webhook(
        listen=settings.webhook_listen,
        port=settings.webhook_port,
        url_path="telegram",
        webhook_url=settings.webhook_url,
        secret_token=secret,
        allowed_updates=Update.ALL_TYPES,
    )
    log.info("serving in webhook mode on port %s", settings.webhook_port)


async def poll(app: TrialApplication, stop: asyncio.Event, poll_seconds: int) -> None:
    """Long polling that confirms an update only after it was processed (see the
    module docstring). Network trouble backs off and tries again; the loop ends
    when `stop` is set, after confirming what was processed."""
    bot = app.bot
    offset: int | None = None
    backoff = 0.5
    stopping = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            fetch = asyncio.create_task(
                bot.get_updates(offset=offset, timeout=poll_seconds, allowed_updates=Update.ALL_TYPES)
            )
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError, TelegramError):
                    await fetch
                break
            try:
                updates = fetch.result()
            except RetryAfter as error:
                await _pause(stop, _seconds(error.retry_after))
                continue
            except InvalidToken:
                log.error("the Bot API refused the token: stopping")
                raise
            except Conflict:
                log.error("another process is polling with this token (409 Conflict); use webhooks to scale out")
                await _pause(stop, 5.0)
                continue
            except TelegramError as error:
                log.warning("getUpdates failed (%s); retrying in %.1f s", type(error).__name__, backoff)
                await _pause(stop, backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.5
            # The batch at once: chats concurrently, each chat's updates in order (see
            # TrialApplication.process_update, which never raises); confirmed when all are done.
            await asyncio.gather(*(app.process_update(update) for update in updates))
            if updates:
                offset = updates[-1].update_id + 1
    finally:
        stopping.cancel()
        if offset is not None:
            # Confirm what was processed, so a restart does not fetch it again.
            with contextlib.suppress(TelegramError):
                await bot.get_updates(offset=offset, timeout=0)


def _seconds(value: float | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if the bot is asked to stop meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
