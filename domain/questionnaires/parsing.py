"""Typed or tapped answers -> canonical stored values, or an error code.

Participants may have stiff fingers and cheap phones: they tap buttons when
they can and type when they must, in Bangla or English, with Bengali or Latin
digits. Every parser here returns either the canonical value or an
`AnswerError`; none of them raises on any input.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from core.digits import to_ascii_digits
from domain.questionnaires.model import (
    DateItem,
    FreeTextItem,
    Item,
    NumberItem,
    ScaleItem,
    SingleChoiceItem,
    Text,
    YesNoItem,
)

# Error codes (the bot turns each into a translated hint using `data`).
EXPECTED_BUTTON = "expected_button"
NOT_A_NUMBER = "not_a_number"
NOT_WHOLE_NUMBER = "not_whole_number"
OUT_OF_RANGE = "out_of_range"
BAD_DATE = "bad_date"
DATE_IN_FUTURE = "date_in_future"
DATE_TOO_OLD = "date_too_old"
TOO_LONG = "too_long"
EMPTY = "empty"
NOT_SKIPPABLE = "not_skippable"
NOTHING_BEFORE = "nothing_before"
STALE_BUTTON = "stale_button"
ALREADY_COMPLETE = "already_complete"
INSTRUMENT_CHANGED = "instrument_changed"

ERROR_CODES = (
    EXPECTED_BUTTON,
    NOT_A_NUMBER,
    NOT_WHOLE_NUMBER,
    OUT_OF_RANGE,
    BAD_DATE,
    DATE_IN_FUTURE,
    DATE_TOO_OLD,
    TOO_LONG,
    EMPTY,
    NOT_SKIPPABLE,
    NOTHING_BEFORE,
    STALE_BUTTON,
    ALREADY_COMPLETE,
    INSTRUMENT_CHANGED,
)

SKIP_VALUE = "__skip__"
"""Button value for 'Skip' (optional items only)."""
BACK_VALUE = "__back__"
"""Button value for 'Back' (previous shown item)."""

SKIP_WORDS = frozenset({"skip", "বাদ", "বাদ দিন", "এড়িয়ে যান", "এড়িয়ে যাও"})
BACK_WORDS = frozenset({"back", "পিছনে", "পেছনে", "আগের প্রশ্ন", "ফিরে যান"})
YES_WORDS = frozenset(
    {
        "yes",
        "y",
        "yeah",
        "yep",
        "ha",
        "haa",
        "haan",
        "hae",
        "হ্যাঁ",
        "হ্যা",
        "হাঁ",
        "হা",
        "জি",
        "জ্বি",
        "জী",
        "জ্বী",
    }
)
NO_WORDS = frozenset({"no", "n", "nope", "na", "naa", "nah", "না", "নাহ", "নাহ্", "নেই", "নাই"})
TODAY_WORDS = frozenset({"today", "আজ", "আজকে", "aj", "aaj"})
YESTERDAY_WORDS = frozenset({"yesterday", "গতকাল", "গতকালকে", "gotokal", "gotokal din"})

MAX_SHORT_INPUT = 100
"""Longer input for a button/number/date item is refused before any parsing."""

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)
_EDGE_PUNCTUATION = " .,!?।॥;:'\"()[]"
_DEGREE_WORDS = ("degrees", "degree", "deg", "ডিগ্রি", "ডিগ্রী", "°", "º", "˚")
_NUMBER = re.compile(r"^([+-]?(?:\d{1,9}(?:[.,]\d{1,9})?|[.,]\d{1,9}))\s*(.*)$", re.DOTALL)
_ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_DMY_DATE = re.compile(r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{4})$")
_CHOICE_NUMBER = re.compile(r"^\(?(\d{1,2})[.)]?$")


@dataclass(frozen=True)
class AnswerError:
    """Why an answer was not accepted, with what a helpful hint needs.

    `data` is JSON-friendly: numbers, strings and {"en", "bn"} dicts.
    """

    code: str
    item_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for logs and the audit table."""
        return {"code": self.code, "item_id": self.item_id, "data": dict(self.data)}


def fold(text: str) -> str:
    """Normalise typed text for comparison (NFC, no zero-width marks, one space, casefold)."""
    cleaned = unicodedata.normalize("NFC", text).translate(_ZERO_WIDTH)
    return " ".join(cleaned.split()).casefold().strip(_EDGE_PUNCTUATION)


