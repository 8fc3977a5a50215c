"""Translation and local formatting for participant-facing text.

The current language lives in a ContextVar: set per update from the stored
participant (see `bot.app`), set explicitly in scheduler jobs with
`use_locale`, and safe with concurrent updates because each update runs in its
own context. Catalogs are the gettext `.po` files in `locales/`, compiled in
memory at first use, so there is no stale `.mo` to forget.

Write `_("Hello {name}").format(name=...)`: named placeholders, never f-strings,
inside translated strings. Mark module-level constants with `N_` and
translate them where they are shown.
"""

from __future__ import annotations

import gettext as _gettext
import io
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, time
from functools import cache
from pathlib import Path

from babel import Locale
from babel.dates import format_date as _babel_format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from core.digits import to_bengali_digits

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"
LANGUAGES = ("bn", "en")
DEFAULT_LANGUAGE = "en"

_current: ContextVar[str] = ContextVar("locale", default=DEFAULT_LANGUAGE)


@cache
def _translations(lang: str) -> _gettext.NullTranslations:
    po_path = LOCALES_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po_path.exists():
        return _gettext.NullTranslations()
    with po_path.open("rb") as handle:
        catalog = read_po(handle, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return _gettext.GNUTranslations(buffer)


def current_language() -> str:
    """The language of the person this code is talking to right now."""
    return _current.get()


def set_language(lang: str | None) -> None:
    """Set the language for the rest of this update or job."""
    _current.set(lang if lang in LANGUAGES else DEFAULT_LANGUAGE)


@contextmanager
def use_locale(lang: str | None) -> Iterator[None]:
    """Speak `lang` inside the block (a job rendering one participant's message,
    or a bilingual text built from both catalogs)."""
    token = _current.set(lang if lang in LANGUAGES else DEFAULT_LANGUAGE)
    try:
        yield
    finally:
        _current.reset(token)


def gettext(message: str) -> str:
    """Translate `message` into the current language."""
    return _translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """Translate with the plural form right for `n` in the current language."""
    return _translations(_current.get()).ngettext(singular, plural, n)


_ = gettext


def N_(message: str) -> str:
    """Mark a string for extraction without translating it yet."""
    return message


def language_from_telegram(code: str | None) -> str:
    """Best guess for someone we do not know yet, from their Telegram app language."""
    return "bn" if code and code.lower().startswith("bn") else "en"


# ---------------------------------------------------------------- digits


def localize_digits(text: str, lang: str | None = None) -> str:
    """Write digits the way the reader expects: Bengali digits in Bangla."""
    lang = lang or _current.get()
    return to_bengali_digits(text) if lang == "bn" else text


def format_number(value: int | float, lang: str | None = None) -> str:
    """A number for display (Bengali digits in Bangla)."""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return localize_digits(text, lang)


# ---------------------------------------------------------------- dates


_DATE_PATTERNS = {
    "long": "EEEE, d MMMM y",
    "medium": "d MMMM y",
    "short": "d MMM",
    "weekday": "EEEE",
}


# Babel's bn data spells two months differently from the Bangla Academy
# (GLOSSARY-bn.md); the short forms are the same words.
_BN_SPELLING = {"জানুয়ারী": "জানুয়ারি", "ফেব্রুয়ারী": "ফেব্রুয়ারি"}


def format_date(value: date, style: str = "medium", lang: str | None = None) -> str:
    """A date in the reader's language: Bengali month and weekday names and
    Bengali digits in Bangla (Babel gives the names, we convert the digits)."""
    lang = lang or _current.get()
    text = _babel_format_date(value, _DATE_PATTERNS[style], locale=Locale.parse(lang))
    if lang == "bn":
        for babel_spelling, academy_spelling in _BN_SPELLING.items():
            text = text.replace(babel_spelling, academy_spelling)
    return localize_digits(text, lang)


# ---------------------------------------------------------------- times

# Parts of the day as people in Bangladesh say them (GLOSSARY-bn.md), as
# (first minute of the day it covers, word); the last one wraps past midnight.
PARTS_OF_DAY: tuple[tuple[int, str], ...] = (
    (0, "রাত"),
    (4 * 60, "ভোর"),
    (6 * 60, "সকাল"),
    (12 * 60, "দুপুর"),
    (15 * 60, "বিকাল"),
    (17 * 60 + 30, "সন্ধ্যা"),
    (19 * 60 + 30, "রাত"),
)


def part_of_day(value: time | datetime) -> str:
    """The Bangla word for the part of the day a clock time falls in."""
    minute = value.hour * 60 + value.minute
    word = PARTS_OF_DAY[0][1]
    for start, name in PARTS_OF_DAY:
        if minute >= start:
            word = name
    return word


def format_time(value: time | datetime, lang: str | None = None) -> str:
    """A clock time as people say it, the one formatter for every time shown to
    a participant: "রাত ৯:৩০" / "সকাল ৯:০০" in Bangla, "9:30 pm" in English."""
    lang = lang or _current.get()
    hour12 = value.hour % 12 or 12
    clock = f"{hour12}:{value.minute:02d}"
    if lang == "bn":
        return f"{part_of_day(value)} {localize_digits(clock, lang)}"
    return f"{clock} {'am' if value.hour < 12 else 'pm'}"


def weekday_name(weekday: int, lang: str | None = None) -> str:
    """Name of a weekday (0 = Monday) in the reader's language."""
    lang = lang or _current.get()
    return str(Locale.parse(lang).days["format"]["wide"][weekday])
