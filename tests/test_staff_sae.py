"""Staff-reported serious events (`/sae`, `python -m cli sae`): the same
adverse-event row as a participant's report, an urgent alert with the 24-hour
deadline that escalates, an audit row, the export rows, and for a death the end
of every message to the participant. On SQLite and PostgreSQL, through the real
bot and the injected clock."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from cli.admin import run
from devtools.botapi_server import BotAPIServer, SimUser
from devtools.harness import ADMIN_ID, COORDINATOR_CHAT, ESCALATION_CHAT, BotHarness
from domain.adverse_events import (
    OUTCOME_USAGE,
    USAGE,
    OutcomeRequest,
    OutcomeUsageError,
    SaeUsageError,
    StaffSae,
    parse_outcome_args,
    parse_sae_args,
)
from models import AdverseEvent, Alert, AlertLevel, AuditEntry, Participant, ParticipantStatus
from tests.bothelpers import admin_says, enroll, link
from tests.schedule_helpers import dhaka, reminders, walk

TODAY = date(2026, 10, 25)
TESTS_DIR = Path(__file__).resolve().parent


# --- the arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["BSM-001", "hospitalisation"], StaffSae("BSM-001", (3,), None, None)),
        (["bsm-001", "death"], StaffSae("BSM-001", (1,), None, None)),
        (["BSM-001", "death,life_threatening"], StaffSae("BSM-001", (1, 2), None, None)),
        (["BSM-001", "Hospitalization,disability,hospitalisation"], StaffSae("BSM-001", (3, 4), None, None)),
        (["BSM-001", "congenital_anomaly", "2026-10-01"], StaffSae("BSM-001", (5,), date(2026, 10, 1), None)),
        (["BSM-001", "important_medical_event", "২৪/১০/২০২৬"], StaffSae("BSM-001", (6,), date(2026, 10, 24), None)),
        (
            ["BSM-001", "hospitalisation", "2026-10-25", "daughter", "phoned"],
            StaffSae("BSM-001", (3,), TODAY, "daughter phoned"),
        ),
        (["BSM-001", "death", "wife", "phoned"], StaffSae("BSM-001", (1,), None, "wife phoned")),
    ],
)
def test_sae_arguments_are_read(args: list[str], expected: StaffSae) -> None:
    assert parse_sae_args(args, TODAY) == expected


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ([], "a study id and at least one criterion"),
        (["BSM-001"], "a study id and at least one criterion"),
        (["not an id", "death"], "not an id"),
        (["BSM-001", "admitted_to_icu"], "unknown criterion 'admitted_to_icu'"),
        (["BSM-001", "death,dead"], "unknown criterion 'dead'"),
        (["BSM-001", "death", "2026-13-40"], "is not a date"),
        (["BSM-001", "death", "2026-10-26"], "the onset date 2026-10-26 is in the future"),
    ],
)
def test_bad_sae_arguments_get_the_usage_line(args: list[str], problem: str) -> None:
    with pytest.raises(SaeUsageError) as info:
        parse_sae_args(args, TODAY)
    first, usage = str(info.value).split("\n")
    assert problem in first and usage == USAGE
    assert "death, life_threatening, hospitalisation, disability, congenital_anomaly, important_medical_event" in usage


# --- through the bot ------------------------------------------------------------------------


async def linked(server: BotAPIServer, study_id: str, arm: str, user_id: int) -> SimUser:
    code = await enroll(server, f"{study_id} {arm} 2026-10-25 en{' fri' if arm == 'B' else ''}")
    user = server.user(user_id, "P", language_code="en")
    await link(server, user, code, "English")
    return user


async def rows(bot: BotHarness, model: type, *where: object) -> list:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        return list(await session.scalars(select(model).where(*where).order_by(model.id)))  # type: ignore[attr-defined]


async def export_rows(bot: BotHarness, tmp_path: Path, name: str) -> list[dict[str, str]]:
    result = await bot.export(tmp_path / "export")
    with (result.directory / f"{name}.csv").open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


async def test_sae_hospitalisation_in_telegram_alerts_escalates_and_is_exported(
    bot: BotHarness, server: BotAPIServer, tmp_path: Path
) -> None:
    await linked(server, "BSM-001", "B", 1001)
    reply = await admin_says(
        server, "/sae BSM-001 hospitalisation 2026-10-24 daughter phoned, admitted to BSMMU", "recorded"
    )
    assert "Serious adverse event #1 recorded for BSM-001 (hospitalisation)" in reply.content
    assert "report to the sponsor by 2026-10-26 09:00 (24 h)" in reply.content

    (alert_msg,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    text = alert_msg.content
    assert "BSM-001 · arm B (methotrexate)" in text.splitlines()[0]
    assert "recorded by the study team: Admin (admin:900)" in text
    assert "Criteria: hospitalisation" in text and "Onset: 2026-10-24" in text
    assert "Serious (ICH E2A criterion 3)" in text
    assert "SERIOUS: report to the sponsor by Mon 26 Oct 2026 09:00" in text
    assert alert_msg.buttons  # the Acknowledge button

    (event,) = await rows(bot, AdverseEvent)
    (alert,) = await rows(bot, Alert)
    assert (event.source, event.recorded_by, event.session_id) == ("staff", f"admin:{ADMIN_ID}", None)
    assert event.serious and event.hospitalisation and not event.results_in_death
    assert event.onset_date == date(2026, 10, 24) and event.reported_at == bot.clock.now()
    assert event.note == "daughter phoned, admitted to BSMMU" and event.alert_id == alert.id
    assert alert.level is AlertLevel.URGENT and alert.kind == "serious_ae"
    assert alert.deadline_at == alert.aware_at + timedelta(hours=24)
    (entry,) = await rows(bot, AuditEntry, AuditEntry.action == "adverse_event.staff_report")
    assert entry.actor == f"admin:{ADMIN_ID}" and entry.after is not None
    assert entry.after["criteria"] == ["hospitalisation"] and entry.after["note"] == "[free text]"
    (participant,) = await rows(bot, Participant)
    assert participant.status == ParticipantStatus.ACTIVE  # an admission stops nothing

    bot.clock.advance(timedelta(minutes=31))
    await bot.tick()
    (escalated,) = await server.wait_for(ESCALATION_CHAT, "ESCALATED")
    assert "Criteria: hospitalisation" in escalated.content

    (row,) = await export_rows(bot, tmp_path, "adverse_events")
    assert (row["study_id"], row["source"], row["recorded_by"], row["response_id"]) == ("BSM-001", "staff", "admin", "")
    assert row["serious"] == "1" and row["sae_hospitalisation"] == "1" and row["sae_death"] == "0"
    assert row["alert_id"] == str(alert.id) and row["category"] == "staff_report"


async def test_sae_death_in_telegram_stops_every_message_to_the_participant(
    bot: BotHarness, server: BotAPIServer
) -> None:
    await linked(server, "BSM-002", "A", 1002)
    await linked(server, "BSM-003", "A", 1003)  # alive: keeps getting reminders
    await walk(bot, dhaka(2026, 10, 27, 12))
    assert reminders(server, 1002) and reminders(server, 1003)
    reply = await admin_says(server, "/sae BSM-002 death 2026-10-27 husband phoned", "recorded")
    assert "BSM-002 is withdrawn (died): no more messages will be sent" in reply.content
    (alert_msg,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    assert "Serious (ICH E2A criterion 1): Results in death" in alert_msg.content
    assert "all messages to the participant are stopped" in alert_msg.content

    (event,) = await rows(bot, AdverseEvent)
    assert event.results_in_death and event.grade == 5 and event.source == "staff"
    dead, alive = await rows(bot, Participant, Participant.study_id.in_(["BSM-002", "BSM-003"]))
    assert dead.status == ParticipantStatus.WITHDRAWN and dead.withdrawal_reason == f"died (adverse event #{event.id})"
    assert alive.status == ParticipantStatus.ACTIVE
    before_dead, before_alive = len(server.messages(1002)), len(reminders(server, 1003))

    await walk(bot, dhaka(2026, 11, 10))  # two weeks: daily doses, check-in prompts
    assert len(server.messages(1002)) == before_dead  # nothing at all to the family
    assert len(reminders(server, 1003)) >= before_alive + 14
    actions = [a.action for a in await rows(bot, AuditEntry, AuditEntry.participant_id == dead.id)]
    assert "adverse_event.staff_report" in actions and "participant.withdraw" in actions


async def test_sae_from_someone_not_an_admin_is_refused_and_audited(bot: BotHarness, server: BotAPIServer) -> None:
    user = await linked(server, "BSM-004", "B", 1004)
    update = await user.send("/sae BSM-004 death")
    (reply,) = await server.wait_for(user.id, "only for the study team", since=update)
    assert reply.content
    assert await rows(bot, AdverseEvent) == [] and await rows(bot, Alert) == []
    (refusal,) = await rows(bot, AuditEntry, AuditEntry.action == "admin.refuse")
    # who tried is kept as a keyed hash (issue 17: no outsider's Telegram id in the audit for ever)
    assert refusal.actor.startswith("telegram:h:") and refusal.actor != "telegram:1004" and refusal.detail == "/sae"
    (participant,) = await rows(bot, Participant)
    assert participant.status == ParticipantStatus.ACTIVE


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("/sae BSM-005 admitted", "unknown criterion 'admitted'"),
        ("/sae BSM-404 death", "no participant with study id BSM-404"),
        ("/sae BSM-005 death 31/02/2026", "is not a date"),
        ("/sae BSM-005 hospitalisation 2026-10-26", "is in the future"),
        ("/sae", "a study id and at least one criterion"),
    ],
)
async def test_bad_sae_in_telegram_gets_the_usage_line_and_changes_nothing(
    bot: BotHarness, server: BotAPIServer, command: str, problem: str
) -> None:
    await linked(server, "BSM-005", "B", 1005)
    reply = await admin_says(server, command, "usage: /sae")
    assert reply.content.startswith("Not done: ") and problem in reply.content
    assert await rows(bot, AdverseEvent) == [] and await rows(bot, Alert) == []
    (participant,) = await rows(bot, Participant)
    assert participant.status == ParticipantStatus.ACTIVE


# --- through the shell --------------------------------------------------------------------------


@pytest.fixture
def shell_env(bot: BotHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", bot.database_url)
    monkeypatch.setenv("COORDINATOR_CHAT_IDS", str(COORDINATOR_CHAT))
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)


@pytest.mark.usefixtures("shell_env")
async def test_cli_sae_hospitalisation_reaches_the_coordinators_through_the_running_bot(
    bot: BotHarness, server: BotAPIServer, tmp_path: Path
) -> None:
    await linked(server, "BSM-006", "A", 1006)
    code, text = await run(["sae", "BSM-006", "hospitalisation,important_medical_event", "2026-10-25"], bot.clock)
    assert code == 0, text
    assert "recorded for BSM-006 (hospitalisation, important_medical_event)" in text
    assert "queued for the coordinators" in text
    await bot.tick()  # the bot's heartbeat sends what the shell queued
    (alert_msg,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    assert "BSM-006" in alert_msg.content and "recorded by the study team" in alert_msg.content
    assert "ICH E2A criterion 3" in alert_msg.content and "ICH E2A criterion 6" in alert_msg.content
    (event,) = await rows(bot, AdverseEvent)
    assert event.source == "staff" and event.recorded_by is not None and event.recorded_by.startswith("cli:")
    assert event.hospitalisation and event.important_medical_event and event.alert_id is not None
    (entry,) = await rows(bot, AuditEntry, AuditEntry.action == "adverse_event.staff_report")
    assert entry.actor.startswith("cli:")
    bot.clock.advance(timedelta(minutes=31))
    await bot.tick()
    await server.wait_for(ESCALATION_CHAT, "ESCALATED")
    (row,) = await export_rows(bot, tmp_path, "adverse_events")
    assert (row["source"], row["recorded_by"]) == ("staff", "cli")


@pytest.mark.usefixtures("shell_env")
async def test_cli_sae_death_stops_reminders(bot: BotHarness, server: BotAPIServer) -> None:
    await linked(server, "BSM-007", "B", 1007)
    await walk(bot, dhaka(2026, 10, 30, 12))
    assert reminders(server, 1007)
    before = len(server.messages(1007))
    code, text = await run(["sae", "BSM-007", "death", "wife", "phoned"], bot.clock)
    assert code == 0 and "is withdrawn (died)" in text
    await bot.tick()
    await server.wait_for(COORDINATOR_CHAT, "Results in death")
    await walk(bot, dhaka(2026, 11, 20))
    assert len(server.messages(1007)) == before
    (participant,) = await rows(bot, Participant)
    assert participant.status == ParticipantStatus.WITHDRAWN and (participant.withdrawal_reason or "").startswith(
        "died"
    )


async def test_cli_sae_without_coordinator_chats_is_refused(
    bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    await linked(server, "BSM-008", "B", 1008)
    monkeypatch.setenv("DATABASE_URL", bot.database_url)
    monkeypatch.delenv("COORDINATOR_CHAT_IDS", raising=False)
    monkeypatch.chdir(TESTS_DIR)  # no .env here
    code, text = await run(["sae", "BSM-008", "death"], bot.clock)
    assert code == 1 and "COORDINATOR_CHAT_IDS is not set" in text
    assert await rows(bot, AdverseEvent) == []


@pytest.mark.usefixtures("shell_env")
@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["BSM-009", "deceased"], "unknown criterion 'deceased'"),
        (["BSM-404", "death"], "no participant with study id BSM-404"),
        (["BSM-009", "death", "2026-10-26"], "is in the future"),
    ],
)
async def test_bad_cli_sae_gets_the_usage_line_and_changes_nothing(
    bot: BotHarness, server: BotAPIServer, args: list[str], problem: str
) -> None:
    await linked(server, "BSM-009", "B", 1009)
    code, text = await run(["sae", *args], bot.clock)
    assert code == 1 and problem in text and "usage: python -m cli sae STUDY_ID CRITERION" in text
    assert await rows(bot, AdverseEvent) == [] and await rows(bot, Alert) == []


# --- an adverse event's outcome ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["12", "recovered"], OutcomeRequest(12, "recovered")),
        (["#3", "Recovered-with-sequelae"], OutcomeRequest(3, "recovered_with_sequelae")),
        (["১২", "resolving"], OutcomeRequest(12, "recovering")),
        (["4", "not_resolved"], OutcomeRequest(4, "not_recovered")),
        (["5", "died"], OutcomeRequest(5, "fatal")),
        (["6", "UNKNOWN"], OutcomeRequest(6, "unknown")),
    ],
)
def test_outcome_arguments_are_read(args: list[str], expected: OutcomeRequest) -> None:
    assert parse_outcome_args(args) == expected


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ([], "an adverse event number and one outcome"),
        (["12"], "an adverse event number and one outcome"),
        (["12", "recovered", "today"], "an adverse event number and one outcome"),
        (["BSM-001", "recovered"], "'BSM-001' is not an adverse event number"),
        (["12", "cured"], "unknown outcome 'cured'"),
    ],
)
def test_bad_outcome_arguments_get_the_usage_line(args: list[str], problem: str) -> None:
    with pytest.raises(OutcomeUsageError) as info:
        parse_outcome_args(args)
    first, usage = str(info.value).split("\n")
    assert problem in first and usage == OUTCOME_USAGE
    assert "recovered, recovering, not_recovered, recovered_with_sequelae, fatal, unknown" in usage


async def test_staff_set_an_adverse_events_outcome_in_telegram_audited_and_exported(
    bot: BotHarness, server: BotAPIServer, tmp_path: Path
) -> None:
    await linked(server, "BSM-011", "B", 1011)
    await admin_says(server, "/sae BSM-011 hospitalisation 2026-10-24 son phoned", "recorded")
    (event,) = await rows(bot, AdverseEvent)
    assert event.outcome is None and event.outcome_at is None  # not known yet

    reply = await admin_says(server, f"/outcome {event.id} recovering", "outcome")
    assert reply.content == f"Adverse event #{event.id} (BSM-011): outcome Recovering/resolving (was: not recorded)."
    bot.clock.advance(timedelta(days=3))
    reply = await admin_says(server, f"/outcome {event.id} recovered", "outcome")
    assert reply.content == (
        f"Adverse event #{event.id} (BSM-011): outcome Recovered/resolved (was: Recovering/resolving)."
    )
    reply = await admin_says(server, f"/outcome {event.id} recovered", "outcome")
    assert "already has the outcome Recovered/resolved: nothing changed" in reply.content

    (event,) = await rows(bot, AdverseEvent)
    assert event.outcome == "recovered" and event.outcome_at == bot.clock.now()
    entries = await rows(bot, AuditEntry, AuditEntry.action == "adverse_event.outcome")
    assert [(e.actor, e.before, e.after) for e in entries] == [
        (
            f"admin:{ADMIN_ID}",
            {"adverse_event": event.id, "outcome": None},
            {"adverse_event": event.id, "outcome": "recovering"},
        ),
        (
            f"admin:{ADMIN_ID}",
            {"adverse_event": event.id, "outcome": "recovering"},
            {"adverse_event": event.id, "outcome": "recovered"},
        ),
    ]
    (row,) = await export_rows(bot, tmp_path, "adverse_events")
    assert row["outcome"] == "recovered" and row["outcome_at"] != ""


async def test_a_bad_outcome_in_telegram_gets_the_usage_line_and_changes_nothing(
    bot: BotHarness, server: BotAPIServer
) -> None:
    await linked(server, "BSM-012", "A", 1012)
    await admin_says(server, "/sae BSM-012 hospitalisation", "recorded")
    (event,) = await rows(bot, AdverseEvent)
    reply = await admin_says(server, f"/outcome {event.id} cured", "usage")
    assert "unknown outcome 'cured'" in reply.content
    reply = await admin_says(server, f"/outcome {event.id + 50} recovered", "no adverse event")
    assert f"no adverse event #{event.id + 50}" in reply.content
    (event,) = await rows(bot, AdverseEvent)
    assert event.outcome is None
    assert await rows(bot, AuditEntry, AuditEntry.action == "adverse_event.outcome") == []


@pytest.mark.usefixtures("shell_env")
async def test_cli_outcome_records_a_death_as_fatal_and_refuses_a_bad_one(
    bot: BotHarness, server: BotAPIServer
) -> None:
    await linked(server, "BSM-013", "B", 1013)
    await admin_says(server, "/sae BSM-013 death 2026-10-25 wife phoned", "recorded")
    (event,) = await rows(bot, AdverseEvent)
    code, text = await run(["outcome", str(event.id), "fatal"], bot.clock)
    assert code == 0 and text == f"Adverse event #{event.id} (BSM-013): outcome Fatal (was: not recorded)."
    code, text = await run(["outcome", str(event.id), "maybe"], bot.clock)
    assert code != 0 and "usage: python -m cli outcome AE_NUMBER OUTCOME" in text
    (event,) = await rows(bot, AdverseEvent)
    assert event.outcome == "fatal"
    (entry,) = await rows(bot, AuditEntry, AuditEntry.action == "adverse_event.outcome")
    assert entry.actor.startswith("cli:") and entry.after == {"adverse_event": event.id, "outcome": "fatal"}
