"""A second protocol file runs without touching code: a made-up two-arm trial
(tests/second_trial/protocol.yaml: hydroxychloroquine daily against colchicine
with vitamin D weekly, visits at weeks 2 and 6, another site) walked through the
real bot: its plan, a dose reminder and the export all come from that file."""

from __future__ import annotations

import csv
import shutil
from datetime import date, time
from pathlib import Path

import pytest
from sqlalchemy import select

from devtools.botapi_server import BotAPIServer
from devtools.harness import COORDINATOR_CHAT, STUDY_PHONE, BotHarness
from domain.content import CONTENT_DIR
from models import DoseAnswer, DoseLog, Participant
from scheduler.planner import MessageKind
from tests.bothelpers import CODE_RE, admin_says, enroll, link, says
from tests.schedule_helpers import dhaka, reminders, rows, walk

SECOND_PROTOCOL = Path(__file__).resolve().parent / "second_trial" / "protocol.yaml"


@pytest.fixture
async def second_trial(server: BotAPIServer, db_url: str, tmp_path: Path) -> BotHarness:
    """The real bot on a fresh database, its CONTENT_DIR holding the second protocol
    (with the shipped instruments and triage table)."""
    content = tmp_path / "content"
    shutil.copytree(CONTENT_DIR / "instruments", content / "instruments")
    shutil.copy(CONTENT_DIR / "triage.yaml", content / "triage.yaml")
    shutil.copy(SECOND_PROTOCOL, content / "protocol.yaml")
    harness = BotHarness(server, db_url, overrides={"content_dir": content})
    await harness.start()
    yield harness  # type: ignore[misc]
    await harness.stop()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


async def test_a_second_protocol_plans_reminds_and_exports_its_own_drugs_and_visits(
    second_trial: BotHarness, server: BotAPIServer, tmp_path: Path
) -> None:
    bot = second_trial
    assert bot.services is not None and bot.services.protocol.trial_id == "TEST-0002"
    code = await enroll(server, "BSM-901 B 2026-10-25 en wed")
    user = server.user(7001, "Second", language_code="en")
    welcome = await link(server, user, code, "English")
    # The welcome names this trial's place, drugs, days and visits (from the file).
    assert "Osmani Hospital (SOMC)" in welcome.content
    assert "colchicine: 1 mg once a week, every Wednesday." in welcome.content
    assert "vitamin D: 40,000 IU once a week, every Friday." in welcome.content  # 2 days after colchicine
    assert "Week 2 visit" in welcome.content and "Week 6 visit (last)" in welcome.content
    assert "ethotrexate" not in welcome.content and "aricitinib" not in welcome.content

    # The plan: this arm's regimens on their days, this protocol's visits.
    planned = await rows(bot, "BSM-901")
    doses = [r for r in planned if r.kind == MessageKind.DOSE_REMINDER.value]
    assert {r.payload["regimen"] for r in doses} == {"colchicine", "vitamin_d"}
    assert {r.payload["weekday"] for r in doses if r.payload["regimen"] == "colchicine"} == {"wednesday"}
    assert {r.payload["weekday"] for r in doses if r.payload["regimen"] == "vitamin_d"} == {"friday"}
    visit_weeks = {int(r.payload["week"]) for r in planned if r.kind == MessageKind.VISIT_REMINDER.value}
    assert visit_weeks == {2, 6}

    # A reminder: the first Wednesday, at the protocol's default time (08:30).
    await walk(bot, dhaka(2026, 10, 28, 8, 35))
    reminder = reminders(server, user.id)[-1]
    assert reminder.content.startswith("Today is Wednesday, your colchicine day.")
    assert "colchicine, 1 mg once a week" in reminder.content
    data = next(d for row in reminder.buttons for _t, d in row if d and d.endswith(":taken"))
    update = await user.press(reminder, data)
    await server.wait_for(user.id, since=update)

    # The export: the arm's label and the dose under this trial's regimen id.
    result = await bot.export(tmp_path / "export")
    (participant,) = read_csv(result.directory / "participants.csv")
    assert participant["study_id"] == "BSM-901" and participant["arm"] == "B"
    (dose,) = read_csv(result.directory / "doses.csv")
    assert dose["regimen"] == "colchicine" and dose["answer"] == "taken"
    dictionary = {(r["dataset"], r["variable"]): r for r in read_csv(result.directory / "data_dictionary.csv")}
    assert "Arm B: colchicine + vitamin D" in dictionary[("participants", "arm")]["allowed_values"]
    assert "Hydroxychloroquine 200 mg daily" in dictionary[("participants", "arm")]["allowed_values"]


