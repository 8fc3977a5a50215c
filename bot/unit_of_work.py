"""One unit of work per Telegram update.

`TrialApplication.process_update` opens a database session, records the update
id first, in the SAME transaction as the handlers' changes (an update whose id is
already there, a re-delivery, stops at that), runs the handlers, commits, and only
then sends the replies the handlers queued. So:

- a reply never claims something that was not stored;
- the SQLite write lock is never held across a network call;
- an update is applied at most once, even if Telegram delivers it twice.

Button presses and plain text of different chats that arrive while earlier ones are in
progress share one such transaction (`TrialApplication._run_group`: one claim of their
ids, one read of their participants, each update's handlers in turn, one commit), each
with its own unit of work; if any handler fails, the whole group is rolled back and each
update goes again alone, so that a failure stays the update's that failed.

Handlers reach the work through `BotContext` (`context.db`, `context.reply`…).
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update
from telegram.error import BadRequest, NetworkError, TelegramError

from models import Participant

log = logging.getLogger(__name__)

Send = Callable[[], Awaitable[Any]]
REPLY_RETRY_DELAYS = (0.3, 1.0, 3.0)


@dataclass
class UpdateWork:
    """State of the update being handled."""

    update: Update
    session: AsyncSession
    now: datetime
    participant: Participant | None
    outbox: list[Send] = field(default_factory=list)
    at_once: list[Send] = field(default_factory=list)
    failed: bool = False
    retry: bool = False
    callback_answered: bool = False

    def after_commit(self, send: Send) -> None:
        """Run `send` once the update's changes are committed, after the sends queued
        before it."""
        self.outbox.append(send)

    def after_commit_at_once(self, send: Send) -> None:
        """Run `send` once the update's changes are committed, at once, beside the
        ordered sends (answering a button press: it only stops the spinner, and no
        other call waits for it or for which it waits)."""
        self.at_once.append(send)

    def fail(self, apology: Send | None) -> None:
        """The handler raised: drop its queued replies (they describe changes that
        will be rolled back) and send only the apology."""
        self.failed = True
        self.outbox.clear()
        self.at_once.clear()
        if apology is not None:
            self.outbox.append(apology)

    async def flush(self) -> None:
        """Send what was queued: the `at_once` sends concurrently with the others, which
        go in order. A transient failure (a 5xx, a dropped connection, a time-out) is
        retried a few times: a rare duplicate reply is better than a participant left
        without their next question. What still fails is logged, not raised: the data
        is already safe, and one participant's network must not stop the bot."""
        at_once, self.at_once = self.at_once, []
        beside = [asyncio.ensure_future(self._deliver(send)) for send in at_once]
        try:
            for send in self.outbox:
                await self._deliver(send)
        finally:
            self.outbox.clear()
            if beside:
                await asyncio.gather(*beside)

    async def _deliver(self, send: Send) -> None:
        """One send, retried on a transient failure; never raises (but on cancellation)."""
        for attempt, delay in enumerate((*REPLY_RETRY_DELAYS, None)):
            try:
                await send()
                return
            except NetworkError as exc:  # includes TimedOut; BadRequest (a 4xx) is not transient
                if delay is None or isinstance(exc, BadRequest):
                    log.warning("reply for update %s not sent: %s", self.update.update_id, type(exc).__name__)
                    return
                log.info("reply for update %s: %s, retry %d", self.update.update_id, type(exc).__name__, attempt + 1)
                await asyncio.sleep(delay)
            except TelegramError as exc:  # refused (403, 400 other than above): nothing to retry
                log.warning("reply for update %s not sent: %s", self.update.update_id, type(exc).__name__)
                return
            except Exception as exc:  # a bug in the send itself, not Telegram: loud, but the others go on
                # Type and frames only: an exception's text may quote a participant's answer.
                frames = "".join(traceback.format_tb(exc.__traceback__))
                log.error(
                    "reply for update %s not sent, a bug: %s\n%s", self.update.update_id, type(exc).__name__, frames
                )
                return


_current: ContextVar[UpdateWork | None] = ContextVar("update_work", default=None)


def current_work() -> UpdateWork:
    """The unit of work of the update being handled (only inside a handler)."""
    work = _current.get()
    if work is None:
        raise RuntimeError("no update is being handled in this context")
    return work


def maybe_current_work() -> UpdateWork | None:
    """The unit of work, or None outside an update (jobs, the error handler of a job)."""
    return _current.get()


def enter(work: UpdateWork) -> object:
    """Make `work` current; returns a token for `leave`."""
    return _current.set(work)


def leave(token: object) -> None:
    """Undo `enter`."""
    _current.reset(token)  # type: ignore[arg-type]
