"""Parsers for what people type: study ids, arms, dates, weekdays, times.

Pure functions, exhaustively unit-tested. Every one accepts Bengali digits
(participants' keyboards type them) and raises `ParseError` with an English
message for admins; participant-facing handlers map failures to translated text.
"""

from __future__ import annotations

import re
from datetime import date, time

from bot.i18n import to_ascii_digits
from domain.errors import DomainError


class ParseError(DomainError):
    """Text that does not say what it must."""


STUDY_ID_RE = re.compile(r"^[A-Z][A-Z0-9]{1,9}-[0-9]{1,6}$")
ARMS = ("A", "B")

_WEEKDAYS: dict[str, int] = {}
for _i, _names in enumerate(
    [
        ("mon", "monday", "সোম", "সোমবার"),
        ("tue", "tues", "tuesday", "মঙ্গল", "মঙ্গলবার"),
        ("wed", "wednesday", "বুধ", "বুধবার"),
        ("thu", "thur", "thurs", "thursday", "বৃহস্পতি", "বৃহস্পতিবার"),
        ("fri", "friday", "শুক্র", "শুক্রবার"),
        ("sat", "saturday", "শনি", "শনিবার"),
        ("sun", "sunday", "রবি", "রবিবার"),
    ]
):
    for _n in _names:
        _WEEKDAYS[_n] = _i

WEEKDAY_CODES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def normalize(text: str) -> str:
    """Trim, fold case and turn Bengali digits into ASCII ones."""
    return to_ascii_digits(text).strip().casefold()


def parse_study_id(text: str) -> str:
    """A study id such as BSM-001 (letters, a hyphen, digits), upper-cased."""
    value = to_ascii_digits(text).strip().upper()
    if not STUDY_ID_RE.match(value):
        raise ParseError(f"'{text[:40]}' is not a study id (expected letters-digits, e.g. BSM-001)")
    return value


def parse_arm(text: str, arms: tuple[str, ...] = ARMS) -> str:
    """An arm letter, case-insensitive."""
    value = text.strip().upper()
    if value not in arms:
        raise ParseError(f"arm must be one of {', '.join(arms)} (got '{text[:20]}')")
    return value


_DATE_FORMS = (
    re.compile(r"^(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})$"),
    re.compile(r"^(?P<d>\d{1,2})[/.-](?P<m>\d{1,2})[/.-](?P<y>\d{4})$"),
)


def parse_date(text: str) -> date:
    """A calendar date: YYYY-MM-DD (preferred) or DD/MM/YYYY, DD-MM-YYYY, DD.MM.YYYY."""
    value = to_ascii_digits(text).strip()
    for form in _DATE_FORMS:
        match = form.match(value)
        if match:
            try:
                return date(int(match["y"]), int(match["m"]), int(match["d"]))
            except ValueError:
                break
    raise ParseError(f"'{text[:40]}' is not a date (use YYYY-MM-DD, e.g. 2026-10-25)")


def parse_weekday(text: str) -> int:
    """A weekday name (English or Bangla, short or long) → 0 = Monday … 6 = Sunday."""
    value = normalize(text).rstrip(".")
    if value in _WEEKDAYS:
        return _WEEKDAYS[value]
    raise ParseError(f"'{text[:20]}' is not a weekday (use mon, tue, wed, thu, fri, sat or sun)")


def parse_language(text: str) -> str:
    """bn or en (also 'bangla', 'bengali', 'english', 'বাংলা')."""
    value = normalize(text)
    if value in ("bn", "bangla", "bengali", "বাংলা"):
        return "bn"
    if value in ("en", "english", "ইংরেজি"):
        return "en"
    raise ParseError(f"language must be bn or en (got '{text[:20]}')")


_TIME_RE = re.compile(r"^(?P<h>\d{1,2})[:.](?P<m>\d{2})$")


def parse_time(text: str) -> time:
    """A 24-hour clock time HH:MM (also H.MM), Bengali digits accepted."""
    match = _TIME_RE.match(to_ascii_digits(text).strip())
    if match:
        hour, minute = int(match["h"]), int(match["m"])
        if 0 <= hour <= 23 and 0 <= minute <= 59:
            return time(hour, minute)
    raise ParseError(f"'{text[:20]}' is not a time (use HH:MM, 24-hour, e.g. 21:30)")
