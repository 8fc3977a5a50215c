"""The trial-record export, on SQLite and PostgreSQL: a realistic trial built
through the real bot, exported, and read back the way a data manager would."""

from __future__ import annotations

import csv
from pathlib import Path

import pyreadstat
import pytest
from sqlalchemy import select

from devtools.botapi_server import BotAPIServer
from devtools.harness import ADMIN_ID, BotHarness
from models import Alert
from tests.bothelpers import admin_says, enroll, link, says
from tests.schedule_helpers import dhaka, reminders, walk
from tests.test_questionnaire_flow import answer_all, is_question

USERS = {4001: ("Rahima", "Begum"), 4002: ("Karim", "Uddin"), 4003: ("Salma", "Khatun")}


async def build_trial(bot: BotHarness, server: BotAPIServer) -> None:
    """Both arms, Bangla and English, doses taken, skipped and unanswered, a
    serious event reported and acknowledged, a visit date agreed inside its window
    and one outside it (a deviation), a recorded visit and a withdrawal, all
    through the real bot."""
    codes = [
        await enroll(server, "BSM-001 B 2026-10-25 bn fri"),
        await enroll(server, "BSM-002 A 2026-10-25 en"),
        await enroll(server, "BSM-003 A 2026-10-25 bn"),
    ]
    users = {}
    for (user_id, (first, last)), code, lang in zip(USERS.items(), codes, ["বাংলা", "English", "বাংলা"], strict=True):
        users[user_id] = server.user(user_id, first, last_name=last, language_code="bn")
        await link(server, users[user_id], code, lang)
    english = users[4002]
    for day, answer in ((25, "taken"), (26, "skipped"), (27, None)):
        await walk(bot, dhaka(2026, 10, day, 9, 5))
        reminder = reminders(server, english.id)[-1]
        if answer is not None:
            data = next(d for row in reminder.buttons for _t, d in row if d and d.endswith(f":{answer}"))
            update = await english.press(reminder, data)
            await server.wait_for(english.id, since=update)
    await walk(bot, dhaka(2026, 10, 28, 0, 30))  # the unanswered dose closes as "no answer"
    # Agreed by phone: BSM-001 comes two days late (inside the window); week 12 outside it (a deviation).
    await admin_says(server, "/visit BSM-001 4 on 2026-11-24", "agreed for")
    question = await admin_says(server, "/visit BSM-001 12 on 2027-01-31", "outside")
    admin = server.user(ADMIN_ID, "Admin", language_code="en", label="admin")
    update = await admin.press(question, "Confirm: record a deviation")
    await server.wait_for(ADMIN_ID, "protocol deviation", since=update)
    bangla = users[4001]
    await says(server, bangla, "/report", is_question)
    await answer_all(
        server,
        bangla,
        {"ae_what": "fever_infection", "ae_start": "yesterday", "ae_severity": "self_care", "ser_hospital": "yes"},
    )
    assert bot.services is not None
    async with bot.services.sessions() as session:
        alert_id = await session.scalar(select(Alert.id).where(Alert.kind == "serious_ae"))
    await admin_says(server, f"/ack {alert_id} called, admitted to BSMMU", "acknowledged")
    bot.clock.set(dhaka(2026, 11, 22, 12, 0))  # the week-4 visit day
    await admin_says(server, "/visit BSM-002 4 done 2026-11-22", "BSM-002")
    await admin_says(server, "/withdraw BSM-003 moved to Chattogram", "withdrawn")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
async def exported(bot: BotHarness, server: BotAPIServer, tmp_path: Path) -> Path:
    await build_trial(bot, server)
    result = await bot.export(tmp_path / "export", validate=True)
    assert result.row_counts["participants"] == 3
    assert result.validation is not None and result.validation.errors == []  # the official CDISC schema
    return result.directory


def test_sav_has_labels_and_the_same_values_as_the_csv(exported: Path) -> None:
    names = [p.stem for p in exported.glob("*.csv") if p.stem != "data_dictionary"]
    assert {"participants", "visits", "doses", "adherence", "adverse_events", "alerts", "responses_ae_report"} <= set(
        names
    )
    for name in names:
        rows = read_csv(exported / f"{name}.csv")
        if not rows:
            continue
        frame, meta = pyreadstat.read_sav(str(exported / f"{name}.sav"))
        assert list(frame.columns) == list(rows[0].keys())
        assert all(meta.column_names_to_labels[c] for c in frame.columns), name
        for i, row in enumerate(rows):
            for column, text in row.items():
                value = frame[column].iloc[i]
                if text == "":
                    assert value is None or value != value or value == "", (name, column, value)  # missing
                elif meta.original_variable_types[column].startswith("DATETIME"):
                    assert value.isoformat() == text[:19], (name, column)
                elif meta.original_variable_types[column].startswith("DATE"):
                    assert value.isoformat() == text, (name, column)
                elif meta.original_variable_types[column].startswith("F"):
                    assert float(value) == float(text), (name, column)
                else:
                    assert value == text, (name, column)
    _, meta = pyreadstat.read_sav(str(exported / "participants.sav"))
    assert meta.variable_value_labels["arm"]["B"].startswith("Methotrexate")
    assert meta.variable_measure["arm"] == "nominal"


