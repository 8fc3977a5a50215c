"""Safety triage: one test per rule in CLINICAL.md, answered in English and in Bangla.

Each test walks the real shipped questionnaire with typed answers (English
words, or Bangla words and Bengali digits), then triages the answers.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from domain.content import CONTENT_DIR, load_content
from domain.questionnaires import (
    SKIP_VALUE,
    AnswerError,
    Context,
    Instrument,
    InstrumentError,
    State,
    answer,
    current_item,
    is_available,
    load_instruments,
    start,
)
from domain.questionnaires.model import Item
from domain.triage import (
    Level,
    TriageResult,
    TriageTableError,
    advice_text,
    check_cross_checks,
    double_dose,
    load_triage_table,
    triage,
)

ROOT = Path(__file__).resolve().parents[1]
TODAY = date(2026, 11, 22)

# (yes word, no word, language) as a participant would type them
ENGLISH = ("yes", "no", "en")
BANGLA = ("হ্যাঁ", "না", "bn")
LANGUAGES = pytest.mark.parametrize("words", [ENGLISH, BANGLA], ids=["typed-en", "typed-bn"])

TRIAGE_FILE = CONTENT_DIR / "triage.yaml"
TABLE = load_triage_table(TRIAGE_FILE)


@pytest.fixture(scope="module")
def instruments() -> dict[str, Instrument]:
    return load_instruments(ROOT / "content" / "instruments")


def _default(item: Item, no: str) -> str:
    if item.type == "yes_no":
        return no
    if item.type == "single_choice":
        return "1"
    if item.type == "date":
        return "today"
    if item.type == "scale_0_10":
        return "0"
    return SKIP_VALUE if item.optional else "text"


def run(instrument: Instrument, arm: str, words: tuple[str, str, str], typed: Mapping[str, str] | None = None) -> State:
    """Walk the questionnaire typing `typed` answers (and the language's 'no' elsewhere)."""
    _, no, language = words
    ctx = Context(arm=arm, today=TODAY, language=language)  # type: ignore[arg-type]
    typed = typed or {}
    state = start(instrument, ctx)
    while (item := current_item(instrument, state, ctx)) is not None:
        result = answer(instrument, state, typed.get(item.id, _default(item, no)), ctx)
        assert not isinstance(result, AnswerError), (item.id, result)
        state = result
    return state


def check(
    instrument: Instrument,
    arm: str,
    words: tuple[str, str, str],
    typed: Mapping[str, str] | None = None,
    previous: Mapping[str, int] | None = None,
) -> TriageResult:
    state = run(instrument, arm, words, typed)
    return triage(instrument, state.answers, arm, previous, table=TABLE)


def assert_nothing_raised(result: TriageResult) -> None:
    assert result.level is Level.ROUTINE
    assert result.red_flags == () and result.seriousness == ()
    assert result.advice == () and result.reasons == ()


# --- red flags: each "yes" is an urgent alert --------------------------------------------

MTX_FLAGS = {
    "rf_mtx_extra_dose": ("mtx_extra_dose", "stop_mtx_call"),
    "rf_mtx_lung": ("mtx_pneumonitis", "stop_mtx_call"),
    "rf_mtx_infection": ("mtx_infection", "stop_mtx_call"),
    "rf_mtx_bleeding": ("mtx_bleeding", "stop_mtx_call"),
    "rf_mtx_mouth": ("mtx_mouth_sores", "stop_mtx_call"),
    "rf_mtx_liver": ("mtx_liver", "stop_mtx_call"),
    "rf_mtx_skin": ("mtx_skin", "emergency"),
    "rf_mtx_pregnancy": ("mtx_pregnancy", "stop_mtx_call"),
}
BARI_FLAGS = {
    "rf_bari_infection": ("bari_infection", "hold_baricitinib_call"),
    "rf_bari_shingles": ("bari_shingles", "hold_baricitinib_call"),
    "rf_bari_clot": ("bari_blood_clot", "emergency"),
    "rf_bari_heart_stroke": ("bari_heart_stroke", "emergency"),
    "rf_bari_belly": ("bari_gi_perforation", "emergency"),
    "rf_bari_pregnancy": ("bari_pregnancy", "hold_baricitinib_call"),
}
SSC_FLAGS = {
    "rf_ssc_headache_vision": ("ssc_renal_headache_vision", "call_now"),
    "rf_ssc_blood_pressure": ("ssc_renal_blood_pressure", "call_now"),
    "rf_ssc_urine": ("ssc_renal_low_urine", "call_now"),
    "rf_ssc_ulcer": ("ssc_ulcer_gangrene", "call_now"),
    "rf_ssc_breathless": ("ssc_breathless", "emergency"),
}
FLAG_CASES = (
    [("B", item, *expected) for item, expected in MTX_FLAGS.items()]
    + [("A", item, *expected) for item, expected in BARI_FLAGS.items()]
    + [(arm, item, *expected) for arm in "AB" for item, expected in SSC_FLAGS.items()]
)


@LANGUAGES
@pytest.mark.parametrize("instrument_id", ["weekly_checkin", "ae_report"])
@pytest.mark.parametrize(("arm", "item_id", "code", "advice"), FLAG_CASES, ids=[f"{c[0]}-{c[1]}" for c in FLAG_CASES])
def test_each_red_flag_of_the_arm_is_urgent(
    instruments: dict[str, Instrument],
    words: tuple[str, str, str],
    instrument_id: str,
    arm: str,
    item_id: str,
    code: str,
    advice: str,
) -> None:
    result = check(instruments[instrument_id], arm, words, {item_id: words[0]})
    assert result.level is Level.URGENT
    assert [(h.code, h.item_id, h.advice) for h in result.red_flags] == [(code, item_id, advice)]
    assert result.advice == (advice,)
    assert result.reasons[0].en is not None and result.reasons[0].en.startswith(f"Red flag ({code}): ")
    assert result.reasons[0].bn is not None and result.reasons[0].bn.startswith(f"বিপদ সংকেত ({code}): ")


@LANGUAGES
def test_methotrexate_on_more_than_one_day_means_stop_and_call(
    instruments: dict[str, Instrument], words: tuple[str, str, str]
) -> None:
    result = check(instruments["weekly_checkin"], "B", words, {"rf_mtx_extra_dose": words[0]})
    assert result.level is Level.URGENT
    assert result.advice == ("stop_mtx_call",)
    assert "weekly methotrexate taken daily" in (result.red_flags[0].reason.en or "")


@pytest.mark.parametrize(("arm", "other_arm_item"), [("A", "rf_mtx_extra_dose"), ("B", "rf_bari_clot")])
def test_a_red_flag_of_the_other_arm_is_ignored_even_if_present(
    instruments: dict[str, Instrument], arm: str, other_arm_item: str
) -> None:
    weekly = instruments["weekly_checkin"]
    state = run(weekly, arm, ENGLISH)
    forged = {**state.answers, other_arm_item: True}
    assert_nothing_raised(triage(weekly, forged, arm, None, table=TABLE))


@pytest.mark.parametrize(
    ("arm", "typed", "code", "advice"),
    [
        ("B", "38.2", "mtx_infection", "stop_mtx_call"),
        ("B", "৩৮.২", "mtx_infection", "stop_mtx_call"),
        ("B", "১০১ ফারেনহাইট", "mtx_infection", "stop_mtx_call"),
        ("A", "38", "bari_infection", "hold_baricitinib_call"),
        ("A", "101 F", "bari_infection", "hold_baricitinib_call"),
        # the same threshold in Fahrenheit: 100.4 °F is exactly 38.0 °C, unit or not, either digits
        ("B", "১০০.৪", "mtx_infection", "stop_mtx_call"),
        ("A", "100.4", "bari_infection", "hold_baricitinib_call"),
        ("A", "১০০.৪ ডিগ্রি (ফারেনহাইট)", "bari_infection", "hold_baricitinib_call"),
    ],
)
def test_a_measured_temperature_of_38_or_more_is_an_infection_red_flag(
    instruments: dict[str, Instrument], arm: str, typed: str, code: str, advice: str
) -> None:
    words = BANGLA if any("\u0980" <= ch <= "\u09ff" for ch in typed) else ENGLISH
    fever = {"fever": words[0], "fever_measured": words[0], "fever_temp": typed}
    result = check(instruments["weekly_checkin"], arm, words, fever)
    assert result.level is Level.URGENT
    assert [(h.code, h.item_id, h.advice) for h in result.red_flags] == [(code, "fever_temp", advice)]


@pytest.mark.parametrize("typed", ["37.9", "৩৭.৫", "100 F", "100.3", "১০০.৩ ডিগ্রি"])
def test_a_temperature_below_38_is_not_a_red_flag(instruments: dict[str, Instrument], typed: str) -> None:
    fever = {"fever": "yes", "fever_measured": "yes", "fever_temp": typed}
    result = check(instruments["weekly_checkin"], "B", ENGLISH, fever)
    assert result.red_flags == ()
    assert result.level is Level.ROUTINE
    assert result.grades["fever"] == 1  # "fever: yes" is a grade 1 symptom


def test_a_red_flag_raises_the_alert_before_the_check_in_is_finished(
    instruments: dict[str, Instrument],
) -> None:
    weekly = instruments["weekly_checkin"]
    ctx = Context(arm="B", today=TODAY)
    state = answer(weekly, start(weekly, ctx), "yes", ctx)
    assert isinstance(state, State) and state.current == "rf_mtx_lung"
    result = triage(weekly, state.answers, "B", table=TABLE)
    assert result.level is Level.URGENT and result.advice == ("stop_mtx_call",)
    assert result.grades == {}  # unreached symptoms are not claimed as "none"


# --- red flags in other words (content/triage.yaml cross_checks) ------------------------------

# Each language's ways of answering "severe" / "very severe": the button value,
# the English words, the Bangla scale words (GLOSSARY-bn: বেশি / খুব বেশি) and digits.
SEVERE_FORMS = [
    ("severe", ENGLISH),
    ("very severe", ENGLISH),
    ("4", ENGLISH),
    ("5", ENGLISH),
    ("বেশি", BANGLA),
    ("খুব বেশি", BANGLA),
    ("৪", BANGLA),
    ("৫", BANGLA),
]
SEVERE = pytest.mark.parametrize(("typed", "words"), SEVERE_FORMS, ids=[f[0] for f in SEVERE_FORMS])


@SEVERE
def test_severe_rash_in_arm_b_is_the_methotrexate_skin_red_flag(
    instruments: dict[str, Instrument], typed: str, words: tuple[str, str, str]
) -> None:
    result = check(instruments["weekly_checkin"], "B", words, {"skin_any": words[0], "rash": typed})
    assert result.level is Level.URGENT
    assert [(h.code, h.item_id, h.advice) for h in result.red_flags] == [("mtx_skin", "rash", "emergency")]
    assert result.advice == ("emergency",)
    assert (result.reasons[0].en or "").startswith("Red flag (mtx_skin): Rash answered")


@SEVERE
def test_severe_rash_in_arm_a_is_same_day_not_a_red_flag(
    instruments: dict[str, Instrument], typed: str, words: tuple[str, str, str]
) -> None:
    result = check(instruments["weekly_checkin"], "A", words, {"skin_any": words[0], "rash": typed})
    assert result.red_flags == () and result.level is Level.SAME_DAY


@SEVERE
def test_severe_belly_pain_in_arm_a_is_the_perforation_red_flag(
    instruments: dict[str, Instrument], typed: str, words: tuple[str, str, str]
) -> None:
    result = check(instruments["weekly_checkin"], "A", words, {"bowel_any": words[0], "belly_pain": typed})
    assert result.level is Level.URGENT
    assert [(h.code, h.item_id, h.advice) for h in result.red_flags] == [
        ("bari_gi_perforation", "belly_pain", "emergency")
    ]
    assert result.advice == ("emergency",)


@SEVERE
def test_severe_belly_pain_in_arm_b_is_same_day_not_a_red_flag(
    instruments: dict[str, Instrument], typed: str, words: tuple[str, str, str]
) -> None:
    result = check(instruments["weekly_checkin"], "B", words, {"bowel_any": words[0], "belly_pain": typed})
    assert result.red_flags == () and result.level is Level.SAME_DAY


@pytest.mark.parametrize("arm", ["A", "B"])
@pytest.mark.parametrize("typed", ["moderate", "মাঝারি", "3", "mild"])
def test_moderate_rash_or_belly_pain_is_no_red_flag(instruments: dict[str, Instrument], arm: str, typed: str) -> None:
    words = BANGLA if any("\u0980" <= ch <= "\u09ff" for ch in typed) else ENGLISH
    typed_answers = {"skin_any": words[0], "rash": typed, "bowel_any": words[0], "belly_pain": typed}
    assert check(instruments["weekly_checkin"], arm, words, typed_answers).red_flags == ()


FEVER_FLAG = {"A": ("bari_infection", "hold_baricitinib_call"), "B": ("mtx_infection", "stop_mtx_call")}


@LANGUAGES
@pytest.mark.parametrize("arm", ["A", "B"])
@pytest.mark.parametrize("how", ["not measured", "temperature skipped"])
def test_fever_yes_without_a_temperature_below_38_is_the_infection_red_flag(
    instruments: dict[str, Instrument], words: tuple[str, str, str], arm: str, how: str
) -> None:
    yes, no, _ = words
    fever = {"fever": yes, "fever_measured": no}
    if how == "temperature skipped":
        fever = {"fever": yes, "fever_measured": yes, "fever_temp": SKIP_VALUE}
    result = check(instruments["weekly_checkin"], arm, words, fever)
    code, advice = FEVER_FLAG[arm]
    assert result.level is Level.URGENT
    assert [(h.code, h.item_id, h.advice) for h in result.red_flags] == [(code, "fever", advice)]
    assert result.advice == (advice,)


@pytest.mark.parametrize("arm", ["A", "B"])
@pytest.mark.parametrize(("typed", "words"), [("37.9", ENGLISH), ("99 F", ENGLISH), ("৩৭.৫", BANGLA), ("৯৯ ফা", BANGLA)])
def test_fever_yes_with_a_measured_temperature_below_38_is_no_red_flag(
    instruments: dict[str, Instrument], arm: str, typed: str, words: tuple[str, str, str]
) -> None:
    fever = {"fever": words[0], "fever_measured": words[0], "fever_temp": typed}
    result = check(instruments["weekly_checkin"], arm, words, fever)
    assert result.red_flags == () and result.level is Level.ROUTINE


@pytest.mark.parametrize("arm", ["A", "B"])
def test_a_fever_waits_for_the_thermometer_questions_until_the_session_ends(
    instruments: dict[str, Instrument], arm: str
) -> None:
    weekly = instruments["weekly_checkin"]
    answers = {**run(weekly, arm, ENGLISH).answers}
    for later in ("fever", "fever_measured", "fever_temp", "anything_else"):
        answers.pop(later, None)
    answers["fever"] = True  # just answered; "did you measure it?" comes next
    assert triage(weekly, answers, arm, table=TABLE, final=False).red_flags == ()
    code, _ = FEVER_FLAG[arm]
    assert [h.code for h in triage(weekly, answers, arm, table=TABLE, final=True).red_flags] == [
        code
    ]  # abandoned here: raised
    answers["fever_measured"] = True
    assert triage(weekly, answers, arm, table=TABLE, final=False).red_flags == ()
    answers["fever_temp"] = 37.2
    assert triage(weekly, answers, arm, table=TABLE, final=True).red_flags == ()


@pytest.mark.parametrize("arm", ["A", "B"])
def test_a_red_flag_said_twice_is_one_flag(instruments: dict[str, Instrument], arm: str) -> None:
    fever = {"fever": "yes", "fever_measured": "yes", "fever_temp": "39"}
    result = check(instruments["weekly_checkin"], arm, ENGLISH, fever)
    assert [(h.code, h.item_id) for h in result.red_flags] == [(FEVER_FLAG[arm][0], "fever_temp")]


def test_every_cross_check_reads_items_of_its_instruments(instruments: dict[str, Instrument]) -> None:
    table = load_triage_table(TRIAGE_FILE)
    assert {c.code for c in table.cross_checks} == {
        "mtx_skin",
        "bari_gi_perforation",
        "mtx_infection",
        "bari_infection",
    }
    for rule in table.cross_checks:
        for instrument_id in rule.instruments:
            ids = {item.id for item in instruments[instrument_id].items}
            assert {rule.item, *rule.when.referenced_items(rule.item), *rule.wait_for} <= ids, rule.code


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(item="rashes"), "no item 'rashes' in weekly_checkin"),
        (lambda c: c.update(wait_for=["fever_measured", "fever_tmp"]), "no item 'fever_tmp' in weekly_checkin"),
        (lambda c: c.update(instruments=["weekly"]), "no instrument 'weekly'"),
    ],
)
def test_a_cross_check_on_a_missing_item_is_refused_at_start(
    instruments: dict[str, Instrument], tmp_path: Path, change: Any, message: str
) -> None:
    data = yaml.safe_load((ROOT / "content" / "triage.yaml").read_text(encoding="utf-8"))
    change(data["cross_checks"][2])
    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(TriageTableError, match=message):
        check_cross_checks(load_triage_table(path), instruments)
    check_cross_checks(load_triage_table(TRIAGE_FILE), instruments)  # the shipped table is fine


