"""Alerts end to end: delivery within seconds, escalation exactly once, the
Acknowledge button and /ack, retries after Telegram errors, the 08:00 digest,
/alerts; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from core.clock import ManualClock
from devtools.botapi_server import BotAPIServer, SentMessage, SimUser
from devtools.harness import ADMIN_ID, COORDINATOR_CHAT, ESCALATION_CHAT, STUDY_PHONE, BotHarness
from models import AdverseEvent, Alert, AlertDelivery, AlertLevel, AuditEntry, DeliveryStatus
from scheduler import outbox
from tests.bothelpers import admin_says, eventually, says
from tests.conftest import Figures
from tests.test_questionnaire_flow import (
    answer_all,
    callback_text,
    count,
    is_question,
    linked,
    press_value,
    push_press,
    rows,
)

ESCALATE = timedelta(minutes=31)


async def double_dose(server: BotAPIServer, user: SimUser) -> SentMessage:
    """The arm B participant answers the first check-in question: yes, methotrexate
    on more than one day. Returns the coordinators' alert message."""
    first = await says(server, user, "/checkin", is_question)
    await press_value(server, user, first, "yes")
    (alert,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    return alert


async def test_double_dose_escalates_once_and_the_button_stops_it(bot: BotHarness, server: BotAPIServer) -> None:
    user = await linked(server, "BSM-011", "B", 1011)
    alert_msg = await double_dose(server, user)
    assert any("মেথোট্রেক্সেট খাবেন না" in m.content for m in server.messages(user.id))
    assert alert_msg.button_texts == ["✅ Acknowledge"]

    bot.clock.advance(timedelta(minutes=29))
    await bot.tick()
    assert server.messages(ESCALATION_CHAT) == []  # not yet
    bot.clock.advance(timedelta(minutes=2))
    await bot.tick()
    (escalated,) = await server.wait_for(ESCALATION_CHAT, "ESCALATED")
    assert "BSM-011" in escalated.content and escalated.button_texts == ["✅ Acknowledge"]
    bot.clock.advance(timedelta(minutes=10))
    await bot.tick()
    assert len(server.messages(ESCALATION_CHAT)) == 1  # exactly once
    [alert] = await rows(bot, Alert)
    assert alert.escalated_at is not None

    coordinator = server.user(950, "Dr Rahman", language_code="en")
    update = await coordinator.press(alert_msg, "✅ Acknowledge", chat=COORDINATOR_CHAT)
    assert "acknowledged" in await callback_text(server, update)
    await server.wait_for(COORDINATOR_CHAT, "Acknowledged by Dr Rahman", since=update)
    await server.wait_for(ESCALATION_CHAT, "Acknowledged by Dr Rahman", since=update)
    assert alert_msg.buttons == [] and escalated.buttons == []
    [alert] = await rows(bot, Alert)
    assert alert.acknowledged_at == bot.clock.now() and "coordinator:950" in (alert.acknowledged_by or "")
    assert await count(bot, AuditEntry, AuditEntry.action == "alert.acknowledge") == 1

    bot.clock.advance(timedelta(hours=2))
    await bot.tick()
    assert len(server.messages(ESCALATION_CHAT)) == 1 and len(server.messages(COORDINATOR_CHAT)) == 1


async def test_serious_report_alerts_escalates_and_ack_command_stops_it(bot: BotHarness, server: BotAPIServer) -> None:
    user = await linked(server, "BSM-012", "A", 1012, "en")
    first = await says(server, user, "/report", is_question)
    assert "Report a problem" in first.content
    closing = await answer_all(
        server,
        user,
        {"ae_what": "fever_infection", "ae_start": "yesterday", "ae_severity": "self_care", "ser_hospital": "yes"},
    )
    assert "report is saved" in closing.content
    advice = [m.content for m in server.messages(user.id) if "⚠️" in m.content]
    assert advice and "Call the study doctor now" in advice[0] and STUDY_PHONE in advice[0]
    (alert_msg,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    text = alert_msg.content
    assert "BSM-012 · arm A (baricitinib)" in text.splitlines()[0]
    assert "Problem: Fever or infection" in text and "hospital" in text
    assert "SERIOUS: report to the sponsor by Mon 26 Oct 2026 09:" in text
    [alert] = await rows(bot, Alert)
    assert alert.kind == "serious_ae" and alert.deadline_at == alert.aware_at + timedelta(hours=24)
    [event] = await rows(bot, AdverseEvent)
    assert event.serious and event.hospitalisation and not event.life_threatening
    assert event.grade == 3 and event.alert_id == alert.id and event.category == "fever_infection"

    bot.clock.advance(ESCALATE)
    await bot.tick()
    await bot.tick()
    (escalated,) = await server.wait_for(ESCALATION_CHAT, "ESCALATED")
    reply = await admin_says(server, f"/ack {alert.id} called her, going to clinic", "acknowledged")
    assert "escalation stopped" in reply.content
    await server.wait_for(COORDINATOR_CHAT, "note: called her, going to clinic")
    await server.wait_for(ESCALATION_CHAT, "Acknowledged by Admin")
    again = await admin_says(server, f"/ack {alert.id}", "already acknowledged")
    assert "Admin (admin:900)" in again.content
    assert len(server.messages(ESCALATION_CHAT)) == 1 and escalated.buttons == []


async def test_acknowledge_pressed_by_a_participant_is_refused_and_audited(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-013", "B", 1013, "en")
    alert_msg = await double_dose(server, user)
    [alert] = await rows(bot, Alert)
    forged = push_press(server, user, alert_msg, f"ack:{alert.id}")
    assert "only for the study team" in await callback_text(server, forged)
    [alert] = await rows(bot, Alert)
    assert alert.acknowledged_at is None
    assert await count(bot, AuditEntry, AuditEntry.action == "alert.ack.refuse") == 1
    stranger = await admin_says(server, "/ack nonsense", "Not done")
    assert "usage" in stranger.content


async def test_alert_is_delivered_once_after_telegram_errors_and_a_restart(
    bot: BotHarness, server: BotAPIServer, figures: Figures
) -> None:
    user = await linked(server, "BSM-014", "B", 1014, "en")
    server.faults.add("sendMessage", "500", chat_id=COORDINATOR_CHAT, times=1)
    server.faults.add("sendMessage", "timeout", chat_id=COORDINATOR_CHAT, times=1, delay=0.3)
    server.faults.add("sendMessage", "close", chat_id=COORDINATOR_CHAT, times=1)
    first = await says(server, user, "/checkin", is_question)
    update = await user.press(first, "Yes")
    # the participant is never delayed by the failing alert sends
    await server.wait_for(user.id, "Do not take any more methotrexate", since=update)
    await server.wait_for(user.id, is_question, since=update)
    await server.wait_for_request("sendMessage", 1)
    for _ in range(250):  # the first try runs right after the commit; let it finish
        [delivery] = await rows(bot, AlertDelivery)
        if delivery.attempts:
            break
        await asyncio.sleep(0.02)
    assert delivery.status is DeliveryStatus.PENDING and delivery.attempts == 1 and delivery.last_error
    await bot.restart()
    for _ in range(2):
        bot.clock.advance(timedelta(minutes=1))
        await bot.tick()
    assert server.messages(COORDINATOR_CHAT) == []
    [delivery] = await rows(bot, AlertDelivery)
    assert delivery.status is DeliveryStatus.PENDING and delivery.attempts == 3
    bot.clock.advance(timedelta(minutes=1))
    await bot.tick()
    (alert_msg,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    for _ in range(3):
        bot.clock.advance(timedelta(minutes=5))
        await bot.tick()
    assert len(server.messages(COORDINATOR_CHAT)) == 1
    [delivery] = await rows(bot, AlertDelivery, AlertDelivery.chat_id == COORDINATOR_CHAT)
    assert delivery.status is DeliveryStatus.SENT and delivery.message_id == alert_msg.message_id
    figures.add("Bot API faults injected into alert sending (500, timeout, closed) + a restart", 3)


async def first_send_failed(bot: BotHarness, server: BotAPIServer, user: SimUser) -> AlertDelivery:
    """The double-dose alert whose first send to the coordinators got a 500: its
    delivery, back in the outbox with its first back-off."""
    server.faults.add("sendMessage", "500", chat_id=COORDINATOR_CHAT, times=1)
    first = await says(server, user, "/checkin", is_question)
    await press_value(server, user, first, "yes")

    async def failed_once() -> bool:
        return await count(bot, AlertDelivery, AlertDelivery.attempts == 1) == 1

    await eventually(failed_once, 5, "the failed first send recorded")
    [delivery] = await rows(bot, AlertDelivery)
    assert delivery.status is DeliveryStatus.PENDING and delivery.claim_token is None
    return delivery


def sends_to(server: BotAPIServer, chat_id: int) -> int:
    """sendMessage requests to `chat_id` so far, refused ones included."""
    return len([r for r in server.requests if r.method == "sendMessage" and r.params.get("chat_id") == chat_id])


async def test_a_delivery_claimed_by_another_process_is_not_sent_here_until_its_lease_ends(
    bot: BotHarness, server: BotAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    user = await linked(server, "BSM-021", "B", 1021, "en")
    delivery = await first_send_failed(bot, server, user)
    assert bot.services is not None
    sessions, lease = bot.services.sessions, timedelta(seconds=bot.services.settings.alert_lease_seconds)
    bot.clock.set(delivery.next_attempt_at)
    other = await outbox.claim(outbox.ALERTS, sessions, bot.clock.now(), "other-process", lease)
    assert other == [(delivery.id, delivery.alert_id)]
    assert await outbox.claim(outbox.ALERTS, sessions, bot.clock.now(), "third-process", lease) == []
    tries = sends_to(server, COORDINATOR_CHAT)
    bot.clock.advance(lease)  # the other process's lease holds to its very end
    await bot.tick()
    assert sends_to(server, COORDINATOR_CHAT) == tries
    [held] = await rows(bot, AlertDelivery)
    assert held.status is DeliveryStatus.SENDING and held.claim_token == "other-process" and held.attempts == 1
    bot.clock.advance(timedelta(seconds=1))  # it died holding the delivery: this process takes it over
    await bot.tick()
    (alert_msg,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    async with sessions() as session:  # the other process's late outcome changes nothing
        late = await outbox.mark_sent(outbox.ALERTS, session, [(delivery.id, 1)], "other-process", bot.clock.now())
        await session.commit()
    assert late == set()
    [sent] = await rows(bot, AlertDelivery)
    assert sent.status is DeliveryStatus.SENT and sent.message_id == alert_msg.message_id
    assert sent.claim_token is None and sent.attempts == 2
    caplog.clear()
    async with sessions() as session:  # nor its late refusal, nor its late failure
        assert await outbox.still_ours(outbox.ALERTS, session, [delivery.id], "other-process") == set()
        now = bot.clock.now()
        assert await outbox.give_up(outbox.ALERTS, session, delivery.id, "other-process", now, "BadRequest") is None
        await session.commit()
    await outbox.release(outbox.ALERTS, sessions, delivery.id, "other-process", now, "TimedOut", failed=True)
    passed = [r for r in caplog.records if "its claim passed to another process" in r.getMessage()]
    assert len(passed) == 3 and all(r.levelname == "WARNING" for r in passed)
    [kept] = await rows(bot, AlertDelivery)
    assert (kept.status, kept.attempts, kept.message_id) == (DeliveryStatus.SENT, 2, alert_msg.message_id)
    bot.clock.advance(timedelta(minutes=10))
    await bot.tick()
    assert len(server.messages(COORDINATOR_CHAT)) == 1


async def test_failed_alert_sends_wait_for_the_outboxs_back_off(bot: BotHarness, server: BotAPIServer) -> None:
    user = await linked(server, "BSM-022", "B", 1022, "en")
    delivery = await first_send_failed(bot, server, user)
    assert delivery.next_attempt_at - bot.clock.now() == timedelta(seconds=15)
    server.faults.add("sendMessage", "500", chat_id=COORDINATOR_CHAT, times=5)
    waits = []
    for attempts in range(2, 7):
        due = delivery.next_attempt_at
        tries = sends_to(server, COORDINATOR_CHAT)
        bot.clock.set(due - timedelta(seconds=1))
        await bot.tick()
        assert sends_to(server, COORDINATOR_CHAT) == tries  # not before its back-off
        bot.clock.set(due)
        await bot.tick()
        assert sends_to(server, COORDINATOR_CHAT) == tries + 1
        [delivery] = await rows(bot, AlertDelivery, AlertDelivery.chat_id == COORDINATOR_CHAT)
        assert delivery.status is DeliveryStatus.PENDING and delivery.attempts == attempts
        waits.append((delivery.next_attempt_at - due).total_seconds())
    assert waits == [30, 60, 120, 240, 300]  # 15 s doubling, at most 5 min
    assert waits == [outbox.ALERTS.backoff(n).total_seconds() for n in range(2, 7)]
    bot.clock.set(delivery.next_attempt_at)
    await bot.tick()
    await server.wait_for(COORDINATOR_CHAT, "URGENT")
    [delivery] = await rows(bot, AlertDelivery, AlertDelivery.chat_id == COORDINATOR_CHAT)
    assert delivery.status is DeliveryStatus.SENT and delivery.attempts == 7 and delivery.last_error is None


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_a_retry_after_on_an_alert_delivery_is_waited_out_in_full(
    server: BotAPIServer, db_url: str, clock: ManualClock
) -> None:
    """Telegram's RetryAfter is the floor of an alert's retry: 120 s asked, 120 s waited,
    not the outbox's 15 s first delay. Without the rate limiter, which otherwise waits out
    a 429 itself (three times) before the outbox ever sees it."""
    async with BotHarness(server, db_url, clock, rate_limiter=False) as bot:
        user = await linked(server, "BSM-025", "B", 1025, "en")
        server.faults.add("sendMessage", "429", retry_after=120, chat_id=COORDINATOR_CHAT, times=1)
        first = await says(server, user, "/checkin", is_question)
        await press_value(server, user, first, "yes")

        async def refused_once() -> bool:
            return await count(bot, AlertDelivery, AlertDelivery.attempts == 1) == 1

        await eventually(refused_once, 5, "the 429 recorded")
        assert server.faults.fired == [("sendMessage", "429")]
        [delivery] = await rows(bot, AlertDelivery, AlertDelivery.chat_id == COORDINATOR_CHAT)
        assert (delivery.status, delivery.last_error) == (DeliveryStatus.PENDING, "RetryAfter")
        assert delivery.next_attempt_at == clock.now() + timedelta(seconds=120)
        clock.advance(timedelta(seconds=119))
        await bot.tick()
        assert sends_to(server, COORDINATOR_CHAT) == 1  # the refused one only
        clock.advance(timedelta(seconds=1))
        await bot.tick()
        await server.wait_for(COORDINATOR_CHAT, "URGENT")
        [delivery] = await rows(bot, AlertDelivery, AlertDelivery.chat_id == COORDINATOR_CHAT)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 2)  # every try counts


@pytest.mark.logs_errors("refused for good")
async def test_a_delivery_refused_at_its_retry_counts_every_try(bot: BotHarness, server: BotAPIServer) -> None:
    user = await linked(server, "BSM-024", "B", 1024, "en")
    delivery = await first_send_failed(bot, server, user)
    server.faults.add(
        "sendMessage", "error", chat_id=COORDINATOR_CHAT, code=400, description="Bad Request: chat not found"
    )
    bot.clock.set(delivery.next_attempt_at)
    await bot.tick()
    await server.wait_for(ADMIN_ID, "could not be delivered")
    [dead] = await rows(bot, AlertDelivery, AlertDelivery.chat_id == COORDINATOR_CHAT)
    assert dead.status is DeliveryStatus.DEAD and dead.attempts == 2 and dead.claim_token is None


@pytest.mark.logs_errors("refused for good")
async def test_a_refused_alert_delivery_is_dead_never_retried_and_never_claimed_again(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-023", "B", 1023, "en")
    server.faults.add(
        "sendMessage", "error", chat_id=COORDINATOR_CHAT, code=400, description="Bad Request: chat not found"
    )
    first = await says(server, user, "/checkin", is_question)
    await press_value(server, user, first, "yes")
    (told,) = await server.wait_for(ADMIN_ID, "could not be delivered")
    assert "BSM-023" in told.content and "Chat not found" in told.content and "will not be retried" in told.content
    [dead] = await rows(bot, AlertDelivery)
    assert dead.status is DeliveryStatus.DEAD and dead.attempts == 1 and dead.claim_token is None
    assert (dead.last_error or "").startswith("BadRequest")
    assert await count(bot, AuditEntry, AuditEntry.action == "alert.delivery.dead") == 1
    for _ in range(4):  # past every back-off, and past the escalation (sent to its own chat)
        bot.clock.advance(timedelta(minutes=10))
        await bot.tick()
    assert sends_to(server, COORDINATOR_CHAT) == 1
    await server.wait_for(ESCALATION_CHAT, "ESCALATED")
    assert bot.services is not None
    later = bot.clock.now() + timedelta(days=1)
    lease = timedelta(seconds=bot.services.settings.alert_lease_seconds)
    assert await outbox.claim(outbox.ALERTS, bot.services.sessions, later, "other-process", lease) == []
    [dead] = await rows(bot, AlertDelivery, AlertDelivery.chat_id == COORDINATOR_CHAT)
    assert dead.status is DeliveryStatus.DEAD and dead.attempts == 1


async def test_same_day_item_in_clinic_hours_goes_out_at_once_escalates_at_their_end_and_is_in_the_digest(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-015", "A", 1015, "en")  # Sunday 09:00: a clinic day, in clinic hours
    await says(server, user, "/checkin", is_question)
    await answer_all(server, user, {"mouth_stomach_any": "yes", "nausea": "severe"})
    assert any("call the study doctor today" in m.content for m in server.messages(user.id))
    [alert] = await rows(bot, Alert)
    assert alert.level is AlertLevel.SAME_DAY
    (paged,) = await server.wait_for(COORDINATOR_CHAT, "SAME-DAY REVIEW")  # at once, not the next morning
    assert "BSM-015" in paged.content and paged.button_texts == ["✅ Acknowledge"]

    bot.clock.advance(timedelta(hours=10, minutes=59))  # 19:59
    await bot.tick()
    assert server.messages(ESCALATION_CHAT) == []
    bot.clock.advance(timedelta(minutes=1))  # 20:00: the end of clinic hours, nobody acknowledged
    await bot.tick()
    (escalated,) = await server.wait_for(ESCALATION_CHAT, "ESCALATED")
    assert "end of clinic hours" in escalated.content and "BSM-015" in escalated.content
    bot.clock.advance(timedelta(hours=11, minutes=59))  # Monday 07:59
    await bot.tick()
    assert len(server.messages(COORDINATOR_CHAT)) == 1 and len(server.messages(ESCALATION_CHAT)) == 1
    bot.clock.advance(timedelta(minutes=1))  # 08:00: the digest is a summary on top
    await bot.tick()
    (digest,) = await server.wait_for(COORDINATOR_CHAT, "Same-day review")
    assert "BSM-015" in digest.content and "Nausea" in digest.content and f"/ack {alert.id}" in digest.content
    bot.clock.advance(timedelta(hours=1))
    await bot.tick()
    bot.clock.advance(timedelta(days=1))
    await bot.tick()
    assert len(server.messages(COORDINATOR_CHAT)) == 2 and len(server.messages(ESCALATION_CHAT)) == 1


async def test_alerts_command_lists_open_alerts_with_their_button(bot: BotHarness, server: BotAPIServer) -> None:
    none = await admin_says(server, "/alerts", "No open alerts")
    assert none.content == "No open alerts."
    user = await linked(server, "BSM-016", "B", 1016, "en")
    alert_msg = await double_dose(server, user)
    admin = server.user(ADMIN_ID)
    update = await admin.send("/alerts")
    header, listed = await server.wait_for(
        ADMIN_ID, lambda m: "open alert" in m.content or "URGENT" in m.content, 2, since=update
    )
    assert "1 open alert" in header.content and listed.button_texts == ["✅ Acknowledge"]
    press = await admin.press(listed, "✅ Acknowledge")
    assert "acknowledged" in await callback_text(server, press)
    await server.wait_for(COORDINATOR_CHAT, "Acknowledged by Admin", since=press)
    await server.wait_for(ADMIN_ID, "Acknowledged by Admin", since=press)
    assert alert_msg.buttons == [] and listed.buttons == []
    await admin_says(server, "/alerts", "No open alerts")


def test_coordinator_text_reads_in_one_glance_and_names_nobody() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from bot.alerting import render
    from domain.content import load_content
    from models import Language, Participant

    aware = datetime(2026, 10, 25, 20, 5, tzinfo=UTC)  # 02:05 in Dhaka
    person = Participant(study_id="BSM-020", arm="B", language=Language.BN)
    alert = Alert(
        id=7,
        kind="serious_ae",
        level=AlertLevel.URGENT,
        summary="Report a problem\nProblem: Fever or infection",
        reasons=["Serious (ICH E2A criterion 3): Requires hospital admission or prolongs an existing stay"],
        details={},
        aware_at=aware,
        deadline_at=aware + timedelta(hours=24),
    )
    protocol = load_content().protocol  # arm B's main drug comes from the protocol file
    text = render(alert, person, ZoneInfo("Asia/Dhaka"), protocol=protocol)
    lines = text.splitlines()
    assert lines[0] == "🚨 URGENT · BSM-020 · arm B (methotrexate)"
    assert lines[1] == "Report a problem" and "Why: Serious" in text
    assert "Aware: Mon 26 Oct 2026 02:05 (Asia/Dhaka)" in text
    assert "report to the sponsor by Tue 27 Oct 2026 02:05" in text
    assert lines[-1] == "Alert #7 · press Acknowledge or send /ack 7"
    escalated = render(
        alert, person, ZoneInfo("Asia/Dhaka"), protocol=protocol, purpose="escalation", escalate_after=30
    )
    assert escalated.startswith("⏫ ESCALATED: nobody acknowledged this within 30 min")
    assert [outbox.ALERTS.backoff(n).total_seconds() for n in (1, 2, 3, 4, 5, 50)] == [15, 30, 60, 120, 240, 300]


async def test_alerts_and_ack_from_the_shell(
    bot: BotHarness, server: BotAPIServer, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.admin import run

    user = await linked(server, "BSM-019", "B", 1019, "bn")
    await double_dose(server, user)
    monkeypatch.setenv("DATABASE_URL", db_url)
    code, text = await run(["alerts"], bot.clock)
    assert code == 0 and "URGENT · BSM-019" in text and "P1019" not in text  # study id, never the name
    [alert] = await rows(bot, Alert)
    code, text = await run(["ack", str(alert.id), "phoned", "her"], bot.clock)
    assert code == 0 and "acknowledged" in text
    [alert] = await rows(bot, Alert)
    assert alert.acknowledged_at is not None and alert.acknowledged_by and "cli:" in alert.acknowledged_by
    assert alert.ack_note == "phoned her"
    code, text = await run(["alerts"], bot.clock)
    assert code == 0 and "no open alerts" in text.lower()
    bot.clock.advance(ESCALATE)
    await bot.tick()
    assert not server.messages(ESCALATION_CHAT)  # acknowledged from the shell: no escalation
    code, _ = await run(["ack", "999"], bot.clock)
    assert code == 1
