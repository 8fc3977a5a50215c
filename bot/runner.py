"""Running the bot: the same code path for `python -m bot`, the tests, the demo
and the benchmark. Long polling by default; webhook mode when WEBHOOK_URL is set.

Both are ours, not PTB's Updater, for one reason: an update must be confirmed to
Telegram only after it was handled and committed. PTB's long polling confirms a
fetched batch (by asking for the next offset) while the batch is still waiting to be
processed, and its webhook server answers 200 before processing: a crash at that
moment loses those updates. Here long polling asks for the next offset only once the
batch is committed, and the webhook answers 200 only after the commit (503 if the
database stayed away, so that Telegram delivers it again); a crash before that means
re-delivery, and the processed-update table makes sure it is applied once."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import json
import logging

from aiohttp import web
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
        endpoint: web.AppRunner | None = None
        try:
            if app.services.settings.webhook_url:
                endpoint = await start_webhook(app)
            else:
                await app.bot.delete_webhook(drop_pending_updates=False)
            if heartbeat is not None:
                heartbeat.start()
            if ready is not None:
                ready.set()
            if endpoint is not None:
                await stop.wait()
            else:
                log.info("serving with long polling")
                await poll(app, stop, poll_timeout)
        finally:
            if heartbeat is not None:
                heartbeat.shutdown(wait=True)
            if endpoint is not None:
                await endpoint.cleanup()  # stops taking requests, lets those in progress finish
            await app.stop()
    log.info("stopped")


WEBHOOK_PATH = "/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


async def start_webhook(app: TrialApplication) -> web.AppRunner:
    """Webhook mode: an HTTP endpoint at WEBHOOK_PATH that checks the secret header,
    handles the update, and answers only then; then the webhook is registered with
    Telegram. Several processes can serve one URL behind a load balancer."""
    settings = app.services.settings
    if settings.webhook_secret is None:  # Settings refuses this already; never serve without it
        raise RuntimeError("WEBHOOK_SECRET is required in webhook mode")
    secret = settings.webhook_secret.get_secret_value()

    async def receive(request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.headers.get(SECRET_HEADER, "").encode(), secret.encode()):
            log.warning("webhook request refused: missing or wrong secret token")
            return web.Response(status=403)
        try:
            update = Update.de_json(json.loads(await request.read()), app.bot)
        except Exception as exc:  # not an update: nothing to retry
            log.warning("webhook request refused: not an update (%s)", type(exc).__name__)
            return web.Response(status=400)
        handled = await app.handle(update)
        return web.Response(status=200 if handled else 503)

    server = web.Application(client_max_size=1024 * 1024)
    server.router.add_post(WEBHOOK_PATH, receive)
    runner = web.AppRunner(server, access_log=None)  # a line per update, with nothing in it worth keeping
    await runner.setup()
    await web.TCPSite(runner, settings.webhook_listen, settings.webhook_port).start()
    await app.bot.set_webhook(url=str(settings.webhook_url), secret_token=secret, allowed_updates=Update.ALL_TYPES)
    log.info("serving in webhook mode on port %s", settings.webhook_port)
    return runner


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
            # TrialApplication.handle, which never raises); confirmed when all are done.
            handled = await asyncio.gather(*(app.handle(update) for update in updates))
            if all(handled):
                if updates:
                    offset = updates[-1].update_id + 1
                continue
            # The database stayed away: confirm only what comes before the first update not
            # stored, and fetch it again later (what was stored after it is skipped then).
            first = next(u for u, ok in zip(updates, handled, strict=True) if not ok)
            offset = first.update_id
            await _pause(stop, 5.0)
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