# --- advice matches urgency --------------------------------------------------------------------


def _urgent_rules(instruments: dict[str, Instrument]) -> list[tuple[str, str]]:
    """(where, advice key) of every finding that is URGENT: red flags on every
    instrument item, cross-checks, seriousness criteria and URGENT-level triggers."""
    table = load_triage_table(TRIAGE_FILE)
    out = [
        (f"{instrument.id}.{item.id}.{flag.code}", flag.advice)
        for instrument in instruments.values()
        for item in instrument.items
        for flag in item.red_flags
    ]
    out += [(f"cross_checks.{c.code}", c.advice) for c in table.cross_checks]
    out += [(f"criterion {n}", c.advice) for n, c in table.seriousness_criteria.items()]
    out += [
        (f"URGENT {t.kind}", t.advice)
        for rule in table.levels
        if rule.level is Level.URGENT
        for t in rule.triggers
        if t.advice
    ]
    return out


def test_every_urgent_finding_is_told_to_act_now_never_today(instruments: dict[str, Instrument]) -> None:
    rules = _urgent_rules(instruments)
    assert len(rules) > 30 and ("cross_checks.bari_infection", "hold_baricitinib_call") in rules
    for where, key in rules:
        en, bn = advice_text(key, "en", "+8801711000000", TABLE), advice_text(key, "bn", "+8801711000000", TABLE)
        assert "now" in en.lower() and "today" not in en.lower(), (where, en)
        assert "এখনই" in bn and "আজই" not in bn, (where, bn)


