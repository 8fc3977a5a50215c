"""Questionnaire sessions as database rows: start, resume, answer, correct, cancel, expire.

The pure engine (`domain.questionnaires`) decides what to ask; this module
keeps its state in `questionnaire_sessions` (so any bot process, and the same
process after a restart, continues where the participant stopped), stores
every answer with its time and instrument version, runs the triage after EVERY
answer, and hands what it found to `domain.findings` (which tells the coordinators
only what they have not been shown) and a /report to `domain.adverse_events`.
Sessions whose time is over (a check-in's study week, a report's idle limit) are
closed as expired and their findings raised; an answered red-flag or seriousness
question can be corrected for 24 hours after its session closed. No Telegram
here: the handler shows what `Outcome` describes.

`/report` in the middle of another questionnaire suspends it; when the report
is completed or cancelled, the most recently suspended questionnaire is taken
up again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Select, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from domain import adverse_events, audit, findings, visit_questionnaires
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
from domain.questionnaires.model import FreeTextItem
from domain.questionnaires.parsing import is_back, is_skip
from domain.triage import Level, TriageResult, TriageTable, triage
from models import (
    Participant,
    QuestionnaireAnswer,
    QuestionnaireSession,
    QuestionnaireStatus,
)
from models.db import insert_later, write_later_rows
from scheduler.calendar import local_date
from scheduler.protocol import Protocol

SUSPENDED = "suspended"
"""Error code: a button of a questionnaire put aside by /report (finish the report first)."""

ORIGIN_COMMAND = "command"
ORIGIN_PROMPT = "prompt"
ORIGIN_REPORT = "report"
OPEN = (QuestionnaireStatus.IN_PROGRESS, QuestionnaireStatus.SUSPENDED)
CARRY_OVER = timedelta(hours=24)
"""An unfinished visit questionnaire answered this recently is continued by Start even when
today belongs to the next visit: it keeps the visit it was started in."""
CORRECTION_WINDOW = timedelta(hours=24)
"""How long after its session closed a red-flag or seriousness answer can still be corrected to Yes."""


@dataclass(frozen=True)
class Env:
    """What the questionnaire logic needs from the process: instruments, the
    triage table, the trial's time zone, the switches that are on, the coordinators' chats."""

    instruments: Mapping[str, Instrument]
    triage: TriageTable
    tz: ZoneInfo
    switches: frozenset[str]
    coordinator_chats: Sequence[int]
    report_instrument: str  # /report's instrument (the protocol's report_instrument)
    checkin_instrument: str  # the weekly check-in's (the protocol's checkin.instrument)
    same_day_window: Callable[[datetime], tuple[datetime, datetime]] | None = None  # clinic hours
    report_idle_close: timedelta = timedelta(hours=2)
    protocol: Protocol | None = None  # visit questionnaires and per-participant switches (None: neither)


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
    not_available: bool = False  # the instrument is not for this participant (arm, switch)
    already_answered: int | None = None  # the visit week whose response exists already (refused)
    corrected: Item | None = None  # a red-flag or seriousness answer given again (a correction)
    corrected_to: Answer = None  # its new value


class NotYours(Exception):
    """A button of a questionnaire session that belongs to another participant."""


def engine_context(participant: Participant, now: datetime, env: Env, visit_week: int | None = None) -> Context:
    """The engine's view of who answers when (local date, arm, language, the visit the
    response belongs to, the switches this participant has on)."""
    language: Literal["en", "bn"] = "bn" if participant.language.value == "bn" else "en"
    return Context(
        arm=participant.arm,
        today=local_date(now, env.tz),
        language=language,
        visit_week=visit_week,
        switches=participant_switches(participant, env),
    )


def participant_switches(participant: Participant, env: Env) -> frozenset[str]:
    """The engine's switches for this participant: the process's, with the protocol's
    per-participant switches (the Raynaud's diary) as the study team set them."""
    if env.protocol is None:
        return env.switches
    switchable = frozenset(q.instrument for q in env.protocol.questionnaires if q.switch is not None)
    return (env.switches - switchable) | visit_questionnaires.enabled_instruments(participant, env.protocol)


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
    when its instrument changed version, which closes it, or when its time is over,
    which expires it)."""
    session = await _live_session(db, participant, now, env)
    if session is None:
        return None
    return _progress(db, participant, session, now, env)


async def _live_session(
    db: AsyncSession, participant: Participant, now: datetime, env: Env
) -> QuestionnaireSession | None:
    """The open session, unless its time is over (then it is expired here, at once)."""
    session = await open_session(db, participant)
    if session is not None and is_past(session, participant, now, env):
        await expire(db, participant, session, now=now, env=env)
        return None
    return session


def study_week(participant: Participant, day: date) -> int:
    """Study week of a local date: week k covers baseline + 7k .. 7k + 6 (the protocol's weeks)."""
    return (day - participant.baseline_date).days // 7


def expires_at(participant: Participant, instrument_id: str, now: datetime, env: Env) -> datetime | None:
    """When a session of `instrument_id` left alone from `now` on is closed as expired:
    a check-in at the end of its study week, a report after the idle limit, a daily diary
    at the end of its day (tomorrow is another day's rating), others never."""
    if instrument_id == env.report_instrument:
        return now + env.report_idle_close
    rule = visit_questionnaires.rule_for(env.protocol, instrument_id) if env.protocol is not None else None
    if rule is not None and rule.daily_before_visit is not None:
        return datetime.combine(local_date(now, env.tz) + timedelta(days=1), time(0), env.tz)
    if instrument_id != env.checkin_instrument:
        return None
    week = study_week(participant, local_date(now, env.tz))
    end = participant.baseline_date + timedelta(days=7 * (week + 1))
    return datetime.combine(end, time(0), env.tz)


def is_past(session: QuestionnaireSession, participant: Participant, now: datetime, env: Env) -> bool:
    """Whether an open session's time is over (rows from before expiry times were stored:
    a check-in of an earlier study week)."""
    if session.expires_at is not None:
        return session.expires_at <= now
    if session.instrument_id != env.checkin_instrument:
        return False
    started = study_week(participant, local_date(session.started_at, env.tz))
    return started < study_week(participant, local_date(now, env.tz))


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
    return Progress(session, instrument, state, engine_context(participant, now, env, session.visit_week))


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
    if status in (QuestionnaireStatus.COMPLETED, QuestionnaireStatus.CANCELLED):
        session.closed_at = now
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
    open_now, visit_week = await _visit_of(db, participant, instrument_id, context.today, env)
    if not open_now:
        return Outcome(not_available=True)
    current = await current_progress(db, participant, now, env)
    if current is not None and current.session.instrument_id == instrument_id:
        if _continues(current.session, visit_week, now):
            return Outcome(current=current, resumed=True)
        await expire(db, participant, current.session, now=now, env=env)  # an earlier visit's, left long ago
        current = None
    if current is not None and current.session.instrument_id == env.report_instrument:
        return Outcome(current=current, resumed=True, finish_report_first=True)
    if visit_week is not None and await _answered(db, participant, instrument_id, visit_week, context.today, env):
        _refused_second(db, participant, instrument_id, visit_week, now)
        return Outcome(already_answered=visit_week)
    context = replace(context, visit_week=visit_week)
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
    if suspended is not None and (
        is_past(suspended, participant, now, env) or not _continues(suspended, visit_week, now)
    ):
        await expire(db, participant, suspended, now=now, env=env)
        suspended = None
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
        visit_week=visit_week,
        state=state.to_dict(),
        started_at=now,
        updated_at=now,
        expires_at=expires_at(participant, instrument.id, now, env),
    )
    db.add(session)
    await db.flush()
    audit.record(
        db,
        at=now,
        actor=audit.participant_actor(participant.study_id),
        action="questionnaire.start",
        participant_id=participant.id,
        after={
            "session": session.id,
            "instrument": instrument.id,
            "version": instrument.version,
            "origin": origin,
            "visit_week": visit_week,
        },
    )
    return Outcome(current=Progress(session, instrument, state, context), started=True)


