"""The Application factory: one place that builds the bot, registers every
handler in a deliberate order, and wraps each update in a unit of work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Bot, Chat, Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseRateLimiter,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot import callbacks, calls, media, unit_of_work
from bot.context import BotContext
from bot.handlers import (
    admin,
    common,
    coordinator,
    export,
    gate,
    participant,
    pictures,
    questionnaire,
    schedule,
    schedule_admin,
)
from bot.http import AiohttpRequest, SendRateLimiter
from bot.i18n import _, language_from_telegram, use_locale
from bot.jobs import run_tick
from bot.services import Services
from core.aio import GroupCall, GroupCommit, PerLoop
from domain import participants, questionnaire_sessions
from domain.alerts import ALERTS_RAISED
from models import Participant, ProcessedUpdate
from models.db import claim_many, claim_new, is_transient

log = logging.getLogger(__name__)

DB_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
CONCURRENT_UPDATES = 16
"""Updates whose transaction is in progress at once, across chats (each holds a database
connection: models.db.POOL_SIZE). Against the local test server (no network latency) 2
to 16 handle a burst at about the same rate (the work is CPU: see the README's
benchmark)."""
CONCURRENT_REPLIES = 64
"""Updates whose replies are on their way at once, across chats. Not the transactions'
slots: against Telegram each call takes 50-200 ms, and an answer's replies (edit, next
question) take two round trips; holding a transaction's slot through them capped a
burst at 16 updates per two round trips (82 answers/s at 80 ms, the README's network
figures). 64 keeps up with 200 answers/s at 150 ms; PTB's HTTP pool holds 256. (At
Telegram's free rate the rate limiter lets 30 messages a second through, so about 15
answers a second; TELEGRAM_SEND_RATE raises only the reminders' rate.)"""


GROUP_MOST = CONCURRENT_UPDATES
"""Most updates sharing one transaction (`TrialApplication._run_group`): their replies wait
for the last one's handlers, a few milliseconds each."""
GROUP_LANES = 4
"""Groups in progress at once: while one waits for PostgreSQL, another's handlers use the
CPU (with one, the event loop sat idle a tenth of a burst). SQLite's writers queue anyway
(`Services.one_writer`)."""


def shares_transaction(update: Update) -> bool:
    """Button presses and plain text: what comes in bursts (a reminder's wave of answers)
    and is handled in milliseconds. Commands (an /export or a chart takes seconds, and
    would hold up the replies of every update it shared a transaction with), files and
    everything else go alone."""
    if update.callback_query is not None:
        return True
    message = update.message
    return message is not None and message.text is not None and not message.text.startswith("/")


@dataclass
class _Handled:
    """An update whose transaction committed: its replies are still to go."""

    work: unit_of_work.UpdateWork
    lang: str
    alerts: bool = False


ALONE: Literal["alone"] = "alone"
"""A group's answer for its update: handle it again in a transaction of its own."""
SEEN: Literal["seen"] = "seen"
"""An update already stored (a re-delivery, or another process's): nothing to do."""
RETRY: Literal["retry"] = "retry"
"""The database was unavailable to a handler: the update's transaction was rolled back."""
Shared = _Handled | Literal["alone", "seen", "retry"]


def _private_chat(update: Update) -> Chat | None:
    """The update's chat when it is a private one (where a participant is linked)."""
    chat = update.effective_chat
    return chat if chat is not None and chat.type == "private" else None