def test_the_baricitinib_infection_advice_says_call_now() -> None:
    text = advice_text("hold_baricitinib_call", "en", "+8801711000000", TABLE)
    assert text.startswith("Call the study doctor now: +8801711000000.")
    assert "emergency department" in text


# --- seriousness (ICH E2A) ------------------------------------------------------------------

SERIOUSNESS = [
    ("ser_life", 2, "Life-threatening", "emergency"),
    ("ser_hospital", 3, "Requires hospital admission or prolongs an existing stay", "call_now"),
    ("ser_disability", 4, "Persistent or significant disability or incapacity", "call_now"),
    ("ser_birth_defect", 5, "Congenital anomaly or birth defect", "call_now"),
    (
        "ser_emergency",
        6,
        "Important medical event (a doctor had to treat it urgently to stop it becoming dangerous, "
        "even without admission)",
        "call_now",
    ),
]


@LANGUAGES
@pytest.mark.parametrize("arm", ["A", "B"])
@pytest.mark.parametrize(("item_id", "criterion", "name", "advice"), SERIOUSNESS, ids=[s[0] for s in SERIOUSNESS])
def test_each_seriousness_criterion_is_urgent(
    instruments: dict[str, Instrument],
    words: tuple[str, str, str],
    arm: str,
    item_id: str,
    criterion: int,
    name: str,
    advice: str,
) -> None:
    typed = {item_id: words[0]}
    if item_id == "ser_birth_defect":
        typed["ae_pregnancy"] = words[0]
    result = check(instruments["ae_report"], arm, words, typed)
    assert result.level is Level.URGENT
    assert result.serious
    assert [(s.criterion, s.name.en, s.item_id) for s in result.seriousness] == [(criterion, name, item_id)]
    assert advice in result.advice
    assert any(f"ICH E2A criterion {criterion}" in (r.en or "") for r in result.reasons)
    assert any(f"ICH E2A শর্ত {'০১২৩৪৫৬'[criterion]}" in (r.bn or "") for r in result.reasons)