def _continues(session: QuestionnaireSession, visit_week: int | None, now: datetime) -> bool:
    """Whether an open response is continued by a new start: one of the same visit, or one
    of an earlier visit answered within the last day (finished the next day, it keeps its
    visit). Left longer, an earlier visit's response is closed and a fresh one starts."""
    return session.visit_week == visit_week or now - session.updated_at < CARRY_OVER


async def _visit_of(
    db: AsyncSession, participant: Participant, instrument_id: str, today: date, env: Env
) -> tuple[bool, int | None]:
    """(may it start today, the visit week a response started today belongs to). Not a
    visit questionnaire: (True, None); a visit questionnaire before its first visit's
    period: (False, None)."""
    protocol = env.protocol
    rule = visit_questionnaires.rule_for(protocol, instrument_id) if protocol is not None else None
    if rule is None or protocol is None:
        return True, None
    week = await visit_questionnaires.visit_week_on(db, participant, rule, today, protocol)
    return week is not None, week


async def _answered(
    db: AsyncSession, participant: Participant, instrument_id: str, week: int, today: date, env: Env
) -> bool:
    """Whether this visit (a diary: this day) has its completed response already."""
    assert env.protocol is not None
    rule = visit_questionnaires.rule_for(env.protocol, instrument_id)
    assert rule is not None
    return await visit_questionnaires.answered_for_visit(db, participant, rule, week, today, env.protocol)


