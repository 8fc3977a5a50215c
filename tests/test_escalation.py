"""Escalation's promises, one test each (issue 11: mutation testing of alert
escalation): an URGENT alert nobody acknowledged escalates at exactly
ESCALATE_AFTER_MINUTES, an acknowledged one never does, only URGENT and same-day
alerts escalate, and raising and escalating are audited with what the audit may carry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from devtools.botapi_server import BotAPIServer
from devtools.harness import COORDINATOR_CHAT, ESCALATION_CHAT, BotHarness
from domain.alerts import raise_alert
from models import Alert, AlertDelivery, AlertLevel, AuditEntry, Participant
from tests.bothelpers import admin_says
from tests.test_alerts import double_dose
from tests.test_questionnaire_flow import linked, rows


async def audits(bot: BotHarness, action: str) -> list[AuditEntry]:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        query = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        return list(await session.scalars(query))


async def test_an_unacknowledged_urgent_alert_escalates_at_exactly_30_minutes(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-031", "B", 1031, "en")
    await double_dose(server, user)
    [alert] = await rows(bot, Alert)
    bot.clock.set(alert.aware_at + timedelta(minutes=30) - timedelta(seconds=1))
    await bot.tick()
    assert server.messages(ESCALATION_CHAT) == []
    bot.clock.set(alert.aware_at + timedelta(minutes=30))
    await bot.tick()
    (escalated,) = await server.wait_for(ESCALATION_CHAT, "ESCALATED")
    assert "nobody acknowledged this within 30 min" in escalated.content and "BSM-031" in escalated.content
    [alert] = await rows(bot, Alert)
    assert alert.escalated_at == alert.aware_at + timedelta(minutes=30)
    [delivery] = await rows(bot, AlertDelivery, AlertDelivery.chat_id == ESCALATION_CHAT)
    assert delivery.purpose == "escalation"


async def test_an_urgent_alert_acknowledged_in_time_never_escalates(bot: BotHarness, server: BotAPIServer) -> None:
    user = await linked(server, "BSM-032", "B", 1032, "en")
    await double_dose(server, user)
    [alert] = await rows(bot, Alert)
    bot.clock.advance(timedelta(minutes=10))
    await admin_says(server, f"/ack {alert.id}", "acknowledged")
    for _ in range(3):
        bot.clock.advance(timedelta(minutes=30))
        await bot.tick()
    assert server.messages(ESCALATION_CHAT) == []
    [alert] = await rows(bot, Alert)
    assert alert.escalated_at is None and alert.acknowledged_at is not None
    assert await audits(bot, "alert.escalate") == []


@pytest.mark.parametrize("level", [AlertLevel.INFO, AlertLevel.SAME_DAY])
async def test_only_urgent_alerts_and_same_day_items_with_a_deadline_escalate(
    bot: BotHarness, server: BotAPIServer, level: AlertLevel
) -> None:
    """An INFO alert, and a same-day item raised without clinic hours to answer it in
    (it waits for the 08:00 digest), wait for someone to read them: no escalation."""
    await linked(server, "BSM-033", "A", 1033, "en")
    assert bot.services is not None
    async with bot.services.sessions() as session:
        participant = await session.scalar(select(Participant).where(Participant.study_id == "BSM-033"))
        await raise_alert(
            session,
            participant=participant,
            kind="test_item",
            level=level,
            summary="BSM-033: an item for the coordinators",
            reasons=["a reason"],
            now=bot.clock.now(),
            coordinator_chats=[COORDINATOR_CHAT],
        )
        await session.commit()
    for _ in range(4):
        bot.clock.advance(timedelta(hours=6))
        await bot.tick()
    assert server.messages(ESCALATION_CHAT) == []
    [alert] = await rows(bot, Alert, Alert.kind == "test_item")
    assert alert.level is level and alert.escalated_at is None and alert.escalate_at is None
    assert alert.deadline_at is None  # not raised as serious: no SAE clock
    assert await audits(bot, "alert.escalate") == []


async def test_an_escalation_is_audited_once_with_the_alert_and_the_number_of_chats(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-034", "B", 1034, "en")
    await double_dose(server, user)
    [alert] = await rows(bot, Alert)
    for _ in range(3):
        bot.clock.advance(timedelta(minutes=31))
        await bot.tick()
    (entry,) = await audits(bot, "alert.escalate")
    assert entry.actor == "system" and entry.participant_id == alert.participant_id
    assert entry.after == {"alert": alert.id, "chats": 1}
    assert entry.at == alert.aware_at + timedelta(minutes=31)


async def test_raising_an_alert_is_audited_with_its_level_reasons_and_delivery_not_its_summary(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-035", "B", 1035, "en")
    await double_dose(server, user)
    [alert] = await rows(bot, Alert)
    (entry,) = await audits(bot, f"alert.raise.{alert.kind}")
    assert entry.actor == "system" and entry.participant_id == alert.participant_id and entry.at == alert.aware_at
    assert entry.after == {
        "alert": alert.id,
        "level": "urgent",
        "reasons": alert.reasons,
        "source": alert.source,
        "deliver_at": alert.aware_at.isoformat(),
    }
    assert alert.summary not in str(entry.after)
    assert alert.deadline_at is None  # a double dose is urgent, not a serious adverse event: no 24-hour clock
    [delivery] = await rows(bot, AlertDelivery, AlertDelivery.chat_id == COORDINATOR_CHAT)
    assert delivery.purpose == "alert" and delivery.next_attempt_at >= alert.aware_at


async def test_an_alert_of_a_withdrawn_participant_still_escalates(bot: BotHarness, server: BotAPIServer) -> None:
    """Escalation is about the alert, not about whether the participant is still messaged."""
    user = await linked(server, "BSM-036", "B", 1036, "en")
    await double_dose(server, user)
    await admin_says(server, "/withdraw BSM-036 moved away", "withdrawn")
    bot.clock.advance(timedelta(minutes=31))
    await bot.tick()
    (escalated,) = await server.wait_for(ESCALATION_CHAT, "ESCALATED")
    assert "BSM-036" in escalated.content