@LANGUAGES
def test_life_in_danger_is_grade_4_and_means_emergency(
    instruments: dict[str, Instrument], words: tuple[str, str, str]
) -> None:
    result = check(instruments["ae_report"], "A", words, {"ser_life": words[0]})
    assert result.grade == 4
    assert result.level is Level.URGENT
    assert result.advice == ("emergency",)
    assert any("provisional grade 4" in (r.en or "") for r in result.reasons)
    assert any("প্রাথমিক গ্রেড ৪" in (r.bn or "") for r in result.reasons)


def test_a_problem_that_is_not_serious_has_no_seriousness(instruments: dict[str, Instrument]) -> None:
    result = check(instruments["ae_report"], "B", ENGLISH, {"ae_what": "rash_itching", "ae_severity": "mild"})
    assert not result.serious
    assert result.grades == {"reported_problem": 1}
    assert_nothing_raised(result)


# --- severity grades --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "grade", "level"),
    [
        ("none", 0, Level.ROUTINE),
        ("mild", 1, Level.ROUTINE),
        ("moderate", 2, Level.ROUTINE),
        ("severe", 3, Level.SAME_DAY),
        ("very severe", 3, Level.SAME_DAY),  # very severe -> 3, not 4 (see content/triage.yaml)
        ("নেই", 0, Level.ROUTINE),
        ("হালকা", 1, Level.ROUTINE),
        ("মাঝারি", 2, Level.ROUTINE),
        ("তীব্র", 3, Level.SAME_DAY),
        ("খুব তীব্র", 3, Level.SAME_DAY),
        ("৪", 3, Level.SAME_DAY),
        ("5", 3, Level.SAME_DAY),
    ],
)
def test_plain_severity_words_map_to_provisional_grades(
    instruments: dict[str, Instrument], typed: str, grade: int, level: Level
) -> None:
    words = BANGLA if any("\u0980" <= ch <= "\u09ff" for ch in typed) else ENGLISH
    result = check(instruments["weekly_checkin"], "A", words, {"body_any": words[0], "joint_pain": typed})
    assert result.grades["joint_pain"] == grade
    assert result.grade == grade
    assert result.level is level


