"""Questionnaire sessions as database rows: start, resume, answer, cancel.

The pure engine (`domain.questionnaires`) decides what to ask; this module
keeps its state in `questionnaire_sessions` (so any bot process, and the same
process after a restart, continues where the participant stopped), stores
every answer with its time and instrument version, runs the triage after EVERY
answer, and raises or extends the alerts for what the triage found: one alert
per session and level, newly hit flags added to it rather than a new message
each time. No Telegram here: the handler shows what `Outcome` describes.

`/report` in the middle of another questionnaire suspends it; when the report
is completed or cancelled, the most recently suspended questionnaire is taken
up again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain import audit
from domain.alerts import SAE_REPORTING_WINDOW, raise_alert
from domain.questionnaires import (
    AnswerError,
    Context,
    Instrument,
    Item,
    State,
    StateError,
    compute_scores,
    current_item,
    is_available,
    is_compatible,
    is_complete,
    start,
)
from domain.questionnaires import answer as engine_answer
from domain.questionnaires.conditions import Answer
from domain.questionnaires.grading import answer_label
from domain.questionnaires.model import FreeTextItem
from domain.questionnaires.parsing import is_back, is_skip
from domain.quoting import participant_words
from domain.triage import Level, TriageResult, triage
from models import (
    AdverseEvent,
    Alert,
    AlertLevel,
    Participant,
    QuestionnaireAnswer,
    QuestionnaireSession,
    QuestionnaireStatus,
)

REPORT_INSTRUMENT = "ae_report"
CHECKIN_INSTRUMENT = "weekly_checkin"
FREE_TEXT_IN_ALERT = 300
"""Characters of a participant's own words quoted in an alert."""

SUSPENDED = "suspended"
"""Error code: a button of a questionnaire put aside by /report (finish the report first)."""

ORIGIN_COMMAND = "command"
ORIGIN_PROMPT = "prompt"
ORIGIN_REPORT = "report"


@dataclass(frozen=True)
class Env:
    """What the questionnaire logic needs from the process: instruments, the
    trial's time zone, the switches that are on, the coordinators' chats."""

    instruments: Mapping[str, Instrument]
    tz: ZoneInfo
    switches: frozenset[str]
    coordinator_chats: Sequence[int]


@dataclass
class Progress:
    """One open questionnaire as the bot must show it."""

    session: QuestionnaireSession
    instrument: Instrument
    state: State
    context: Context

    @property
    def item(self) -> Item | None:
        """The question to show now (None once complete)."""
        return current_item(self.instrument, self.state, self.context)


@dataclass
class Outcome:
    """What happened, for the handler to put into words."""

    current: Progress | None = None  # the questionnaire (and question) to show next
    error: AnswerError | None = None  # the answer was refused; nothing changed
    advice: tuple[str, ...] = ()  # advice keys the participant has not been told yet
    completed: QuestionnaireSession | None = None
    cancelled: QuestionnaireSession | None = None
    started: bool = False  # `current` was just started
    resumed: bool = False  # `current` continues an earlier (suspended or open) questionnaire
    finish_report_first: bool = False  # asked for another questionnaire during a report
    refresh_alerts: list[int] = field(default_factory=list)  # alerts whose sent messages must be redrawn
    not_available: bool = False  # the instrument is not for this participant (arm, switch)


class NotYours(Exception):
    """A button of a questionnaire session that belongs to another participant."""


def engine_context(participant: Participant, now: datetime, env: Env) -> Context:
    """The engine's view of who answers when (local date, arm, language, switches)."""
    arm = cast(Literal["A", "B"], participant.arm)
    language: Literal["en", "bn"] = "bn" if participant.language.value == "bn" else "en"
    return Context(arm=arm, today=now.astimezone(env.tz).date(), language=language, switches=env.switches)


async def open_session(db: AsyncSession, participant: Participant) -> QuestionnaireSession | None:
    """The participant's questionnaire in progress, if any."""
    found = await db.scalars(
        select(QuestionnaireSession)
        .where(
            QuestionnaireSession.participant_id == participant.id,
            QuestionnaireSession.status == QuestionnaireStatus.IN_PROGRESS,
        )
        .order_by(QuestionnaireSession.id.desc())
        .limit(1)
    )
    return found.first()