def test_rows_are_what_the_bot_recorded(exported: Path) -> None:
    rows = {r["study_id"]: r for r in read_csv(exported / "participants.csv")}
    assert (
        rows["BSM-001"]["arm"] == "B" and rows["BSM-001"]["language"] == "bn" and rows["BSM-001"]["mtx_weekday"] == "4"
    )
    assert rows["BSM-002"]["language"] == "en" and rows["BSM-002"]["status"] == "active"
    assert rows["BSM-003"]["status"] == "withdrawn" and rows["BSM-003"]["withdrawal_reason"] == "moved to Chattogram"
    assert rows["BSM-001"]["enrolled_at"].endswith("+06:00")  # ISO 8601 in the trial time zone

    doses = [r for r in read_csv(exported / "doses.csv") if r["study_id"] == "BSM-002"]
    assert [(r["dose_date"], r["answer"]) for r in doses] == [
        ("2026-10-25", "taken"),
        ("2026-10-26", "skipped"),
        ("2026-10-27", "no_answer"),
    ]
    assert doses[0]["planned_time"] == "09:00" and doses[0]["answered_at"].startswith("2026-10-25T09:")
    adherence = {(r["study_id"], r["regimen"]): r for r in read_csv(exported / "adherence.csv")}
    assert adherence[("BSM-002", "baricitinib")]["taken"] == "1"
    assert adherence[("BSM-002", "baricitinib")]["adherence_pct"] == "33.3"

    (event,) = read_csv(exported / "adverse_events.csv")
    assert event["study_id"] == "BSM-001" and event["serious"] == "1" and event["sae_hospitalisation"] == "1"
    assert event["sae_life_threatening"] == "0" and event["grade"] == "3" and event["category"] == "fever_infection"
    (report,) = read_csv(exported / "responses_ae_report.csv")
    assert report["study_id"] == "BSM-001" and report["ser_hospital"] == "1" and report["status"] == "completed"
    assert report["triage_level"] == "URGENT"
    alert = next(a for a in read_csv(exported / "alerts.csv") if a["kind"] == "serious_ae")
    assert alert["acknowledged"] == "1" and alert["acknowledged_by_role"] == "admin"
    assert alert["ack_note"] == "called, admitted to BSMMU" and alert["sae_deadline_at"] > alert["aware_at"]
    visit = next(v for v in read_csv(exported / "visits.csv") if v["study_id"] == "BSM-002" and v["week"] == "4")
    assert visit["status"] == "done" and visit["attended_on"] == "2026-11-22"


def test_the_dictionary_covers_every_exported_column(exported: Path) -> None:
    dictionary = read_csv(exported / "data_dictionary.csv")
    described = {(d["dataset"], d["variable"]) for d in dictionary}
    for path in exported.glob("*.csv"):
        if path.name == "data_dictionary.csv":
            continue
        with path.open(encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle))
        assert {(path.stem, column) for column in header} <= described, path.name
    free_text = {d["variable"] for d in dictionary if d["free_text"] == "yes"}
    assert {"withdrawal_reason", "summary", "term", "anything_else"} <= free_text
    assert all(d["label"] and d["type"] and d["source"] for d in dictionary)


def test_no_telegram_id_name_or_code_in_any_file(exported: Path) -> None:
    forbidden = [str(uid) for uid in USERS] + [n for pair in USERS.values() for n in pair] + [str(ADMIN_ID)]
    for path in (p for p in exported.rglob("*") if p.is_file()):
        content = path.read_bytes()
        for needle in forbidden:
            assert needle.encode() not in content, (path.name, needle)


ODM = "{http://www.cdisc.org/ns/odm/v1.3}"