def text_dict(text: Text | None) -> dict[str, str] | None:
    """A Text as a plain {"en", "bn"} dict (for error data and JSON)."""
    if text is None:
        return None
    return {"en": text.get("en"), "bn": text.get("bn")}


def parse_answer(item: Item, raw: str, today: date) -> bool | int | float | str | AnswerError:
    """Read `raw` (a button value or typed text) as an answer to `item`."""
    if isinstance(item, FreeTextItem):
        return parse_free_text(item, raw)
    if len(raw) > MAX_SHORT_INPUT:
        raw = raw[: MAX_SHORT_INPUT + 1]  # still invalid; keeps the work bounded
    if isinstance(item, SingleChoiceItem):
        return parse_choice(item, raw)
    if isinstance(item, YesNoItem):
        return parse_yes_no(item, raw)
    if isinstance(item, ScaleItem):
        return parse_scale(item, raw)
    if isinstance(item, NumberItem):
        return parse_number(item, raw)
    return parse_date(item, raw, today)


def _choice_keys(label: Text, aliases: list[str], value: str) -> set[str]:
    keys = {
        fold(label.get("en")),
        fold(label.get("bn")),
        fold(value),
        fold(value.replace("_", " ")),
    }
    keys.update(fold(alias) for alias in aliases)
    keys.discard("")
    return keys


def choice_number(text: str) -> int | None:
    """'2', '২', '2.', '(2)' -> 2; anything else -> None."""
    match = _CHOICE_NUMBER.match(to_ascii_digits(text.strip()))
    return int(match.group(1)) if match else None


def parse_choice(item: SingleChoiceItem, raw: str) -> str | AnswerError:
    """A choice by its button value, its number in the list, its label or an alias."""
    if raw in item.choice_by_value:
        return raw
    error = AnswerError(EXPECTED_BUTTON, item.id, {"choices": len(item.choices)})
    number = choice_number(raw)
    if number is not None:
        return item.choices[number - 1].value if 1 <= number <= len(item.choices) else error
    key = fold(raw)
    if not key:
        return error
    for choice in item.choices:
        if key in _choice_keys(choice.label, choice.aliases, choice.value):
            return choice.value
    return error


def parse_yes_no(item: YesNoItem, raw: str) -> bool | AnswerError:
    """yes/no, y/n, হ্যাঁ/না (and common spellings), '1'/'2' in button order."""
    key = fold(raw)
    number = choice_number(raw)
    if key in YES_WORDS or number == 1 or key in _choice_keys(item.yes_label, [], "yes"):
        return True
    if key in NO_WORDS or number == 2 or key in _choice_keys(item.no_label, [], "no"):
        return False
    return AnswerError(EXPECTED_BUTTON, item.id, {"choices": 2})


def _split_number(raw: str) -> tuple[Decimal, str] | None:
    text = to_ascii_digits(unicodedata.normalize("NFC", raw).translate(_ZERO_WIDTH)).strip()
    match = _NUMBER.match(text)
    if match is None:
        return None
    try:
        number = Decimal(match.group(1).replace(",", "."))
    except InvalidOperation:  # pragma: no cover - the regex only lets digits through
        return None
    return number, match.group(2)


def _unit_key(text: str) -> str:
    key = fold(text)
    for word in _DEGREE_WORDS:
        key = key.replace(word, "")
    return key.replace(" ", "").replace(".", "").replace("(", "").replace(")", "")


def _dec(value: float) -> Decimal:
    return Decimal(repr(value))


def _range_data(item: NumberItem) -> dict[str, Any]:
    data: dict[str, Any] = {"min": item.min, "max": item.max, "unit": text_dict(item.unit)}
    data["decimals"] = item.decimals
    if item.alt_units:
        data["alt_units"] = [{"unit": text_dict(alt.unit), "min": alt.min, "max": alt.max} for alt in item.alt_units]
    return data


