"""What a questionnaire session found, told to the coordinators.

One key per finding (a red flag, a seriousness criterion, a grade, a worsening, the
participant's own words) tells new findings from those already shown; the coordinators
read them in plain English. Nothing new is hidden: a new finding while the session's
alert is open goes out as a new message about it, after an acknowledgement or an
escalation as a new alert; an answer changed from Yes to No is told, never withdraws
an alert. The session logic (`domain.questionnaire_sessions`) decides when; this
module decides what is new and what the coordinators read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain import audit
from domain.alerts import SAE_REPORTING_WINDOW, queue_delivery, raise_alert
from domain.questionnaires import Instrument, Item
from domain.questionnaires.conditions import Answer
from domain.questionnaires.grading import answer_label
from domain.questionnaires.model import FreeTextItem
from domain.quoting import participant_words
from domain.triage import Level, TriageResult
from models import Alert, AlertDelivery, AlertLevel, DeliveryStatus, Participant, QuestionnaireSession

FREE_TEXT_IN_ALERT = 300
"""Characters of a participant's own words quoted in an alert."""


def finding_keys(
    instrument: Instrument, answers: Mapping[str, Answer], result: TriageResult, *, final: bool
) -> set[str]:
    """What a session has found, one key per finding, to tell new findings from those
    already shown: red flags, criteria and grade 4 at once; grades 3+, worsening and
    the participant's own words once the answers are final."""
    keys = {f"flag:{hit.code}" for hit in result.red_flags}
    keys |= {f"criterion:{hit.criterion}" for hit in result.seriousness}
    if result.grade >= 4:
        keys.add("grade4")
    if not final:
        return keys
    keys |= {f"grade:{code}" for code, grade in result.grades.items() if grade >= 3}
    keys |= {f"worse:{w.symptom}" for w in result.worsened if w.current - w.previous >= 2}
    for item in instrument.items:
        value = answers.get(item.id)
        if isinstance(item, FreeTextItem) and isinstance(value, str) and value:
            keys.add(f"text:{item.id}:{hashlib.sha256(value.encode()).hexdigest()[:10]}")
    return keys


def alert_kind(result: TriageResult) -> str:
    """The alert's kind for what the triage found, the most serious first."""
    if result.serious:
        return "serious_ae"
    if result.red_flags:
        return "red_flag"
    if result.grade >= 4:
        return "grade4"
    return "same_day_review"


def reported_lines(
    instrument: Instrument, answers: Mapping[str, Answer], result: TriageResult, *, report: bool
) -> list[str]:
    """What the participant reported, in plain English for the coordinator (``report``:
    the instrument is /report's)."""
    lines: list[str] = []
    if report:
        what = answers.get("ae_what")
        if what is not None:
            item = instrument.item("ae_what")
            label = answer_label(item, what).get("en")
            other = answers.get("ae_what_other")
            quoted = f" · {participant_words(str(other), FREE_TEXT_IN_ALERT)}" if other else ""
            lines.append(f"Problem: {label}{quoted}")
        if answers.get("ae_start"):
            lines.append(f"Started: {answers['ae_start']}")
        if answers.get("ae_severity") is not None:
            item = instrument.item("ae_severity")
            lines.append(f"How bad: {answer_label(item, answers['ae_severity']).get('en')}")
    flagged: list[str] = []
    for item_id in [hit.item_id for hit in result.red_flags] + [hit.item_id for hit in result.seriousness]:
        if item_id not in flagged:
            flagged.append(item_id)
    for item_id in flagged:
        lines.append(f"Answered YES to: {instrument.item(item_id).text.get('en')}")
    for detail in result.symptom_details.values():
        if detail.grade >= 3 and not report:
            lines.append(f"{detail.name.get('en')}: {detail.answer_label.get('en')}")
    for item in instrument.items:
        value = answers.get(item.id)
        if isinstance(item, FreeTextItem) and item.id != "ae_what_other" and isinstance(value, str) and value:
            lines.append(f"In their words, {participant_words(value, FREE_TEXT_IN_ALERT)}")
    return lines


LEVEL_RANK = {AlertLevel.INFO: 0, AlertLevel.SAME_DAY: 1, AlertLevel.URGENT: 2}


