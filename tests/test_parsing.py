"""Parsers of what people type: every form accepted, every mistake refused."""

from __future__ import annotations

import contextlib
from datetime import date, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.digits import to_ascii_digits
from domain.content import load_content
from domain.enrollment import EnrollRequest, normalize_code, parse_enroll_args
from domain.parsing import (
    ParseError,
    parse_arm,
    parse_date,
    parse_language,
    parse_study_id,
    parse_time,
    parse_weekday,
)

PROTOCOL = load_content().protocol  # the arms, and which takes a weekday, come from the protocol file
ARMS = tuple(PROTOCOL.arms)


@pytest.mark.parametrize(("text", "expected"), [("BSM-001", "BSM-001"), (" bsm-12 ", "BSM-12"), ("BSM-০০৭", "BSM-007")])
def test_study_ids(text: str, expected: str) -> None:
    assert parse_study_id(text) == expected


@pytest.mark.parametrize("text", ["", "001", "BSM001", "BSM-", "-001", "BSM-00A", "B S M-001", "BSM-0001234"])
def test_bad_study_ids(text: str) -> None:
    with pytest.raises(ParseError):
        parse_study_id(text)


def test_arms() -> None:
    assert parse_arm("a", ARMS) == "A" and parse_arm(" B ", ARMS) == "B"
    for bad in ("C", "", "AB", "1"):
        with pytest.raises(ParseError):
            parse_arm(bad, ARMS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-10-25", date(2026, 10, 25)),
        ("2026-1-5", date(2026, 1, 5)),
        ("২০২৬-১০-২৫", date(2026, 10, 25)),
        ("25/10/2026", date(2026, 10, 25)),
        ("25-10-2026", date(2026, 10, 25)),
        ("25.10.2026", date(2026, 10, 25)),
        ("২৫/১০/২০২৬", date(2026, 10, 25)),
    ],
)
def test_dates(text: str, expected: date) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["", "2026-13-01", "2026-02-30", "10/25", "tomorrow", "2026/10/25x", "১০-২৫"])
def test_bad_dates(text: str) -> None:
    with pytest.raises(ParseError):
        parse_date(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mon", 0),
        ("Tuesday", 1),
        ("wed", 2),
        ("THU", 3),
        ("fri", 4),
        ("sat.", 5),
        ("sun", 6),
        ("শুক্রবার", 4),
        ("শুক্র", 4),
        ("রবিবার", 6),
        ("সোম", 0),
    ],
)
def test_weekdays(text: str, expected: int) -> None:
    assert parse_weekday(text) == expected


def test_bad_weekday() -> None:
    with pytest.raises(ParseError):
        parse_weekday("funday")


def test_languages() -> None:
    assert [parse_language(x) for x in ("bn", "BN", "Bangla", "বাংলা", "en", "English")] == ["bn"] * 4 + ["en"] * 2
    with pytest.raises(ParseError):
        parse_language("fr")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("09:00", time(9, 0)),
        ("4:30", time(4, 30)),
        ("২১:৩০", time(21, 30)),
        ("23.59", time(23, 59)),
        ("00:00", time(0, 0)),
    ],
)
def test_times(text: str, expected: time) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["24:00", "12:60", "9", "nine", "12:5", "", "-1:00"])
def test_bad_times(text: str) -> None:
    with pytest.raises(ParseError):
        parse_time(text)


def test_enroll_args_full_and_defaults() -> None:
    assert parse_enroll_args(["BSM-001", "B", "2026-10-25", "bn", "fri"], PROTOCOL) == EnrollRequest(
        "BSM-001", "B", date(2026, 10, 25), "bn", 4
    )
    # weekday before language is fine too
    assert parse_enroll_args(["bsm-001", "b", "2026-10-25", "fri", "en"], PROTOCOL).language == "en"
    # arm B without a weekday: the baseline's weekday (a Sunday here)
    assert parse_enroll_args(["BSM-001", "B", "2026-10-25"], PROTOCOL).own_weekday == 6
    # arm A: no weekday, Bangla by default
    assert parse_enroll_args(["BSM-002", "A", "2026-10-25"], PROTOCOL) == EnrollRequest(
        "BSM-002", "A", date(2026, 10, 25), "bn", None
    )


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["BSM-001"],
        ["BSM-001", "B"],
        ["BSM-001", "C", "2026-10-25"],
        ["BSM-001", "A", "2026-10-25", "fri"],
        ["BSM-001", "B", "2026-10-25", "xx"],
        ["BSM-001", "B", "2026-10-25", "bn", "fri", "extra"],
        ["BSM-001", "B", "25 Oct"],
    ],
)
def test_enroll_args_refused(args: list[str]) -> None:
    with pytest.raises(ParseError):
        parse_enroll_args(args, PROTOCOL)


def test_codes_are_normalised_as_people_type_them() -> None:
    assert normalize_code(" abcd-efgh ২৩ ") == "ABCDEFGH23"


@given(st.text())
def test_digit_conversion_never_fails_and_leaves_no_bengali_digit(text: str) -> None:
    out = to_ascii_digits(text)
    assert not any("০" <= ch <= "৯" for ch in out)
    assert len(out) == len(text)


@given(st.text(max_size=60))
def test_parsers_only_ever_raise_parse_error(text: str) -> None:
    for parser in (parse_study_id, parse_date, parse_weekday, parse_language, parse_time):
        with contextlib.suppress(ParseError):
            parser(text)
    with contextlib.suppress(ParseError):
        parse_arm(text, ARMS)
