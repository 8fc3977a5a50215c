"""The protocol file: the shipped one is right, and every kind of mistake is refused by place."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from domain.content import CONTENT_DIR, load_content
from domain.triage import TriageTableError
from scheduler.protocol import (
    Protocol,
    ProtocolError,
    load_protocol,
    parse_duration,
    parse_local_time,
    protocol_from_mapping,
)

SHIPPED = Path(__file__).resolve().parents[1] / "content" / "protocol.yaml"
KNOWN = frozenset({"patient_global", "haq_di", "raynaud_condition_score", "weekly_checkin"})
ASKED = KNOWN | {"ae_report"}  # and what /report asks (the protocol's report_instrument)
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)

Data = dict[str, Any]


@pytest.fixture(scope="module")
def shipped() -> Protocol:
    return load_protocol(SHIPPED, ASKED)


def base() -> Data:
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def write(tmp_path: Path, data: object, name: str = "protocol.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def refused(path: Path, known: frozenset[str] | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        load_protocol(path, known)
    return info.value


# --------------------------------------------------------------------------- the shipped file


def test_shipped_protocol_identifies_the_trial_and_zone(shipped: Protocol) -> None:
    assert shipped.trial_id == "NCT06936215"
    assert shipped.timezone == "Asia/Dhaka"
    assert str(shipped.tz) == "Asia/Dhaka"
    assert shipped.treatment_weeks == 24
    assert shipped.default_reminder_time == time(9)


def test_shipped_arm_a_is_baricitinib_4_mg_daily(shipped: Protocol) -> None:
    (bari,) = shipped.arm("A").regimens
    assert (bari.id, bari.frequency, bari.dose_label) == ("baricitinib", "daily", "4 mg")
    assert bari.weekday is None
    assert bari.dose.en and bari.dose.bn


def test_shipped_arm_b_is_weekly_methotrexate_and_folic_acid_the_day_after(
    shipped: Protocol,
) -> None:
    mtx, folic = shipped.arm("B").regimens
    assert (mtx.id, mtx.frequency, mtx.dose_label) == ("methotrexate", "weekly", "25 mg")
    assert mtx.weekday is not None and mtx.weekday.rule == "participant"
    assert (folic.id, folic.frequency, folic.dose_label) == ("folic_acid", "weekly", "5 mg")
    assert folic.weekday is not None
    assert (folic.weekday.rule, folic.weekday.regimen, folic.weekday.days) == (
        "after",
        "methotrexate",
        1,
    )
    assert folic.never_same_day_as == ("methotrexate",)
    assert "WEEK" in mtx.dose.en  # the weekly dose is spelt out


def test_shipped_visits_and_windows(shipped: Protocol) -> None:
    assert [(v.week, v.window_days) for v in shipped.visits] == [(0, 0), (4, 3), (12, 7), (24, 7)]
    baseline = shipped.visit(0)
    assert not baseline.reminders and not baseline.window_check
    assert all(v.reminders and v.window_check for v in shipped.visits[1:])
    assert shipped.visit_reminders.offsets_days == (-7, -1, 0)
    assert shipped.visit_reminders.local_time == time(8)


def test_shipped_questionnaires_by_visit_week(shipped: Protocol) -> None:
    by_id = {q.instrument: q for q in shipped.questionnaires}
    for instrument in ("patient_global", "haq_di"):
        assert by_id[instrument].visit_weeks == (0, 4, 12, 24)
        assert by_id[instrument].offsets_days == (0,)
    rcs = by_id["raynaud_condition_score"]
    assert rcs.offsets_days == (-7, -6, -5, -4, -3, -2, -1)
    assert rcs.switch == "raynaud" and rcs.default_enabled is False
    assert shipped.switches() == {"raynaud": False}
    assert shipped.instrument_ids() == ASKED


def test_shipped_checkin_quiet_hours_and_clinic_days(shipped: Protocol) -> None:
    assert shipped.checkin.start_week == 1 and shipped.checkin.end_week == 24
    assert shipped.quiet_hours.start == time(22) and shipped.quiet_hours.end == time(7)
    assert set(shipped.clinic_days) == {SUN, MON, TUE, WED, THU}
    assert not shipped.is_clinic_day(date(2026, 11, 6))  # Friday
    assert not shipped.is_clinic_day(date(2026, 12, 16))  # Victory Day


def test_shipped_holidays_cover_2026_and_2027_and_mark_lunar_ones_tentative(
    shipped: Protocol,
) -> None:
    confirmed = {h.date for h in shipped.holidays if not h.tentative}
    for fixed in ("02-21", "03-26", "04-14", "05-01", "08-05", "12-16", "12-25"):
        for year in (2026, 2027):
            assert date.fromisoformat(f"{year}-{fixed}") in confirmed
    eids = [h for h in shipped.holidays if "Eid" in h.name]
    assert eids and all(h.tentative for h in eids)
    assert {h.date.year for h in shipped.holidays} == {2026, 2027}
    assert "MUST CONFIRM" in SHIPPED.read_text(encoding="utf-8")


def test_shipped_staleness_and_follow_ups(shipped: Protocol) -> None:
    st = shipped.staleness
    assert st.dose_reminder.max_late == timedelta(hours=3) and st.dose_reminder.same_local_day
    assert st.visit_reminder.same_local_day and st.visit_reminder.max_late is None
    assert st.checkin_prompt.max_late == timedelta(days=1)
    assert shipped.doses.followup_after == timedelta(hours=2)
    assert shipped.doses.remind_later_after == timedelta(hours=1)
    assert shipped.doses.no_answer_days_after == 1


def test_every_instrument_the_protocol_asks_for_has_an_instrument_file() -> None:
    folder = SHIPPED.parent / "instruments"
    files = {p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_")}
    if not files:
        pytest.skip("no instrument files yet")
    assert load_protocol(SHIPPED, files).instrument_ids() <= files


def test_protocol_loads_without_a_list_of_known_instruments() -> None:
    assert load_protocol(SHIPPED).trial_id == "NCT06936215"


def test_protocol_from_mapping_accepts_parsed_data() -> None:
    assert protocol_from_mapping(base(), "inline").checkin.weekday == SUN


# --------------------------------------------------------------------------- scalar parsers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3h", timedelta(hours=3)),
        ("90m", timedelta(minutes=90)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(minutes=90)),
        ("2d12h", timedelta(hours=60)),
    ],
)
def test_durations_are_short_and_readable(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["3 hours", "", "h", "0h", "-1h", 3, "PT3H"])
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("bad", ["25:00", "7am", "7", "07:60", "", 1320, None])
def test_bad_times_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_local_time(bad)


def test_unquoted_times_are_times_not_base_60_numbers(tmp_path: Path) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    text = text.replace('start: "22:00"', "start: 22:00").replace('end: "07:00"', "end: 7:00")
    path = tmp_path / "protocol.yaml"
    path.write_text(text, encoding="utf-8")
    proto = load_protocol(path)
    assert proto.quiet_hours.start == time(22) and proto.quiet_hours.end == time(7)


# --------------------------------------------------------------------------- refused mistakes


def _set(path: tuple[str | int, ...], value: object) -> Callable[[Data], None]:
    def mutate(data: Data) -> None:
        target: Any = data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


def _delete(path: tuple[str | int, ...]) -> Callable[[Data], None]:
    def mutate(data: Data) -> None:
        target: Any = data
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return mutate


MISTAKES: list[tuple[str, Callable[[Data], None], str, str]] = [
    ("negative window", _set(("visits", 2, "window_days"), -1), "visits[2].window_days", "must be >= 0"),
    ("unknown clinic weekday", _set(("clinic_days", 4), "thirsday"), "clinic_days[4]", "unknown weekday 'thirsday'"),
    ("unknown check-in weekday", _set(("checkin", "weekday"), "funday"), "checkin.weekday", "unknown weekday"),
    ("weekday as a number", _set(("checkin", "weekday"), 6), "checkin.weekday", "must be a weekday name"),
    (
        "overlapping windows",
        _set(("visits", 2, "window_days"), 60),
        "visits[2].window_days",
        "overlaps the window of week 4",
    ),
    ("visits out of order", _set(("visits", 1, "week"), 30), "visits[2].week", "week order"),
    ("duplicate visit week", _set(("visits", 2, "week"), 4), "visits[2].week", "duplicate week 4"),
    (
        "folic acid on the methotrexate day",
        _set(("arms", "B", "regimens", 1, "weekday", "days"), 0),
        "arms.B.regimens[1].weekday.days",
        "on the methotrexate day",
    ),
    (
        "folic acid a week later is the same weekday",
        _set(("arms", "B", "regimens", 1, "weekday", "days"), 7),
        "arms.B.regimens[1].weekday.days",
        "must be 0 to 6",
    ),
    (
        "after an unknown regimen",
        _set(("arms", "B", "regimens", 1, "weekday", "regimen"), "methotrexat"),
        "arms.B.regimens[1].weekday.regimen",
        "unknown regimen 'methotrexat'",
    ),
    (
        "never on an unknown regimen's day",
        _set(("arms", "B", "regimens", 1, "never_same_day_as"), ["mtx"]),
        "arms.B.regimens[1].never_same_day_as[0]",
        "unknown regimen 'mtx'",
    ),
    (
        "weekly without weekday",
        _delete(("arms", "B", "regimens", 0, "weekday")),
        "arms.B.regimens[0].weekday",
        "required for a weekly regimen",
    ),
    (
        "daily with weekday",
        _set(("arms", "A", "regimens", 0, "weekday"), {"rule": "fixed", "day": "monday"}),
        "arms.A.regimens[0].weekday",
        "daily regimen has no weekday",
    ),
    (
        "fixed rule without a day",
        _set(("arms", "B", "regimens", 0, "weekday"), {"rule": "fixed"}),
        "arms.B.regimens[0].weekday.day",
        "required with rule: fixed",
    ),
    (
        "unknown weekday rule",
        _set(("arms", "B", "regimens", 0, "weekday"), {"rule": "whenever"}),
        "arms.B.regimens[0].weekday.rule",
        "must be 'participant', 'fixed' or 'after'",
    ),
    (
        "duplicate regimen id",
        _set(("arms", "B", "regimens", 1, "id"), "methotrexate"),
        "arms.B.regimens[1].id",
        "duplicate regimen id",
    ),
    (
        "regimen id unusable in keys",
        _set(("arms", "A", "regimens", 0, "id"), "Bari:4"),
        "arms.A.regimens[0].id",
        "lower-case letters",
    ),
    (
        "zero dose",
        _set(("arms", "A", "regimens", 0, "dose_amount"), 0),
        "arms.A.regimens[0].dose_amount",
        "must be > 0",
    ),
    (
        "missing Bangla dose text",
        _delete(("arms", "A", "regimens", 0, "dose", "bn")),
        "arms.A.regimens[0].dose.bn",
        "required, but missing",
    ),
    (
        "unknown frequency",
        _set(("arms", "A", "regimens", 0, "frequency"), "twice daily"),
        "arms.A.regimens[0].frequency",
        "must be 'daily' or 'weekly'",
    ),
    (
        "holiday not a date",
        _set(("holidays", 0, "date"), "Eid"),
        "holidays[0].date",
        "must be a date written YYYY-MM-DD",
    ),
    (
        "holiday impossible date",
        _set(("holidays", 1, "date"), "2026-02-30"),
        "holidays[1].date",
        "must be a date written YYYY-MM-DD",
    ),
    ("holiday without name", _delete(("holidays", 2, "name")), "holidays[2].name", "required, but missing"),
    (
        "quiet hours out of range",
        _set(("quiet_hours", "start"), "25:00"),
        "quiet_hours.start",
        'must be a time written "HH:MM"',
    ),
    ("quiet hours in words", _set(("quiet_hours", "end"), "7am"), "quiet_hours.end", 'must be a time written "HH:MM"'),
    (
        "quiet hours empty",
        _set(("quiet_hours", "end"), "22:00"),
        "quiet_hours.end",
        "must differ from quiet_hours.start",
    ),
    ("quiet hours missing end", _delete(("quiet_hours", "end")), "quiet_hours.end", "required, but missing"),
    (
        "bot-timed reminder inside quiet hours",
        _set(("visit_reminders", "local_time"), "23:00"),
        "visit_reminders.local_time",
        "inside quiet hours 22:00-07:00",
    ),
    (
        "check-in inside quiet hours",
        _set(("checkin", "local_time"), "06:30"),
        "checkin.local_time",
        "inside quiet hours",
    ),
    (
        "default dose time inside quiet hours",
        _set(("default_reminder_time",), "05:00"),
        "default_reminder_time",
        "inside quiet hours",
    ),
    (
        "questionnaire inside quiet hours",
        _set(("questionnaires", 2, "local_time"), "22:30"),
        "questionnaires[2].local_time",
        "inside quiet hours",
    ),
    (
        "reminder after the visit",
        _set(("visit_reminders", "offsets_days"), [-7, 1]),
        "visit_reminders.offsets_days[1]",
        "must be <= 0",
    ),
    (
        "same reminder offset twice",
        _set(("visit_reminders", "offsets_days"), [-1, -1]),
        "visit_reminders.offsets_days",
        "same offset twice",
    ),
    (
        "questionnaire at a visit that does not exist",
        _set(("questionnaires", 0, "visit_weeks"), [0, 8]),
        "questionnaires[0].visit_weeks[1]",
        "no visit at week 8",
    ),
    (
        "questionnaire with both timings",
        _set(("questionnaires", 2, "on_day"), 0),
        "questionnaires[2]",
        "exactly one of on_day or daily_before_visit",
    ),
    (
        "questionnaire asked twice at once",
        _set(("questionnaires", 1, "instrument"), "patient_global"),
        "questionnaires[1].visit_weeks[0]",
        "already asked at week 0",
    ),
    ("check-in ends before it starts", _set(("checkin", "end_week"), 0), "checkin.end_week", "must be >= start_week"),
    (
        "bad duration",
        _set(("staleness", "dose_reminder", "max_late"), "3 hours"),
        "staleness.dose_reminder.max_late",
        'must be a duration such as "3h"',
    ),
    (
        "staleness that never ends",
        _set(("staleness", "checkin_prompt"), {}),
        "staleness.checkin_prompt",
        "give max_late, same_local_day: true, or both",
    ),
    (
        "missing staleness kind",
        _delete(("staleness", "visit_reminder")),
        "staleness.visit_reminder",
        "required, but missing",
    ),
    ("follow-up after zero", _set(("doses", "followup_after"), "0m"), "doses.followup_after", "longer than zero"),
    (
        "no-answer the same day",
        _set(("doses", "no_answer_days_after"), 0),
        "doses.no_answer_days_after",
        "must be >= 1",
    ),
    ("unknown time zone", _set(("timezone",), "Asia/Dacca_"), "timezone", "unknown time zone"),
    ("misspelt field", _set(("visit_reminder",), {"local_time": "08:00"}), "visit_reminder", "unknown field"),
    ("missing trial id", _delete(("trial_id",)), "trial_id", "required, but missing"),
    ("no arms", _set(("arms",), {}), "arms", "must have at least one entry"),
    ("arm without regimens", _set(("arms", "A", "regimens"), []), "arms.A.regimens", "must have at least one entry"),
    ("no clinic days", _set(("clinic_days",), []), "clinic_days", "must have at least one"),
    ("no visits", _set(("visits",), []), "visits", "must have at least one entry"),
    ("duplicate clinic day", _set(("clinic_days", 4), "sunday"), "clinic_days[4]", "listed twice"),
    ("window as text", _set(("visits", 1, "window_days"), "three"), "visits[1].window_days", "must be a whole number"),
]


@pytest.mark.parametrize(
    ("mutate", "place", "fragment"),
    [pytest.param(m, p, f, id=name) for name, m, p, f in MISTAKES],
)
def test_each_mistake_is_refused_naming_file_and_place(
    tmp_path: Path, mutate: Callable[[Data], None], place: str, fragment: str
) -> None:
    data = base()
    mutate(data)
    path = write(tmp_path, data)
    error = refused(path)
    lines = [line for line in str(error).splitlines() if f"{path}: {place}: " in line]
    assert lines, f"no problem reported at {place}:\n{error}"
    assert any(fragment in line for line in lines), str(error)
    assert str(error).startswith(f"{path}: ")
    assert "protocol.yaml" in str(error)
    assert "must have at least" not in str(error) or "at least" in fragment  # no noise


def test_the_example_message_from_the_brief(tmp_path: Path) -> None:
    data = base()
    data["visits"][2]["window_days"] = -1
    error = refused(write(tmp_path, data))
    assert "protocol.yaml: visits[2].window_days: must be >= 0" in str(error)


def test_unknown_questionnaire_ids_are_refused_when_known_ids_are_given(tmp_path: Path) -> None:
    data = base()
    data["questionnaires"][1]["instrument"] = "haq"
    data["checkin"]["instrument"] = "weekly"
    error = refused(write(tmp_path, data), KNOWN)
    text = str(error)
    assert "questionnaires[1].instrument: unknown questionnaire 'haq'" in text
    assert "checkin.instrument: unknown questionnaire 'weekly'" in text
    assert "known: haq_di, patient_global" in text
    load_protocol(write(tmp_path, data, "other.yaml"))  # fine without a list of known ids


def test_an_unknown_report_instrument_is_refused_when_known_ids_are_given(tmp_path: Path) -> None:
    data = base()
    data["report_instrument"] = "problem_report"
    error = refused(write(tmp_path, data), ASKED)
    assert "report_instrument: unknown questionnaire 'problem_report'" in str(error)


def test_a_regimens_own_words_use_only_the_placeholders_the_bot_fills(tmp_path: Path) -> None:
    data = base()
    mtx = data["arms"]["B"]["regimens"][0]
    mtx["reminder"]["bn"] = mtx["reminder"]["bn"].replace("{amount}", "{dose}")
    data["arms"]["A"]["regimens"][0]["instructions"]["en"] = "Baricitinib every {weekday}."
    data["arms"]["A"]["regimens"][0]["double_dose_check"] = mtx["double_dose_check"]
    error = str(refused(write(tmp_path, data)))
    assert "arms.B.regimens[0].reminder.bn: unknown placeholder(s) ['dose']; use ['amount', 'weekday']" in error
    assert "arms.A.regimens[0].instructions: {weekday} needs a weekly regimen" in error
    assert "arms.A.regimens[0].double_dose_check: only a weekly regimen has a double-dose check" in error


def test_a_double_dose_advice_the_triage_table_lacks_stops_the_content(tmp_path: Path) -> None:
    content = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, content)
    data = base()
    data["arms"]["B"]["regimens"][0]["double_dose_check"]["advice"] = "stop_and_call"
    write(content, data)
    with pytest.raises(TriageTableError, match=r"double_dose_check\.advice: no advice 'stop_and_call' in triage\.yaml"):
        load_content(content)


def test_fixed_folic_acid_day_equal_to_fixed_methotrexate_day_is_refused(tmp_path: Path) -> None:
    data = base()
    data["arms"]["B"]["regimens"][0]["weekday"] = {"rule": "fixed", "day": "friday"}
    data["arms"]["B"]["regimens"][1]["weekday"] = {"rule": "fixed", "day": "fri"}
    error = refused(write(tmp_path, data))
    assert "arms.B.regimens[1].weekday.day: friday is also the methotrexate day" in str(error)


def test_every_problem_is_listed_with_its_line(tmp_path: Path) -> None:
    data = base()
    data["visits"][3]["window_days"] = -2
    data["clinic_days"][0] = "sundy"
    path = write(tmp_path, data)
    error = refused(path)
    places = [place for place, _ in error.problems]
    assert places == ["visits[3].window_days", "clinic_days[0]"] or sorted(places) == sorted(
        ["visits[3].window_days", "clinic_days[0]"]
    )
    lines = path.read_text(encoding="utf-8").splitlines()
    for _, message in error.problems:
        assert "(line " in message
        number = int(message.rsplit("(line ", 1)[1].rstrip(")"))
        assert "window_days" in lines[number - 1] or "sundy" in lines[number - 1]


def test_semantic_problems_also_carry_lines(tmp_path: Path) -> None:
    data = base()
    data["arms"]["B"]["regimens"][1]["weekday"]["days"] = 0
    path = write(tmp_path, data)
    error = refused(path)
    (place, message), *_ = error.problems
    assert place == "arms.B.regimens[1].weekday.days"
    number = int(message.rsplit("(line ", 1)[1].rstrip(")"))
    assert "days: 0" in path.read_text(encoding="utf-8").splitlines()[number - 1]


def test_yaml_syntax_errors_give_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "protocol.yaml"
    path.write_text("trial_id: NCT1\nvisits: [week: 4\n", encoding="utf-8")
    error = refused(path)
    assert str(error).startswith(f"{path}: line ")
    assert "column" in str(error) and "not valid YAML" in str(error)


def test_duplicate_keys_are_refused_not_silently_overwritten(tmp_path: Path) -> None:
    text = SHIPPED.read_text(encoding="utf-8").replace(
        "treatment_weeks: 24\n", "treatment_weeks: 24\ntreatment_weeks: 12\n"
    )
    path = tmp_path / "protocol.yaml"
    path.write_text(text, encoding="utf-8")
    error = refused(path)
    assert "duplicate key 'treatment_weeks'" in str(error)
    assert "line " in str(error)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("", "the file is empty"), ("- a\n- b\n", "must be a mapping"), ("just text", "mapping")],
)
def test_empty_or_non_mapping_files_are_refused(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "protocol.yaml"
    path.write_text(content, encoding="utf-8")
    assert fragment in str(refused(path))


def test_a_missing_file_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    error = refused(path)
    assert str(error).startswith(f"{path}: cannot read the file")


def test_the_loaded_protocol_is_immutable(shipped: Protocol) -> None:
    with pytest.raises(ValueError):
        shipped.trial_id = "other"  # type: ignore[misc]


def test_another_trial_can_describe_itself_without_code_changes(tmp_path: Path) -> None:
    data = copy.deepcopy(base())
    data.update(
        trial_id="NCT00000000",
        timezone="Europe/London",
        treatment_weeks=8,
        arms={
            "X": {
                "label": {"en": "X", "bn": "X"},
                "regimens": [
                    {
                        "id": "drug_x",
                        "drug": {"en": "x", "bn": "x"},
                        "dose_amount": 2.5,
                        "dose_unit": "mL",
                        "dose": {"en": "2.5 mL", "bn": "2.5 mL"},
                        "frequency": "weekly",
                        "weekday": {"rule": "fixed", "day": "mon"},
                    }
                ],
            }
        },
        visits=[
            {"week": 0, "name": {"en": "b", "bn": "b"}, "window_days": 0, "reminders": False, "window_check": False},
            {"week": 8, "name": {"en": "end", "bn": "end"}, "window_days": 5},
        ],
        questionnaires=[],
        clinic_days=["monday", "tuesday", "wednesday", "thursday", "friday"],
        holidays=[{"date": date(2026, 12, 25), "name": "Christmas Day"}],
    )
    proto = load_protocol(write(tmp_path, data))
    assert proto.arm("X").regimens[0].dose_label == "2.5 mL"
    assert str(proto.tz) == "Europe/London"