def _refused_second(db: AsyncSession, participant: Participant, instrument_id: str, week: int, now: datetime) -> None:
    """A second response for a visit that has one: refused (the first stands), audited."""
    audit.record(
        db,
        at=now,
        actor=audit.participant_actor(participant.study_id),
        action="questionnaire.refuse_second",
        participant_id=participant.id,
        after={"instrument": instrument_id, "visit_week": week},
        detail="a response for this visit exists already",
    )


def _last_triage(participant_id: Any, instrument_id: Any, session_id: Any) -> Select[tuple[dict[str, Any] | None]]:
    """The triage of a participant's last completed session of an instrument, another one
    than ``session_id`` (for "worse than last week"); that column only, no session object
    to build. The arguments: bound parameters, or the columns of an outer row."""
    earlier = aliased(QuestionnaireSession, name="earlier")
    return (
        select(earlier.triage)
        .where(
            earlier.participant_id == participant_id,
            earlier.instrument_id == instrument_id,
            earlier.status == QuestionnaireStatus.COMPLETED,
            earlier.id != session_id,
        )
        .order_by(earlier.completed_at.desc())
        .limit(1)
    )


_LAST_TRIAGE = _last_triage(bindparam("participant"), bindparam("instrument"), bindparam("session"))
"""Built once: every typed check-in answer runs it (`_previous_grades`)."""

_BY_ID_WITH_LAST_TRIAGE = select(
    QuestionnaireSession,
    _last_triage(
        QuestionnaireSession.participant_id, QuestionnaireSession.instrument_id, QuestionnaireSession.id
    ).scalar_subquery(),
).where(QuestionnaireSession.id == bindparam("id"))
"""Built once: every answer button reads its session by id, with last week's triage in
the same statement (one round trip fewer a check-in answer; for the other instruments
the triage does not use it, and the subquery costs their answers an index look-up;
`Session.get` composed a new SELECT and its cache key on each call that missed the
identity map, 4 to 7 % of a burst's CPU)."""


@dataclass(frozen=True)
class LastTriage:
    """Last week's triage (`_last_triage`) as read with the session's row: None when
    there is none. Passed down so that the triage does not read it again."""

    triage: dict[str, Any] | None


