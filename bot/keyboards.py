"""Inline keyboards: big buttons, few per row, readable on a small phone."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import callbacks

Keyboard = dict[str, list[list[dict[str, str]]]]
"""An inline keyboard as the Bot API's JSON (``reply_markup``), for the messages sent
most: the dispatcher's reminders, and the questions and answered questions of a
questionnaire (`bot.calls` sends them as they are).

The dispatcher sends many reminders a second at paid-broadcast rates: building PTB's
button objects and turning them back into this JSON was about an eighth of its CPU per
reminder; for an answer, its question's buttons and the answered one's ✓ were about 2 %
of a burst. The other keyboards (menus, confirmations) stay PTB's objects."""

Rows = list[list[tuple[str, str]]]
"""Rows of buttons, each (label, callback data)."""


def keyboard(rows: Rows) -> Keyboard:
    """Rows of (label, callback data) as an inline keyboard."""
    return {"inline_keyboard": [[{"text": text, "callback_data": data} for text, data in row] for row in rows]}


def rows_of(markup: InlineKeyboardMarkup | Keyboard) -> Rows:
    """The (label, callback data) rows of PTB's keyboard (a pressed message's, as the
    update brought it) or of the Bot API's JSON."""
    if isinstance(markup, InlineKeyboardMarkup):
        return [[(b.text, str(b.callback_data or "")) for b in row] for row in markup.inline_keyboard]
    return [[(b["text"], b.get("callback_data", "")) for b in row] for row in markup["inline_keyboard"]]


def language_choice(*, welcome: bool) -> InlineKeyboardMarkup:
    """বাংলা / English. `welcome` marks the choice made right after linking."""
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton("বাংলা", callback_data=callbacks.lang("bn", welcome=welcome))],
            [InlineKeyboardButton("English", callback_data=callbacks.lang("en", welcome=welcome))],
        ]
    )