class TrialApplication(Application[Any, BotContext, Any, Any, Any, Any]):
    """PTB's Application, with each update handled as one unit of work
    (see `bot.unit_of_work`) and the process's services attached."""

    services: Services
    dispatch_record_s: float = 0.0  # moving average of one outcome transaction (bot.dispatch.auto_slots)
    _turns: dict[int | None, tuple[asyncio.Lock, list[int]]] | None = None
    _slots: PerLoop[asyncio.Semaphore] | None = None
    _reply_slots: PerLoop[asyncio.Semaphore] | None = None
    _shown: PerLoop[GroupCommit[tuple[int, int]]] | None = None
    _groups: PerLoop[GroupCall[Update, Shared]] | None = None

    http: tuple[AiohttpRequest, ...] = ()  # the Bot API clients (updates, everything else)

    async def initialize(self) -> None:
        """PTB's, and when it fails (the token refused, the server away) the HTTP clients
        it opened are closed again: PTB shuts down only what initialised whole, and an
        open aiohttp session would complain at exit, after the start-up error's line."""
        try:
            await super().initialize()
        except BaseException:
            for request in self.http:
                await request.shutdown()
            raise

    async def store_shown_question(self, session_id: int, message_id: int) -> None:
        """Remember the message that shows a session's current question, and return once
        it is stored. Group commit: the ids of every question sent while one write runs
        go together in the next transaction, not one transaction per answer. The sender
        waits for its own (inside its chat's turn, see `_in_turn`), so the chat's next
        update reads the id (a typed answer takes that question's buttons away)."""
        if self._shown is None:
            self._shown = PerLoop(lambda: GroupCommit(lambda shown: self._write_shown(shown)))
        await self._shown.get().add((session_id, message_id))

    async def _write_shown(self, shown: list[tuple[int, int]]) -> None:
        services = self.services
        async with services.one_writer(), services.sessions() as db:
            await questionnaire_sessions.set_message_ids(db, shown)
            await db.commit()

    @contextlib.asynccontextmanager
    async def _in_turn(self, update: Update) -> AsyncIterator[None]:
        """Updates of one chat are handled one at a time, in the order they arrive (an
        asyncio.Lock wakes its waiters first come, first served); updates of different
        chats run concurrently. The lock is dropped when nobody waits for it."""
        chat, user = update.effective_chat, update.effective_user
        key = chat.id if chat is not None else user.id if user is not None else None
        if self._turns is None:
            self._turns = {}
        entry = self._turns.get(key)
        if entry is None:
            entry = self._turns[key] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._turns[key]

    async def process_update(self, update: object) -> None:
        """PTB's entry point: see `handle`."""
        if not isinstance(update, Update):
            await super().process_update(update)
            return
        await self.handle(update)

    async def handle(self, update: Update) -> bool:
        """Handle one update exactly once, in one transaction, replies after commit,
        after the earlier updates of its chat. Never raises. Returns False only when
        the update could not be stored (the database stayed away through every retry):
        the caller must then not confirm it to Telegram, which will deliver it again."""
        async with self._in_turn(update):
            return await self._process(update)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """At most CONCURRENT_UPDATES transactions in progress: more only adds contention
        (for the database's connections and the event loop)."""
        if self._slots is None:
            self._slots = PerLoop(lambda: asyncio.Semaphore(CONCURRENT_UPDATES))
        async with self._slots.get():
            yield

    @contextlib.asynccontextmanager
    async def _replying(self) -> AsyncIterator[None]:
        """At most CONCURRENT_REPLIES updates sending their replies at once."""
        if self._reply_slots is None:
            self._reply_slots = PerLoop(lambda: asyncio.Semaphore(CONCURRENT_REPLIES))
        async with self._reply_slots.get():
            yield

    async def _process(self, update: Update) -> bool:
        for attempt, delay in enumerate((*DB_RETRY_DELAYS, None)):
            try:
                retry = await self._process_once(update)
            except Exception as exc:
                # Outside the handlers only infrastructure can fail (opening the session,
                # the duplicate check, the commit, a group's run cancelled at a shutdown):
                # always worth another try.
                retry = True
                log.error(
                    "update %s failed outside its handlers (%s, attempt %d)",
                    update.update_id,
                    type(exc).__name__,
                    attempt + 1,
                )
            if not retry:
                return True
            if delay is None:
                log.error("update %s not handled: the database stayed unavailable; left to Telegram", update.update_id)
                return False
            await asyncio.sleep(delay)
        return False  # not reached: the last delay is None

    async def _process_once(self, update: Update) -> bool:
        """One attempt. Returns True when it should be retried (database unavailable).
        Button presses and plain text share a transaction with the others of their kind
        that arrived while the one before ran (`_run_group`); the rest, and the updates of
        a group that failed, go alone."""
        if not shares_transaction(update):
            return await self._process_alone(update)
        if self._groups is None:
            self._groups = PerLoop(lambda: GroupCall(self._run_group, most=GROUP_MOST, lanes=GROUP_LANES))
        shared = await self._groups.get().call(update)
        if shared == ALONE:
            return await self._process_alone(update)
        return await self._finish(shared)

    async def _process_alone(self, update: Update) -> bool:
        """One attempt of one update in a transaction of its own."""
        return await self._finish(await self._transact_alone(update))

    async def _finish(self, shared: Shared) -> bool:
        """After the transaction: the replies of what it committed; True to try again."""
        if shared == RETRY:
            return True
        if isinstance(shared, _Handled):
            await self._after_commit(shared.work, shared.lang, shared.alerts)
        return False

    async def _transact_alone(self, update: Update) -> Shared:
        """One update's transaction: `_Handled` once committed (the replies still to go),
        `SEEN` when it was stored before or by another process meanwhile, `RETRY` when the
        database was unavailable to a handler."""
        services = self.services
        async with self._slot(), services.one_writer(), services.sessions() as session:
            now = services.clock.now()
            # The update's row first, in the handlers' transaction: one statement both finds
            # a re-delivered update and records this one. (On PostgreSQL another process
            # handling the same update makes this wait for its commit, then find it.)
            processed = {"update_id": update.update_id, "processed_at": now, "outcome": "ok"}
            if not await claim_new(session, ProcessedUpdate, processed, ("update_id",)):
                log.info("update %s was already processed; re-delivery ignored", update.update_id)
                return SEEN
            chat = _private_chat(update)
            linked = await participants.by_chat(session, chat.id) if chat is not None else None
            work, lang = await self._run_handlers(session, update, now, linked)
            alerts_raised = bool(session.info.pop(ALERTS_RAISED, False))
            if work.retry:
                await session.rollback()
                return RETRY
            if work.failed:
                await session.rollback()  # the update's row too: stored again, as failed
                session.add(ProcessedUpdate(update_id=update.update_id, processed_at=now, outcome="error"))
            if not await self._commit(session, work, now, lang):
                return SEEN
        return _Handled(work, lang, alerts_raised)

    async def _run_group(self, updates: list[Update]) -> list[Shared]:
        """Updates of different chats (each holds its chat's turn) in one transaction: their
        ids stored in one statement, their participants read in one, then each update's
        handlers in turn, one commit. An answer's own statements stay its own; what the
        group shares is the transaction (the session, a connection, `BEGIN`, the commit),
        the update ids' claim and the participants' read: about 0.9 ms of CPU an answer on
        PostgreSQL (`python -m bench.parts`). If any handler fails or asks for a retry,
        or the commit fails other than transiently (a unique key met, a value the database
        refuses), the whole group is rolled back and each of its updates goes again alone
        (`ALONE`), where a failure is kept to the update that failed. A group of one is an
        update alone (while it runs, the next group gathers). The ids are claimed in
        their order, so that two processes claiming overlapping groups on PostgreSQL
        wait for each other rather than deadlock."""
        if len(updates) == 1:
            return [await self._transact_alone(updates[0])]
        services = self.services
        async with self._slot(), services.one_writer(), services.sessions() as session:
            now = services.clock.now()
            ids = sorted({update.update_id for update in updates})
            rows = [{"update_id": update_id, "processed_at": now, "outcome": "ok"} for update_id in ids]
            claimed = await claim_many(session, ProcessedUpdate, rows, "update_id")
            chats = {update.update_id: _private_chat(update) for update in updates}
            private = [chat.id for update_id, chat in chats.items() if chat is not None and update_id in claimed]
            linked = await participants.by_chats(session, private)
            shared: list[Shared] = []
            for update in updates:
                if update.update_id not in claimed:
                    log.info("update %s was already processed; re-delivery ignored", update.update_id)
                    shared.append(SEEN)
                    continue
                claimed.discard(update.update_id)  # the same update twice in a group: once
                chat = chats[update.update_id]
                person = linked.get(chat.id) if chat is not None else None
                work, lang = await self._run_handlers(session, update, now, person)
                if work.retry or work.failed:
                    await session.rollback()
                    return [ALONE] * len(updates)
                # Each its own alerts: the tick runs after the replies of the update that raised one.
                shared.append(_Handled(work, lang, bool(session.info.pop(ALERTS_RAISED, False))))
            try:
                await session.commit()
            except Exception as exc:
                await session.rollback()
                if is_transient(exc):
                    raise
                log.info(
                    "a group of %d updates failed at its commit (%s); each goes again alone",
                    len(updates),
                    type(exc).__name__,
                )
                return [ALONE] * len(updates)
        return shared

    async def _run_handlers(
        self, session: AsyncSession, update: Update, now: datetime, linked: Participant | None
    ) -> tuple[unit_of_work.UpdateWork, str]:
        """The update's handlers, in its unit of work, in its language; the work and that language."""
        work = unit_of_work.UpdateWork(update, session, now, linked)
        user = update.effective_user
        lang = linked.language.value if linked else language_from_telegram(user.language_code if user else None)
        token = unit_of_work.enter(work)
        try:
            with use_locale(lang):
                await super().process_update(update)
                if update.callback_query is not None and not work.callback_answered and not work.failed:
                    bot, query_id = self.bot, update.callback_query.id
                    work.after_commit_at_once(lambda: calls.answer_press(bot, query_id))
        finally:
            unit_of_work.leave(token)
        return work, lang

    async def _after_commit(self, work: unit_of_work.UpdateWork, lang: str, alerts_raised: bool) -> None:
        """The committed update's replies (the transaction's slot is free for another
        chat's meanwhile), then the alerts it raised, within seconds, not at the next beat."""
        async with self._replying():
            with use_locale(lang):
                await work.flush()
        if alerts_raised and not work.failed:
            await run_tick(self, "alerts")

    async def _commit(self, session: AsyncSession, work: unit_of_work.UpdateWork, now: datetime, lang: str) -> bool:
        """Commit the update's transaction. False when another process stored the same
        update meanwhile: theirs stands, nothing of ours is kept or sent.

        The handlers' rows meeting a unique key at the commit (rows another process
        stored meanwhile) is a failed handler: everything rolled back, the update stored
        as failed, the participant asked to try again (the next try sees what is
        stored). It used to be taken for the update stored elsewhere, and dropped
        without a word. So is any other change the database refuses at the commit (a
        value it cannot take, in a row the ORM or `models.db.insert_later` writes only
        then): refused again on every delivery, it would otherwise come back for ever."""
        update_id = work.update.update_id
        for _attempt in range(2):
            try:
                await session.commit()
                return True
            except IntegrityError:
                await session.rollback()
                if work.failed:  # only the update's own row was left to store
                    log.info("update %s was processed concurrently elsewhere; ours discarded", update_id)
                    return False
                log.error("update %s: its changes met rows stored meanwhile at the commit; rolled back", update_id)
                self._failed_at_commit(session, work, now, lang)
            except StatementError as error:
                if work.failed or is_transient(error):
                    raise  # as before: retried (a database away), or failing to store the failure
                await session.rollback()
                log.error(
                    "update %s: the database refused its changes at the commit (%s)", update_id, type(error).__name__
                )
                self._failed_at_commit(session, work, now, lang)
        return False  # not reached: the second pass has work.failed set

    def _failed_at_commit(self, session: AsyncSession, work: unit_of_work.UpdateWork, now: datetime, lang: str) -> None:
        """The update's changes rolled back at the commit: apologise, and store it as failed."""
        with use_locale(lang):
            apologise(work, self.bot)
        session.add(ProcessedUpdate(update_id=work.update.update_id, processed_at=now, outcome="error"))