@LANGUAGES
def test_a_severe_symptom_is_reviewed_the_same_day(
    instruments: dict[str, Instrument], words: tuple[str, str, str]
) -> None:
    severe = "severe" if words is ENGLISH else "তীব্র"
    result = check(instruments["weekly_checkin"], "B", words, {"breathing_any": words[0], "cough": severe})
    assert result.level is Level.SAME_DAY
    assert result.grade == 3
    assert result.advice == ("call_today",)
    assert result.reasons[0].en == 'Cough: "Severe" (provisional grade 3)'
    assert result.reasons[0].bn == 'কাশি: "বেশি" (প্রাথমিক গ্রেড ৩)'


@pytest.mark.parametrize(
    ("typed", "grade", "level"),
    [
        ("1", 1, Level.ROUTINE),
        ("mild", 1, Level.ROUTINE),
        ("It stops me doing my daily tasks (cooking, shopping, work)", 2, Level.ROUTINE),
        ("২", 2, Level.ROUTINE),
        ("moderate", 2, Level.ROUTINE),
        ("It stops me looking after myself (washing, dressing, eating, toilet)", 3, Level.SAME_DAY),
        ("এর জন্য নিজের যত্ন (গোসল, কাপড় পরা, খাওয়া, টয়লেট) নিজে করতে পারি না", 3, Level.SAME_DAY),
        ("৩", 3, Level.SAME_DAY),
        ("তীব্র", 3, Level.SAME_DAY),
    ],
)
def test_how_bad_in_plain_words_maps_to_a_grade(
    instruments: dict[str, Instrument], typed: str, grade: int, level: Level
) -> None:
    words = BANGLA if any("\u0980" <= ch <= "\u09ff" for ch in typed) else ENGLISH
    result = check(instruments["ae_report"], "A", words, {"ae_severity": typed})
    assert result.grades == {"reported_problem": grade}
    assert result.level is level