async def _by_id_with_last_triage(db: AsyncSession, session_id: int) -> tuple[QuestionnaireSession, LastTriage] | None:
    """The questionnaire session with this id, if any, and its last week's triage.

    Not flushed first: in a group of updates sharing a transaction, what the answers
    before this one changed (their sessions' new states, their rows) is of other
    participants, and cannot change this row or its participant's last triage; the
    group's changes are then written together, at its commit (`models.db.insert_later`,
    and the ORM's UPDATE of many sessions in one statement)."""
    with db.no_autoflush:
        found = (await db.execute(_BY_ID_WITH_LAST_TRIAGE, {"id": session_id})).first()
    return None if found is None else (found[0], LastTriage(found[1]))


async def _store_answer(
    db: AsyncSession,
    session: QuestionnaireSession,
    item_id: str,
    value: Answer,
    *,
    at: datetime,
    version: str,
    skipped: bool = False,
    returning_id: bool = False,
) -> int | None:
    """Store one answer as given (a changed answer is a new row) with a Core INSERT,
    not through the ORM's unit of work (about 0.15 ms of CPU an answer: `python -m
    bench.parts`), held to be written with the transaction's other answers in one
    statement (`models.db.insert_later`); nothing of it is read back in the transaction.
    Returns the row's id when asked (free text: the audit points to it; written at once,
    after the answers held), else None."""
    values = {
        "session_id": session.id,
        "item_id": item_id,
        "value": value,
        "skipped": skipped,
        "answered_at": at,
        "instrument_version": version,
    }
    if returning_id:
        await write_later_rows(db)  # the answers before it keep their order
        connection = await db.connection()
        return (await connection.execute(_INSERT_ANSWER_RETURNING_ID, values)).scalar_one()
    insert_later(db, _INSERT_ANSWER, values)
    return None


_INSERT_ANSWER = insert(QuestionnaireAnswer)
_INSERT_ANSWER_RETURNING_ID = insert(QuestionnaireAnswer).returning(QuestionnaireAnswer.id)


async def answer(
    db: AsyncSession,
    participant: Participant,
    raw: str,
    *,
    now: datetime,
    env: Env,
    session_id: int | None = None,
    item_id: str | None = None,
    open_now: QuestionnaireSession | None = None,
) -> Outcome:
    """Apply one answer (a button's value with its session and item, or typed text
    for the open questionnaire): store it, triage, alert, and move on. `open_now`: for
    typed text, the open session as the caller already loaded it (`current_progress`),
    so it is not read again.

    Why: the single path from a participant's answer to the database and the
    coordinators. An old button (finished session, earlier question) or bad
    input returns an AnswerError and changes nothing; a button of someone
    else's session raises NotYours.
    """
    last: LastTriage | None = None  # read with the session's row when a button says which
    if session_id is None:
        session = open_now if open_now is not None else await _live_session(db, participant, now, env)
        if session is None:
            return Outcome(error=AnswerError("already_complete"))
    else:
        found = await _by_id_with_last_triage(db, session_id)
        if found is None:
            return Outcome(error=AnswerError("already_complete"))
        session, last = found
        if session.participant_id != participant.id:
            raise NotYours(session_id)
        if session.status in OPEN and is_past(session, participant, now, env):
            await expire(db, participant, session, now=now, env=env)
        corrected = await _correct(db, participant, session, raw, item_id, now=now, env=env, last=last)
        if corrected is not None:
            return corrected
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
    if session.instrument_id == env.report_instrument:
        session.expires_at = expires_at(participant, session.instrument_id, now, env)  # idle from the last answer
    if asked is not None and not is_back(raw) and asked.id in result.answers:
        value = result.answers[asked.id]
        free_text = isinstance(asked, FreeTextItem) and value is not None
        stored = await _store_answer(
            db,
            session,
            asked.id,
            value,
            at=now,
            version=instrument.version,
            skipped=value is None and is_skip(raw),
            returning_id=free_text,
        )
        # Free text stays in its row (which can be corrected); the audit points to it.
        shown: object = {"answer": stored} if free_text else value
        await audit.write(
            db,
            at=now,
            actor=audit.participant_actor(participant.study_id),
            action="questionnaire.answer",
            participant_id=participant.id,
            after={"session": session.id, "item": asked.id, "value": shown},
        )
    outcome = Outcome(current=Progress(session, instrument, result, context))
    triaged = await _triage(
        db, participant, session, instrument, result.answers, env, final=is_complete(result), last=last
    )
    outcome.advice = _advise(session, triaged)
    await _sync_alerts(
        db, participant, session, instrument, result.answers, triaged, now, env, final=is_complete(result)
    )
    if is_complete(result):
        session.scores = compute_scores(instrument, result.answers, participant.arm, context.switches)
        _close(db, participant, session, QuestionnaireStatus.COMPLETED, now, "all questions answered")
        if instrument.id == env.report_instrument:
            await adverse_events.record_reported_event(
                db, participant, session, instrument, result.answers, triaged, now, complete=True
            )
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
    if session.status is QuestionnaireStatus.IN_PROGRESS:
        _close(db, participant, session, QuestionnaireStatus.CANCELLED, now, "/cancel")
    if progress is not None:  # what was answered still counts for safety (same-day items too)
        outcome.advice = await _final_findings(db, participant, session, progress.instrument, now, env)
    outcome.current = await _resume_suspended(db, participant, now, env)
    outcome.resumed = outcome.current is not None
    return outcome