async def current_progress(db: AsyncSession, participant: Participant, now: datetime, env: Env) -> Progress | None:
    """The open questionnaire with its current question (None when there is none,
    or when its instrument changed version, which closes it)."""
    session = await open_session(db, participant)
    if session is None:
        return None
    return _progress(db, participant, session, now, env)


def _progress(
    db: AsyncSession, participant: Participant, session: QuestionnaireSession, now: datetime, env: Env
) -> Progress | None:
    instrument = env.instruments.get(session.instrument_id)
    try:
        state = State.from_dict(session.state)
    except StateError:
        state = None
    if instrument is None or state is None or not is_compatible(instrument, state):
        _close(db, participant, session, QuestionnaireStatus.CANCELLED, now, "instrument_changed")
        return None
    return Progress(session, instrument, state, engine_context(participant, now, env))


def _close(
    db: AsyncSession,
    participant: Participant,
    session: QuestionnaireSession,
    status: QuestionnaireStatus,
    now: datetime,
    why: str,
) -> None:
    before = session.status.value
    session.status = status
    session.updated_at = now
    if status is QuestionnaireStatus.CANCELLED:
        session.cancelled_at = now
    if status is QuestionnaireStatus.COMPLETED:
        session.completed_at = now
    audit.record(
        db,
        at=now,
        actor=audit.participant_actor(participant.study_id),
        action=f"questionnaire.{status.value}",
        participant_id=participant.id,
        before={"session": session.id, "status": before},
        after={"session": session.id, "status": status.value, "instrument": session.instrument_id},
        detail=why,
    )


async def begin(
    db: AsyncSession, participant: Participant, instrument_id: str, origin: str, *, now: datetime, env: Env
) -> Outcome:
    """Start `instrument_id`, or continue it when it is already open or suspended.

    Why: /checkin, /report and the reminder's button all land here, and a
    participant must never end up with two copies of one questionnaire. A report
    puts any other open questionnaire aside (suspended) and it is resumed after.
    """
    instrument = env.instruments.get(instrument_id)
    context = engine_context(participant, now, env)
    if instrument is None:
        return Outcome(not_available=True)
    if not is_available(instrument, context):
        return Outcome(not_available=True)
    current = await current_progress(db, participant, now, env)
    if current is not None and current.session.instrument_id == instrument_id:
        return Outcome(current=current, resumed=True)
    if current is not None and current.session.instrument_id == REPORT_INSTRUMENT:
        return Outcome(current=current, resumed=True, finish_report_first=True)
    if current is not None:
        _close(db, participant, current.session, QuestionnaireStatus.SUSPENDED, now, f"put aside for {instrument_id}")
    suspended = (
        await db.scalars(
            select(QuestionnaireSession)
            .where(
                QuestionnaireSession.participant_id == participant.id,
                QuestionnaireSession.status == QuestionnaireStatus.SUSPENDED,
                QuestionnaireSession.instrument_id == instrument_id,
            )
            .order_by(QuestionnaireSession.id.desc())
            .limit(1)
        )
    ).first()
    if suspended is not None:
        _close(db, participant, suspended, QuestionnaireStatus.IN_PROGRESS, now, "resumed")
        progress = _progress(db, participant, suspended, now, env)
        if progress is not None:
            return Outcome(current=progress, resumed=True)
    state = start(instrument, context)
    session = QuestionnaireSession(
        participant_id=participant.id,
        instrument_id=instrument.id,
        instrument_version=instrument.version,
        status=QuestionnaireStatus.IN_PROGRESS,
        origin=origin,
        state=state.to_dict(),
        started_at=now,
        updated_at=now,
    )
    db.add(session)
    await db.flush()
    audit.record(
        db,
        at=now,
        actor=audit.participant_actor(participant.study_id),
        action="questionnaire.start",
        participant_id=participant.id,
        after={"session": session.id, "instrument": instrument.id, "version": instrument.version, "origin": origin},
    )
    return Outcome(current=Progress(session, instrument, state, context), started=True)


