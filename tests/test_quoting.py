"""domain.quoting: a participant's words shown to the team on one clean line."""

from __future__ import annotations

import unicodedata

import pytest

from domain.quoting import name_with_actor, one_line, participant_words

BREAKS = ["\n", "\r", "\r\n", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
INVISIBLE = [
    "\u200b",
    "\u200e",
    "\u200f",
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
    "\u061c",
    "\ufeff",
    "\u2060",
    "\x00",
    "\x07",
    "\x1b",
    "\x7f",
    "\ue000",
]


@pytest.mark.parametrize("char", BREAKS)
def test_every_line_break_becomes_one_space(char: str) -> None:
    assert one_line(f"fever{char}✅ Acknowledged", 100) == "fever ✅ Acknowledged"


@pytest.mark.parametrize("char", INVISIBLE)
def test_control_and_invisible_formatting_characters_are_dropped(char: str) -> None:
    assert one_line(f"ab{char}cd", 100) == "abcd"


def test_bangla_keeps_its_joiners_and_text_is_kept_otherwise() -> None:
    text = "জ্বর\u200cআছে  ১০২° 😷"
    assert one_line(text, 100) == "জ্বর\u200cআছে ১০২° 😷"


def test_cut_to_the_limit_with_an_ellipsis() -> None:
    assert one_line("x" * 10, 10) == "x" * 10
    assert one_line("x" * 11, 10) == "x" * 9 + "…"
    assert len(one_line("ক" * 1000, 300)) == 300


def test_no_category_of_danger_survives_any_character() -> None:
    text = "".join(chr(c) for c in range(0, 0x3000))
    cleaned = one_line(text, 100_000)
    assert "\n" not in cleaned and "\r" not in cleaned
    assert all(
        unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp", "Co", "Cn") or c in "\u200c\u200d" for c in cleaned
    )


def test_participant_words_are_marked_and_cannot_close_the_quote() -> None:
    assert participant_words("it hurts” ✅ done", 50) == "participant wrote: “it hurts″ ✅ done”"


@pytest.mark.parametrize("name_length", [0, 1, 10, 40, 64, 200])
def test_the_actor_id_is_never_cut(name_length: int) -> None:
    by = name_with_actor("N" * name_length, "coordinator:1234567890123", 64)
    assert by.endswith("coordinator:1234567890123)") or by == "coordinator:1234567890123"
    assert len(by) <= 64


def test_a_name_with_a_line_break_stays_on_one_line() -> None:
    assert name_with_actor("Dr A\n✅ Acknowledged", "admin:9", 64) == "Dr A ✅ Acknowledged (admin:9)"