@pytest.mark.parametrize(
    ("typed", "grade"), [("37.5", 1), ("38.0", 1), ("39.0", 1), ("39.1", 2), ("40.0", 2), ("40.2", 3), ("১০৫ F", 3)]
)
def test_fever_grade_follows_ctcae_temperature_bands(
    instruments: dict[str, Instrument], typed: str, grade: int
) -> None:
    fever = {"fever": "yes", "fever_measured": "yes", "fever_temp": typed}
    result = check(instruments["weekly_checkin"], "A", ENGLISH, fever)
    assert result.grades["fever"] == grade


# --- worsening since last week ------------------------------------------------------------


@LANGUAGES
def test_a_symptom_two_grades_worse_than_last_week_is_same_day(
    instruments: dict[str, Instrument], words: tuple[str, str, str]
) -> None:
    weekly = instruments["weekly_checkin"]
    last_week = check(weekly, "A", words)  # all well: every symptom grade 0
    assert last_week.grades["nausea"] == 0
    moderate = "moderate" if words is ENGLISH else "মাঝারি"
    result = check(weekly, "A", words, {"mouth_stomach_any": words[0], "nausea": moderate}, last_week.grades)
    assert result.level is Level.SAME_DAY
    assert result.grade == 2
    assert [(w.symptom, w.previous, w.current) for w in result.worsened] == [("nausea", 0, 2)]
    assert result.reasons == (result.reasons[0],)
    assert result.reasons[0].en == "Nausea worse than last week: grade 0 to 2"
    assert result.reasons[0].bn == "বমি বমি ভাব গত সপ্তাহের চেয়ে খারাপ: গ্রেড ০ থেকে ২"
    assert result.advice == ("call_today",)