async def answer(
    db: AsyncSession,
    participant: Participant,
    raw: str,
    *,
    now: datetime,
    env: Env,
    session_id: int | None = None,
    item_id: str | None = None,
) -> Outcome:
    """Apply one answer (a button's value with its session and item, or typed text
    for the open questionnaire): store it, triage, alert, and move on.

    Why: the single path from a participant's answer to the database and the
    coordinators. An old button (finished session, earlier question) or bad
    input returns an AnswerError and changes nothing; a button of someone
    else's session raises NotYours.
    """
    if session_id is None:
        session = await open_session(db, participant)
        if session is None:
            return Outcome(error=AnswerError("already_complete"))
    else:
        session = await db.get(QuestionnaireSession, session_id)
        if session is None:
            return Outcome(error=AnswerError("already_complete"))
        if session.participant_id != participant.id:
            raise NotYours(session_id)
        if session.status is QuestionnaireStatus.SUSPENDED:
            return Outcome(error=AnswerError(SUSPENDED))
        if session.status is not QuestionnaireStatus.IN_PROGRESS:
            return Outcome(error=AnswerError("already_complete"))
    progress = _progress(db, participant, session, now, env)
    if progress is None:
        return Outcome(error=AnswerError("instrument_changed"))
    instrument, state, context = progress.instrument, progress.state, progress.context
    asked = progress.item
    result = engine_answer(instrument, state, raw, context, item_id=item_id)
    if isinstance(result, AnswerError):
        return Outcome(current=progress, error=result)
    session.state = result.to_dict()
    session.updated_at = now
    if asked is not None and not is_back(raw) and asked.id in result.answers:
        value = result.answers[asked.id]
        row = QuestionnaireAnswer(
            session_id=session.id,
            item_id=asked.id,
            value=value,
            skipped=value is None and is_skip(raw),
            answered_at=now,
            instrument_version=instrument.version,
        )
        db.add(row)
        shown: object = value
        if isinstance(asked, FreeTextItem) and value is not None:
            await db.flush()  # free text stays in its row (which can be corrected); the audit points to it
            shown = {"answer": row.id}
        audit.record(
            db,
            at=now,
            actor=audit.participant_actor(participant.study_id),
            action="questionnaire.answer",
            participant_id=participant.id,
            after={"session": session.id, "item": asked.id, "value": shown},
        )
    outcome = Outcome(current=Progress(session, instrument, result, context))
    triaged = await _triage(db, participant, session, instrument, result.answers, env, final=is_complete(result))
    outcome.advice = _advise(session, triaged)
    outcome.refresh_alerts = await _sync_alerts(db, participant, session, instrument, result.answers, triaged, now, env)
    if is_complete(result):
        session.scores = compute_scores(instrument, result.answers, participant.arm, env.switches)
        _close(db, participant, session, QuestionnaireStatus.COMPLETED, now, "all questions answered")
        if instrument.id == REPORT_INSTRUMENT:
            await _record_adverse_event(db, participant, session, instrument, result.answers, triaged, now)
        outcome.completed = session
        outcome.current = await _resume_suspended(db, participant, now, env)
        outcome.resumed = outcome.current is not None
    return outcome


async def cancel(db: AsyncSession, participant: Participant, *, now: datetime, env: Env) -> Outcome:
    """/cancel: close the open questionnaire without counting it as complete
    (answers and alerts already raised stay), then take up a suspended one."""
    session = await open_session(db, participant)
    if session is None:
        return Outcome()
    progress = _progress(db, participant, session, now, env)
    outcome = Outcome(cancelled=session)
    if progress is not None:  # what was answered still counts for safety (same-day items too)
        answers = progress.state.answers
        triaged = await _triage(db, participant, session, progress.instrument, answers, env, final=True)
        outcome.advice = _advise(session, triaged)
        outcome.refresh_alerts = await _sync_alerts(
            db, participant, session, progress.instrument, answers, triaged, now, env
        )
    if session.status is QuestionnaireStatus.IN_PROGRESS:
        _close(db, participant, session, QuestionnaireStatus.CANCELLED, now, "/cancel")
    outcome.current = await _resume_suspended(db, participant, now, env)
    outcome.resumed = outcome.current is not None
    return outcome


async def _triage(
    db: AsyncSession,
    participant: Participant,
    session: QuestionnaireSession,
    instrument: Instrument,
    answers: Mapping[str, Answer],
    env: Env,
    *,
    final: bool,
) -> TriageResult:
    """Triage the answers so far. Before the end only URGENT counts (a red flag
    alerts at once); same-day findings wait for the end (or /cancel), when the
    whole picture decides between URGENT and SAME_DAY."""
    previous = await _previous_grades(db, participant, session)
    result = triage(instrument, answers, participant.arm, previous, switches=env.switches)
    if not final and result.level is Level.SAME_DAY:
        result = replace(result, level=Level.ROUTINE, advice=())
    return result


