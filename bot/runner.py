"""Running the bot: the same code path for `python -m bot`, the tests, the demo
and the benchmark. Long polling by default; webhook mode when WEBHOOK_URL is set.

Both are ours, not PTB's Updater, for one reason: an update must be confirmed to
Telegram only after it was handled and committed. PTB's long polling confirms a
fetched batch (by asking for the next offset) while the batch is still waiting to be
processed, and its webhook server answers 200 before processing: a crash at that
moment loses those updates. Here long polling never asks from an offset past an
update that is not committed yet (it keeps fetching meanwhile, see `poll`), and the
webhook answers 200 only after the commit (503 if the database stayed away, so that
Telegram delivers it again); a crash before that means
re-delivery, and the processed-update table makes sure it is applied once."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import hmac
import json
import logging
from typing import Any, cast

from aiohttp import web
from telegram import Update
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError

from bot.app import TrialApplication
from bot.commands import set_menus
from bot.jobs import build_heartbeat
from scheduler.runtime import HEARTBEAT_SECONDS

log = logging.getLogger(__name__)

JSONDict = dict[str, Any]

REFETCH_SECONDS = 0.1
REFETCH_IDLE_SECONDS = 0.5
FETCH_LIMIT = 100  # getUpdates' default and largest `limit`: the most one fetch returns


def refetch_after(fresh: int, fetched: int) -> float:
    """Seconds to wait, while updates are in progress, before asking again (sooner if they
    are all done): REFETCH_SECONDS after a fetch that brought `fresh` new updates or a
    full window (`fetched` at FETCH_LIMIT: the next ones wait behind it), else
    REFETCH_IDLE_SECONDS.

    Every fetch returns every update in progress again, up to FETCH_LIMIT (the offset
    stays at the oldest, see `poll`). Asking again as each one finished, as the bot did,
    made a burst cost a fetch of up to 100 updates per update handled: 18,000 updates
    sent and read again for 600 handled in a burst of 300. At this pace it is at most
    1,000 a second; an update of another chat waits at most 0.1 s more to be fetched in a
    burst, 0.5 s behind an update that hangs (a slow upload, a database retry), and once
    nothing is in progress the long poll returns it at once."""
    return REFETCH_SECONDS if fresh or fetched >= FETCH_LIMIT else REFETCH_IDLE_SECONDS


async def serve(
    app: TrialApplication,
    stop: asyncio.Event,
    *,
    poll_timeout: int = 10,
    ready: asyncio.Event | None = None,
    heartbeat_seconds: float | None = HEARTBEAT_SECONDS,
    freeze_heap: bool = True,
) -> None:
    """Start the bot, serve until `stop` is set, then shut down cleanly (pending
    updates finish, nothing half-written). `heartbeat_seconds=None` leaves the
    scheduler off (tests drive the ticks themselves with a manual clock).
    `freeze_heap=False`: leave the garbage collector as it is (`settle_heap`), for a
    process that serves many bots one after another (the tests)."""
    async with app:  # initialize() … shutdown()
        await set_menus(app)
        await app.start()
        if freeze_heap:
            settle_heap()
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


def settle_heap() -> None:
    """Take what the process made to start out of the garbage collector's sight.

    What a bot loads to start (modules, the trial's content, SQLAlchemy's mappers and
    compiled statements, PTB's handlers) stays for the process's life, yet each of the
    collector's full passes walks all of it again: in a burst of 500 check-in answers
    two full passes and their younger ones over about 230,000 objects took 15 % of the
    burst. So what starting left as garbage is collected, and the rest is frozen
    (`gc.freeze`): the passes then walk only what serving makes. Freezing hides nothing
    from reference counting, which frees almost everything; only a cycle made at start
    that became garbage later would stay."""
    gc.collect()
    gc.freeze()


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
    when `stop` is set, after the updates in progress finished and were confirmed.

    Fetching does not wait for a batch to finish: each update is handled in a task of
    its own (chats concurrently, each chat's updates in order: TrialApplication.handle),
    and the next fetch goes out at most `refetch_after` later, so one slow chat (its
    replies held by the rate limiter or a slow network) delays nobody else. Telegram
    confirms every update below the offset a fetch asks from, so the offset stays at the
    oldest update still in progress: updates fetched again meanwhile are recognised and
    skipped, before PTB parses them (`_fetch`)."""
    bot = app.bot
    flight = _InFlight()
    backoff = 0.5
    stopping = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            fetch = asyncio.create_task(
                _fetch(app, offset=flight.offset(), poll_s=0 if flight.busy() else poll_seconds)
            )  # with updates in progress, those are returned at once anyway
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
            fresh = flight.start(app, updates)
            if flight.busy():
                # Each fetch returns every update in progress again: ask again once they are
                # all done, after `refetch_after`, or at once when asked to stop.
                settled = asyncio.create_task(flight.settled())
                pause = refetch_after(fresh, len(updates))
                await asyncio.wait({settled, stopping}, timeout=pause, return_when=asyncio.FIRST_COMPLETED)
                settled.cancel()
            if flight.collect():
                # The database stayed away: those updates are fetched (and handled) again later.
                await _pause(stop, 5.0)
    finally:
        stopping.cancel()
        await flight.finish()
        offset = flight.offset()
        if offset is not None:
            # Confirm what was processed, so a restart does not fetch it again.
            with contextlib.suppress(TelegramError):
                await bot.get_updates(offset=offset, timeout=0)


class _InFlight:
    """The updates long polling has fetched and not yet confirmed: in progress, handled
    (but behind one in progress), or not stored (to fetch again)."""

    def __init__(self) -> None:
        self._running: dict[int, asyncio.Task[bool]] = {}
        self._unfinished = 0  # of the tasks in _running
        self._all_finished = asyncio.Event()
        self._handled: set[int] = set()
        self._failed: set[int] = set()
        self._next: int | None = None

    def busy(self) -> bool:
        """Whether any update is in progress."""
        return bool(self._running)

    def offset(self) -> int | None:
        """What to fetch from: the oldest update not yet handled, else the next new one."""
        pending = self._running.keys() | self._failed
        return min(pending) if pending else self._next

    def start(self, app: TrialApplication, updates: list[JSONDict]) -> int:
        """Handle the updates not seen before, in order; returns how many. `updates` are
        the Bot API's JSON: only those not seen before are parsed, since every fetch
        while updates are in progress returns those again."""
        fresh = 0
        for data in updates:
            uid = data["update_id"]
            if self._next is None or uid >= self._next:
                self._next = uid + 1
            if uid in self._running or uid in self._handled:
                continue
            update = Update.de_json(data, app.bot)
            app.bot.insert_callback_data(update)
            self._failed.discard(uid)
            task = self._running[uid] = asyncio.create_task(app.handle(update))
            task.add_done_callback(self._finished)
            self._unfinished += 1
            self._all_finished.clear()
            fresh += 1
        return fresh

    def _finished(self, _task: asyncio.Task[bool]) -> None:
        self._unfinished -= 1
        if not self._unfinished:
            self._all_finished.set()

    async def settled(self) -> None:
        """Return once every update in progress has finished (at once if none is)."""
        if self._unfinished:
            await self._all_finished.wait()

    def collect(self) -> bool:
        """Take in the finished updates; True when one could not be stored."""
        failed = False
        for uid, task in list(self._running.items()):
            if task.done():
                del self._running[uid]
                if not task.cancelled() and task.exception() is None and task.result():
                    self._handled.add(uid)
                else:
                    self._failed.add(uid)
                    failed = True
        frontier = self.offset()
        if frontier is not None:
            self._handled = {uid for uid in self._handled if uid >= frontier}
        return failed

    async def finish(self) -> None:
        """Let the updates in progress finish (at shutdown), then take them in."""
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
        self.collect()


async def _fetch(app: TrialApplication, *, offset: int | None, poll_s: int) -> list[JSONDict]:
    """getUpdates, as `Bot.get_updates` sends it (its read timeout: the client's plus
    the long poll's), returning the updates unparsed. With N updates in progress each
    fetch returns those N again; parsing them (PTB builds every Message, User and
    keyboard object) cost more than handling them in the benchmark's burst, so
    `_InFlight.start` parses only the new ones. `Bot._post` is PTB's own path for every
    call (defaults, rate limiter, error mapping); every test that polls runs it."""
    bot = app.bot
    data: JSONDict = {"timeout": poll_s, "offset": offset, "allowed_updates": Update.ALL_TYPES}
    read_timeout = (bot.request.read_timeout or 0) + poll_s  # the long-polling client's is the same
    result = await bot._post("getUpdates", data, read_timeout=read_timeout)
    return cast("list[JSONDict]", result)


def _seconds(value: float | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if the bot is asked to stop meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