def parse_number(item: NumberItem, raw: str) -> int | float | AnswerError:
    """'37.8', '৩৮.৫', '38,5', '38 C', '38°C', '101 F', '১০১ ফারেনহাইট'.

    A bare number outside the main range but inside an alternative unit's range
    (with `infer_from_range`) is read in that unit: 101 -> 38.3 °C.
    """
    data = _range_data(item)
    split = _split_number(raw)
    if split is None:
        return AnswerError(NOT_A_NUMBER, item.id, data)
    number, suffix = split
    unit_key = _unit_key(suffix)
    main_keys = {_unit_key(item.unit.get(lang)) for lang in ("en", "bn")} if item.unit else set()
    main_keys.update(_unit_key(alias) for alias in item.unit_aliases)
    main_keys.discard("")
    alt = None
    if unit_key and unit_key not in main_keys:
        alt = next(
            (
                a
                for a in item.alt_units
                if unit_key in {_unit_key(x) for x in (a.unit.get("en"), a.unit.get("bn"), *a.aliases)}
            ),
            None,
        )
        if alt is None:
            return AnswerError(NOT_A_NUMBER, item.id, data)
    if alt is None and not unit_key and not _in_range(number, item.min, item.max):
        alt = next(
            (a for a in item.alt_units if a.infer_from_range and _in_range(number, a.min, a.max)),
            None,
        )
    if alt is not None:
        if not _in_range(number, alt.min, alt.max):
            return AnswerError(OUT_OF_RANGE, item.id, data)
        number = (number + _dec(alt.add_before)) * _dec(alt.multiply_by) / _dec(alt.divide_by)
    quantum = Decimal(1).scaleb(-item.decimals)
    number = number.quantize(quantum, rounding=ROUND_HALF_UP)
    if not _in_range(number, item.min, item.max):
        return AnswerError(OUT_OF_RANGE, item.id, data)
    return int(number) if item.decimals == 0 else float(number)


def _in_range(number: Decimal, low: float, high: float) -> bool:
    return _dec(low) <= number <= _dec(high)


def parse_scale(item: ScaleItem, raw: str) -> int | AnswerError:
    """A whole number on the scale: '7', '৭', '7/10'."""
    data = {"min": item.min, "max": item.max}
    split = _split_number(raw)
    if split is None:
        return AnswerError(NOT_A_NUMBER, item.id, data)
    number, suffix = split
    if suffix.replace(" ", "") not in ("", f"/{item.max}"):
        return AnswerError(NOT_A_NUMBER, item.id, data)
    if number != number.to_integral_value():
        return AnswerError(NOT_WHOLE_NUMBER, item.id, data)
    if not item.min <= number <= item.max:
        return AnswerError(OUT_OF_RANGE, item.id, data)
    return int(number)


def parse_date(item: DateItem, raw: str, today: date) -> str | AnswerError:
    """today/আজ, yesterday/গতকাল, YYYY-MM-DD, DD/MM/YYYY, DD-MM-YYYY, DD.MM.YYYY.

    Stored as an ISO date string; `today` comes from the caller (no clock here).
    """
    data: dict[str, Any] = {"formats": ["YYYY-MM-DD", "DD/MM/YYYY"], "today": today.isoformat()}
    key = fold(raw)
    if key in TODAY_WORDS:
        return today.isoformat()
    if key in YESTERDAY_WORDS:
        return (today - timedelta(days=1)).isoformat()
    text = to_ascii_digits(key).replace(" ", "")
    parsed: date | None = None
    try:
        if match := _ISO_DATE.match(text):
            parsed = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        elif match := _DMY_DATE.match(text):
            parsed = date(int(match.group(4)), int(match.group(3)), int(match.group(1)))
    except ValueError:
        parsed = None
    if parsed is None:
        return AnswerError(BAD_DATE, item.id, data)
    if parsed > today and not item.allow_future:
        return AnswerError(DATE_IN_FUTURE, item.id, data)
    if item.max_past_days is not None:
        earliest = today - timedelta(days=item.max_past_days)
        if parsed < earliest:
            return AnswerError(DATE_TOO_OLD, item.id, {**data, "earliest": earliest.isoformat()})
    return parsed.isoformat()


def clean_free_text(raw: str) -> str:
    """NFC, control characters (including NUL, which PostgreSQL refuses) removed, trimmed."""
    text = unicodedata.normalize("NFC", raw)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs"))
    return text.strip()


def parse_free_text(item: FreeTextItem, raw: str) -> str | AnswerError:
    """Trimmed text, not empty, at most `max_length` characters."""
    text = clean_free_text(raw)
    if not text:
        return AnswerError(EMPTY, item.id, {"can_skip": item.optional})
    if len(text) > item.max_length:
        return AnswerError(TOO_LONG, item.id, {"max_length": item.max_length, "length": len(text)})
    return text


def is_skip(raw: str) -> bool:
    """The Skip button or a typed 'skip' / 'বাদ'."""
    return raw == SKIP_VALUE or fold(raw) in SKIP_WORDS


def is_back(raw: str) -> bool:
    """The Back button or a typed 'back' / 'পিছনে'."""
    return raw == BACK_VALUE or fold(raw) in BACK_WORDS
