"""A typed CallbackContext: handlers ask it for the database session, the
participant, the clock and the services, and queue their replies on it,
instead of digging in dicts."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import InlineKeyboardMarkup
from telegram.ext import Application, CallbackContext, ExtBot

from bot import calls
from bot.keyboards import Keyboard
from bot.unit_of_work import UpdateWork, current_work
from models import Participant

if TYPE_CHECKING:
    from bot.app import TrialApplication
    from bot.services import Services


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """Context for every handler of this bot."""

    def __init__(
        self,
        application: Application[Any, Any, Any, Any, Any, Any],
        chat_id: int | None = None,
        user_id: int | None = None,
    ) -> None:
        super().__init__(application=application, chat_id=chat_id, user_id=user_id)

    @property
    def services(self) -> Services:
        """The process's services (settings, sessions, clock …)."""
        app: TrialApplication = self.application  # type: ignore[assignment]
        return app.services

    @property
    def work(self) -> UpdateWork:
        """The unit of work of this update."""
        return current_work()

    @property
    def db(self) -> AsyncSession:
        """The session of this update; committed once, after the handler."""
        return self.work.session

    @property
    def participant(self) -> Participant | None:
        """The participant linked to this private chat, if any."""
        return self.work.participant

    @property
    def now(self) -> datetime:
        """The time this update is handled at (from the injected clock)."""
        return self.work.now

    def reply(self, text: str, reply_markup: InlineKeyboardMarkup | None = None) -> None:
        """Answer in the chat the update came from, after commit."""
        chat = self.work.update.effective_chat
        if chat is None:
            return
        self.send(chat.id, text, reply_markup)

    def send(self, chat_id: int, text: str, reply_markup: InlineKeyboardMarkup | None = None) -> None:
        """Send a message to any chat, after commit."""
        bot = self.bot
        self.work.after_commit(lambda: calls.send_text(bot, chat_id, text, reply_markup))

    def answer(self, text: str | None = None, *, alert: bool = False) -> None:
        """Answer the button press (stops the spinner on the participant's phone), once
        committed, beside the other replies rather than before them."""
        query = self.work.update.callback_query
        if query is None:
            return
        self.work.callback_answered = True
        bot = self.bot
        self.work.after_commit_at_once(lambda: calls.answer_press(bot, query.id, text, alert=alert))

    def edit_markup(self, reply_markup: InlineKeyboardMarkup | Keyboard | None = None) -> None:
        """Replace (or remove) the buttons of the message whose button was pressed."""
        query = self.work.update.callback_query
        if query is None or query.message is None:
            return
        message = query.message
        bot = self.bot
        self.work.after_commit(lambda: calls.set_markup(bot, message.chat.id, message.message_id, reply_markup))
