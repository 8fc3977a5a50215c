"""What an EDC accepts, on SQLite and PostgreSQL: the ODM of a realistic trial
checked against the official CDISC ODM 1.3.2 schema, the REDCap folder checked
the way REDCap reads it, and `--since` selecting each record by its own times."""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from pathlib import Path

import pyreadstat
import pytest

from devtools.botapi_server import BotAPIServer
from devtools.harness import BotHarness
from domain.questionnaires.conditions import Condition
from export.odm_schema import validate_odm
from export.redcap import branching, unique_event_name
from tests.bothelpers import admin_says, says
from tests.test_export import build_trial, read_csv
from tests.test_findings import answer_until
from tests.test_questionnaire_flow import answer_all, is_question

ODM = "{http://www.cdisc.org/ns/odm/v1.3}"
LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# Exactly the 18 columns of a REDCap data dictionary, in REDCap's order (REDCAP.md).
REDCAP_COLUMNS = [
    "Variable / Field Name",
    "Form Name",
    "Section Header",
    "Field Type",
    "Field Label",
    "Choices, Calculations, OR Slider Labels",
    "Field Note",
    "Text Validation Type OR Show Slider Number",
    "Text Validation Min",
    "Text Validation Max",
    "Identifier?",
    "Branching Logic (Show field only if...)",
    "Required Field?",
    "Custom Alignment",
    "Question Number (surveys only)",
    "Matrix Group Name",
    "Matrix Ranking?",
    "Field Annotation",
]
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


async def export(bot: BotHarness, out: Path, since: date | None = None) -> Path:
    result = await bot.export(out, since=since, validate=True)
    assert result.validation is not None and result.validation.errors == []
    return result.directory


@pytest.fixture
async def trial(bot: BotHarness, server: BotAPIServer, tmp_path: Path) -> Path:
    """The realistic trial, plus a finished weekly check-in (English, arm A), one
    left half-answered (Bangla, arm B), a /report abandoned after its admission
    "yes" (an incomplete adverse event) and an admission the study team recorded
    with /sae, exported with validation."""
    await build_trial(bot, server)
    english, bangla = server.user(4002, "Karim"), server.user(4001, "Rahima")
    await says(server, english, "/checkin", is_question)
    await answer_all(server, english, {})
    await says(server, bangla, "/checkin", is_question)
    await says(server, english, "/report", is_question)
    await answer_until(server, english, {"ae_what": "breathing", "ser_hospital": "yes"}, "ser_life")
    bot.clock.advance(timedelta(hours=2))  # no answer for two hours: the report is closed, its finding kept
    await bot.tick()
    recorded = await admin_says(server, "/sae BSM-003 hospitalisation 2026-11-20 son phoned", "recorded")
    number = re.search(r"Serious adverse event #(\d+)", recorded.content)
    assert number is not None
    # The team hears she is home again: the staff-recorded admission gets its outcome.
    await admin_says(server, f"/outcome {number.group(1)} recovered", "outcome")
    return await export(bot, tmp_path / "export")


