"""The questionnaire engine: walks, branching, back/skip, resume, typed answers, scoring."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.questionnaires import (
    BACK_VALUE,
    SKIP_VALUE,
    AnswerError,
    Context,
    Instrument,
    State,
    StateError,
    answer,
    back,
    can_go_back,
    compute_scores,
    current_item,
    effective_answers,
    is_complete,
    load_instruments,
    options,
    progress,
    prompt,
    skip,
    start,
)
from domain.questionnaires.model import Item
from domain.questionnaires.scoring import haq_di

ROOT = Path(__file__).resolve().parents[1]
TODAY = date(2026, 11, 22)
ARM_A = Context(arm="A", today=TODAY, language="en")
ARM_B = Context(arm="B", today=TODAY, language="bn")


@pytest.fixture(scope="module")
def instruments() -> dict[str, Instrument]:
    return load_instruments(ROOT / "content" / "instruments")


@pytest.fixture(scope="module")
def weekly(instruments: dict[str, Instrument]) -> Instrument:
    return instruments["weekly_checkin"]


@pytest.fixture(scope="module")
def ae(instruments: dict[str, Instrument]) -> Instrument:
    return instruments["ae_report"]


@pytest.fixture(scope="module")
def haq(instruments: dict[str, Instrument]) -> Instrument:
    return instruments["haq_di"]


def _default(item: Item, no: str) -> str:
    if item.type == "yes_no":
        return no
    if item.type == "single_choice":
        return "1"
    if item.type == "scale_0_10":
        return "0"
    if item.type == "date":
        return "today"
    if item.optional:
        return SKIP_VALUE
    return "37" if item.type == "number" else "text"


def walk(
    instrument: Instrument,
    ctx: Context,
    overrides: Mapping[str, str] | None = None,
    *,
    no: str = "no",
) -> tuple[State, list[str]]:
    """Answer every item shown: `overrides` where given, else a harmless default."""
    overrides = overrides or {}
    state = start(instrument, ctx)
    asked: list[str] = []
    for _ in range(500):
        item = current_item(instrument, state, ctx)
        if item is None:
            return state, asked
        asked.append(item.id)
        result = answer(instrument, state, overrides.get(item.id, _default(item, no)), ctx)
        assert not isinstance(result, AnswerError), (item.id, result)
        state = result
    raise AssertionError("questionnaire did not finish")


def go_to(instrument: Instrument, ctx: Context, item_id: str, overrides: Mapping[str, str] | None = None) -> State:
    """A state whose current item is `item_id` (earlier items answered by default)."""
    overrides = overrides or {}
    state = start(instrument, ctx)
    while (item := current_item(instrument, state, ctx)) is not None and item.id != item_id:
        result = answer(instrument, state, overrides.get(item.id, _default(item, "no")), ctx)
        assert not isinstance(result, AnswerError), (item.id, result)
        state = result
    assert item is not None, f"{item_id} never shown"
    return state


def ok(result: State | AnswerError) -> State:
    assert isinstance(result, State), result
    return result


def err(result: State | AnswerError) -> AnswerError:
    assert isinstance(result, AnswerError), result
    return result


def answered_value(
    instrument: Instrument, ctx: Context, item_id: str, raw: str, overrides: Mapping[str, str] | None = None
) -> Any:
    state = go_to(instrument, ctx, item_id, overrides)
    return ok(answer(instrument, state, raw, ctx)).answers[item_id]


# --- walks and branching ---------------------------------------------------------------


def test_start_shows_the_first_red_flag_of_the_participants_arm(weekly: Instrument) -> None:
    a = current_item(weekly, start(weekly, ARM_A), ARM_A)
    b = current_item(weekly, start(weekly, ARM_B), ARM_B)
    assert a is not None and a.id == "rf_bari_infection"
    assert b is not None and b.id == "rf_mtx_extra_dose"


def test_all_well_check_in_is_short_and_records_every_symptom_as_none(weekly: Instrument) -> None:
    state, asked = walk(weekly, ARM_A)
    assert is_complete(state)
    assert "nausea" not in asked and "fever_measured" not in asked
    assert len(asked) == 6 + 5 + 6 + 1 + 1  # red flags A (with pregnancy) + SSc, 6 area gates, fever, anything else
    effective = effective_answers(weekly, state.answers, "A")
    assert effective["nausea"] == "none" and effective["finger_ulcers"] == "none"


@pytest.mark.parametrize(
    ("ctx", "own", "other"),
    [
        (ARM_A, "rf_bari_", "rf_mtx_"),
        (ARM_B, "rf_mtx_", "rf_bari_"),
    ],
)
def test_red_flags_of_the_other_arm_are_not_asked(
    weekly: Instrument, ae: Instrument, ctx: Context, own: str, other: str
) -> None:
    for instrument in (weekly, ae):
        _, asked = walk(instrument, ctx)
        assert any(i.startswith(own) for i in asked)
        assert not any(i.startswith(other) for i in asked)
        assert {i for i in asked if i.startswith("rf_ssc_")} == {
            "rf_ssc_headache_vision",
            "rf_ssc_blood_pressure",
            "rf_ssc_urine",
            "rf_ssc_ulcer",
            "rf_ssc_breathless",
        }


def test_a_yes_gate_asks_severity_for_each_symptom_of_that_area(weekly: Instrument) -> None:
    _, asked = walk(weekly, ARM_A, {"bowel_any": "yes"})
    start_at = asked.index("bowel_any")
    assert asked[start_at : start_at + 5] == ["bowel_any", "diarrhoea", "constipation", "bloating", "belly_pain"]
    assert "nausea" not in asked


def test_fever_branch_asks_measurement_then_temperature(weekly: Instrument) -> None:
    state, asked = walk(weekly, ARM_B, {"fever": "yes", "fever_measured": "yes", "fever_temp": "38.4"})
    assert asked[-4:] == ["fever", "fever_measured", "fever_temp", "anything_else"]
    assert state.answers["fever_temp"] == 38.4
    _, asked = walk(weekly, ARM_B, {"fever": "yes", "fever_measured": "no"})
    assert "fever_temp" not in asked


def test_changing_a_gate_answer_drops_the_answers_it_no_longer_shows(weekly: Instrument) -> None:
    state = go_to(weekly, ARM_A, "breathing_any", {"mouth_stomach_any": "yes", "nausea": "severe"})
    assert state.answers["nausea"] == "severe"
    while state.current != "mouth_stomach_any":
        state = ok(back(weekly, state, ARM_A))
    state = ok(answer(weekly, state, "no", ARM_A))
    assert "nausea" not in state.answers and "vomiting" not in state.answers
    assert state.current == "breathing_any"  # answered later items are kept
    assert state.answers["bowel_any"] is False


def test_ae_report_asks_for_a_description_only_for_something_else(ae: Instrument) -> None:
    _, asked = walk(ae, ARM_A, {"ae_what": "other", "ae_what_other": "Swollen ankles"})
    assert "ae_what_other" in asked
    _, asked = walk(ae, ARM_A, {"ae_what": "stomach"})
    assert "ae_what_other" not in asked


def test_birth_defect_is_asked_only_about_a_pregnancy(ae: Instrument) -> None:
    _, asked = walk(ae, ARM_B)
    assert "ser_birth_defect" not in asked
    _, asked = walk(ae, ARM_B, {"ae_pregnancy": "yes"})
    assert "ser_birth_defect" in asked


# --- back, skip, stale buttons, completion ------------------------------------------


def test_back_goes_to_the_previous_shown_item_keeping_its_answer(weekly: Instrument) -> None:
    state = go_to(weekly, ARM_A, "bowel_any", {"mouth_stomach_any": "no"})
    assert can_go_back(weekly, state, ARM_A)
    previous = ok(back(weekly, state, ARM_A))
    assert previous.current == "mouth_stomach_any"  # hidden nausea..swallowing are passed over
    assert previous.answers["mouth_stomach_any"] is False
    assert ok(answer(weekly, previous, "no", ARM_A)).current == "bowel_any"


@pytest.mark.parametrize("raw", [BACK_VALUE, "back", "Back", "পিছনে", " পেছনে "])
def test_back_by_button_or_typed_word(weekly: Instrument, raw: str) -> None:
    state = go_to(weekly, ARM_A, "rf_bari_shingles")
    assert ok(answer(weekly, state, raw, ARM_A)).current == "rf_bari_infection"


def test_back_on_the_first_item_is_refused(weekly: Instrument) -> None:
    state = start(weekly, ARM_A)
    assert not can_go_back(weekly, state, ARM_A)
    assert err(back(weekly, state, ARM_A)).code == "nothing_before"
    assert err(answer(weekly, state, BACK_VALUE, ARM_A)).code == "nothing_before"


@pytest.mark.parametrize("raw", [SKIP_VALUE, "skip", "SKIP", "বাদ", "বাদ দিন"])
def test_an_optional_item_can_be_skipped(weekly: Instrument, raw: str) -> None:
    state = go_to(weekly, ARM_A, "anything_else")
    done = ok(answer(weekly, state, raw, ARM_A))
    assert done.answers["anything_else"] is None
    assert is_complete(done)


def test_a_required_item_cannot_be_skipped(weekly: Instrument) -> None:
    state = start(weekly, ARM_A)
    error = err(skip(weekly, state, ARM_A))
    assert error.code == "not_skippable" and error.item_id == "rf_bari_infection"
    assert err(answer(weekly, state, "skip", ARM_A)).code == "not_skippable"


def test_a_tap_on_an_old_message_is_refused(weekly: Instrument) -> None:
    state = go_to(weekly, ARM_A, "rf_bari_clot")
    error = err(answer(weekly, state, "yes", ARM_A, item_id="rf_bari_infection"))
    assert error.code == "stale_button"
    assert error.data == {"current_item": "rf_bari_clot"}
    assert ok(answer(weekly, state, "yes", ARM_A, item_id="rf_bari_clot")).answers["rf_bari_clot"] is True


def test_answers_after_completion_are_refused(weekly: Instrument) -> None:
    state, _ = walk(weekly, ARM_A)
    assert current_item(weekly, state, ARM_A) is None
    assert err(answer(weekly, state, "yes", ARM_A)).code == "already_complete"
    assert err(skip(weekly, state, ARM_A)).code == "already_complete"


def test_a_state_from_another_instrument_version_is_refused(weekly: Instrument) -> None:
    state = State("weekly_checkin", "0.9", {}, "rf_bari_infection")
    assert err(answer(weekly, state, "yes", ARM_A)).code == "instrument_changed"
    with pytest.raises(StateError):
        current_item(weekly, state, ARM_A)


def test_progress_counts_answered_and_shown_items(weekly: Instrument) -> None:
    state = start(weekly, ARM_A)
    assert progress(weekly, state, ARM_A) == (0, 19)
    state = ok(answer(weekly, state, "no", ARM_A))
    assert progress(weekly, state, ARM_A) == (1, 19)


# --- resume after a restart ---------------------------------------------------------


def test_a_half_answered_check_in_resumes_from_its_json_state(weekly: Instrument) -> None:
    overrides = {
        "mouth_stomach_any": "yes",
        "nausea": "2",
        "fever": "yes",
        "fever_measured": "yes",
        "fever_temp": "101",
    }
    state = go_to(weekly, ARM_B, "vomiting", overrides)
    row = json.dumps(state.to_dict(), ensure_ascii=False)
    resumed = State.from_dict(json.loads(row))
    assert resumed == state
    # finish both ways: same result
    for s in (state, resumed):
        while (item := current_item(weekly, s, ARM_B)) is not None:
            s = ok(answer(weekly, s, overrides.get(item.id, _default(item, "না")), ARM_B))
        assert s.answers["fever_temp"] == 38.3
        assert s.answers["nausea"] == "mild"
    final = s
    assert State.from_dict(json.loads(json.dumps(final.to_dict()))) == final


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"format": 1, "instrument": "x", "version": "1", "answers": [], "current": None},
        {"format": 1, "instrument": "x", "version": "1", "answers": {"a": [1]}, "current": None},
        {"format": 2, "instrument": "x", "version": "1", "answers": {}, "current": None},
        {"format": 1, "instrument": 3, "version": "1", "answers": {}, "current": None},
    ],
)
def test_a_malformed_stored_state_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(StateError):
        State.from_dict(bad)


# --- typed answers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["yes", "Yes", " YES ", "y", "Y", "yeah", "ha", "হ্যাঁ", "হাঁ", "হ্যা", "জি", "জ্বি", "হ্যাঁ।", "1", "১", "yes"]
)
def test_yes_typed_in_english_or_bangla(weekly: Instrument, raw: str) -> None:
    assert answered_value(weekly, ARM_A, "rf_bari_infection", raw) is True


@pytest.mark.parametrize("raw", ["no", "No", "n", "N", "nope", "na", "না", " না ", "নাহ", "নেই", "2", "২", "no"])
def test_no_typed_in_english_or_bangla(weekly: Instrument, raw: str) -> None:
    assert answered_value(weekly, ARM_A, "rf_bari_infection", raw) is False


def test_yes_with_zero_width_joiner_from_a_bangla_keyboard(weekly: Instrument) -> None:
    assert answered_value(weekly, ARM_A, "rf_bari_infection", "হ্\u200dযাঁ") is True


@pytest.mark.parametrize("raw", ["maybe", "🙂", "3", "", "   ", "yes no"])
def test_yes_no_that_is_neither_asks_for_a_button(weekly: Instrument, raw: str) -> None:
    state = start(weekly, ARM_A)
    error = err(answer(weekly, state, raw, ARM_A))
    assert error.code == "expected_button"
    assert error.data == {"choices": 2}
    assert error.item_id == "rf_bari_infection"


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("mild", "mild"),  # button value
        ("very_severe", "very_severe"),
        ("3", "moderate"),  # number in the list
        ("৪", "severe"),  # Bengali digit
        ("(5)", "very_severe"),
        ("5.", "very_severe"),
        ("Mild", "mild"),  # English label
        ("very severe", "very_severe"),
        ("VERY SEVERE", "very_severe"),
        ("হালকা", "mild"),  # Bangla label
        ("খুব তীব্র", "very_severe"),
        ("মাঝারি", "moderate"),
        ("একটু", "mild"),  # alias
        ("না", "none"),
        ("None", "none"),
    ],
)
def test_a_choice_by_value_number_or_label_in_either_language(weekly: Instrument, raw: str, value: str) -> None:
    assert answered_value(weekly, ARM_B, "nausea", raw, {"mouth_stomach_any": "yes"}) == value


@pytest.mark.parametrize("raw", ["6", "0", "৬", "extreme", "🤢", "", "mild moderate"])
def test_an_unknown_choice_asks_for_a_button(weekly: Instrument, raw: str) -> None:
    state = go_to(weekly, ARM_B, "nausea", {"mouth_stomach_any": "yes"})
    error = err(answer(weekly, state, raw, ARM_B))
    assert (error.code, error.item_id, error.data) == ("expected_button", "nausea", {"choices": 5})


FEVER = {"fever": "yes", "fever_measured": "yes"}


@pytest.mark.parametrize(
    ("raw", "celsius"),
    [
        ("37.8", 37.8),
        ("38", 38.0),
        ("৩৮.৫", 38.5),
        ("38,5", 38.5),
        ("38 C", 38.0),
        ("38c", 38.0),
        ("38°C", 38.0),
        ("38 °c.", 38.0),
        ("38 degrees", 38.0),
        ("৩৯ ডিগ্রি", 39.0),
        ("৩৮ °সে", 38.0),
        ("৩৮ সেলসিয়াস", 38.0),
        ("37.85", 37.9),  # rounded to one decimal
        ("101 F", 38.3),  # Fahrenheit, converted
        ("101°F", 38.3),
        ("১০২ ফারেনহাইট", 38.9),
        ("১০৩ °ফা", 39.4),
        ("102", 38.9),  # a bare number only Fahrenheit can explain
        ("100.4", 38.0),
    ],
)
def test_temperature_typed_in_either_language_and_unit(weekly: Instrument, raw: str, celsius: float) -> None:
    assert answered_value(weekly, ARM_A, "fever_temp", raw, FEVER) == celsius


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("hot", "not_a_number"),
        ("38 kg", "not_a_number"),
        ("thirty eight", "not_a_number"),
        ("3 8", "not_a_number"),
        ("", "not_a_number"),
        ("50", "out_of_range"),
        ("20", "out_of_range"),
        ("-38", "out_of_range"),
        ("45 C", "out_of_range"),
        ("120 F", "out_of_range"),
        ("38 F", "out_of_range"),
        ("9" * 200, "not_a_number"),
    ],
)
def test_a_wrong_temperature_gets_a_code_with_the_range_for_the_hint(weekly: Instrument, raw: str, code: str) -> None:
    state = go_to(weekly, ARM_A, "fever_temp", FEVER)
    error = err(answer(weekly, state, raw, ARM_A))
    assert error.code == code
    assert error.data["min"] == 34 and error.data["max"] == 43 and error.data["decimals"] == 1
    assert error.data["unit"] == {"en": "°C", "bn": "ডিগ্রি (সেলসিয়াস)"}
    assert error.data["alt_units"] == [{"unit": {"en": "°F", "bn": "ডিগ্রি (ফারেনহাইট)"}, "min": 93, "max": 109.4}]


def test_the_temperature_can_be_skipped(weekly: Instrument) -> None:
    state = go_to(weekly, ARM_A, "fever_temp", FEVER)
    assert ok(skip(weekly, state, ARM_A)).answers["fever_temp"] is None


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("0", 0),
        ("7", 7),
        ("10", 10),
        ("৭", 7),
        ("১০", 10),
        ("০", 0),
        ("7/10", 7),
        ("৭ / ১০", 7),
        (" 3 ", 3),
    ],
)
def test_a_scale_answer_typed_in_either_digits(instruments: dict[str, Instrument], raw: str, value: int) -> None:
    pga = instruments["patient_global"]
    state = ok(answer(pga, start(pga, ARM_B), raw, ARM_B))
    assert state.answers["pga"] == value and is_complete(state)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("11", "out_of_range"),
        ("-1", "out_of_range"),
        ("১১", "out_of_range"),
        ("7.5", "not_whole_number"),
        ("seven", "not_a_number"),
        ("7/5", "not_a_number"),
        ("", "not_a_number"),
    ],
)
def test_a_wrong_scale_answer(instruments: dict[str, Instrument], raw: str, code: str) -> None:
    pga = instruments["patient_global"]
    error = err(answer(pga, start(pga, ARM_B), raw, ARM_B))
    assert (error.code, error.data) == (code, {"min": 0, "max": 10})


@pytest.mark.parametrize(
    ("raw", "iso"),
    [
        ("today", "2026-11-22"),
        ("Today", "2026-11-22"),
        ("আজ", "2026-11-22"),
        ("আজকে", "2026-11-22"),
        ("yesterday", "2026-11-21"),
        ("গতকাল", "2026-11-21"),
        ("2026-11-20", "2026-11-20"),
        ("২০২৬-১১-২০", "2026-11-20"),
        ("20/11/2026", "2026-11-20"),
        ("20-11-2026", "2026-11-20"),
        ("20.11.2026", "2026-11-20"),
        ("২০/১১/২০২৬", "2026-11-20"),
        ("5/1/2026", "2026-01-05"),
    ],
)
def test_a_date_as_a_word_or_typed_in_either_digits(ae: Instrument, raw: str, iso: str) -> None:
    assert answered_value(ae, ARM_A, "ae_start", raw) == iso


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("31/02/2026", "bad_date"),
        ("2026-13-01", "bad_date"),
        ("tomorrow", "bad_date"),
        ("20/11/26", "bad_date"),
        ("20/11-2026", "bad_date"),
        ("", "bad_date"),
        ("2026-11-23", "date_in_future"),
        ("১/১/২০৩০", "date_in_future"),
        ("01/01/2020", "date_too_old"),
    ],
)
def test_a_wrong_date(ae: Instrument, raw: str, code: str) -> None:
    state = go_to(ae, ARM_A, "ae_start")
    error = err(answer(ae, state, raw, ARM_A))
    assert error.code == code
    assert error.data["today"] == "2026-11-22"
    if code == "date_too_old":
        assert error.data["earliest"] == "2025-11-21"


def test_free_text_is_trimmed_and_cleaned(weekly: Instrument) -> None:
    state = go_to(weekly, ARM_A, "anything_else")
    done = ok(answer(weekly, state, "  মাথা ঘোরে\x00 sometimes \n", ARM_A))
    assert done.answers["anything_else"] == "মাথা ঘোরে sometimes"


def test_free_text_too_long_or_empty(weekly: Instrument) -> None:
    state = go_to(weekly, ARM_A, "anything_else")
    too_long = err(answer(weekly, state, "x" * 1001, ARM_A))
    assert (too_long.code, too_long.data) == ("too_long", {"max_length": 1000, "length": 1001})
    assert ok(answer(weekly, state, "x" * 1000, ARM_A)).answers["anything_else"] == "x" * 1000
    empty = err(answer(weekly, state, " \n\t ", ARM_A))
    assert (empty.code, empty.data) == ("empty", {"can_skip": True})


def test_required_free_text_cannot_be_empty(ae: Instrument) -> None:
    state = go_to(ae, ARM_A, "ae_what_other", {"ae_what": "other"})
    error = err(answer(ae, state, "", ARM_A))
    assert (error.code, error.data) == ("empty", {"can_skip": False})


def test_error_codes_are_plain_json(weekly: Instrument) -> None:
    state = go_to(weekly, ARM_A, "fever_temp", FEVER)
    error = err(answer(weekly, state, "500", ARM_A))
    assert json.loads(json.dumps(error.to_dict()))["code"] == "out_of_range"


# --- what the bot shows ------------------------------------------------------------------


def test_buttons_for_each_item_type(weekly: Instrument, ae: Instrument, instruments: dict[str, Instrument]) -> None:
    assert [(o.value, o.label) for o in options(weekly.item("fever"), "bn")] == [("yes", "হ্যাঁ"), ("no", "না")]
    assert [o.value for o in options(weekly.item("nausea"), "en")] == [
        "none",
        "mild",
        "moderate",
        "severe",
        "very_severe",
    ]
    assert [o.label for o in options(weekly.item("nausea"), "bn")][-1] == "খুব বেশি"
    scale = options(instruments["patient_global"].item("pga"), "bn")
    assert [o.value for o in scale] == [str(n) for n in range(11)]
    assert scale[10].label == "১০"
    assert [(o.value, o.label) for o in options(ae.item("ae_start"), "bn")] == [("today", "আজ"), ("yesterday", "গতকাল")]
    assert options(weekly.item("anything_else"), "en") == []


def test_each_button_value_is_accepted_as_the_answer(weekly: Instrument, ae: Instrument) -> None:
    for instrument, ctx in ((weekly, ARM_B), (ae, ARM_A)):
        state = start(instrument, ctx)
        while (item := current_item(instrument, state, ctx)) is not None:
            buttons = options(item, ctx.language)
            raw = buttons[-1].value if buttons else (SKIP_VALUE if item.optional else "text")
            if item.type == "number":
                raw = SKIP_VALUE
            state = ok(answer(instrument, state, raw, ctx, item_id=item.id))


def test_prompt_shows_section_question_help_and_scale_ends(
    weekly: Instrument, haq: Instrument, instruments: dict[str, Instrument]
) -> None:
    assert prompt(haq.item("haq_dress"), "en").startswith("DRESSING & GROOMING. Are you able to:\n\nDress yourself")
    pregnancy = prompt(weekly.item("rf_mtx_pregnancy"), "bn")
    assert pregnancy == "আপনি কি এখন গর্ভবতী, বা গর্ভবতী হয়ে থাকতে পারেন?\n\nআপনি পুরুষ হলে ‘না’ চাপুন।"
    pga = instruments["patient_global"]
    assert prompt(pga.item("pga"), "bn").endswith("০ = খুব ভালো\n১০ = খুব খারাপ")


# --- scoring -------------------------------------------------------------------------------

HAQ_ITEMS = {
    "dressing": ["haq_dress", "haq_shampoo"],
    "arising": ["haq_stand", "haq_bed"],
    "eating": ["haq_cut_meat", "haq_lift_cup", "haq_open_carton"],
    "walking": ["haq_walk", "haq_steps"],
    "hygiene": ["haq_wash_body", "haq_tub_bath", "haq_toilet"],
    "reach": ["haq_reach_object", "haq_pick_clothing"],
    "grip": ["haq_car_doors", "haq_open_jars", "haq_faucets"],
    "activities": ["haq_errands", "haq_car_in_out", "haq_chores"],
}
LEVEL = ["no_difficulty", "some_difficulty", "much_difficulty", "unable"]


def _haq_answers(category_max: Mapping[str, int | None], **extra: Any) -> dict[str, Any]:
    answers: dict[str, Any] = {"aids_1_any": False, "help_1_any": False, "aids_2_any": False, "help_2_any": False}
    for category, items in HAQ_ITEMS.items():
        top = category_max.get(category)
        for n, item_id in enumerate(items):
            # first item carries the category maximum, the others are lower
            answers[item_id] = None if top is None else LEVEL[top if n == 0 else max(0, top - 1)]
    answers.update(extra)
    return answers


def _score(haq: Instrument, answers: Mapping[str, Any]) -> dict[str, Any]:
    score: dict[str, Any] = compute_scores(haq, answers, "A")["haq_di"]
    return score


def test_haq_di_index_is_the_exact_mean_of_category_maxima(haq: Instrument) -> None:
    maxima = {
        "dressing": 1,
        "arising": 2,
        "eating": 0,
        "walking": 3,
        "hygiene": 2,
        "reach": 1,
        "grip": 0,
        "activities": 1,
    }
    score = _score(haq, _haq_answers(maxima))
    assert score["categories"] == {k: float(v) for k, v in maxima.items()}
    assert score["index"] == 1.25  # 10 / 8
    assert score["answered_categories"] == 8


def test_an_aid_raises_its_category_to_two(haq: Instrument) -> None:
    maxima = dict.fromkeys(HAQ_ITEMS, 0)
    maxima["dressing"] = 1
    answers = _haq_answers(maxima, aids_1_any=True, aid_dressing=True, aid_cane=True)
    score = _score(haq, answers)
    assert score["categories"]["dressing"] == 2  # 1 -> 2 (dressing device)
    assert score["categories"]["walking"] == 2  # 0 -> 2 (cane)
    assert score["categories"]["eating"] == 0
    assert score["index"] == 4 / 8
    assert score["lifted_by_aids_or_help"] == ["dressing", "walking"]


def test_help_from_another_person_raises_its_category_but_never_lowers_a_three(haq: Instrument) -> None:
    maxima = dict.fromkeys(HAQ_ITEMS, 0)
    maxima["grip"] = 3
    answers = _haq_answers(maxima, help_2_any=True, help_grip=True, help_errands=True)
    score = _score(haq, answers)
    assert score["categories"]["grip"] == 3
    assert score["categories"]["activities"] == 2
    assert score["index"] == 5 / 8


def test_an_aid_does_not_score_a_category_with_no_answered_item(haq: Instrument) -> None:
    maxima: dict[str, int | None] = dict.fromkeys(HAQ_ITEMS, 1)
    maxima["walking"] = None
    score = _score(haq, _haq_answers(maxima, aids_1_any=True, aid_wheelchair=True))
    assert score["categories"]["walking"] is None
    assert score["answered_categories"] == 7
    assert score["index"] == 1.0


def test_haq_di_needs_six_answered_categories(haq: Instrument) -> None:
    five: dict[str, int | None] = {k: (2 if i < 5 else None) for i, k in enumerate(HAQ_ITEMS)}
    six: dict[str, int | None] = {k: (2 if i < 6 else None) for i, k in enumerate(HAQ_ITEMS)}
    assert _score(haq, _haq_answers(five))["index"] is None
    assert _score(haq, _haq_answers(five))["answered_categories"] == 5
    assert _score(haq, _haq_answers(six))["index"] == 2.0


def test_haq_di_walked_with_buttons_and_typed_bangla(haq: Instrument) -> None:
    overrides = {item_id: "কিছুটা অসুবিধা হয়" for items in HAQ_ITEMS.values() for item_id in items}
    overrides.update({"haq_steps": "৪", "help_1_any": "হ্যাঁ", "help_eating": "হ্যাঁ"})
    state, asked = walk(haq, ARM_B, overrides, no="না")
    assert "aid_cane" not in asked and "help_eating" in asked
    score = compute_scores(haq, state.answers, "B")["haq_di"]
    assert score["categories"]["walking"] == 3
    assert score["categories"]["eating"] == 2
    assert score["index"] == (1 + 1 + 2 + 3 + 1 + 1 + 1 + 1) / 8


def test_haq_di_with_skipped_items(haq: Instrument) -> None:
    overrides = {item_id: SKIP_VALUE for items in HAQ_ITEMS.values() for item_id in items}
    overrides["haq_dress"] = "2"
    state, _ = walk(haq, ARM_A, overrides)
    score = compute_scores(haq, state.answers, "A")["haq_di"]
    assert score["index"] is None and score["categories"]["dressing"] == 1


def test_haq_rule_scores_directly(haq: Instrument) -> None:
    rule = haq.scoring[0]
    result = haq_di(rule, haq, {"haq_dress": "unable"})  # type: ignore[arg-type]
    assert result.categories["dressing"] == 3 and result.index is None


def test_patient_global_and_raynaud_condition_scores(instruments: dict[str, Instrument]) -> None:
    pga = instruments["patient_global"]
    state = ok(answer(pga, start(pga, ARM_A), "৬", ARM_A))
    assert compute_scores(pga, state.answers, "A") == {"patient_global": 6}
    rcs = instruments["raynaud_condition_score"]
    on = Context(arm="A", today=TODAY, switches=frozenset({"raynaud_condition_score"}))
    state = ok(answer(rcs, start(rcs, on), "3", on))
    assert compute_scores(rcs, state.answers, "A", on.switches) == {"rcs": 3}
    with pytest.raises(ValueError, match="not available"):
        start(rcs, ARM_A)


def test_check_in_summary_lists_grades_and_the_maximum(weekly: Instrument) -> None:
    state, _ = walk(weekly, ARM_A, {"skin_any": "yes", "itching": "severe", "hair_loss": "mild"})
    summary = compute_scores(weekly, state.answers, "A")["symptoms"]
    assert summary["max_grade"] == 3
    assert summary["present"] == ["itching", "hair_loss"]
    assert len(summary["grades"]) == 24 and summary["grades"]["nausea"] == 0


# --- bad input never raises and never changes what is stored -------------------------------

NASTY = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(min_codepoint=0x0980, max_codepoint=0x09FF), max_size=20),
    st.text(alphabet=st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), min_size=1, max_size=10),
    st.text(alphabet="0123456789০১২৩৪৫৬৭৮৯.,-/ °CFcf", max_size=15),
    st.text(min_size=1, max_size=3).map(lambda s: (s * 4096)[:4096]),
    st.sampled_from(["\x00", "\u200d", "💩" * 2048, "١٢", "NaN", "inf", "1e309", "9" * 5000, "__skip__x"]),
)

POSITIONS = [
    ("weekly_checkin", "rf_mtx_extra_dose", {}),
    ("weekly_checkin", "nausea", {"mouth_stomach_any": "yes"}),
    ("weekly_checkin", "fever_temp", FEVER),
    ("weekly_checkin", "anything_else", {}),
    ("ae_report", "ae_start", {}),
    ("ae_report", "ae_what_other", {"ae_what": "other"}),
    ("patient_global", "pga", {}),
    ("haq_di", "haq_shampoo", {}),
]


@pytest.fixture(scope="module")
def positions(instruments: dict[str, Instrument]) -> list[tuple[Instrument, State]]:
    return [
        (instruments[name], go_to(instruments[name], ARM_B, item_id, overrides))
        for name, item_id, overrides in POSITIONS
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=NASTY, which=st.integers(min_value=0, max_value=len(POSITIONS) - 1))
def test_arbitrary_input_never_raises_nor_changes_stored_answers(
    positions: list[tuple[Instrument, State]], raw: str, which: int
) -> None:
    instrument, state = positions[which]
    before = copy.deepcopy(state.to_dict())
    result = answer(instrument, state, raw, ARM_B)
    assert state.to_dict() == before  # the input state is never mutated
    if isinstance(result, AnswerError):
        assert result.code in {
            "expected_button",
            "not_a_number",
            "not_whole_number",
            "out_of_range",
            "bad_date",
            "date_in_future",
            "date_too_old",
            "too_long",
            "empty",
            "not_skippable",
            "nothing_before",
        }
        json.dumps(result.to_dict())
    else:
        earlier = {k: v for k, v in before["answers"].items() if k != state.current}
        assert {k: result.answers[k] for k in earlier} == earlier
        json.dumps(result.to_dict())


def test_a_non_text_message_asks_for_a_button(weekly: Instrument) -> None:
    """A photo, sticker or voice note reaches the engine as no text at all."""
    state = start(weekly, ARM_A)
    error = err(answer(weekly, state, None, ARM_A))  # type: ignore[arg-type]
    assert error.code == "expected_button"


def test_a_stored_state_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(StateError):
        State.from_dict(["not", "a", "state"])  # type: ignore[arg-type]
