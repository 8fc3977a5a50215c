"""`read_time`: a clock time as participants type it (pure, exhaustive)."""

from __future__ import annotations

from datetime import time

import pytest

from bot.i18n import localize_digits
from domain.parsing import AmbiguousTime, ParseError, read_time


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        # the forms the issue names
        ("রাত ৯:৩০", time(21, 30)),
        ("৯:৩০ রাতে", time(21, 30)),
        ("সকাল ৮টা", time(8, 0)),
        ("9:30 pm", time(21, 30)),
        ("21:30", time(21, 30)),
        ("২১:৩০", time(21, 30)),
        # parts of the day, before or after, with their everyday spellings
        ("ভোর ৪:৩০", time(4, 30)),
        ("ভোরে ৫টা", time(5, 0)),
        ("সকালে ৯টায়", time(9, 0)),
        ("দুপুর ১২টা", time(12, 0)),
        ("দুপুর ১:১৫", time(13, 15)),
        ("দুপুরে ২টা", time(14, 0)),
        ("দুপুর ১১টা", time(11, 0)),
        ("বিকাল ৪টা", time(16, 0)),
        ("বিকেলে ৫:২০", time(17, 20)),
        ("সন্ধ্যা ৭টা", time(19, 0)),
        ("সন্ধ্যায় ৬:৪৫", time(18, 45)),
        ("রাত ১২টা", time(0, 0)),
        ("রাত ১২:৩০", time(0, 30)),
        ("রাত ২টা", time(2, 0)),
        ("রাত ৪:৩০", time(4, 30)),
        ("রাত ১১:৫৯", time(23, 59)),
        ("৯টায় রাতে", time(21, 0)),
        ("রাত্রে ১০টা", time(22, 0)),
        # Bangla words with Latin digits, English with Bengali digits
        ("রাত 9:30", time(21, 30)),
        ("৯:৩০ pm", time(21, 30)),
        # English forms
        ("9pm", time(21, 0)),
        ("9 PM", time(21, 0)),
        ("9.30 p.m.", time(21, 30)),
        ("9:30am", time(9, 30)),
        ("12:00 am", time(0, 0)),
        ("12:00 pm", time(12, 0)),
        ("12:15 AM", time(0, 15)),
        # the 24-hour clock: an hour over 12, 0, or two digits with a leading zero
        ("০৪:৩০", time(4, 30)),
        ("09:00", time(9, 0)),
        ("00:00", time(0, 0)),
        ("0:15", time(0, 15)),
        ("13:00", time(13, 0)),
        ("23:59", time(23, 59)),
        ("21.30", time(21, 30)),
        ("রাত ২১:৩০", time(21, 30)),  # both ways at once, and they agree
        ("দুপুর ১৩:০০", time(13, 0)),
        # half, quarter past, quarter to
        ("সাড়ে ৯টা রাতে", time(21, 30)),
        ("সোয়া ৮টা সকাল", time(8, 15)),
        ("পৌনে ১০টা রাতে", time(21, 45)),
        ("সকাল পৌনে ১টা", time(0, 45)),
        # spaces and a full stop
        ("  রাত   ৯:৩০  ", time(21, 30)),
        ("রাত ৯:৩০।", time(21, 30)),
    ],
)
def test_a_time_with_its_part_of_the_day_or_on_the_24_hour_clock(typed: str, meant: time) -> None:
    assert read_time(typed) == meant


@pytest.mark.parametrize(
    ("typed", "first", "second"),
    [
        ("৯:৩০", time(9, 30), time(21, 30)),
        ("9:30", time(9, 30), time(21, 30)),
        ("৯", time(9, 0), time(21, 0)),
        ("৯টা", time(9, 0), time(21, 0)),
        ("9.30", time(9, 30), time(21, 30)),
        ("১২:৩০", time(12, 30), time(0, 30)),
        ("1:05", time(1, 5), time(13, 5)),
        ("সাড়ে ৯টা", time(9, 30), time(21, 30)),
    ],
)
def test_a_bare_hour_of_1_to_12_is_ambiguous_and_never_guessed(typed: str, first: time, second: time) -> None:
    assert read_time(typed) == AmbiguousTime(first, second)


@pytest.mark.parametrize("hour", range(1, 13))
@pytest.mark.parametrize("minute", [0, 1, 30, 59])
def test_every_bare_12_hour_time_in_both_digit_sets_is_ambiguous(hour: int, minute: int) -> None:
    typed = f"{hour}:{minute:02d}"
    expected = AmbiguousTime(time(hour, minute), time(0 if hour == 12 else hour + 12, minute))
    assert read_time(typed) == read_time(localize_digits(typed, "bn")) == expected


@pytest.mark.parametrize("hour", range(1, 13))
def test_every_hour_with_am_and_pm(hour: int) -> None:
    assert read_time(f"{hour}:10 am") == time(hour % 12, 10)
    assert read_time(f"{hour}:10 pm") == time(hour % 12 + 12, 10)


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "রাত",
        "hello",
        "25:00",
        "২৪:০০",
        "9:60",
        "9:5",
        "৯:৩০:০০",
        "সকাল ২১:৩০",  # says two different things
        "বিকাল ৩:০০ সকাল",
        "সাড়ে ৯:৩০",
        "সাড়ে ১৩টা",
        "9 30",
        "-9:30",
    ],
)
def test_what_is_not_a_time_is_refused(typed: str) -> None:
    with pytest.raises(ParseError):
        read_time(typed)