def apologise(work: unit_of_work.UpdateWork, bot: Bot) -> None:
    """The update failed: drop its queued replies (they describe changes rolled back) and
    queue only an apology, in the current locale (the update's language)."""
    chat = work.update.effective_chat
    if chat is None:
        work.fail(None)
        return
    text = _("Sorry, something went wrong on our side. Please try again in a minute. Your earlier answers are safe.")
    work.fail(lambda: calls.send_text(bot, chat.id, text))


async def on_error(update: object, context: BotContext) -> None:
    """Log the error without personal data, and keep the bot alive. Inside an
    update: roll its changes back (or retry on a database outage) and apologise."""
    error = context.error
    assert error is not None
    frames = "".join(traceback.format_tb(error.__traceback__)) if error.__traceback__ else ""
    update_id = update.update_id if isinstance(update, Update) else None
    # The exception's text may quote stored values (free-text answers): log its type only.
    log.error("error while handling update %s: %s\n%s", update_id, type(error).__name__, frames)
    work = unit_of_work.maybe_current_work()
    if work is None:
        return
    if is_transient(error):
        work.retry = True
        return
    apologise(work, context.bot)


def register_handlers(app: TrialApplication) -> None:
    """Every handler, in order. Group 0 holds the commands and buttons; the last
    group answers whatever nothing else understood, so nobody is left without a reply."""
    private = filters.ChatType.PRIVATE

    # Before everything: edits are not handled again; strangers' groups are left.
    app.add_handler(TypeHandler(Update, gate.gate), group=-1)

    # Participant commands (private chats).
    app.add_handler(CommandHandler("start", participant.start, filters=private))
    app.add_handler(CommandHandler("language", participant.language, filters=private))
    app.add_handler(CommandHandler("help", participant.help_command, filters=private))
    app.add_handler(CommandHandler("checkin", questionnaire.checkin_command, filters=private))
    app.add_handler(CommandHandler("report", questionnaire.report_command, filters=private))
    app.add_handler(CommandHandler("cancel", questionnaire.cancel_command, filters=private))
    app.add_handler(CommandHandler("schedule", schedule.schedule, filters=private))
    app.add_handler(CommandHandler("settime", schedule.settime, filters=private))
    app.add_handler(CommandHandler("stop", schedule.stop, filters=private))

    # Admin commands (each one checks ADMIN_USER_IDS and audits refusals; all but /ack
    # work only in the admin's private chat).
    app.add_handler(CommandHandler("enroll", admin.enroll))
    app.add_handler(CommandHandler("participants", admin.list_participants))
    app.add_handler(CommandHandler("withdraw", admin.withdraw))
    app.add_handler(CommandHandler("sae", admin.sae))
    app.add_handler(CommandHandler("outcome", admin.outcome))
    app.add_handler(CommandHandler("unlink", admin.unlink))
    app.add_handler(CommandHandler("raynaud", admin.raynaud))
    app.add_handler(CommandHandler("export", export.export))
    app.add_handler(CommandHandler("alerts", coordinator.list_alerts))
    app.add_handler(CommandHandler("ack", coordinator.ack_command))
    app.add_handler(CommandHandler("pause", schedule_admin.pause))
    app.add_handler(CommandHandler("resume", schedule_admin.resume))
    app.add_handler(CommandHandler("status", schedule_admin.status))
    app.add_handler(CommandHandler("visit", schedule_admin.visit))
    app.add_handler(CommandHandler("summary", pictures.summary_command))
    app.add_handler(CommandHandler("overview", pictures.overview_command))

    # Buttons.
    app.add_handler(CallbackQueryHandler(participant.choose_language, pattern=callbacks.pattern(callbacks.LANG)))
    app.add_handler(CallbackQueryHandler(schedule.dose_button, pattern=callbacks.pattern(callbacks.DOSE)))
    app.add_handler(CallbackQueryHandler(schedule.visit_button, pattern=callbacks.pattern(callbacks.VISIT)))
    app.add_handler(CallbackQueryHandler(schedule.stop_button, pattern=callbacks.pattern(callbacks.STOP)))
    app.add_handler(CallbackQueryHandler(schedule.settime_button, pattern=callbacks.pattern(callbacks.SETTIME)))
    app.add_handler(CallbackQueryHandler(questionnaire.answer_button, pattern=callbacks.pattern(callbacks.ANSWER)))
    app.add_handler(CallbackQueryHandler(questionnaire.start_button, pattern=callbacks.pattern(callbacks.START)))
    app.add_handler(CallbackQueryHandler(coordinator.acknowledge_button, pattern=callbacks.pattern(callbacks.ACK)))
    app.add_handler(
        CallbackQueryHandler(schedule_admin.visit_date_button, pattern=callbacks.pattern(callbacks.VISIT_DATE))
    )
    app.add_handler(CallbackQueryHandler(media.report_button, pattern=callbacks.pattern(callbacks.MEDIA)))
    app.add_handler(CallbackQueryHandler(common.stale_button))

    # Whatever is left.
    app.add_handler(MessageHandler(filters.COMMAND & private, common.unknown_command))
    # A photo, voice note or audio file: attached to a report, or offered as one.
    files = filters.PHOTO | filters.VOICE | filters.AUDIO | filters.Document.ALL | filters.VIDEO | filters.VIDEO_NOTE
    app.add_handler(MessageHandler(private & files, media.file_message))
    # An answer typed to the open question; anything else goes on to common.not_understood.
    app.add_handler(MessageHandler(private & ~filters.COMMAND, questionnaire.typed_answer))

    app.add_error_handler(on_error)