def test_the_odm_of_a_realistic_trial_is_valid_against_the_official_schema(trial: Path) -> None:
    odm = trial / "trial_record_odm.xml"
    check = validate_odm(odm)
    assert check.valid and check.errors == [], check.errors[:5]
    root = ET.parse(odm).getroot()
    study = root.find(f"{ODM}Study")
    assert study is not None
    units = study.find(f"{ODM}BasicDefinitions")
    assert units is not None and units.find(f"{ODM}MeasurementUnit") is not None
    mdv = study.find(f"{ODM}MetaDataVersion")
    assert mdv is not None and mdv.find(f"{ODM}MeasurementUnit") is None
    events = {e.get("OID"): e for e in mdv.iter(f"{ODM}StudyEventDef")}
    assert list(events) == ["SE.WEEK0", "SE.WEEK4", "SE.WEEK12", "SE.WEEK24", "SE.UNSCHEDULED"]
    assert events["SE.UNSCHEDULED"].get("Repeating") == "Yes"
    question = next(i for i in mdv.iter(f"{ODM}ItemDef") if i.get("OID") == "I.RESPONSES_AE_REPORT.SER_HOSPITAL")
    assert {t.get(LANG) for t in question.iter(f"{ODM}TranslatedText")} == {"en", "bn"}
    subjects = {s.get("SubjectKey"): s for s in root.iter(f"{ODM}SubjectData")}
    assert set(subjects) == {"BSM-001", "BSM-002", "BSM-003"}
    keys = [e.get("StudyEventRepeatKey") for e in subjects["BSM-002"].iter(f"{ODM}StudyEventData")]
    unscheduled = [k for k in keys if k is not None]
    assert len(unscheduled) == len(set(unscheduled)) >= 4  # doses and the check-in: one occurrence each
    alert = next(
        g
        for g in subjects["BSM-001"].iter(f"{ODM}ItemGroupData")
        if g.get("ItemGroupOID") == "IG.ALERTS"
        and any(d.get("Value") == "serious_ae" for d in g.iter(f"{ODM}ItemData"))
    )
    values = {d.get("ItemOID"): d.get("Value") for d in alert.iter(f"{ODM}ItemData")}
    assert values["I.ALERTS.ACKNOWLEDGED_BY_ROLE"] == "admin" and values["I.ALERTS.ACKNOWLEDGED"] == "1"
    audit = alert.find(f"{ODM}AuditRecord")
    assert audit is not None
    assert [c.tag.removeprefix(ODM) for c in audit] == ["UserRef", "LocationRef", "DateTimeStamp", "SourceID"]
    assert audit.findtext(f"{ODM}SourceID") == f"alerts.id={values['I.ALERTS.ALERT_ID']}"
    sources = {a.get("Name") for a in mdv.iter(f"{ODM}Alias") if a.get("Context") == "source"}
    assert "adverse_events.hospitalisation" in sources


def test_every_adverse_event_is_in_every_format_with_its_source_and_completeness(trial: Path) -> None:
    """A participant's finished report, one abandoned after "admitted: yes", and
    an admission the study team recorded: the same rows in CSV, ODM and REDCap."""
    rows = {r["study_id"]: r for r in read_csv(trial / "adverse_events.csv")}
    assert set(rows) == {"BSM-001", "BSM-002", "BSM-003"}
    assert (rows["BSM-001"]["source"], rows["BSM-001"]["complete"]) == ("participant", "1")
    assert (rows["BSM-002"]["source"], rows["BSM-002"]["complete"]) == ("participant", "0")
    assert rows["BSM-002"]["sae_hospitalisation"] == "1"
    staff = rows["BSM-003"]
    assert (staff["source"], staff["recorded_by"], staff["response_id"]) == ("staff", "admin", "")
    assert staff["sae_hospitalisation"] == "1" and staff["onset_date"] == "2026-11-20"
    root = ET.parse(trial / "trial_record_odm.xml").getroot()
    in_odm = {
        (
            s.get("SubjectKey"),
            {d.get("ItemOID"): d.get("Value") for d in g.iter(f"{ODM}ItemData")}.get("I.ADVERSE_EVENTS.SOURCE"),
        )
        for s in root.iter(f"{ODM}SubjectData")
        for g in s.iter(f"{ODM}ItemGroupData")
        if g.get("ItemGroupOID") == "IG.ADVERSE_EVENTS"
    }
    assert in_odm == {("BSM-001", "participant"), ("BSM-002", "participant"), ("BSM-003", "staff")}
    redcap = {r["study_id"]: r for r in read_csv(trial / "redcap" / "records_adverse_events.csv")}
    assert set(redcap) == set(rows)
    assert redcap["BSM-002"]["adverse_events_complete"] == "0" and redcap["BSM-001"]["adverse_events_complete"] == "2"


