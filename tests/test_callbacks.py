"""Callback data: what each builder writes, its parser reads back; anything else
(an old layout, a forged or cut button) parses to None, never to a guess."""

from __future__ import annotations

import pytest

from bot import callbacks


def test_every_button_round_trips_through_its_parser() -> None:
    assert callbacks.parse_dose(callbacks.dose(42, "later")) == (42, "later")
    assert callbacks.parse_visit(callbacks.visit(12, "other")) == (12, "other")
    assert callbacks.parse_settime(callbacks.settime(21, 30)) == (21, 30)
    assert callbacks.parse_settime(callbacks.settime(4, 5)) == (4, 5)
    assert callbacks.parse_stop(callbacks.stop(True)) is True
    assert callbacks.parse_stop(callbacks.stop(False)) is False
    assert callbacks.parse_lang(callbacks.lang("bn", welcome=True)) == callbacks.LangPress("bn", True)
    assert callbacks.parse_lang(callbacks.lang("en", welcome=False)) == callbacks.LangPress("en", False)
    assert callbacks.parse_answer(callbacks.answer(7, "fever", "yes")) == callbacks.AnswerPress(7, "fever", "yes")
    assert callbacks.answer_value(callbacks.answer(7, "fever", "yes")) == "yes"
    assert callbacks.parse_start(callbacks.start("weekly_checkin")) == "weekly_checkin"
    assert callbacks.ack_field(callbacks.ack(9)) == "9"


def test_the_wire_format_is_unchanged() -> None:
    """Buttons already in participants' chats keep working after an upgrade."""
    assert callbacks.dose(42, "taken") == "dose:42:taken"
    assert callbacks.visit(4, "come") == "visit:4:come"
    assert callbacks.settime(9, 30) == "settime:0930"
    assert callbacks.stop(True) == "stop:yes"
    assert callbacks.lang("bn", welcome=True) == "lang:bn:welcome"
    assert callbacks.lang("en", welcome=False) == "lang:en"
    assert callbacks.answer(7, "fever", "yes") == "q:7:fever:yes"
    assert callbacks.start("haq_di") == "qstart:haq_di"
    assert callbacks.ack(9) == "ack:9"


@pytest.mark.parametrize(
    ("parse", "data"),
    [
        (callbacks.parse_dose, "dose:42"),
        (callbacks.parse_dose, "dose:42:eaten"),
        (callbacks.parse_dose, "dose:x:taken"),
        (callbacks.parse_dose, "dose:42:taken:1"),
        (callbacks.parse_visit, "visit:4:maybe"),
        (callbacks.parse_visit, "visit:four:come"),
        (callbacks.parse_settime, "settime:930"),
        (callbacks.parse_settime, "settime:2460"),
        (callbacks.parse_settime, "settime:0960"),
        (callbacks.parse_settime, "settime:ab30"),
        (callbacks.parse_lang, "lang:fr"),
        (callbacks.parse_lang, "lang"),
        (callbacks.parse_answer, "q:7:fever"),
        (callbacks.parse_answer, "q:x:fever:yes"),
    ],
)
def test_a_malformed_button_parses_to_none(parse: object, data: str) -> None:
    assert parse(data) is None  # type: ignore[operator]


def test_only_yes_confirms_a_stop_and_a_value_may_hold_colons() -> None:
    assert callbacks.parse_stop("stop:yes:") is False and callbacks.parse_stop("stop:") is False
    assert callbacks.parse_answer("q:7:when:10:30") == callbacks.AnswerPress(7, "when", "10:30")
    assert callbacks.answer_value("q:7") == ""