def test_one_grade_worse_is_routine(instruments: dict[str, Instrument]) -> None:
    typed = {"mouth_stomach_any": "yes", "nausea": "moderate"}
    result = check(instruments["weekly_checkin"], "A", ENGLISH, typed, {"nausea": 1})
    assert_nothing_raised(result)


def test_without_a_previous_check_in_there_is_no_worsening(instruments: dict[str, Instrument]) -> None:
    typed = {"mouth_stomach_any": "yes", "nausea": "moderate"}
    result = check(instruments["weekly_checkin"], "A", ENGLISH, typed, None)
    assert result.worsened == ()
    assert_nothing_raised(result)


# --- routine and precedence ----------------------------------------------------------------


@LANGUAGES
@pytest.mark.parametrize("arm", ["A", "B"])
def test_an_all_well_check_in_raises_nothing(
    instruments: dict[str, Instrument], words: tuple[str, str, str], arm: str
) -> None:
    result = check(instruments["weekly_checkin"], arm, words)
    assert_nothing_raised(result)
    assert result.grade == 0
    assert len(result.grades) == 24 and set(result.grades.values()) == {0}


def test_mild_and_moderate_symptoms_stay_routine(instruments: dict[str, Instrument]) -> None:
    typed = {"skin_any": "yes", "rash": "mild", "itching": "moderate", "hair_loss": "2"}
    assert_nothing_raised(check(instruments["weekly_checkin"], "B", ENGLISH, typed))


def test_urgent_wins_and_lists_every_reason_but_only_urgent_advice(instruments: dict[str, Instrument]) -> None:
    typed = {"rf_ssc_breathless": "yes", "body_any": "yes", "fatigue": "severe"}
    result = check(instruments["weekly_checkin"], "A", ENGLISH, typed)
    assert result.level is Level.URGENT
    assert result.advice == ("emergency",)
    assert [r.en for r in result.reasons] == [
        "Red flag (ssc_breathless): Much more breathless than usual, or breathless at rest",
        'Fatigue: "Severe" (provisional grade 3)',
    ]


def test_several_red_flags_give_advice_most_urgent_first(instruments: dict[str, Instrument]) -> None:
    typed = {"rf_mtx_extra_dose": "yes", "rf_mtx_skin": "yes", "rf_ssc_urine": "yes"}
    result = check(instruments["weekly_checkin"], "B", ENGLISH, typed)
    assert result.advice == ("emergency", "stop_mtx_call", "call_now")
    assert len(result.red_flags) == 3


def test_the_result_is_plain_json(instruments: dict[str, Instrument]) -> None:
    typed = {"ser_life": "yes", "rf_bari_clot": "yes"}
    result = check(instruments["ae_report"], "A", ENGLISH, typed)
    data: dict[str, Any] = json.loads(json.dumps(result.to_dict(), ensure_ascii=False))
    assert data["level"] == "URGENT" and data["grade"] == 4
    assert data["seriousness"][0]["criterion"] == 2
    assert data["red_flags"][0]["advice"] == "emergency"


# --- participant advice and the methotrexate dose-log rule -----------------------------------


def test_advice_text_fills_in_the_study_phone_as_dialled_in_every_language() -> None:
    assert advice_text("call_today", "en", "01711-000111", TABLE) == "Please call the study doctor today: 01711-000111."
    assert advice_text("call_today", "bn", "+8801711000111", TABLE) == "আজই গবেষণা দলের ডাক্তারকে ফোন করুন: +8801711000111।"
    assert "methotrexate" in advice_text("stop_mtx_call", "en", "1", TABLE)


NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def _mtx_within() -> timedelta:
    """The shipped protocol's double-dose interval for weekly methotrexate."""
    from domain.content import load_content

    check = load_content().protocol.arm("B").regimen("methotrexate").double_dose_check
    assert check is not None and check.advice == "stop_mtx_call" and check.alert_kind == "mtx_double_dose"
    return check.within


MTX_WITHIN = _mtx_within()


@pytest.mark.parametrize(
    ("gap", "double"),
    [
        (timedelta(days=1), True),
        (timedelta(days=5, hours=23, minutes=59), True),
        (timedelta(days=6), False),
        (timedelta(days=7), False),
        (timedelta(days=-2), True),  # order does not matter
    ],
)
def test_methotrexate_doses_less_than_6_days_apart_are_a_double_dose(gap: timedelta, double: bool) -> None:
    assert double_dose(NOW - gap, NOW, MTX_WITHIN) is double


def test_the_first_methotrexate_dose_is_never_a_double_dose() -> None:
    assert double_dose(None, NOW, MTX_WITHIN) is False


def test_double_dose_check_refuses_mixing_naive_and_aware_times() -> None:
    with pytest.raises(ValueError, match="aware"):
        double_dose(datetime(2026, 11, 20, 9, 0), NOW, MTX_WITHIN)


# --- arms and advice keys are the protocol's and the table's, checked at load -----------------


@pytest.mark.parametrize(
    ("file", "old", "new", "error", "message"),
    [
        pytest.param(
            "instruments/_red_flags.yaml",
            "advice: call_now",
            "advice: pray",
            TriageTableError,
            "item 'rf_ssc_headache_vision': red flag 'ssc_renal_headache_vision': no advice 'pray' in triage.yaml",
            id="red-flag-advice",
        ),
        pytest.param(
            "instruments/haq_di.yaml",
            "applies_to: [A, B]",
            "applies_to: [A, C]",
            InstrumentError,
            "instruments: haq_di: applies_to: no arm 'C' in protocol.yaml (arms: A, B)",
            id="instrument-arm",
        ),
        pytest.param(
            "triage.yaml",
            "arms: [B]",
            "arms: [b]",
            TriageTableError,
            "no arm 'b' in protocol.yaml (arms: A, B)",
            id="cross-check-arm",
        ),
    ],
)
def test_an_arm_or_advice_key_the_protocol_or_table_lacks_is_refused_at_load(
    tmp_path: Path, file: str, old: str, new: str, error: type[Exception], message: str
) -> None:
    content = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, content)
    path = content / file
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(error) as info:
        load_content(content)
    assert message in str(info.value)


def test_an_instrument_without_applies_to_is_for_every_arm_of_the_protocol() -> None:
    instrument = load_instruments(ROOT / "content" / "instruments")["haq_di"].model_copy(update={"applies_to": None})
    assert all(is_available(instrument, Context(arm=arm, today=TODAY)) for arm in ("A", "B", "C"))


# --- the triage table itself ---------------------------------------------------------------


def test_the_shipped_triage_table_loads() -> None:
    table = load_triage_table(TRIAGE_FILE)
    assert [rule.level for rule in table.levels] == [Level.URGENT, Level.SAME_DAY]
    assert table.seriousness_criteria[2].implies_grade == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t["advice"].pop("call_now"), "advice texts missing"),
        (lambda t: t["seriousness_criteria"].pop(6), "criteria 1 to 6"),
        (lambda t: t["reasons"]["grade"].update(en="{symptom} {oops}"), "reasons.grade.en"),
        (lambda t: t["advice"]["call_today"]["text"].update(bn="{phone} {name}"), "only {phone}"),
        (lambda t: t["levels"][0]["triggers"].append({"kind": "grade_at_least"}), "needs value"),
        (lambda t: t["cross_checks"][0].update(advice="call_today"), "does not say 'now'"),
        (lambda t: t["seriousness_criteria"][3].update(advice="call_today"), "does not say 'now'"),
        (lambda t: t["advice"]["call_now"].pop("urgency"), "urgency"),
    ],
)
def test_a_broken_triage_table_is_refused(tmp_path: Path, change: Any, message: str) -> None:
    data = yaml.safe_load((ROOT / "content" / "triage.yaml").read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(TriageTableError, match=r"triage\.yaml") as info:
        load_triage_table(path)
    assert message in str(info.value)
