"""The shipped instrument files, and the loader's refusal of broken ones.

Each broken-file test writes a small YAML into tmp_path and checks that the
error names the file and the item, so the study team can find what to fix.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from domain.questionnaires import Context, is_available, load_instruments, options
from domain.questionnaires.loader import load_instrument_file
from domain.questionnaires.model import (
    HaqDiRule,
    Instrument,
    InstrumentError,
    NumberItem,
    SingleChoiceItem,
    Text,
    YesNoItem,
)
from domain.triage import load_triage_table

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "content" / "instruments"
TRIAGE_FILE = ROOT / "content" / "triage.yaml"

ROUTINE_SYMPTOMS = {
    "nausea",
    "vomiting",
    "appetite_loss",
    "mouth_sores",
    "heartburn",
    "swallowing",
    "diarrhoea",
    "constipation",
    "bloating",
    "belly_pain",
    "cough",
    "breathless",
    "rash",
    "itching",
    "hair_loss",
    "bruising",
    "fatigue",
    "headache",
    "dizziness",
    "joint_pain",
    "muscle_pain",
    "raynaud",
    "finger_ulcers",
}
MTX_FLAGS = {
    "rf_mtx_extra_dose",
    "rf_mtx_lung",
    "rf_mtx_infection",
    "rf_mtx_bleeding",
    "rf_mtx_mouth",
    "rf_mtx_liver",
    "rf_mtx_skin",
    "rf_mtx_pregnancy",
}
BARI_FLAGS = {
    "rf_bari_infection",
    "rf_bari_shingles",
    "rf_bari_clot",
    "rf_bari_heart_stroke",
    "rf_bari_belly",
    "rf_bari_pregnancy",
}
SSC_FLAGS = {
    "rf_ssc_headache_vision",
    "rf_ssc_blood_pressure",
    "rf_ssc_urine",
    "rf_ssc_ulcer",
    "rf_ssc_breathless",
}


@pytest.fixture(scope="module")
def instruments() -> dict[str, Instrument]:
    return load_instruments(CONTENT)


def _texts(node: object, path: str = "") -> Iterator[tuple[str, Text]]:
    if isinstance(node, Text):
        yield path, node
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _texts(getattr(node, name), f"{path}.{name}")
    elif isinstance(node, list | tuple):
        for i, child in enumerate(node):
            yield from _texts(child, f"{path}[{i}]")
    elif isinstance(node, dict):
        for key, child in node.items():
            yield from _texts(child, f"{path}.{key}")


# --- the shipped files ---------------------------------------------------------


def test_shipped_instruments_load(instruments: dict[str, Instrument]) -> None:
    assert set(instruments) == {
        "weekly_checkin",
        "ae_report",
        "patient_global",
        "haq_di",
        "raynaud_condition_score",
    }


def test_every_participant_facing_text_has_english_and_bangla(
    instruments: dict[str, Instrument],
) -> None:
    count = 0
    for instrument in instruments.values():
        for path, text in _texts(instrument):
            assert (text.en or "").strip(), f"{instrument.id}{path}: English missing"
            assert (text.bn or "").strip(), f"{instrument.id}{path}: Bangla missing"
            count += 1
    assert count > 300


def test_bangla_text_writes_numbers_in_bengali_digits(instruments: dict[str, Instrument]) -> None:
    for instrument in instruments.values():
        for path, text in _texts(instrument):
            assert not re.search(r"[0-9]", text.bn or ""), f"{instrument.id}{path}: {text.bn}"


def test_triage_advice_has_english_and_bangla_with_bengali_digits() -> None:
    table = load_triage_table(TRIAGE_FILE)
    for key, advice in table.advice.items():
        assert advice.text.en and advice.text.bn, key
        assert "{phone}" in advice.text.en and "{phone}" in advice.text.bn, key
        assert not re.search(r"[0-9]", advice.text.bn), key


def test_no_licensed_instrument_is_shipped(instruments: dict[str, Instrument]) -> None:
    forbidden = ("pro-ctcae", "shaq", "ucla", "git 2.0", "eq-5d", "euroqol")
    for instrument in instruments.values():
        label = f"{instrument.id} {instrument.title.en}".lower()
        assert not any(name in label for name in forbidden), instrument.id
    comment = (CONTENT / "weekly_checkin.yaml").read_text(encoding="utf-8")
    assert "Not PRO-CTCAE" in comment and "EQ-5D" in comment


def test_weekly_checkin_captures_every_routine_symptom_and_fever(
    instruments: dict[str, Instrument],
) -> None:
    weekly = instruments["weekly_checkin"]
    codes = {item.symptom.code for item in weekly.items if item.symptom is not None}
    assert codes == ROUTINE_SYMPTOMS | {"fever"}
    assert weekly.recall is not None and weekly.recall.en == "the last 7 days"


def test_routine_symptoms_use_five_plain_severity_words(instruments: dict[str, Instrument]) -> None:
    weekly = instruments["weekly_checkin"]
    for code in ROUTINE_SYMPTOMS:
        item = weekly.item(code)
        assert isinstance(item, SingleChoiceItem)
        assert [c.value for c in item.choices] == [
            "none",
            "mild",
            "moderate",
            "severe",
            "very_severe",
        ]
        assert [c.grade for c in item.choices] == [0, 1, 2, 3, 3]
        assert item.value_if_hidden == "none"  # a "no" gate still records the symptom


def test_each_routine_symptom_is_behind_one_body_area_gate(instruments: dict[str, Instrument]) -> None:
    weekly = instruments["weekly_checkin"]
    gates: dict[str, set[str]] = {}
    for code in ROUTINE_SYMPTOMS:
        show_if = weekly.item(code).show_if
        assert show_if is not None and show_if.item is not None
        assert isinstance(weekly.item(show_if.item), YesNoItem)
        gates.setdefault(show_if.item, set()).add(code)
    assert len(gates) == 6
    assert max(len(v) for v in gates.values()) <= 6


def test_fever_asks_highest_temperature_in_celsius_with_a_plausible_range(
    instruments: dict[str, Instrument],
) -> None:
    temp = instruments["weekly_checkin"].item("fever_temp")
    assert isinstance(temp, NumberItem)
    assert (temp.min, temp.max, temp.decimals) == (34, 43, 1)
    assert temp.unit is not None and temp.unit.en == "°C"
    assert temp.optional


@pytest.mark.parametrize("instrument_id", ["weekly_checkin", "ae_report"])
def test_red_flags_are_asked_per_arm(instruments: dict[str, Instrument], instrument_id: str) -> None:
    instrument = instruments[instrument_id]
    by_arm: dict[str, set[str]] = {"A": set(), "B": set(), "both": set()}
    for item in instrument.items:
        if item.id.startswith("rf_"):
            key = "both" if item.arms is None else "".join(item.arms)
            by_arm[key].add(item.id)
            assert isinstance(item, YesNoItem) and not item.optional
            assert item.red_flags, item.id
    assert by_arm == {"A": BARI_FLAGS, "B": MTX_FLAGS, "both": SSC_FLAGS}


def test_ae_report_asks_every_self_reportable_seriousness_criterion(
    instruments: dict[str, Instrument],
) -> None:
    ae = instruments["ae_report"]
    criteria = {item.seriousness.criterion for item in ae.items if item.seriousness is not None}
    assert criteria == {2, 3, 4, 5, 6}  # 1 (death) is not self-reported
    assert ae.item("ser_birth_defect").show_if is not None  # only where relevant


def test_ae_report_asks_red_flags_and_seriousness_right_after_what_the_problem_is(
    instruments: dict[str, Instrument],
) -> None:
    ids = [item.id for item in instruments["ae_report"].items]
    safety = [i for i, item_id in enumerate(ids) if item_id.startswith(("ser_", "rf_")) or item_id == "ae_pregnancy"]
    descriptive = [ids.index(item_id) for item_id in ("ae_what_other", "ae_start", "ae_severity", "ae_more")]
    assert ids[0] == "ae_what"
    assert safety == list(range(1, len(safety) + 1))  # one block straight after "what is the problem"
    assert max(safety) < min(descriptive)


@pytest.mark.parametrize("item_id", ["rf_mtx_pregnancy", "rf_bari_pregnancy"])
@pytest.mark.parametrize("instrument_id", ["weekly_checkin", "ae_report"])
def test_the_pregnancy_red_flag_asks_about_now_in_both_languages(
    instruments: dict[str, Instrument], instrument_id: str, item_id: str
) -> None:
    item = instruments[instrument_id].item(item_id)
    assert item.text.en == "Are you pregnant now, or could you be?"
    assert item.text.bn == "আপনি কি এখন গর্ভবতী, বা গর্ভবতী হয়ে থাকতে পারেন?"  # CLINICAL.md, word for word
    assert "গর্ভবতী হতে পারেন" not in (item.text.bn or "")  # "can you become pregnant?"


def test_the_pregnancy_report_names_wife_or_husband_not_partner(instruments: dict[str, Instrument]) -> None:
    item = instruments["ae_report"].item("ae_pregnancy")
    assert "আপনার স্ত্রী / স্বামী" in (item.text.bn or "") and "সঙ্গী" not in (item.text.bn or "")
    assert [(f.code, f.arms, f.advice) for f in item.red_flags] == [("bari_pregnancy", ["A"], "hold_baricitinib_call")]


def test_criterion_6_is_asked_as_urgent_treatment_even_without_admission(instruments: dict[str, Instrument]) -> None:
    item = instruments["ae_report"].item("ser_emergency")
    assert item.seriousness is not None and item.seriousness.criterion == 6
    assert (
        item.text.en
        == "Did a doctor have to treat it urgently to stop it becoming dangerous, even without admission to hospital?"
    )
    assert "বিপজ্জনক" in (item.text.bn or "") and "জরুরি চিকিৎসা" in (item.text.bn or "")
    assert "ভর্তি না হলেও" in (item.text.bn or "")
    assert item.help is not None and "emergency department" in (item.help.en or "")  # an example, not the question


def test_ae_report_how_bad_uses_plain_words(instruments: dict[str, Instrument]) -> None:
    item = instruments["ae_report"].item("ae_severity")
    assert isinstance(item, SingleChoiceItem)
    labels = [c.label.en or "" for c in item.choices]
    assert any("stops me doing my daily tasks" in label for label in labels)
    assert any("stops me looking after myself" in label for label in labels)
    assert [c.grade for c in item.choices] == [1, 2, 3]


def test_haq_di_has_20_items_in_8_categories_scored_0_to_3(
    instruments: dict[str, Instrument],
) -> None:
    haq = instruments["haq_di"]
    rule = haq.scoring[0]
    assert isinstance(rule, HaqDiRule)
    categories = rule.categories
    assert len(categories) == 8
    items = [item_id for category in categories for item_id in category.items]
    assert len(items) == len(set(items)) == 20
    for item_id in items:
        item = haq.item(item_id)
        assert isinstance(item, SingleChoiceItem)
        assert [c.score for c in item.choices] == [0, 1, 2, 3]
        assert item.choices[0].label.en == "Without ANY difficulty"
        assert item.choices[3].label.en == "UNABLE to do"
    assert all(category.help for category in categories)
    assert rule.min_categories == 6


def test_haq_di_bangla_is_marked_unvalidated_with_a_note(instruments: dict[str, Instrument]) -> None:
    haq = instruments["haq_di"]
    assert haq.validated.en is True
    assert haq.validated.bn is False
    assert haq.validation_note is not None and "must approve" in haq.validation_note


def test_raynaud_condition_score_is_switchable_and_off_by_default(
    instruments: dict[str, Instrument],
) -> None:
    from datetime import date

    rcs = instruments["raynaud_condition_score"]
    assert rcs.switchable and rcs.enabled_by == "raynaud_condition_score"
    off = Context(arm="A", today=date(2026, 1, 1))
    on = Context(arm="A", today=date(2026, 1, 1), switches=frozenset({"raynaud_condition_score"}))
    assert not is_available(rcs, off)
    assert is_available(rcs, on)


def test_patient_global_is_a_0_to_10_scale_at_visit_weeks(instruments: dict[str, Instrument]) -> None:
    pga = instruments["patient_global"]
    assert pga.items[0].type == "scale_0_10"
    assert pga.visit_weeks == [0, 4, 12, 24]


def test_every_button_fits_in_telegram_callback_data(instruments: dict[str, Instrument]) -> None:
    for instrument in instruments.values():
        for item in instrument.items:
            for option in options(item, "bn"):
                data = f"{instrument.id}:{item.id}:{option.value}"
                assert len(data.encode()) <= 64, data


# --- broken files ------------------------------------------------------------------

T = {"en": "Question?", "bn": "প্রশ্ন?"}


def _base() -> dict[str, Any]:
    return {
        "id": "tiny",
        "version": "1",
        "title": {"en": "Tiny", "bn": "ছোট"},
        "validated": {"en": False, "bn": False},
        "items": [
            {"id": "fever", "type": "yes_no", "text": dict(T)},
            {
                "id": "fever_temp",
                "type": "number",
                "min": 34,
                "max": 43,
                "decimals": 1,
                "text": dict(T),
                "show_if": {"item": "fever", "equals": True},
            },
            {
                "id": "colour",
                "type": "single_choice",
                "text": dict(T),
                "choices": [
                    {"value": "red", "label": {"en": "Red", "bn": "লাল"}},
                    {"value": "blue", "label": {"en": "Blue", "bn": "নীল"}},
                ],
            },
            {"id": "note", "type": "free_text", "optional": True, "text": dict(T)},
        ],
    }


def _write(tmp_path: Path, data: Any, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _refused(tmp_path: Path, data: Any) -> str:
    with pytest.raises(InstrumentError) as info:
        load_instrument_file(_write(tmp_path, data))
    return str(info.value)


def _item(data: dict[str, Any], item_id: str) -> dict[str, Any]:
    return next(i for i in data["items"] if i["id"] == item_id)


def test_the_minimal_instrument_used_below_is_valid(tmp_path: Path) -> None:
    assert load_instrument_file(_write(tmp_path, _base())).id == "tiny"


def _mutate_show_if_unknown(d: dict[str, Any]) -> None:
    _item(d, "fever_temp")["show_if"] = {"item": "fevr", "equals": True}


def _mutate_show_if_later(d: dict[str, Any]) -> None:
    _item(d, "fever")["show_if"] = {"item": "colour", "equals": "red"}


def _mutate_show_if_self(d: dict[str, Any]) -> None:
    _item(d, "fever_temp")["show_if"] = {"item": "fever_temp", "greater_than": 1}


def _mutate_show_if_bad_choice(d: dict[str, Any]) -> None:
    _item(d, "note")["show_if"] = {"item": "colour", "in": ["red", "green"]}


def _mutate_show_if_yes_as_string(d: dict[str, Any]) -> None:
    _item(d, "fever_temp")["show_if"] = {"item": "fever", "equals": "yes"}


def _mutate_show_if_compare_choice(d: dict[str, Any]) -> None:
    _item(d, "note")["show_if"] = {"item": "colour", "greater_than": 2}


def _mutate_show_if_two_operators(d: dict[str, Any]) -> None:
    _item(d, "fever_temp")["show_if"] = {"item": "fever", "equals": True, "answered": True}


def _mutate_show_if_nested_unknown(d: dict[str, Any]) -> None:
    _item(d, "note")["show_if"] = {
        "any_of": [{"item": "fever", "equals": True}, {"not": {"item": "colr", "equals": "red"}}]
    }


def _mutate_duplicate_item(d: dict[str, Any]) -> None:
    d["items"].append({"id": "fever", "type": "yes_no", "text": dict(T)})


def _mutate_duplicate_choice_value(d: dict[str, Any]) -> None:
    _item(d, "colour")["choices"][1]["value"] = "red"


def _mutate_duplicate_choice_label(d: dict[str, Any]) -> None:
    _item(d, "colour")["choices"][1]["label"] = {"en": "Red", "bn": "নীল"}


def _mutate_choice_value_pattern(d: dict[str, Any]) -> None:
    _item(d, "colour")["choices"][0]["value"] = "Red Colour"


def _mutate_choice_value_bool(d: dict[str, Any]) -> None:
    _item(d, "colour")["choices"][0]["value"] = True  # YAML `value: yes`


def _mutate_choice_label_number(d: dict[str, Any]) -> None:
    _item(d, "colour")["choices"][0]["aliases"] = ["2"]


def _mutate_choice_label_reserved(d: dict[str, Any]) -> None:
    _item(d, "colour")["choices"][0]["aliases"] = ["skip"]


def _mutate_missing_bn(d: dict[str, Any]) -> None:
    del _item(d, "fever")["text"]["bn"]


def _mutate_empty_en(d: dict[str, Any]) -> None:
    _item(d, "fever")["text"]["en"] = "   "


def _mutate_choice_label_missing_bn(d: dict[str, Any]) -> None:
    del _item(d, "colour")["choices"][0]["label"]["bn"]


def _mutate_title_missing_bn(d: dict[str, Any]) -> None:
    del d["title"]["bn"]


def _mutate_number_range(d: dict[str, Any]) -> None:
    _item(d, "fever_temp").update({"min": 43, "max": 34})


def _mutate_number_decimals(d: dict[str, Any]) -> None:
    _item(d, "fever_temp")["decimals"] = 7


def _mutate_alt_unit_overlap(d: dict[str, Any]) -> None:
    _item(d, "fever_temp")["alt_units"] = [
        {"unit": {"en": "°F", "bn": "°ফা"}, "min": 40, "max": 110, "infer_from_range": True}
    ]


def _mutate_free_text_length(d: dict[str, Any]) -> None:
    _item(d, "note")["max_length"] = 0


def _mutate_scale_range(d: dict[str, Any]) -> None:
    d["items"].append(
        {
            "id": "pain",
            "type": "scale_0_10",
            "min": 8,
            "max": 3,
            "text": dict(T),
            "min_label": dict(T),
            "max_label": dict(T),
        }
    )


def _mutate_unknown_type(d: dict[str, Any]) -> None:
    _item(d, "fever")["type"] = "multi_choice"


def _mutate_unknown_field(d: dict[str, Any]) -> None:
    _item(d, "fever_temp")["show_iff"] = {"item": "fever", "equals": True}


def _mutate_bad_item_id(d: dict[str, Any]) -> None:
    _item(d, "note")["id"] = "Note Field"


def _mutate_red_flag_advice(d: dict[str, Any]) -> None:
    _item(d, "fever")["red_flags"] = [{"code": "x", "advice": "Pray now!", "reason": dict(T)}]


def _mutate_red_flag_without_when(d: dict[str, Any]) -> None:
    _item(d, "fever_temp")["red_flags"] = [{"code": "hot", "advice": "call_today", "reason": dict(T)}]


def _mutate_red_flag_reason_missing_bn(d: dict[str, Any]) -> None:
    _item(d, "fever")["red_flags"] = [{"code": "hot", "advice": "call_today", "reason": {"en": "Hot"}}]


def _mutate_red_flag_arm(d: dict[str, Any]) -> None:
    item = _item(d, "fever")
    item["arms"] = ["A"]
    item["red_flags"] = [{"code": "hot", "advice": "call_today", "reason": dict(T), "arms": ["B"]}]


def _mutate_item_arm(d: dict[str, Any]) -> None:
    d["applies_to"] = ["A"]
    _item(d, "fever")["arms"] = ["B"]


def _mutate_seriousness_criterion(d: dict[str, Any]) -> None:
    _item(d, "fever")["seriousness"] = {"criterion": 7}


def _mutate_symptom_without_grades(d: dict[str, Any]) -> None:
    _item(d, "colour")["symptom"] = {"code": "colour", "name": dict(T)}


def _mutate_symptom_number_without_rules(d: dict[str, Any]) -> None:
    _item(d, "fever_temp")["symptom"] = {"code": "fever", "name": dict(T)}


def _mutate_value_if_hidden(d: dict[str, Any]) -> None:
    _item(d, "fever_temp")["value_if_hidden"] = 99


def _mutate_value_if_hidden_no_gate(d: dict[str, Any]) -> None:
    _item(d, "colour")["value_if_hidden"] = "red"


def _mutate_grade_rule_bad_ref(d: dict[str, Any]) -> None:
    _item(d, "fever_temp")["symptom"] = {"code": "fever", "name": dict(T)}
    _item(d, "fever_temp")["grade_rules"] = [{"when": {"item": "note", "answered": True}, "grade": 1}]


def _mutate_unknown_choice_set(d: dict[str, Any]) -> None:
    item = _item(d, "colour")
    del item["choices"]
    item["choice_set"] = "sev"


def _mutate_scoring_unknown_item(d: dict[str, Any]) -> None:
    d["scoring"] = [{"id": "total", "kind": "value", "item": "nope"}]


def _mutate_haq_without_scores(d: dict[str, Any]) -> None:
    d["scoring"] = [
        {
            "id": "haq",
            "kind": "haq_di",
            "min_categories": 1,
            "categories": [{"id": "c", "label": dict(T), "items": ["colour"], "aids": ["fever"]}],
        }
    ]


def _mutate_haq_aid_not_yes_no(d: dict[str, Any]) -> None:
    for choice in _item(d, "colour")["choices"]:
        choice["score"] = 1
    d["scoring"] = [
        {
            "id": "haq",
            "kind": "haq_di",
            "min_categories": 1,
            "categories": [{"id": "c", "label": dict(T), "items": ["colour"], "aids": ["note"]}],
        }
    ]


def _mutate_switchable(d: dict[str, Any]) -> None:
    d["switchable"] = True


def _mutate_missing_items(d: dict[str, Any]) -> None:
    del d["items"]


BROKEN = [
    (
        "show_if unknown item",
        _mutate_show_if_unknown,
        "bad.yaml: item 'fever_temp': show_if refers to unknown item 'fevr'",
    ),
    ("show_if later item", _mutate_show_if_later, "bad.yaml: item 'fever': show_if refers to later item 'colour'"),
    ("show_if itself", _mutate_show_if_self, "bad.yaml: item 'fever_temp': show_if refers to item 'fever_temp' itself"),
    (
        "show_if value not a choice",
        _mutate_show_if_bad_choice,
        "bad.yaml: item 'note': show_if compares 'colour' with 'green'",
    ),
    (
        "show_if yes as a string",
        _mutate_show_if_yes_as_string,
        "bad.yaml: item 'fever_temp': show_if compares 'fever' with 'yes'",
    ),
    (
        "show_if number test on choice",
        _mutate_show_if_compare_choice,
        "bad.yaml: item 'note': show_if compares 'colour' with 'greater_than' but it is not a number",
    ),
    (
        "show_if two operators",
        _mutate_show_if_two_operators,
        "bad.yaml: item 'fever_temp': show_if: Value error, a condition needs exactly one of",
    ),
    (
        "nested show_if unknown item",
        _mutate_show_if_nested_unknown,
        "bad.yaml: item 'note': show_if refers to unknown item 'colr'",
    ),
    ("duplicate item id", _mutate_duplicate_item, "bad.yaml: item 'fever': duplicate item id"),
    (
        "duplicate choice value",
        _mutate_duplicate_choice_value,
        "bad.yaml: item 'colour': choice value 'red' is used twice",
    ),
    (
        "duplicate choice label",
        _mutate_duplicate_choice_label,
        "bad.yaml: item 'colour': choices 'red' and 'blue' share the label 'red'",
    ),
    (
        "choice value not a short code",
        _mutate_choice_value_pattern,
        "bad.yaml: item 'colour': choices.0.value: String should match pattern",
    ),
    (
        "choice value parsed as boolean",
        _mutate_choice_value_bool,
        "bad.yaml: item 'colour': choices.0.value: Input should be a valid string",
    ),
    (
        "alias that looks like a number",
        _mutate_choice_label_number,
        "bad.yaml: item 'colour': choice 'red': '2' looks like a choice number",
    ),
    (
        "alias reserved for skip",
        _mutate_choice_label_reserved,
        "bad.yaml: item 'colour': choice 'red': 'skip' is reserved",
    ),
    ("text without Bangla", _mutate_missing_bn, "bad.yaml: item 'fever': text.bn is missing or empty"),
    ("blank English", _mutate_empty_en, "bad.yaml: item 'fever': text.en is missing or empty"),
    (
        "choice label without Bangla",
        _mutate_choice_label_missing_bn,
        "bad.yaml: item 'colour': choices[0].label.bn is missing or empty",
    ),
    ("title without Bangla", _mutate_title_missing_bn, "bad.yaml: instrument: title.bn is missing or empty"),
    (
        "number min above max",
        _mutate_number_range,
        "bad.yaml: item 'fever_temp': number range min 43.0 must be below max 34.0",
    ),
    (
        "too many decimals",
        _mutate_number_decimals,
        "bad.yaml: item 'fever_temp': decimals: Input should be less than or equal to 4",
    ),
    (
        "alternative unit overlapping",
        _mutate_alt_unit_overlap,
        "bad.yaml: item 'fever_temp': alt unit '°F' range overlaps the main range",
    ),
    (
        "free text max_length 0",
        _mutate_free_text_length,
        "bad.yaml: item 'note': max_length: Input should be greater than or equal to 1",
    ),
    ("scale min above max", _mutate_scale_range, "bad.yaml: item 'pain': scale range 8..3 must lie within 0..10"),
    (
        "unknown item type",
        _mutate_unknown_type,
        "bad.yaml: item 'fever': Input tag 'multi_choice' found using 'type' does not match",
    ),
    ("misspelt field", _mutate_unknown_field, "bad.yaml: item 'fever_temp': show_iff: Extra inputs are not permitted"),
    ("bad item id", _mutate_bad_item_id, "bad.yaml: item 'Note Field': id: String should match pattern"),
    (  # a well-formed key the triage table lacks is refused by load_content (tests/test_triage.py)
        "advice key that is not a key",
        _mutate_red_flag_advice,
        "bad.yaml: item 'fever': red_flags.0.advice: String should match pattern",
    ),
    (
        "red flag on a number without when",
        _mutate_red_flag_without_when,
        "bad.yaml: item 'fever_temp': red flag 'hot' needs 'when'",
    ),
    (
        "red flag reason without Bangla",
        _mutate_red_flag_reason_missing_bn,
        "bad.yaml: item 'fever': red_flags[0].reason.bn is missing or empty",
    ),
    (
        "red flag for an arm that never sees the item",
        _mutate_red_flag_arm,
        "bad.yaml: item 'fever': red flag 'hot' arms ['B'] never see this item",
    ),
    (
        "item arm outside applies_to",
        _mutate_item_arm,
        "bad.yaml: item 'fever': arms ['B'] are not in the instrument's applies_to",
    ),
    (
        "seriousness criterion 7",
        _mutate_seriousness_criterion,
        "bad.yaml: item 'fever': seriousness.criterion: Input should be less than or equal to 6",
    ),
    (
        "symptom without grades",
        _mutate_symptom_without_grades,
        "bad.yaml: item 'colour': symptom needs a grade on every choice",
    ),
    (
        "number symptom without grade rules",
        _mutate_symptom_number_without_rules,
        "bad.yaml: item 'fever_temp': symptom needs grade_rules",
    ),
    (
        "value_if_hidden out of range",
        _mutate_value_if_hidden,
        "bad.yaml: item 'fever_temp': value_if_hidden 99 is not a possible answer",
    ),
    (
        "value_if_hidden without a gate",
        _mutate_value_if_hidden_no_gate,
        "bad.yaml: item 'colour': value_if_hidden needs a show_if",
    ),
    (
        "grade rule reading a later item",
        _mutate_grade_rule_bad_ref,
        "bad.yaml: item 'fever_temp': grade_rules when refers to later item 'note'",
    ),
    ("unknown choice set", _mutate_unknown_choice_set, "bad.yaml: item 'colour': unknown choice_set 'sev'"),
    (
        "scoring of an unknown item",
        _mutate_scoring_unknown_item,
        "bad.yaml: scoring 'total': refers to unknown item 'nope'",
    ),
    (
        "HAQ item without scores",
        _mutate_haq_without_scores,
        "bad.yaml: scoring 'haq': category 'c': item 'colour' needs a score on every choice",
    ),
    (
        "HAQ aid that is not yes/no",
        _mutate_haq_aid_not_yes_no,
        "bad.yaml: scoring 'haq': category 'c': aid/help item 'note' must be yes_no",
    ),
    ("switchable without switch", _mutate_switchable, "bad.yaml: instrument: switchable needs enabled_by"),
    ("no items", _mutate_missing_items, "bad.yaml: instrument: items: Field required"),
]


@pytest.mark.parametrize(("mutate", "expected"), [(m, e) for _, m, e in BROKEN], ids=[name for name, _, _ in BROKEN])
def test_broken_instrument_is_refused_naming_file_and_item(tmp_path: Path, mutate: Any, expected: str) -> None:
    data = copy.deepcopy(_base())
    mutate(data)
    message = _refused(tmp_path, data)
    assert expected in message, message


def test_invalid_yaml_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("id: tiny\nitems: [\n", encoding="utf-8")
    with pytest.raises(InstrumentError, match=r"^bad\.yaml: not valid YAML"):
        load_instrument_file(path)


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InstrumentError, match=r"^bad\.yaml: the file must be a mapping"):
        load_instrument_file(_write(tmp_path, ["just", "a", "list"]))


def test_a_key_written_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("id: tiny\nversion: '1'\ntitle: {en: A, en: B}\n", encoding="utf-8")
    with pytest.raises(InstrumentError, match=r"bad\.yaml: not valid YAML.*key 'en' appears twice"):
        load_instrument_file(path)


def test_two_files_with_the_same_instrument_id_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, _base(), "a.yaml")
    _write(tmp_path, _base(), "b.yaml")
    with pytest.raises(InstrumentError, match=r"^b\.yaml: instrument id 'tiny' is already used by a\.yaml"):
        load_instruments(tmp_path)


def test_a_missing_include_is_refused(tmp_path: Path) -> None:
    data = _base()
    data["items"].insert(0, {"include": "_missing.yaml"})
    assert "bad.yaml: items entry 1: included file '_missing.yaml' not found" in _refused(tmp_path, data)


def test_an_error_in_an_included_item_names_the_fragment(tmp_path: Path) -> None:
    fragment = {"items": [{"id": "rf_x", "type": "yes_no", "text": {"en": "Bad?"}}]}
    _write(tmp_path, fragment, "_frag.yaml")
    data = _base()
    data["items"].append({"include": "_frag.yaml"})
    message = _refused(tmp_path, data)
    assert "bad.yaml: item 'rf_x' (from _frag.yaml): text.bn is missing or empty" in message


def test_fragments_are_not_loaded_as_instruments(tmp_path: Path) -> None:
    _write(tmp_path, _base(), "tiny.yaml")
    _write(tmp_path, {"items": []}, "_fragment.yaml")
    assert list(load_instruments(tmp_path)) == ["tiny"]


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InstrumentError, match="not a directory"):
        load_instruments(tmp_path / "nowhere")


def test_an_english_only_licensed_instrument_can_be_loaded_verbatim(tmp_path: Path) -> None:
    """A future official PRO-CTCAE file: declared English-only, text used as written."""
    verbatim = "In the last 7 days, what was the SEVERITY of your NAUSEA at its WORST?"
    data = {
        "id": "official",
        "version": "v1.0",
        "title": {"en": "Official instrument"},
        "languages": ["en"],
        "validated": {"en": True, "bn": False},
        "items": [
            {
                "id": "item_1",
                "type": "single_choice",
                "code": "1a",
                "text": {"en": verbatim},
                "choices": [
                    {"value": "0", "label": {"en": "None"}},
                    {"value": "1", "label": {"en": "Mild"}},
                    {"value": "2", "label": {"en": "Moderate"}},
                    {"value": "3", "label": {"en": "Severe"}},
                    {"value": "4", "label": {"en": "Very severe"}},
                ],
            }
        ],
    }
    instrument = load_instrument_file(_write(tmp_path, data, "official.yaml"))
    assert instrument.items[0].text.get("en") == verbatim
    assert instrument.items[0].text.get("bn") == verbatim  # falls back, never reworded