def is_safety_item(item: Item) -> bool:
    """Red-flag and seriousness questions: their answers can be corrected after the fact."""
    return bool(item.red_flags) or item.seriousness is not None


def correction_open(session: QuestionnaireSession, now: datetime) -> bool:
    """While the session is open and for 24 hours after it closed."""
    if session.status in OPEN:
        return True
    closed = session.closed_at or session.completed_at or session.cancelled_at or session.updated_at
    return now - closed <= CORRECTION_WINDOW


async def _correct(
    db: AsyncSession,
    participant: Participant,
    session: QuestionnaireSession,
    raw: str,
    item_id: str | None,
    *,
    now: datetime,
    env: Env,
    last: LastTriage | None = None,
) -> Outcome | None:
    """A press on an answered red-flag or seriousness question (not the one asked now):
    a correction, stored with its time, audited, triaged and alerted. None: not one.

    Why: a stiff finger hits "No"; the participant must be able to say "Yes" later
    without going Back through the questions. A later "No" is recorded, never
    withdraws an alert, and the coordinators are shown both answers.
    """
    instrument = env.instruments.get(session.instrument_id)
    if item_id is None or instrument is None or raw not in ("yes", "no") or not correction_open(session, now):
        return None
    try:
        item = instrument.item(item_id)
        state = State.from_dict(session.state)
    except (KeyError, StateError):
        return None
    if not is_safety_item(item) or item_id not in state.answers or state.current == item_id:
        return None
    value = raw == "yes"
    outcome = Outcome(corrected=item, corrected_to=value)
    if state.answers[item_id] == value:
        return outcome  # the same answer again: nothing to change
    previous = state.answers[item_id]
    answers = {**state.answers, item_id: value}
    session.state = replace(state, answers=answers).to_dict()
    await _store_answer(db, session, item_id, value, at=now, version=instrument.version)
    await audit.write(
        db,
        at=now,
        actor=audit.participant_actor(participant.study_id),
        action="questionnaire.correction",
        participant_id=participant.id,
        before={"session": session.id, "item": item_id, "value": previous},
        after={"session": session.id, "item": item_id, "value": value, "session_status": session.status.value},
    )
    if not value:
        await findings.answer_changed(db, participant, session, instrument, item, now, env.coordinator_chats)
        return outcome
    final = session.status not in OPEN or findings.is_complete_dict(session.state)
    triaged = await _triage(db, participant, session, instrument, answers, env, final=final, last=last)
    outcome.advice = _advise(session, triaged)
    await _sync_alerts(db, participant, session, instrument, answers, triaged, now, env, final=final)
    if instrument.id == env.report_instrument and triaged.serious and session.status not in OPEN:
        complete = session.status is QuestionnaireStatus.COMPLETED
        await adverse_events.record_reported_event(
            db, participant, session, instrument, answers, triaged, now, complete=complete
        )
    return outcome