def test_odm_parses_refers_to_its_definitions_and_matches_the_data(exported: Path) -> None:
    import xml.etree.ElementTree as ET

    root = ET.parse(exported / "trial_record_odm.xml").getroot()
    assert root.tag == f"{ODM}ODM" and root.get("ODMVersion") == "1.3.2"
    item_defs = {i.get("OID"): i for i in root.iter(f"{ODM}ItemDef")}
    codelists = {
        c.get("OID"): {item.get("CodedValue") for item in c.iter(f"{ODM}CodeListItem")}
        for c in root.iter(f"{ODM}CodeList")
    }
    events = {e.get("OID") for e in root.iter(f"{ODM}StudyEventDef")}
    assert {"SE.WEEK0", "SE.WEEK4", "SE.WEEK12", "SE.WEEK24", "SE.UNSCHEDULED"} <= events
    for codelist in root.iter(f"{ODM}CodeList"):  # English and Bangla decodes
        langs = {t.get("{http://www.w3.org/XML/1998/namespace}lang") for t in codelist.iter(f"{ODM}TranslatedText")}
        if codelist.get("OID") == "CL.PARTICIPANTS.ARM":
            assert langs == {"en", "bn"}
    values: dict[tuple[str, str], str] = {}
    count = 0
    for group in root.iter(f"{ODM}ItemGroupData"):  # one audit record per row, for all its items
        audit = group.find(f"{ODM}AuditRecord")
        assert audit is not None and audit.find(f"{ODM}DateTimeStamp") is not None
    for subject in root.iter(f"{ODM}SubjectData"):
        for data in subject.iter(f"{ODM}ItemData"):
            count += 1
            oid = data.get("ItemOID")
            assert oid in item_defs, oid
            ref = item_defs[oid].find(f"{ODM}CodeListRef")
            if ref is not None:
                assert data.get("Value") in codelists[ref.get("CodeListOID")], (oid, data.get("Value"))
            values[(subject.get("SubjectKey") or "", oid or "")] = data.get("Value") or ""
    assert count > 20
    for row in read_csv(exported / "participants.csv"):
        for column, text in row.items():
            if column == "study_id" or text == "":
                continue
            assert values[(row["study_id"], f"I.PARTICIPANTS.{column.upper()}")] == text, column


def test_the_visits_carry_the_agreed_date_and_the_deviation_flag_in_every_format(exported: Path) -> None:
    visits = {(r["study_id"], r["week"]): r for r in read_csv(exported / "visits.csv")}
    assert (visits[("BSM-001", "4")]["agreed_date"], visits[("BSM-001", "4")]["deviation"]) == ("2026-11-24", "0")
    assert (visits[("BSM-001", "12")]["agreed_date"], visits[("BSM-001", "12")]["deviation"]) == ("2027-01-31", "1")
    assert (visits[("BSM-002", "4")]["agreed_date"], visits[("BSM-002", "4")]["deviation"]) == ("", "0")
    assert visits[("BSM-001", "12")]["target_date"] == "2027-01-17"  # the target and window stay
    frame, meta = pyreadstat.read_sav(str(exported / "visits.sav"))
    assert meta.column_names_to_labels["deviation"] == "Agreed date outside the visit window (protocol deviation)"
    assert meta.variable_value_labels["deviation"] == {0: "No", 1: "Yes"}
    row = frame[(frame["study_id"] == "BSM-001") & (frame["week"] == 12)].iloc[0]
    assert row["agreed_date"].isoformat() == "2027-01-31" and row["deviation"] == 1
    dictionary = {r["variable"]: r for r in read_csv(exported / "data_dictionary.csv") if r["dataset"] == "visits"}
    assert {"agreed_date", "deviation"} <= set(dictionary)
    odm = (exported / "trial_record_odm.xml").read_text(encoding="utf-8")
    assert 'ItemOID="I.VISITS.AGREED_DATE" Value="2027-01-31"' in odm
    assert 'ItemOID="I.VISITS.DEVIATION" Value="1"' in odm


VIEW_COLUMNS = {
    "trial_participants": "study_id arm baseline_date language status enrolled_at linked_at paused_until "
    "pause_reason withdrawn_at withdrawal_reason",
    "trial_visits": "study_id week target_date visit_date window_start window_end status attended_on "
    "reschedule_requested_at recorded_at agreed_date agreed_at deviation",
    "trial_doses": "dose_id study_id regimen drug dose_date planned_time reminded_at answer answered_at",
    "trial_questionnaire_responses": "response_id study_id instrument_id instrument_version status started_at "
    "completed_at scores_json triage_json visit_week",
    "trial_questionnaire_answers": "response_id study_id instrument_id instrument_version item_id value_json "
    "skipped answered_at",
    "trial_adverse_events": "ae_id study_id response_id category term onset_date grade serious results_in_death "
    "life_threatening hospitalisation disability congenital_anomaly important_medical_event reported_at alert_id "
    "source recorded_by complete outcome outcome_at",
    "trial_alerts": "alert_id study_id kind level summary aware_at sae_deadline_at acknowledged_at escalated_at",
}