def test_an_adverse_event_outcome_is_in_every_format_with_its_code_list(trial: Path) -> None:
    """The outcome staff set (CDISC AEOUT-like), and "not recorded yet" for the others:
    the CSV value, the SPSS value labels, the ODM code list in both languages (the
    file validates: see above), the REDCap choices and the import record."""
    rows = {r["study_id"]: r for r in read_csv(trial / "adverse_events.csv")}
    assert rows["BSM-003"]["outcome"] == "recovered" and rows["BSM-003"]["outcome_at"] != ""
    assert rows["BSM-001"]["outcome"] == "" and rows["BSM-002"]["outcome"] == ""
    _, meta = pyreadstat.read_sav(str(trial / "adverse_events.sav"))
    assert meta.variable_value_labels["outcome"] == {
        "recovered": "Recovered/resolved",
        "recovering": "Recovering/resolving",
        "not_recovered": "Not recovered/not resolved",
        "recovered_with_sequelae": "Recovered/resolved with sequelae",
        "fatal": "Fatal",
        "unknown": "Unknown",
    }
    root = ET.parse(trial / "trial_record_odm.xml").getroot()
    codelist = next(c for c in root.iter(f"{ODM}CodeList") if c.get("OID", "").endswith("OUTCOME"))
    items = {i.get("CodedValue"): i for i in codelist.iter(f"{ODM}CodeListItem")}
    assert set(items) == set(meta.variable_value_labels["outcome"])
    assert {t.get(LANG) for t in items["fatal"].iter(f"{ODM}TranslatedText")} == {"en", "bn"}
    in_odm = {
        s.get("SubjectKey"): {d.get("ItemOID"): d.get("Value") for d in g.iter(f"{ODM}ItemData")}
        for s in root.iter(f"{ODM}SubjectData")
        for g in s.iter(f"{ODM}ItemGroupData")
        if g.get("ItemGroupOID") == "IG.ADVERSE_EVENTS"
    }
    assert in_odm["BSM-003"]["I.ADVERSE_EVENTS.OUTCOME"] == "recovered"
    assert "I.ADVERSE_EVENTS.OUTCOME" not in in_odm["BSM-001"]  # not known: no value
    dictionary = {r["Variable / Field Name"]: r for r in read_csv(trial / "redcap" / "data_dictionary.csv")}
    outcome = next(r for n, r in dictionary.items() if n.endswith("outcome") and r["Form Name"] == "adverse_events")
    choices = outcome["Choices, Calculations, OR Slider Labels"]
    assert "recovered, Recovered/resolved" in choices
    assert "recovered_with_sequelae, Recovered/resolved with sequelae" in choices
    redcap = {r["study_id"]: r for r in read_csv(trial / "redcap" / "records_adverse_events.csv")}
    assert redcap["BSM-003"][outcome["Variable / Field Name"]] == "recovered"


def _break(source: Path, target: Path, edit: object) -> Path:
    ET.register_namespace("", ODM[1:-1])
    tree = ET.parse(source)
    edit(tree.getroot())  # type: ignore[operator]
    tree.write(target, encoding="utf-8", xml_declaration=True)
    return target


def _unit_into_metadata(root: ET.Element) -> None:
    """The original bug: a MeasurementUnit inside MetaDataVersion."""
    study = root.find(f"{ODM}Study")
    assert study is not None
    basic, mdv = study.find(f"{ODM}BasicDefinitions"), study.find(f"{ODM}MetaDataVersion")
    assert basic is not None and mdv is not None
    unit = basic[0]
    basic.remove(unit)
    mdv.append(unit)


def _two_faults(root: ET.Element) -> None:
    """A StudyEventDef without its required Name, and an AuditRecord out of order."""
    event = next(root.iter(f"{ODM}StudyEventDef"))
    del event.attrib["Name"]
    audit = next(root.iter(f"{ODM}AuditRecord"))
    first = audit[0]
    audit.remove(first)
    audit.append(first)


def test_a_broken_odm_is_refused_by_the_same_check(trial: Path, tmp_path: Path) -> None:
    odm = trial / "trial_record_odm.xml"
    moved = validate_odm(_break(odm, tmp_path / "moved.xml", _unit_into_metadata))
    assert not moved.valid and "MeasurementUnit" in moved.errors[0] and "not expected" in moved.errors[0]
    both = validate_odm(_break(odm, tmp_path / "both.xml", _two_faults))
    assert len(both.errors) == 2, both.errors  # every error, not only the first
    assert any("'Name'" in e and "required" in e for e in both.errors)
    assert any("UserRef" in e or "LocationRef" in e for e in both.errors)
    (tmp_path / "cut.xml").write_bytes(odm.read_bytes()[:500])
    assert "not well-formed" in validate_odm(tmp_path / "cut.xml").errors[0]
    assert "NOT valid" in both.summary() and "0 errors" in validate_odm(odm).summary()