def _advise(session: QuestionnaireSession, result: TriageResult) -> tuple[str, ...]:
    """Advice keys the participant has not been given yet in this session; recorded on the row."""
    told = list((session.triage or {}).get("advised", []))
    new = tuple(key for key in result.advice if key not in told)
    session.triage = {"result": result.to_dict(), "advised": told + list(new)}
    return new


async def set_message_id(db: AsyncSession, session_id: int, message_id: int) -> None:
    """Remember which Telegram message shows the current question (to take its
    buttons away when the participant types the answer instead)."""
    session = await db.get(QuestionnaireSession, session_id)
    if session is not None:
        session.current_message_id = message_id


async def _resume_suspended(db: AsyncSession, participant: Participant, now: datetime, env: Env) -> Progress | None:
    suspended = (
        await db.scalars(
            select(QuestionnaireSession)
            .where(
                QuestionnaireSession.participant_id == participant.id,
                QuestionnaireSession.status == QuestionnaireStatus.SUSPENDED,
            )
            .order_by(QuestionnaireSession.updated_at.desc(), QuestionnaireSession.id.desc())
        )
    ).all()
    for session in suspended:
        _close(db, participant, session, QuestionnaireStatus.IN_PROGRESS, now, "resumed")
        progress = _progress(db, participant, session, now, env)
        if progress is not None:
            return progress
    return None


async def _previous_grades(
    db: AsyncSession, participant: Participant, session: QuestionnaireSession
) -> dict[str, int] | None:
    """Last completed session's grades of the same instrument (for "worse than last week")."""
    if session.instrument_id != CHECKIN_INSTRUMENT:
        return None
    last = (
        await db.scalars(
            select(QuestionnaireSession)
            .where(
                QuestionnaireSession.participant_id == participant.id,
                QuestionnaireSession.instrument_id == session.instrument_id,
                QuestionnaireSession.status == QuestionnaireStatus.COMPLETED,
                QuestionnaireSession.id != session.id,
            )
            .order_by(QuestionnaireSession.completed_at.desc())
            .limit(1)
        )
    ).first()
    if last is None or not last.triage:
        return None
    grades = last.triage.get("result", {}).get("grades")
    return {str(k): int(v) for k, v in grades.items()} if isinstance(grades, dict) else None


def _alert_keys(result: TriageResult, level: Level) -> set[str]:
    """What an alert of `level` is about, to tell new findings from known ones."""
    if level is Level.URGENT:
        keys = {f"flag:{hit.code}" for hit in result.red_flags}
        keys |= {f"criterion:{hit.criterion}" for hit in result.seriousness}
        if result.grade >= 4:
            keys.add("grade4")
        return keys
    keys = {f"grade:{code}" for code, grade in result.grades.items() if grade >= 3}
    keys |= {f"worse:{w.symptom}" for w in result.worsened if w.current - w.previous >= 2}
    return keys


def _kind(result: TriageResult) -> str:
    if result.serious:
        return "serious_ae"
    if result.red_flags:
        return "red_flag"
    if result.grade >= 4:
        return "grade4"
    return "same_day_review"


def reported_lines(instrument: Instrument, answers: Mapping[str, Answer], result: TriageResult) -> list[str]:
    """What the participant reported, in plain English for the coordinator."""
    lines: list[str] = []
    if instrument.id == REPORT_INSTRUMENT:
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
        if detail.grade >= 3 and instrument.id != REPORT_INSTRUMENT:
            lines.append(f"{detail.name.get('en')}: {detail.answer_label.get('en')}")
    for item in instrument.items:
        value = answers.get(item.id)
        if isinstance(item, FreeTextItem) and item.id != "ae_what_other" and isinstance(value, str) and value:
            lines.append(f"In their words, {participant_words(value, FREE_TEXT_IN_ALERT)}")
    return lines


