"""The calls the bot makes most (the replies after a commit, the answers to button
presses, the dispatcher's reminders), as Bot API calls that keep only what the bot uses
of Telegram's answer.

PTB's ``Bot.send_message`` and ``Bot.edit_message_reply_markup`` build a ``Message``
(its chat, sender, entities and keyboard objects) from every answer; the replies use the
message id of a question at most. In a burst of check-in answers (two of these calls an
answer) that parsing was about 4 % of the bot's CPU. These go through ``Bot._post``,
PTB's own path for every call (the rate limiter, errors mapped to ``TelegramError``); in
a fan-out, the objects were a quarter of PTB's CPU. PTB's ``Defaults`` would not reach
these calls; the bot sets none."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from telegram import Bot, InlineKeyboardMarkup


async def send_text(
    bot: Bot,
    chat_id: int,
    text: str,
    markup: InlineKeyboardMarkup | Mapping[str, Any] | None = None,
    *,
    paid: bool = False,
) -> int:
    """sendMessage; returns the message's id. ``markup``: PTB's or the Bot API's JSON
    (`bot.keyboards.Keyboard`); ``paid``: as a paid broadcast (the dispatcher's
    reminders above TELEGRAM_SEND_RATE 30)."""
    data = {"chat_id": chat_id, "text": text, "reply_markup": markup, "allow_paid_broadcast": True if paid else None}
    sent: dict[str, Any] = await bot._post("sendMessage", data)  # None values are left out
    return int(sent["message_id"])


async def set_markup(
    bot: Bot, chat_id: int, message_id: int, markup: InlineKeyboardMarkup | Mapping[str, Any] | None
) -> None:
    """editMessageReplyMarkup: the message's buttons replaced, or taken away (None)."""
    await bot._post("editMessageReplyMarkup", {"chat_id": chat_id, "message_id": message_id, "reply_markup": markup})


async def answer_press(bot: Bot, query_id: str, text: str | None = None, *, alert: bool = False) -> None:
    """answerCallbackQuery: the spinner on the pressed button stopped, with a notice
    (``alert``: one the participant must close) when ``text`` is given. Every press
    makes this call; PTB's ``CallbackQuery.answer`` takes two layers more to the same
    ``_post``."""
    await bot._post("answerCallbackQuery", {"callback_query_id": query_id, "text": text, "show_alert": alert or None})