def _choices(text: str) -> set[str]:
    return {part.split(",", 1)[0].strip() for part in text.split(" | ")} if text else set()


def test_the_redcap_dictionary_has_the_18_columns_valid_unique_names_and_the_same_labels(trial: Path) -> None:
    with (trial / "redcap" / "data_dictionary.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [dict(zip(header, r, strict=True)) for r in reader]
    assert header == REDCAP_COLUMNS
    names = [r["Variable / Field Name"] for r in rows]
    assert names[0] == "study_id" and rows[0]["Field Type"] == "text"
    assert len(names) == len(set(names)) and all(NAME.match(n) for n in names)
    forms = [r["Form Name"] for r in rows]
    assert all(NAME.match(f) for f in forms)
    assert [f for i, f in enumerate(forms) if i == 0 or forms[i - 1] != f] == list(dict.fromkeys(forms))  # contiguous
    assert {r["Field Type"] for r in rows} <= {"text", "notes", "dropdown", "radio", "yesno", "calc"}
    by_name = {r["Variable / Field Name"]: r for r in rows}
    assert by_name["arm"]["Choices, Calculations, OR Slider Labels"].startswith("A, Baricitinib")
    assert by_name["baseline_date"]["Text Validation Type OR Show Slider Number"] == "date_ymd"
    assert by_name["enrolled_at"]["Text Validation Type OR Show Slider Number"] == "datetime_seconds_ymd"
    assert by_name["reminder_time"]["Text Validation Type OR Show Slider Number"] == "time"
    assert by_name["adh_adherence_pct"]["Text Validation Type OR Show Slider Number"] == "number"
    assert by_name["adh_adherence_pct"]["Field Note"] == "%"
    assert by_name["ae_grade"]["Text Validation Type OR Show Slider Number"] == "integer"
    assert by_name["ae_sae_hospitalisation"]["Field Type"] == "yesno"
    assert by_name["ae_term"]["Field Type"] == "notes" and by_name["ae_term"]["Identifier?"] == "y"
    assert by_name["ar_ae_what_other"]["Branching Logic (Show field only if...)"] == "[ar_ae_what] = 'other'"
    assert by_name["ar_ser_birth_defect"]["Branching Logic (Show field only if...)"] == "[ar_ae_pregnancy] = '1'"
    severity = _choices(by_name["ar_ae_severity"]["Choices, Calculations, OR Slider Labels"])
    assert severity == {"mild", "daily_tasks", "self_care"}


def _records(folder: Path) -> dict[str, list[dict[str, str]]]:
    out = {}
    for path in sorted(folder.glob("records_*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            out[path.stem.removeprefix("records_")] = list(csv.DictReader(handle))
    return out


def test_the_redcap_import_matches_its_dictionary_events_and_mapping(trial: Path) -> None:
    folder = trial / "redcap"
    dictionary = {r["Variable / Field Name"]: r for r in read_csv_plain(folder / "data_dictionary.csv")}
    forms = {r["Form Name"] for r in dictionary.values()}
    events = read_csv_plain(folder / "events.csv")
    event_names = {e["unique_event_name"] for e in events}
    assert [(e["event_name"], e["unique_event_name"], e["day_offset"], e["offset_min"]) for e in events[:3]] == [
        ("Baseline", "baseline_arm_1", "0", "0"),
        ("Week 4", "week_4_arm_1", "28", "3"),
        ("Week 12", "week_12_arm_1", "84", "7"),
    ]
    assert read_csv_plain(folder / "arms.csv") == [{"arm_num": "1", "name": "Follow-up (both randomised arms)"}]
    mapping = {(m["unique_event_name"], m["form"]) for m in read_csv_plain(folder / "instrument_event_mapping.csv")}
    assert {e for e, _ in mapping} <= event_names and {f for _, f in mapping} == forms
    repeating = {(r["event_name"], r["form_name"]) for r in read_csv_plain(folder / "repeating_instruments.csv")}
    assert repeating <= mapping
    system = {"study_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance"}
    records = _records(folder)
    assert set(records) == forms
    used = 0
    for form, rows in records.items():
        with (folder / f"records_{form}.csv").open(encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle))
        assert header[:4] == ["study_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance"]
        for column in header:
            assert column in dictionary or column in system or column == f"{form}_complete", (form, column)
            if column in dictionary and column != "study_id":
                assert dictionary[column]["Form Name"] == form, (form, column)
        for row in rows:
            assert row["redcap_event_name"] in event_names
            assert (row["redcap_event_name"], form) in mapping, (form, row["redcap_event_name"])
            if row["redcap_repeat_instrument"]:
                assert row["redcap_repeat_instrument"] == form and row["redcap_repeat_instance"].isdigit()
                assert (row["redcap_event_name"], form) in repeating
            else:
                assert row["redcap_repeat_instance"] == "" and (row["redcap_event_name"], form) not in repeating
            assert row[f"{form}_complete"] in {"0", "2"}
            for column, value in row.items():
                field = dictionary.get(column)
                if value == "" or field is None or column == "study_id":
                    continue
                if field["Field Type"] == "yesno":
                    assert value in {"0", "1"}, (column, value)
                elif field["Field Type"] in ("dropdown", "radio"):
                    used += 1
                    assert value in _choices(field["Choices, Calculations, OR Slider Labels"]), (column, value)
                elif field["Text Validation Type OR Show Slider Number"] == "datetime_seconds_ymd":
                    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", value), (column, value)
    assert used > 10
    assert all(records[f] for f in ("participants", "visits", "doses", "adherence", "alerts", "adverse_events"))
    participants = {r["study_id"]: r for r in records["participants"]}
    assert participants["BSM-001"]["redcap_event_name"] == "baseline_arm_1" and participants["BSM-001"]["arm"] == "B"
    ae = next(a for a in records["adverse_events"] if a["study_id"] == "BSM-001")  # the finished report
    assert ae["redcap_event_name"] == "unscheduled_arm_1" and ae["redcap_repeat_instrument"] == "adverse_events"
    assert ae["ae_sae_hospitalisation"] == "1" and ae["ae_serious"] == "1" and ae["adverse_events_complete"] == "2"
    alert = next(a for a in records["alerts"] if a["alert_kind"] == "serious_ae")
    assert alert["redcap_repeat_instance"] == ae["ae_alert_id"] and alert["alert_acknowledged"] == "1"
    checkins = {r["study_id"]: r for r in records["responses_weekly_checkin"]}
    assert checkins["BSM-002"]["responses_weekly_checkin_complete"] == "2"  # completed
    assert checkins["BSM-001"]["responses_weekly_checkin_complete"] == "0"  # left half-answered
    visit = next(v for v in records["visits"] if v["study_id"] == "BSM-002" and v["visit_week"] == "4")
    assert visit["redcap_event_name"] == "week_4_arm_1" and visit["visit_attended_on"] == "2026-11-22"
    assert visit["visits_complete"] == "2"
    adherence = {r["study_id"]: r for r in records["adherence"]}
    assert adherence["BSM-002"]["redcap_event_name"] == "week_24_arm_1"
    assert adherence["BSM-002"]["redcap_repeat_instance"] == "1" and adherence["BSM-002"]["adh_taken"] == "1"
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert readme.index("data_dictionary.csv") < readme.index("events.csv") < readme.index("records_participants")


def read_csv_plain(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


async def test_since_exports_the_records_created_or_changed_since_by_their_own_times(
    bot: BotHarness, server: BotAPIServer, tmp_path: Path
) -> None:
    await build_trial(bot, server)
    full = await export(bot, tmp_path / "full")
    late = await export(bot, tmp_path / "late", since=date(2026, 11, 1))
    assert [r["study_id"] for r in read_csv(late / "participants.csv")] == ["BSM-003"]  # withdrawn on 22 Nov
    assert [(r["study_id"], r["week"]) for r in read_csv(late / "visits.csv")] == [("BSM-002", "4")]
    for name in ("doses", "adherence", "adverse_events", "alerts", "responses_ae_report"):
        assert read_csv(late / f"{name}.csv") == [], name
    # The ODM and REDCap files hold the same selection (and BSM-001 is in neither).
    assert "BSM-001" not in (late / "trial_record_odm.xml").read_text(encoding="utf-8")
    assert [r["study_id"] for r in read_csv_plain(late / "redcap" / "records_visits.csv")] == ["BSM-002"]

    start = "2026-10-27T00:00:00+06:00"
    mid = await export(bot, tmp_path / "mid", since=date(2026, 10, 27))
    doses = read_csv(full / "doses.csv")
    expected = [d["dose_id"] for d in doses if d["reminded_at"] >= start or (d["answered_at"] or "") >= start]
    assert [d["dose_id"] for d in read_csv(mid / "doses.csv")] == expected
    assert 0 < len(expected) < len(doses)
    assert len(read_csv(mid / "adverse_events.csv")) == 1 and read_csv(mid / "alerts.csv")
    # Adherence is still computed from every dose of the participants whose doses changed.
    adherence = {(r["study_id"], r["regimen"]): r for r in read_csv(mid / "adherence.csv")}
    assert adherence[("BSM-002", "baricitinib")]["doses_reminded"] == "3"
    assert adherence[("BSM-002", "baricitinib")]["adherence_pct"] == "33.3"
    assert {r["study_id"] for r in read_csv(mid / "participants.csv")} <= {"BSM-003"}


def test_unique_event_names_are_derived_as_redcap_does() -> None:
    assert unique_event_name("Week 4", 1) == "week_4_arm_1"
    assert unique_event_name("Baseline", 2) == "baseline_arm_2"
    assert unique_event_name("Follow-up  (day 3)", 1) == "followup_day_3_arm_1"
    assert unique_event_name("Week 24 visit: final!", 1) == "week_24_visit_final_arm_1"


@pytest.mark.parametrize(
    ("condition", "logic"),
    [
        ({"item": "a", "equals": "x"}, "[p_a] = 'x'"),
        ({"item": "a", "equals": True}, "[p_a] = '1'"),
        ({"item": "a", "in": ["x", "y"]}, "([p_a] = 'x' or [p_a] = 'y')"),
        ({"item": "a", "not_equals": "x"}, "([p_a] <> '' and [p_a] <> 'x')"),
        ({"item": "t", "greater_or_equal": 38}, "([p_t] <> '' and [p_t] >= 38)"),
        ({"item": "t", "less_than": 35.5}, "([p_t] <> '' and [p_t] < 35.5)"),
        ({"item": "a", "answered": True}, "[p_a] <> ''"),
        ({"item": "a", "answered": False}, "[p_a] = ''"),
        ({"not": {"item": "a", "equals": "x"}}, "[p_a] <> 'x'"),
        ({"not": {"item": "a", "in": ["x", "y"]}}, "[p_a] <> 'x' and [p_a] <> 'y'"),
        ({"not": {"item": "a", "answered": True}}, "[p_a] = ''"),
        (
            {
                "any_of": [
                    {"item": "a", "equals": "x"},
                    {"all_of": [{"item": "t", "less_than": 1}, {"item": "a", "answered": True}]},
                ]
            },
            "([p_a] = 'x' or (([p_t] <> '' and [p_t] < 1) and [p_a] <> ''))",
        ),
        ({"not": {"item": "t", "greater_than": 3}}, None),  # REDCap compares a blank differently
        ({"not": {"any_of": [{"item": "a", "equals": "x"}]}}, None),
        ({"item": "elsewhere", "equals": "x"}, None),  # not a field of this form
        ({"any_of": [{"item": "a", "equals": "x"}, {"item": "elsewhere", "equals": "x"}]}, None),
    ],
)
def test_branching_logic_says_what_the_condition_says_or_nothing(
    condition: dict[str, object], logic: str | None
) -> None:
    names = {"a": "p_a", "t": "p_t"}
    assert branching(Condition.model_validate(condition), names.get) == logic
