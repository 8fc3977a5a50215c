"""Bangla as GLOSSARY-bn.md says: every catalog message and every content text,
rendered with sample values, shows times with the part of the day, Bengali
digits (Latin only in the phone number and a study id) and none of the words
the glossary replaces. Also the review table (`make i18n-review`)."""

from __future__ import annotations

import csv
import string
from datetime import date, time
from pathlib import Path

import pytest

from bot.i18n import format_date, format_number, format_time, use_locale, weekday_name
from devtools import i18n_review
from devtools.bangla_check import TIME_WITH_PART, names_the_site, problems
from devtools.harness import STUDY_PHONE

STUDY_ID = "BSM-001"


class Samples(dict[str, str]):
    """Sample values for placeholders, formatted the way the bot formats them in Bangla."""

    def __missing__(self, key: str) -> str:
        return "নমুনা"


def samples() -> Samples:
    with use_locale("bn"):
        return Samples(
            time=format_time(time(21, 30)),
            date=format_date(date(2027, 1, 24), "long"),
            earliest=format_date(date(2026, 2, 1), "medium"),
            weekday=weekday_name(4),
            phone=STUDY_PHONE,
            study_id=STUDY_ID,
            number=format_number(3),
            total=format_number(12),
            min=format_number(34),
            max=format_number(43),
            alt_min=format_number(93),
            alt_max=format_number(109.4),
            unit=" ডিগ্রি (সেলসিয়াস)",
            alt_unit=" ডিগ্রি (ফারেনহাইট)",
            max_length=format_number(500),
            amount=format_number(25),
            drug="মেথোট্রেক্সেট",
            dose="২৫ মিলিগ্রাম",
            visit="১২ সপ্তাহের চেকআপ",
            site="বিএসএমএমইউ",
            hospital="পিজি হাসপাতাল",
            department="রিউমাটোলজি (বাতরোগ) বিভাগ",
            title="সাপ্তাহিক খোঁজখবর",
            language="বাংলা",
        )


def render(text: str) -> str:
    """The text with every {placeholder} filled from the samples."""
    return string.Formatter().vformat(text, (), samples())


CATALOG = i18n_review.catalog_rows()
CONTENT = i18n_review.content_rows()


@pytest.mark.parametrize("row", CATALOG, ids=[r.key[:60] for r in CATALOG])
def test_every_catalog_message_follows_the_glossary(row: i18n_review.Row) -> None:
    assert not problems(render(row.bn)), (row.key, render(row.bn))
    assert not names_the_site(row.bn) and not names_the_site(row.en), row.key


@pytest.mark.parametrize("row", CONTENT, ids=[f"{r.source}:{r.key}"[-80:] for r in CONTENT])
def test_every_content_text_follows_the_glossary(row: i18n_review.Row) -> None:
    assert not problems(render(row.bn)), (row.source, row.key, render(row.bn))


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("{time}-এ মনে করিয়ে দেব", None),
        ("২১:৩০-এ মনে করিয়ে দেব", "time without the part of the day"),
        ("রাত ৯:৩০-এ মনে করিয়ে দেব", None),
        ("সকাল ৯:০০, রাত ৯:৩০", None),
        ("সকাল ৯:০০, ২১:৩০", "time without the part of the day"),
        ("গত 7 দিনে", "Latin digit"),
        ("ফোন করুন: {phone}", None),
        ("ফোন করুন: +880 1711", "Latin digit"),
        ("আপনার গবেষণা নম্বর {study_id}", None),
        ("আপনার ৪ সপ্তাহের ভিজিট", "ভিজিট"),
        ("স্টাডি টিম দেখবে", "স্টাডি টিম"),
        ("এই নির্দেশটি", "নির্দেশ"),
        ("এই নির্দেশনা পড়ুন", None),
        ("তাপমাত্রা", None),
        ("ওষুধের মাত্রা", "মাত্রা"),
        ("প্রশ্ন ৩ / ১২", "প্রশ্ন ৩ / ১২"),
        ("প্রশ্ন ৩ (মোট ১২টি)", None),
        ("৩৮ °সে", "°সে"),
        ("দুটি বড়ি", "বড়ি"),
    ],
)
def test_the_check_catches_what_the_glossary_forbids(text: str, complaint: str | None) -> None:
    found = problems(render(text))
    if complaint is None:
        assert found == []
    else:
        assert any(complaint in p for p in found), found