async def expire(
    db: AsyncSession, participant: Participant, session: QuestionnaireSession, *, now: datetime, env: Env
) -> bool:
    """Close an unfinished session whose time is over (status expired, answers kept)
    and raise what it found as if it had been finished; False when another process
    (or an earlier call) closed it first.

    Why: a finding is final when answered. The conditional UPDATE is the claim, so
    with several processes exactly one expires the session and raises its alerts.
    """
    before = session.status.value
    claimed = await db.execute(
        update(QuestionnaireSession)
        .where(QuestionnaireSession.id == session.id, QuestionnaireSession.status.in_(OPEN))
        .values(status=QuestionnaireStatus.EXPIRED, updated_at=now, closed_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.status, session.updated_at, session.closed_at = QuestionnaireStatus.EXPIRED, now, now
    audit.record(
        db,
        at=now,
        actor=audit.SYSTEM,
        action="questionnaire.expired",
        participant_id=participant.id,
        before={"session": session.id, "status": before},
        after={"session": session.id, "status": "expired", "instrument": session.instrument_id},
        detail="week over" if session.instrument_id == env.checkin_instrument else "no answer in time",
    )
    instrument = env.instruments.get(session.instrument_id)
    if instrument is not None:
        await _final_findings(db, participant, session, instrument, now, env)
    return True


async def backfill_expiry(db: AsyncSession, env: Env, limit: int = 200) -> int:
    """Give open sessions stored before expiry times existed (migration 0008) their
    expiry: a check-in the end of the study week it started in, a report its idle
    limit after the last answer. Why: otherwise the tick never closes them, and what
    they found is raised only if the participant happens to come back."""
    rows = (
        await db.execute(
            select(QuestionnaireSession, Participant)
            .join(Participant, Participant.id == QuestionnaireSession.participant_id)
            .where(
                QuestionnaireSession.status.in_(OPEN),
                QuestionnaireSession.expires_at.is_(None),
                QuestionnaireSession.instrument_id.in_((env.checkin_instrument, env.report_instrument)),
            )
            .limit(limit)
        )
    ).all()
    for session, participant in rows:
        since = session.updated_at if session.instrument_id == env.report_instrument else session.started_at
        session.expires_at = expires_at(participant, session.instrument_id, since, env)
    return len(rows)


async def expire_due(db: AsyncSession, now: datetime, env: Env, limit: int = 200) -> list[int]:
    """Ids of open sessions whose time is over, oldest first (the tick expires each
    in its own transaction)."""
    found = await db.scalars(
        select(QuestionnaireSession.id)
        .where(QuestionnaireSession.status.in_(OPEN), QuestionnaireSession.expires_at <= now)
        .order_by(QuestionnaireSession.expires_at, QuestionnaireSession.id)
        .limit(limit)
    )
    return list(found)


async def _final_findings(
    db: AsyncSession,
    participant: Participant,
    session: QuestionnaireSession,
    instrument: Instrument,
    now: datetime,
    env: Env,
) -> tuple[str, ...]:
    """Triage a closed session's answers as final: raise its same-day findings, and an
    unfinished report's serious event as an incomplete adverse-event row. Returns new advice keys."""
    try:
        answers = State.from_dict(session.state).answers
    except StateError:
        return ()
    triaged = await _triage(db, participant, session, instrument, answers, env, final=True)
    advice = _advise(session, triaged)
    await _sync_alerts(db, participant, session, instrument, answers, triaged, now, env, final=True)
    if instrument.id == env.report_instrument and triaged.serious:
        await adverse_events.record_reported_event(
            db, participant, session, instrument, answers, triaged, now, complete=False
        )
    return advice


async def _triage(
    db: AsyncSession,
    participant: Participant,
    session: QuestionnaireSession,
    instrument: Instrument,
    answers: Mapping[str, Answer],
    env: Env,
    *,
    final: bool,
    last: LastTriage | None = None,
) -> TriageResult:
    """Triage the answers so far. Before the end only URGENT counts (a red flag
    alerts at once); same-day findings wait for the end (or /cancel), when the
    whole picture decides between URGENT and SAME_DAY. `last`: last week's triage
    when it was read with the session's row (None: read it here)."""
    previous = await _previous_grades(db, participant, session, env, last)
    result = triage(
        instrument, answers, participant.arm, previous, switches=env.switches, table=env.triage, final=final
    )
    if not final and result.level is Level.SAME_DAY:
        result = replace(result, level=Level.ROUTINE, advice=())
    return result


async def _sync_alerts(
    db: AsyncSession,
    participant: Participant,
    session: QuestionnaireSession,
    instrument: Instrument,
    answers: Mapping[str, Answer],
    result: TriageResult,
    now: datetime,
    env: Env,
    *,
    final: bool,
) -> None:
    """`findings.sync_alerts` with what the process knows: whether this is /report's
    instrument, the coordinators' chats, the clinic hours."""
    await findings.sync_alerts(
        db,
        participant,
        session,
        instrument,
        answers,
        result,
        now,
        final=final,
        report=instrument.id == env.report_instrument,
        coordinator_chats=env.coordinator_chats,
        same_day_window=env.same_day_window,
    )


def _advise(session: QuestionnaireSession, result: TriageResult) -> tuple[str, ...]:
    """Advice keys the participant has not been given yet in this session; recorded on the row."""
    told = list((session.triage or {}).get("advised", []))
    new = tuple(key for key in result.advice if key not in told)
    session.triage = {"result": result.to_dict(), "advised": told + list(new)}
    return new


async def set_message_ids(db: AsyncSession, shown: Sequence[tuple[int, int]]) -> None:
    """Remember which Telegram message shows each session's current question (to take
    its buttons away when the participant types the answer instead): `shown` holds
    (session id, message id) pairs, in the order the questions were sent. One UPDATE
    statement for them all (executemany), nothing read first: the bot stores the ids of
    the questions sent meanwhile together (group commit, bot.app)."""
    if not shown:
        return
    connection = await db.connection()  # Core executemany, not the ORM's bulk update by primary key
    await connection.execute(
        _SET_MESSAGE_ID, [{"session": session_id, "message": message_id} for session_id, message_id in shown]
    )


_SET_MESSAGE_ID = (
    update(QuestionnaireSession)
    .where(QuestionnaireSession.id == bindparam("session"))
    .values(current_message_id=bindparam("message"))
)
"""Built once: `set_message_ids` runs after most answers."""


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
        if is_past(session, participant, now, env):  # its week ended while the report was open
            await expire(db, participant, session, now=now, env=env)
            continue
        _close(db, participant, session, QuestionnaireStatus.IN_PROGRESS, now, "resumed")
        progress = _progress(db, participant, session, now, env)
        if progress is not None:
            return progress
    return None


async def _previous_grades(
    db: AsyncSession, participant: Participant, session: QuestionnaireSession, env: Env, last: LastTriage | None
) -> dict[str, int] | None:
    """Last completed session's grades of the same instrument (for "worse than last
    week"); `last`: as read with the session's row (None: read here)."""
    if session.instrument_id != env.checkin_instrument:
        return None
    if last is not None:
        triaged = last.triage
    else:
        # Not flushed first: what this answer changed so far (its row, the session's new
        # state) cannot change which other session completed last, and flushing here
        # would write the session twice, its state now and its triage at the commit.
        with db.no_autoflush:
            triaged = await db.scalar(
                _LAST_TRIAGE,
                {"participant": participant.id, "instrument": session.instrument_id, "session": session.id},
            )
    if not triaged:
        return None
    grades = triaged.get("result", {}).get("grades")
    return {str(k): int(v) for k, v in grades.items()} if isinstance(grades, dict) else None