async def test_a_second_protocols_condition_weekly_drug_wording_and_double_dose_check_come_from_its_file(
    second_trial: BotHarness, server: BotAPIServer, tmp_path: Path
) -> None:
    """Another condition and site for a stranger and in /help; the staff line's drug
    abbreviations; a weekly drug's own reminder words and its double-dose check (alert
    kind, why, advice), the coordinator's arm drug, and the export: all from the file."""
    bot = second_trial
    stranger = server.user(7099, "Stranger", language_code="en")
    hello = await says(server, stranger, "hello", "lupus")
    assert "lupus (SLE) study at Osmani Hospital (SOMC)" in hello.content
    assert "লুপাস (এসএলই) গবেষণায়" in hello.content and "scleroderma" not in hello.content

    reply = await admin_says(server, "/enroll BSM-902 B 2026-10-25 en wed", "One-time code")
    assert "BSM-902 · arm B · baseline 2026-10-25 · en · invited · COL wed, vitamin_d fri" in reply.content
    refused = await admin_says(server, "/enroll BSM-903 A 2026-10-25 en wed", "Not done")
    assert "a colchicine weekday only applies to arm B" in refused.content
    code = CODE_RE.search(reply.content)
    assert code is not None
    user = server.user(7002, "Second", language_code="en")
    await link(server, user, code.group(1), "English")
    help_reply = await says(server, user, "/help", "helper")
    assert help_reply.content.startswith("I am the helper of the lupus study at Osmani Hospital (SOMC).")

    # Friday: vitamin D in the protocol's own words (no code names it).
    await walk(bot, dhaka(2026, 10, 30, 8, 35))
    reminder = reminders(server, user.id)[-1]
    assert reminder.content.startswith("It is Friday: vitamin D day. One capsule of 40000 IU, and only one this week.")
    assert bot.services is not None
    async with bot.services.sessions() as session:  # a vitamin D dose confirmed three days ago
        participant = await session.scalar(select(Participant).where(Participant.study_id == "BSM-902"))
        assert participant is not None
        session.add(
            DoseLog(
                participant_id=participant.id,
                reminder_key="dose:vitamin_d:2026-10-27",
                regimen="vitamin_d",
                drug="vitamin D",
                dose_date=date(2026, 10, 27),
                planned_time=time(8, 30),
                reminded_at=dhaka(2026, 10, 27, 8, 30),
                answer=DoseAnswer.TAKEN,
                answered_at=dhaka(2026, 10, 27, 8, 40),
                later_count=0,
            )
        )
        await session.commit()
    data = next(d for row in reminder.buttons for _t, d in row if d and d.endswith(":taken"))
    update = await user.press(reminder, data)
    (advice,) = await server.wait_for(user.id, STUDY_PHONE, since=update)
    assert "Do not take any more methotrexate" not in advice.content  # this check's advice: call_now
    (alert_message,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    assert alert_message.content.splitlines()[0] == "🚨 URGENT · BSM-902 · arm B (colchicine)"
    assert "confirmed a vitamin D dose 72 hours after the previous confirmed dose" in alert_message.content
    assert "Vitamin D 40,000 IU is taken once a week" in alert_message.content

    result = await bot.export(tmp_path / "export")
    (alert,) = read_csv(result.directory / "alerts.csv")
    assert alert["kind"] == "vitd_double_dose" and alert["level"] == "urgent"
    doses = {(d["regimen"], d["answer"]) for d in read_csv(result.directory / "doses.csv")}
    assert ("vitamin_d", "taken") in doses and ("methotrexate", "taken") not in doses


async def test_a_second_protocols_own_switch_is_the_one_the_switch_command_turns(
    second_trial: BotHarness, server: BotAPIServer
) -> None:
    """The protocol names its per-participant switch (`finger_diary` here, `raynaud` in the
    shipped one): /raynaud turns that one, so no switch id is the code's."""
    bot = second_trial
    await admin_says(server, "/enroll BSM-904 A 2026-10-25 en", "One-time code")
    reply = await admin_says(server, "/raynaud BSM-904 on", "BSM-904")
    assert "is ON" in reply.content
    assert bot.services is not None
    async with bot.services.sessions() as session:
        participant = await session.scalar(select(Participant).where(Participant.study_id == "BSM-904"))
        assert participant is not None and participant.switches == {"finger_diary": True}