async def _sync_alerts(
    db: AsyncSession,
    participant: Participant,
    session: QuestionnaireSession,
    instrument: Instrument,
    answers: Mapping[str, Answer],
    result: TriageResult,
    now: datetime,
    env: Env,
) -> list[int]:
    """Raise the session's alert for the triage level, or add new findings to the
    open one. Returns ids of alerts whose already-sent messages must be redrawn."""
    if result.level is Level.ROUTINE:
        return []
    level = AlertLevel.URGENT if result.level is Level.URGENT else AlertLevel.SAME_DAY
    keys = _alert_keys(result, result.level)
    source = f"questionnaire_session:{session.id}"
    alerts = list(
        await db.scalars(select(Alert).where(Alert.source == source, Alert.level == level).order_by(Alert.id.desc()))
    )
    known = {key for alert in alerts for key in alert.details.get("keys", [])}
    open_alert = next((alert for alert in alerts if alert.acknowledged_at is None), None)
    finished = is_complete_dict(session.state)
    title = instrument.title.get("en") + ("" if finished else " (not finished yet)")
    summary = "\n".join([title, *reported_lines(instrument, answers, result)])
    reasons = [reason.get("en") for reason in result.reasons]
    if keys <= known:
        if open_alert is None or not finished or open_alert.summary == summary:
            return []
        open_alert.summary = summary  # the final picture, once the questionnaire is complete
        open_alert.reasons = reasons
        return [open_alert.id]
    details: dict[str, Any] = {
        "keys": sorted(keys | known),
        "instrument": instrument.id,
        "instrument_version": instrument.version,
        "session_id": session.id,
        "triage": result.to_dict(),
    }
    if open_alert is None:
        await raise_alert(
            db,
            participant=participant,
            kind=_kind(result),
            level=level,
            summary=summary,
            reasons=reasons,
            now=now,
            coordinator_chats=env.coordinator_chats,
            details=details,
            source=source,
            serious=result.serious,
        )
        return []
    before = {"kind": open_alert.kind, "keys": open_alert.details.get("keys", [])}
    open_alert.summary = summary
    open_alert.reasons = reasons
    open_alert.details = details
    open_alert.kind = _kind(result)
    if result.serious and open_alert.deadline_at is None:
        open_alert.deadline_at = now + SAE_REPORTING_WINDOW
    audit.record(
        db,
        at=now,
        actor=audit.SYSTEM,
        action="alert.update",
        participant_id=participant.id,
        before=before,
        after={"alert": open_alert.id, "kind": open_alert.kind, "keys": details["keys"]},
    )
    return [open_alert.id]


def is_complete_dict(state: Mapping[str, Any]) -> bool:
    """Whether a stored state has no question left (without rebuilding it)."""
    return state.get("current") is None


async def _record_adverse_event(
    db: AsyncSession,
    participant: Participant,
    session: QuestionnaireSession,
    instrument: Instrument,
    answers: Mapping[str, Answer],
    result: TriageResult,
    now: datetime,
) -> AdverseEvent:
    """The completed /report as an adverse-event row for the trial record."""
    category = str(answers.get("ae_what") or "other")
    other = answers.get("ae_what_other")
    term = str(other) if other else answer_label(instrument.item("ae_what"), category).get("en")
    onset_raw = answers.get("ae_start")
    onset = date.fromisoformat(onset_raw) if isinstance(onset_raw, str) else None
    criteria = {hit.criterion for hit in result.seriousness}
    alert_id = await db.scalar(
        select(Alert.id)
        .where(Alert.source == f"questionnaire_session:{session.id}", Alert.level == AlertLevel.URGENT)
        .order_by(Alert.id.desc())
        .limit(1)
    )
    event = AdverseEvent(
        participant_id=participant.id,
        session_id=session.id,
        category=category[:32],
        term=term,
        onset_date=onset,
        grade=result.grades.get("reported_problem", result.grade or None),
        serious=bool(criteria),
        results_in_death=1 in criteria,
        life_threatening=2 in criteria,
        hospitalisation=3 in criteria,
        disability=4 in criteria,
        congenital_anomaly=5 in criteria,
        important_medical_event=6 in criteria,
        alert_id=alert_id,
        reported_at=now,
    )
    db.add(event)
    await db.flush()
    audit.record(
        db,
        at=now,
        actor=audit.participant_actor(participant.study_id),
        action="adverse_event.report",
        participant_id=participant.id,
        after={"adverse_event": event.id, "category": event.category, "grade": event.grade, "serious": event.serious},
    )
    return event
