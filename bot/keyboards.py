"""Inline keyboards: big buttons, few per row, readable on a small phone."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup


def language_choice(*, welcome: bool) -> InlineKeyboardMarkup:
    """বাংলা / English. `welcome` marks the choice made right after linking."""
    suffix = ":welcome" if welcome else ""
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton("বাংলা", callback_data=f"lang:bn{suffix}")],
            [InlineKeyboardButton("English", callback_data=f"lang:en{suffix}")],
        ]
    )
