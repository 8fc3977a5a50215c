"""Bengali and Latin digits, locale-neutral: every parser reads what a
participant's keyboard types, every Bangla text writes Bengali digits."""

from __future__ import annotations

import re
import unicodedata

BENGALI_DIGITS = "০১২৩৪৫৬৭৮৯"
_TO_BENGALI = str.maketrans("0123456789", BENGALI_DIGITS)


def to_ascii_digits(text: str) -> str:
    """Replace any Unicode decimal digit (Bengali ০-৯ included) by its ASCII digit,
    so every parser accepts what a participant's keyboard types."""
    out = []
    for ch in text:
        if ch.isdecimal() and not ch.isascii():
            try:
                out.append(str(unicodedata.decimal(ch)))
                continue
            except ValueError:
                pass
        out.append(ch)
    return "".join(out)


def to_bengali_digits(text: str) -> str:
    """Latin digits to Bengali, for Bangla messages built from numbers."""
    return text.translate(_TO_BENGALI)


def phone_as_dialled(phone: str) -> str:
    """A phone number the way it is dialled ("+8801711000000"): Latin digits, no
    spaces or dashes, so Telegram makes it tappable in any language."""
    return re.sub(r"[^0-9+]", "", to_ascii_digits(phone))