def build_application(services: Services, *, rate_limiter: BaseRateLimiter[Any] | bool = True) -> TrialApplication:
    """Build the bot for these services (settings, database, clock).
    `rate_limiter`: True = PTB's AIORateLimiter at TELEGRAM_SEND_RATE (`SendRateLimiter`:
    ordinary messages at Telegram's free 30 a second, paid broadcasts at the rate) with 3
    retries of a 429; False = none (the benchmark's "own capacity" figure); or a limiter."""
    settings = services.settings
    limiter: BaseRateLimiter[Any] | None
    if isinstance(rate_limiter, bool):
        limiter = SendRateLimiter(settings.telegram_send_rate, max_retries=3) if rate_limiter else None
    else:
        limiter = rate_limiter
    # The long poll holds one connection; the final offset-confirming call at shutdown
    # needs another, or it times out and updates are fetched again.
    updates = AiohttpRequest(connection_pool_size=2)
    calls = AiohttpRequest(connection_pool_size=256)  # PTB's default pool size
    builder = (
        ApplicationBuilder()
        .application_class(TrialApplication)
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(settings.telegram_api_url)
        .base_file_url(settings.base_file_url)
        .context_types(ContextTypes(context=BotContext))
        .get_updates_request(updates)
        .arbitrary_callback_data(False)
        .request(calls)
    )
    if limiter is not None:
        builder = builder.rate_limiter(cast(Any, limiter))  # PTB types the builder for one limiter kind
    # No PTB Updater: long polling and the webhook endpoint are bot.runner's, and both
    # confirm an update to Telegram only after it was handled and committed.
    builder = builder.updater(None)
    app = builder.build()
    assert isinstance(app, TrialApplication)
    app.services = services
    app.http = (updates, calls)
    register_handlers(app)
    return app