async def sync_alerts(
    db: AsyncSession,
    participant: Participant,
    session: QuestionnaireSession,
    instrument: Instrument,
    answers: Mapping[str, Answer],
    result: TriageResult,
    now: datetime,
    *,
    final: bool,
    report: bool,
    coordinator_chats: Sequence[int],
    same_day_window: Callable[[datetime], tuple[datetime, datetime]] | None,
) -> None:
    """Raise an alert for findings the coordinators have not been shown.

    Why: nothing new is hidden. New findings while the session's alert is open
    (sent, not acknowledged, not escalated) go out as a new message about it;
    after an acknowledgement or an escalation they are a new alert with its own
    clock. Old messages are never edited in silence.
    """
    if result.level is Level.ROUTINE:
        return
    level = AlertLevel.URGENT if result.level is Level.URGENT else AlertLevel.SAME_DAY
    keys = finding_keys(instrument, answers, result, final=final)
    source = f"questionnaire_session:{session.id}"
    alerts = list(await db.scalars(select(Alert).where(Alert.source == source).order_by(Alert.id)))
    known = {key for alert in alerts for key in alert.details.get("keys", [])}
    new = keys - known
    if not new:
        return
    finished = is_complete_dict(session.state)
    title = instrument.title.get("en") + ("" if finished else " (not finished)")
    lines = reported_lines(instrument, answers, result, report=report)
    summary = "\n".join([title, *lines])
    reasons = [reason.get("en") for reason in result.reasons]
    details: dict[str, Any] = {
        "keys": sorted(keys | known),
        "new_keys": sorted(new),
        "instrument": instrument.id,
        "instrument_version": instrument.version,
        "session_id": session.id,
        "triage": result.to_dict(),
    }
    live = next(
        (
            alert
            for alert in reversed(alerts)
            if alert.acknowledged_at is None
            and alert.escalated_at is None
            and LEVEL_RANK[alert.level] >= LEVEL_RANK[level]
        ),
        None,
    )
    if live is None:
        if alerts:
            details["follows"] = alerts[-1].id
        await raise_alert(
            db,
            participant=participant,
            kind=alert_kind(result),
            level=level,
            summary=summary,
            reasons=reasons,
            now=now,
            coordinator_chats=coordinator_chats,
            details=details,
            source=source,
            serious=result.serious,
            same_day_window=same_day_window(now) if same_day_window else None,
        )
        return
    await _new_findings_message(
        db, participant, live, summary, reasons, details, alert_kind(result), result, now, coordinator_chats
    )


async def _new_findings_message(
    db: AsyncSession,
    participant: Participant,
    alert: Alert,
    summary: str,
    reasons: list[str],
    details: dict[str, Any],
    kind: str,
    result: TriageResult,
    now: datetime,
    coordinator_chats: Sequence[int],
) -> None:
    """Add new findings to an open alert and tell the coordinators in a new message
    (none is needed while its first message has not gone out yet)."""
    shown = await db.scalar(
        select(AlertDelivery.id).where(AlertDelivery.alert_id == alert.id, AlertDelivery.status == DeliveryStatus.SENT)
    )
    updates = int(alert.details.get("updates", 0)) + (1 if shown is not None else 0)
    before = {"kind": alert.kind, "keys": alert.details.get("keys", [])}
    alert.summary, alert.reasons, alert.kind = summary, reasons, kind
    alert.details = {**details, "updates": updates}
    if result.serious and alert.deadline_at is None:
        alert.deadline_at = now + SAE_REPORTING_WINDOW
    if shown is not None:
        for chat_id in coordinator_chats:
            queue_delivery(db, alert, chat_id, f"update-{updates}", now)
    audit.record(
        db,
        at=now,
        actor=audit.SYSTEM,
        action="alert.new_findings",
        participant_id=participant.id,
        before=before,
        after={"alert": alert.id, "kind": alert.kind, "new_keys": details["new_keys"], "message": updates or None},
    )


def is_complete_dict(state: Mapping[str, Any]) -> bool:
    """Whether a stored state has no question left (without rebuilding it)."""
    return state.get("current") is None


async def answer_changed(
    db: AsyncSession,
    participant: Participant,
    session: QuestionnaireSession,
    instrument: Instrument,
    item: Item,
    now: datetime,
    coordinator_chats: Sequence[int],
) -> None:
    """A "No" after a "Yes" that raised an alert: the alert stands; the coordinators
    are told the participant changed the answer (both answers are in the record)."""
    alerted = [
        alert.id
        for alert in await db.scalars(select(Alert).where(Alert.source == f"questionnaire_session:{session.id}"))
        if alert.level is not AlertLevel.INFO
    ]
    if not alerted:
        return
    question = item.text.get("en")
    await raise_alert(
        db,
        participant=participant,
        kind="answer_changed",
        level=AlertLevel.INFO,
        summary=(
            f"{instrument.title.get('en')}\nChanged their answer from YES to NO: {question}\n"
            f"The alert(s) #{', #'.join(map(str, alerted))} stand: nothing was withdrawn."
        ),
        reasons=[],
        now=now,
        coordinator_chats=coordinator_chats,
        details={"session_id": session.id, "item": item.id, "alerts": alerted},
        source=f"questionnaire_session:{session.id}:no"[:64],
    )