def test_a_catalog_string_may_not_name_the_site() -> None:
    assert names_the_site("বিএসএমএমইউ-এর গবেষণা") and names_the_site("the study at BSMMU")
    assert not names_the_site("গবেষণাটি হচ্ছে এখানে: {hospital} ({site})")


def test_month_names_as_the_bangla_academy_spells_them() -> None:
    assert format_date(date(2027, 1, 24), "medium", "bn") == "২৪ জানুয়ারি ২০২৭"
    assert format_date(date(2027, 2, 21), "medium", "bn") == "২১ ফেব্রুয়ারি ২০২৭"
    assert format_date(date(2027, 2, 21), "medium", "en") == "21 February 2027"


@pytest.mark.parametrize(
    ("at", "bn", "en"),
    [
        (time(0, 0), "রাত ১২:০০", "12:00 am"),
        (time(3, 59), "রাত ৩:৫৯", "3:59 am"),
        (time(4, 0), "ভোর ৪:০০", "4:00 am"),
        (time(5, 59), "ভোর ৫:৫৯", "5:59 am"),
        (time(6, 0), "সকাল ৬:০০", "6:00 am"),
        (time(9, 0), "সকাল ৯:০০", "9:00 am"),
        (time(11, 59), "সকাল ১১:৫৯", "11:59 am"),
        (time(12, 0), "দুপুর ১২:০০", "12:00 pm"),
        (time(14, 59), "দুপুর ২:৫৯", "2:59 pm"),
        (time(15, 0), "বিকাল ৩:০০", "3:00 pm"),
        (time(17, 29), "বিকাল ৫:২৯", "5:29 pm"),
        (time(17, 30), "সন্ধ্যা ৫:৩০", "5:30 pm"),
        (time(19, 29), "সন্ধ্যা ৭:২৯", "7:29 pm"),
        (time(19, 30), "রাত ৭:৩০", "7:30 pm"),
        (time(21, 30), "রাত ৯:৩০", "9:30 pm"),
        (time(23, 59), "রাত ১১:৫৯", "11:59 pm"),
    ],
)
def test_one_formatter_says_times_as_people_do(at: time, bn: str, en: str) -> None:
    assert format_time(at, "bn") == bn and format_time(at, "en") == en


def test_every_minute_of_the_day_has_exactly_one_part_and_reads_back() -> None:
    from domain.parsing import read_time

    for minute in range(24 * 60):
        at = time(minute // 60, minute % 60)
        shown = format_time(at, "bn")
        assert TIME_WITH_PART.fullmatch(shown), shown
        assert read_time(shown) == at, shown  # what the bot shows, the bot reads
        assert read_time(format_time(at, "en")) == at


def test_the_review_table_lists_every_participant_facing_string(tmp_path: Path) -> None:
    out, page = tmp_path / "review.csv", tmp_path / "review.html"
    assert i18n_review.main(["--out", str(out), "--html", str(page)]) == 0
    with out.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    listed = {(r["source"], r["English"], r["Bangla"]) for r in rows}
    for row in CATALOG + CONTENT:
        assert (row.source, row.en, row.bn) in listed
    english = {r["English"] for r in rows}
    # Spot checks across every kind of source: a catalog message, a red flag, an answer
    # label, the advice, a visit name, the site.
    for text in (
        "Your medicine:",
        "Are you passing much less urine than usual?",
        "Very severe",
        "Please call the study doctor today: {phone}.",
        "Week 12 visit",
        "PG Hospital",
        "Shampoo your hair?",
    ):
        assert text in english, text
    assert len(rows) == len(CATALOG) + len(CONTENT) and len(CONTENT) > 250
    assert all(r["glossary check"] == "" for r in rows)  # the shipped texts pass
    assert "পিজি হাসপাতাল" in page.read_text(encoding="utf-8")
