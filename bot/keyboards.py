"""Inline keyboards: big buttons, few per row, readable on a small phone."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import callbacks


def language_choice(*, welcome: bool) -> InlineKeyboardMarkup:
    """বাংলা / English. `welcome` marks the choice made right after linking."""
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton("বাংলা", callback_data=callbacks.lang("bn", welcome=welcome))],
            [InlineKeyboardButton("English", callback_data=callbacks.lang("en", welcome=welcome))],
        ]
    )