async def test_the_read_only_views_have_their_documented_columns_and_no_telegram_ids(
    bot: BotHarness, server: BotAPIServer
) -> None:
    from sqlalchemy import text

    await build_trial(bot, server)
    assert bot.services is not None
    async with bot.services.engine.connect() as conn:
        for view, columns in VIEW_COLUMNS.items():
            result = await conn.execute(text(f"SELECT * FROM {view}"))
            assert list(result.keys()) == columns.split(), view
            rows = result.all()
            for row in rows:
                for value in row:
                    assert str(value) not in {str(uid) for uid in USERS} | {str(ADMIN_ID)}, (view, value)
        participants = (await conn.execute(text("SELECT study_id, status FROM trial_participants ORDER BY 1"))).all()
        agreed = (
            await conn.execute(
                text("SELECT week, agreed_date, deviation FROM trial_visits WHERE study_id = 'BSM-001' ORDER BY week")
            )
        ).all()
    assert [(w, str(d) if d else None, bool(x)) for w, d, x in agreed] == [
        (0, None, False),
        (4, "2026-11-24", False),
        (12, "2027-01-31", True),
        (24, None, False),
    ]
    assert [tuple(r) for r in participants] == [("BSM-001", "active"), ("BSM-002", "active"), ("BSM-003", "withdrawn")]


async def test_export_command_sends_one_zip_to_the_admin_and_never_to_a_group(
    bot: BotHarness, server: BotAPIServer
) -> None:
    import io
    import zipfile

    from devtools.harness import COORDINATOR_CHAT

    await build_trial(bot, server)
    reply = await admin_says(server, "/export", lambda m: m.document is not None)
    assert reply.document is not None and reply.document.filename.startswith("ssc-trial-record-")
    names = set(zipfile.ZipFile(io.BytesIO(reply.document.content)).namelist())
    assert {"participants.csv", "participants.sav", "data_dictionary.csv", "trial_record_odm.xml"} <= names
    assert {"redcap/data_dictionary.csv", "redcap/records_participants.csv", "redcap/README.md"} <= names
    assert "ODM valid against CDISC ODM 1.3.2" in (reply.caption or "") and "0 errors" in (reply.caption or "")
    assert "Rows: participants 3" in (reply.caption or "")
    group = server.group(COORDINATOR_CHAT)
    update = await group.send(server.user(ADMIN_ID), "/export")
    await server.wait_for(COORDINATOR_CHAT, "only in your private chat", since=update)
    assert not server.documents(COORDINATOR_CHAT)


async def test_export_and_audit_check_from_the_shell(
    bot: BotHarness, server: BotAPIServer, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.admin import run

    await build_trial(bot, server)
    monkeypatch.setenv("DATABASE_URL", db_url)
    code, text = await run(["export", "--out", str(tmp_path / "shell-export"), "--validate"], bot.clock)
    assert code == 0 and "Exported" in text and "participants: 3 row(s)" in text
    assert "ODM valid against CDISC ODM 1.3.2 (ODM1-3-2.xsd): 0 errors" in text
    assert (tmp_path / "shell-export" / "adverse_events.sav").exists()
    assert (tmp_path / "shell-export" / "redcap" / "records_adverse_events.csv").exists()
    code, text = await run(["export", "--out", str(tmp_path / "since"), "--since", "2026-11-01"], bot.clock)
    # BSM-003's withdrawal and BSM-002's recorded visit: their own records, nothing else
    assert code == 0 and "participants: 1 row(s)" in text and "visits: 1 row(s)" in text
    assert "doses: 0 row(s)" in text and "ODM valid" not in text
    code, text = await run(["audit-verify"], bot.clock)
    assert code == 0 and "Audit chain intact" in text


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_text_cell_starting_like_a_formula_is_written_as_text(start: str) -> None:
    from export.spec import Variable
    from export.writers import csv_cell

    text = Variable("term", "Term", "string", "test", free_text=True)
    assert csv_cell(text, start + "1+1") == "'" + start + "1+1"
    assert csv_cell(text, "fever " + start) == "fever " + start
    assert csv_cell(text, "") == ""
    for kind in ("integer", "decimal", "date", "datetime", "boolean"):
        number = Variable("x", "X", kind, "test")  # type: ignore[arg-type]
        assert csv_cell(number, "-1.5") == "-1.5"  # ours, never a formula: stays exact
