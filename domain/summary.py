"""The numbers behind the study team's pictures: the one-page visit summary of a
participant and the trial at a glance.

One pure function per chart (rows in, plain data out), so the tests check each
against the database directly and the drawing (charts/) only draws. The loaders
read the rows once; nothing here knows Telegram or matplotlib. Never a name: a
participant is their study id, a staff member their role."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.acknowledgement import DIGEST_KIND
from domain.participants import by_study_id
from domain.questionnaire_sessions import study_week
from domain.questionnaires import Instrument
from models import (
    AdverseEvent,
    Alert,
    ClinicVisit,
    DoseAnswer,
    DoseLog,
    Participant,
    ParticipantReach,
    ParticipantStatus,
    QuestionnaireSession,
    QuestionnaireStatus,
    VisitStatus,
)
from scheduler.calendar import local_date
from scheduler.planner import PlanError, resolve_dose_weekdays
from scheduler.protocol import Protocol
from scheduler.store import plan_input

OVERVIEW_WEEKS = 4
"""The overview's adherence cells: the last four study weeks (as /status counts)."""

SCORE_INSTRUMENTS = (("haq_di", "haq_di", "HAQ-DI index (0-3)"), ("patient_global", "patient_global", "Patient global"))
"""(instrument, score rule, label) of the visit questionnaires the summary plots."""

CRITERIA = (
    ("results_in_death", "death"),
    ("life_threatening", "life-threatening"),
    ("hospitalisation", "hospitalisation"),
    ("disability", "disability"),
    ("congenital_anomaly", "congenital anomaly"),
    ("important_medical_event", "important medical event"),
)


class DoseMark(enum.StrEnum):
    """One dose day of one drug on the adherence strip."""

    TAKEN = "taken"
    SKIPPED = "skipped"
    NO_ANSWER = "no answer"
    NOT_REMINDED = "not reminded"  # a planned dose day with no reminder sent (paused, unreachable, down)
    PENDING = "pending"  # today's, not answered yet: not counted


# --------------------------------------------------------------------------- the rows


@dataclass(frozen=True)
class VisitInfo:
    """One protocol visit for one participant, recorded or planned."""

    week: int
    name: str
    target: date
    day: date
    window_start: date
    window_end: date
    status: str  # planned | done | missed
    attended_on: date | None


@dataclass(frozen=True)
class CheckinRow:
    """One weekly check-in that produced grades (completed, or expired with answers)."""

    completed_at: datetime
    week: int
    grades: dict[str, int]
    red_flags: tuple[str, ...]
    status: str


@dataclass(frozen=True)
class ScoreRow:
    """One visit questionnaire's stored score."""

    instrument: str
    completed_at: datetime
    value: float | None
    visit_week: int | None = None  # the visit it belongs to (stored at its start; None: older rows)


@dataclass
class ParticipantRecord:
    """Everything the summary needs about one participant, read once."""

    participant: Participant
    visits: list[VisitInfo]
    doses: list[DoseLog]
    dose_weekdays: dict[str, int]
    checkins: list[CheckinRow]
    adverse_events: list[AdverseEvent]
    alerts: list[Alert]
    scores: list[ScoreRow]
    unreachable_since: datetime | None


async def load_record(
    session: AsyncSession, study_id: str, protocol: Protocol, *, participant: Participant | None = None
) -> ParticipantRecord:
    """Read one participant's rows (DomainError for an unknown study id). Reads only."""
    person = participant or await by_study_id(session, study_id)
    pid = person.id
    stored = {v.week: v for v in await session.scalars(select(ClinicVisit).where(ClinicVisit.participant_id == pid))}
    visits = [_visit_info(protocol, person, week, stored.get(week)) for week in (v.week for v in protocol.visits)]
    try:
        weekdays = resolve_dose_weekdays(plan_input(person, list(stored.values()), protocol), protocol)
    except PlanError:
        weekdays = {}
    doses = list(
        await session.scalars(
            select(DoseLog).where(DoseLog.participant_id == pid).order_by(DoseLog.dose_date, DoseLog.id)
        )
    )
    sessions = list(
        await session.scalars(
            select(QuestionnaireSession)
            .where(
                QuestionnaireSession.participant_id == pid,
                QuestionnaireSession.status.in_(
                    [QuestionnaireStatus.COMPLETED, QuestionnaireStatus.EXPIRED, QuestionnaireStatus.CANCELLED]
                ),
            )
            .order_by(QuestionnaireSession.id)
        )
    )
    tz = protocol.tz
    checkin_id = protocol.checkin.instrument
    checkins = [row for s in sessions if s.instrument_id == checkin_id and (row := _checkin_row(s, person, tz))]
    scores = [row for s in sessions for row in _score_rows(s)]
    events = list(
        await session.scalars(
            select(AdverseEvent).where(AdverseEvent.participant_id == pid).order_by(AdverseEvent.reported_at)
        )
    )
    alerts = list(
        await session.scalars(
            select(Alert).where(Alert.participant_id == pid, Alert.kind != DIGEST_KIND).order_by(Alert.aware_at)
        )
    )
    reach = await session.get(ParticipantReach, pid)
    return ParticipantRecord(
        person, visits, doses, weekdays, checkins, events, alerts, scores, reach.unreachable_since if reach else None
    )


def _visit_info(protocol: Protocol, person: Participant, week: int, row: ClinicVisit | None) -> VisitInfo:
    name = protocol.visit(week).name.get("en")
    if row is not None:
        return VisitInfo(
            week,
            name,
            row.target_date,
            row.due_date,  # an agreed date (/visit … on DATE) wins
            row.window_start,
            row.window_end,
            row.status.value,
            row.attended_on,
        )
    vd = protocol.schedule_visit(person.baseline_date, week)
    return VisitInfo(week, name, vd.target, vd.date, vd.window_start, vd.window_end, VisitStatus.PLANNED.value, None)


def _checkin_row(s: QuestionnaireSession, person: Participant, tz: tzinfo) -> CheckinRow | None:
    """A check-in's grades (completed or expired: final) and red flags (a cancelled one's too:
    a red flag answered before /cancel raised its alert and stays on the record)."""
    result = (s.triage or {}).get("result") or {}
    raw = result.get("grades")
    grades = {str(k): int(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    if s.status is QuestionnaireStatus.CANCELLED:
        grades = {}
    flags = tuple(str(f.get("code")) for f in result.get("red_flags", []) if isinstance(f, dict))
    if not grades and not flags:
        return None
    when = s.completed_at or s.closed_at or s.updated_at
    week = study_week(person, local_date(s.started_at, tz))
    return CheckinRow(when, week, grades, flags, s.status.value)


def _score_rows(s: QuestionnaireSession) -> list[ScoreRow]:
    out: list[ScoreRow] = []
    if s.status is not QuestionnaireStatus.COMPLETED or not s.scores or s.completed_at is None:
        return out
    for instrument, rule, _label in SCORE_INSTRUMENTS:
        if s.instrument_id != instrument or rule not in s.scores:
            continue
        raw: Any = s.scores[rule]
        value = raw.get("index") if isinstance(raw, dict) else raw
        number = float(value) if isinstance(value, int | float) else None
        out.append(ScoreRow(instrument, s.completed_at, number, s.visit_week))
    return out


# --------------------------------------------------------------------------- the header


@dataclass(frozen=True)
class Header:
    """The page's first lines: who (study id), arm and regimen, where in the trial."""

    study_id: str
    arm: str
    arm_label: str
    regimen: list[str]
    baseline: date
    study_week: int
    visit: VisitInfo | None  # this visit: the one whose window holds today, else the next planned
    last_visit: VisitInfo | None
    status: str
    flags: list[str]  # paused (until, why), unreachable since, withdrawn


def header(record: ParticipantRecord, protocol: Protocol, today: date) -> Header:
    """What the page says about the participant before any chart."""
    p = record.participant
    arm = protocol.arms.get(p.arm)
    regimen = []
    for reg in arm.regimens if arm else ():
        text = f"{reg.drug.get('en')} {reg.dose_label}"
        if reg.id in record.dose_weekdays:
            text += f" ({_weekday(record.dose_weekdays[reg.id])})"
        else:
            text += f" ({reg.frequency})"
        regimen.append(text)
    flags = []
    if p.status is ParticipantStatus.PAUSED:
        until = f" until {p.paused_until.isoformat()}" if p.paused_until else ""
        flags.append(f"PAUSED{until}" + (f": {p.pause_reason}" if p.pause_reason else ""))
    if p.status is ParticipantStatus.WITHDRAWN:
        flags.append("WITHDRAWN" + (f" {p.withdrawn_at.date().isoformat()}" if p.withdrawn_at else ""))
    if record.unreachable_since is not None:
        flags.append(f"UNREACHABLE since {local_date(record.unreachable_since, protocol.tz).isoformat()}")
    return Header(
        p.study_id,
        p.arm,
        arm.label.get("en") if arm else p.arm,
        regimen,
        p.baseline_date,
        study_week(p, today),
        this_visit(record.visits, today),
        last_visit(record.visits, today),
        p.status.value,
        flags,
    )


def _weekday(day: int) -> str:
    return ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[day]


def this_visit(visits: Sequence[VisitInfo], today: date) -> VisitInfo | None:
    """The visit this page is for: one whose window holds today, else the next planned one."""
    for visit in visits:
        if visit.week > 0 and visit.window_start <= today <= visit.window_end:
            return visit
    return next((v for v in visits if v.week > 0 and v.status == "planned" and v.window_end >= today), None)


def last_visit(visits: Sequence[VisitInfo], today: date) -> VisitInfo | None:
    """The last visit attended before today (baseline counts), which adherence runs from."""
    done = [v for v in visits if v.status == "done" and (v.attended_on or v.day) < today]
    if done:
        return max(done, key=lambda v: v.attended_on or v.day)
    baseline = next((v for v in visits if v.week == 0), None)
    return baseline


# --------------------------------------------------------------------------- adherence


@dataclass(frozen=True)
class AdherenceStrip:
    """One drug's dose days between two dates, each marked, and the share taken."""

    drug: str
    regimen: str
    days: list[tuple[date, DoseMark]]
    taken: int
    reminded: int  # dose-log rows: the denominator, as /status counts

    @property
    def percent(self) -> float | None:
        """Taken of reminded, in % (None when no reminder was sent)."""
        return None if self.reminded == 0 else 100.0 * self.taken / self.reminded

    def count(self, mark: DoseMark) -> int:
        """How many dose days carry this mark."""
        return sum(1 for _, m in self.days if m is mark)


def adherence_strips(
    record: ParticipantRecord, protocol: Protocol, start: date, end: date, today: date
) -> list[AdherenceStrip]:
    """Per drug, every planned dose day from `start` to `end` and every dose-log row in
    between, marked from the dose log (taken, skipped, no answer; a planned day without
    a row is "not reminded" once it is over)."""
    p = record.participant
    arm = protocol.arms.get(p.arm)
    last_dose_day = p.baseline_date + timedelta(weeks=protocol.treatment_weeks) - timedelta(days=1)
    strips = []
    for reg in arm.regimens if arm else ():
        logs = {d.dose_date: d for d in record.doses if d.regimen == reg.id and start <= d.dose_date <= end}
        planned: set[date] = set()
        if p.status is not ParticipantStatus.INVITED:
            day = max(start, p.baseline_date)
            while day <= min(end, last_dose_day):
                if reg.frequency == "daily" or record.dose_weekdays.get(reg.id) == day.weekday():
                    planned.add(day)
                day += timedelta(days=1)
        days = [(day, _mark(logs.get(day), day, today)) for day in sorted(planned | set(logs))]
        taken = sum(1 for d in logs.values() if d.answer is DoseAnswer.TAKEN)
        strips.append(AdherenceStrip(reg.drug.get("en"), reg.id, days, taken, len(logs)))
    return strips


def _mark(log: DoseLog | None, day: date, today: date) -> DoseMark:
    if log is None:
        return DoseMark.NOT_REMINDED if day < today else DoseMark.PENDING
    if log.answer is DoseAnswer.TAKEN:
        return DoseMark.TAKEN
    if log.answer is DoseAnswer.SKIPPED:
        return DoseMark.SKIPPED
    if log.answer is DoseAnswer.NO_ANSWER or day < today:
        return DoseMark.NO_ANSWER
    return DoseMark.PENDING  # reminded today, not answered yet ("later" included)


# --------------------------------------------------------------------------- symptoms


@dataclass(frozen=True)
class HeatMap:
    """Weekly check-in grades per symptom (rows worst first) and the weeks with red flags."""

    weeks: list[int]  # weeks with a completed (or expired) check-in
    symptoms: list[tuple[str, str]]  # (code, English name), worst first
    cells: dict[tuple[str, int], int]  # (symptom code, study week) -> grade
    red_flags: dict[int, list[str]]  # study week -> red-flag codes
    quiet: int  # symptoms answered every week as none (not drawn, counted)


def symptom_heatmap(record: ParticipantRecord, names: Mapping[str, str], *, max_rows: int = 14) -> HeatMap:
    """The weekly check-in grades per symptom: one column per study week that had a
    check-in (the latest of the week), rows ordered by the worst grade, then by the sum."""
    by_week: dict[int, CheckinRow] = {}
    flags: dict[int, list[str]] = {}
    for row in sorted(record.checkins, key=lambda r: r.completed_at):
        if row.grades:
            by_week[row.week] = row
        for code in row.red_flags:
            if code not in flags.setdefault(row.week, []):
                flags[row.week].append(code)
    cells = {(code, week): grade for week, row in by_week.items() for code, grade in row.grades.items()}
    codes = {code for code, _ in cells}
    worst = {code: max(g for (c, _), g in cells.items() if c == code) for code in codes}
    total = {code: sum(g for (c, _), g in cells.items() if c == code) for code in codes}
    shown = sorted((c for c in codes if worst[c] > 0), key=lambda c: (-worst[c], -total[c], names.get(c, c)))
    return HeatMap(
        sorted(by_week),
        [(c, names.get(c, c)) for c in shown[:max_rows]],
        cells,
        flags,
        len(codes) - len(shown[:max_rows]),
    )


def symptom_names(instrument: Instrument | None) -> dict[str, str]:
    """Symptom code -> English name, from the check-in instrument's items."""
    names: dict[str, str] = {}
    for item in instrument.items if instrument else ():
        if item.symptom is not None:
            names.setdefault(item.symptom.code, item.symptom.name.get("en"))
    return names


# --------------------------------------------------------------------------- AEs and alerts


@dataclass(frozen=True)
class EventRow:
    """One line of the adverse-event and alert table."""

    day: date
    kind: str  # AE | SAE | alert
    what: str
    grade: int | None
    criteria: list[str]
    acknowledged: str  # "admin 2026-11-02 10:15" | "OPEN"
    ref: str  # "AE 3" | "alert #7"


def event_table(record: ParticipantRecord, tz: tzinfo) -> list[EventRow]:
    """Every adverse event (with its alert's acknowledgement) and every other alert, by date."""
    alerts = {a.id: a for a in record.alerts}
    used: set[int] = set()
    rows = []
    for e in record.adverse_events:
        alert = alerts.get(e.alert_id) if e.alert_id else None
        if alert is not None:
            used.add(alert.id)
        criteria = [label for attr, label in CRITERIA if getattr(e, attr)]
        rows.append(
            EventRow(
                e.onset_date or local_date(e.reported_at, tz),
                "SAE" if e.serious else "AE",
                event_what(e),
                e.grade,
                criteria,
                acknowledgement(alert, tz) if alert else "",
                f"AE {e.id}",
            )
        )
    for a in record.alerts:
        if a.id in used:
            continue
        rows.append(
            EventRow(
                local_date(a.aware_at, tz),
                {"urgent": "URGENT", "same_day": "same-day"}.get(a.level.value, a.level.value),
                _alert_what(a),
                alert_grade(a),
                [],
                acknowledgement(a, tz),
                f"alert #{a.id}",
            )
        )
    return sorted(rows, key=lambda r: (r.day, r.ref))


def event_what(event: AdverseEvent) -> str:
    """What the event was, never in anyone's own words (a note or "something else" may
    hold a name): the list label for a participant's report."""
    if event.source != "participant":
        return "serious event recorded by the study team"  # its criteria have their own column
    if event.category == "other":
        return "something else (their words: see /alerts)"
    return event.term


def _alert_what(alert: Alert) -> str:
    """Why the alert was raised, in its own English words (the red-flag code dropped)."""
    reasons = [re.sub(r"^(Red flag) \([^)]*\):", r"\1:", str(r)) for r in alert.reasons]
    # Not the summary: it may quote a staff member's name or a participant's own words.
    return "; ".join(reasons) if reasons else alert.kind.replace("_", " ")


def alert_grade(alert: Alert) -> int | None:
    """The provisional grade the triage gave (check-in alerts keep it in their details); None if none."""
    triage = alert.details.get("triage")
    grade = _int(triage.get("grade")) if isinstance(triage, dict) else _int(alert.details.get("grade"))
    return grade or None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def acknowledgement(alert: Alert, tz: tzinfo) -> str:
    """Who (by role, never a name) acknowledged the alert and when; "OPEN" until someone does."""
    if alert.acknowledged_at is None:
        return "OPEN"
    return f"{staff_role(alert.acknowledged_by)} {alert.acknowledged_at.astimezone(tz).strftime('%d %b %H:%M')}"


def staff_role(acknowledged_by: str | None) -> str:
    """'Dr Rahim (admin:123)' -> 'admin': the role from the actor, the name dropped."""
    if not acknowledged_by:
        return "?"
    actor = acknowledged_by.rpartition("(")[2].rstrip(")") if "(" in acknowledged_by else acknowledged_by
    return actor.partition(":")[0] or "?"


# --------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class ScoreSeries:
    """One visit questionnaire's scores at the visits it was answered near."""

    instrument: str
    label: str
    points: list[tuple[int, float]]  # (visit week, score)
    limits: tuple[float, float]


def score_series(record: ParticipantRecord, tz: tzinfo) -> list[ScoreSeries]:
    """HAQ-DI index and patient global per visit week (the visit the response belongs to;
    older rows without one: the visit nearest its completion; the latest answer of each
    week); sparse by nature: only what was answered."""
    out = []
    limits = {"haq_di": (0.0, 3.0), "patient_global": (0.0, 10.0)}
    visit_weeks = [v.week for v in record.visits]
    for instrument, _rule, label in SCORE_INSTRUMENTS:
        points: dict[int, float] = {}
        for row in sorted(record.scores, key=lambda r: r.completed_at):
            if row.instrument != instrument or row.value is None:
                continue
            if row.visit_week is not None:
                points[row.visit_week] = row.value
                continue
            week = study_week(record.participant, local_date(row.completed_at, tz))
            points[_nearest(visit_weeks, week)] = row.value
        out.append(ScoreSeries(instrument, label, sorted(points.items()), limits.get(instrument, (0.0, 10.0))))
    return out


def _nearest(weeks: Sequence[int], week: int) -> int:
    return min(weeks, key=lambda w: (abs(w - week), w)) if weeks else week


# --------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class Summary:
    """The one-page visit summary, as data."""

    header: Header
    generated: datetime
    period: tuple[date, date]  # adherence since the last visit, to today
    adherence: list[AdherenceStrip]
    heatmap: HeatMap
    events: list[EventRow]
    scores: list[ScoreSeries]
    empty: bool = False  # nothing recorded yet: the page says so instead of empty charts
    notes: list[str] = field(default_factory=list)


def build_summary(
    record: ParticipantRecord, protocol: Protocol, instruments: Mapping[str, Instrument], now: datetime
) -> Summary:
    """Every chart's data for one participant at `now`."""
    tz = protocol.tz
    today = local_date(now, tz)
    head = header(record, protocol, today)
    since = head.last_visit.attended_on or head.last_visit.day if head.last_visit else record.participant.baseline_date
    strips = adherence_strips(record, protocol, since, today, today)
    heat = symptom_heatmap(record, symptom_names(instruments.get(protocol.checkin.instrument)))
    events = event_table(record, tz)
    scores = score_series(record, tz)
    empty = not record.doses and not record.checkins and not events and not record.scores
    notes = []
    if record.participant.status is ParticipantStatus.INVITED:
        notes.append("Enrolled, not linked to Telegram yet: the bot has sent nothing.")
    return Summary(head, now, (since, today), strips, heat, events, scores, empty, notes)


# --------------------------------------------------------------------------- the overview


@dataclass(frozen=True)
class OverviewRow:
    """One participant's line of the trial at a glance."""

    study_id: str
    arm: str
    status: str
    weeks: list[
        tuple[int, int, int]
    ]  # the last OVERVIEW_WEEKS 7-day blocks, oldest first: (blocks back, taken, reminded)
    open_alerts: int
    next_visit: VisitInfo | None
    days_to_visit: int | None
    last_checkin: date | None
    unreachable: bool
    paused: bool

    @property
    def adherence(self) -> float | None:
        """Taken of reminded over the whole four weeks, in %."""
        reminded = sum(r for _, _, r in self.weeks)
        return None if reminded == 0 else 100.0 * sum(t for _, t, _ in self.weeks) / reminded


def overview_row(record: ParticipantRecord, today: date, tz: tzinfo | None = None) -> OverviewRow:
    """A participant's overview line from their rows: adherence in the last four
    7-day blocks ending today (taken, reminded from the dose log), open alerts, the next
    visit, the last check-in's day (in ``tz``; None: as stored)."""
    last = max((c.completed_at for c in record.checkins if c.status == "completed"), default=None)
    return _overview_line(
        record.participant,
        today,
        record.visits,
        [(d.dose_date, d.answer) for d in record.doses],
        sum(1 for a in record.alerts if a.acknowledged_at is None),
        last,
        record.unreachable_since is not None,
        tz,
    )


def _overview_line(
    p: Participant,
    today: date,
    visits: Sequence[VisitInfo],
    doses: Sequence[tuple[date, DoseAnswer | None]],
    open_alerts: int,
    last_checkin: datetime | None,
    unreachable: bool,
    tz: tzinfo | None,
) -> OverviewRow:
    """One overview line from what it shows (`overview_row` from a whole record,
    `load_overview` from its queries); ``tz`` None: the check-in's date as stored."""
    weeks = []
    for back in range(OVERVIEW_WEEKS - 1, -1, -1):
        end = today - timedelta(days=7 * back)
        start = end - timedelta(days=6)
        answers = [answer for day, answer in doses if start <= day <= end]
        weeks.append((back, sum(1 for a in answers if a is DoseAnswer.TAKEN), len(answers)))
    visit = (
        next((v for v in visits if v.week > 0 and v.status == "planned" and v.window_end >= today), None)
        if p.status not in (ParticipantStatus.WITHDRAWN, ParticipantStatus.INVITED)
        else None
    )
    seen = None if last_checkin is None else last_checkin.date() if tz is None else local_date(last_checkin, tz)
    return OverviewRow(
        p.study_id,
        p.arm,
        p.status.value,
        weeks,
        open_alerts,
        visit,
        (visit.day - today).days if visit else None,
        seen,
        unreachable,
        p.status is ParticipantStatus.PAUSED,
    )


OVERVIEW_LINES = 40
"""The most participants one A4 overview page lists legibly (6-point type)."""


def overview_page(rows: Sequence[OverviewRow], limit: int = OVERVIEW_LINES) -> tuple[list[OverviewRow], int]:
    """The lines one overview page shows and how many it leaves out: every participant,
    by study id, when they fit; else the ``limit`` needing attention most (open alerts,
    then unreachable, then the lowest adherence; no reminder yet counts as none missed),
    in that order."""
    if len(rows) <= limit:
        return list(rows), 0

    def attention(row: OverviewRow) -> tuple[int, bool, float, str]:
        adherence = row.adherence
        return (-row.open_alerts, not row.unreachable, 101.0 if adherence is None else adherence, row.study_id)

    return sorted(rows, key=attention)[:limit], len(rows) - limit


def overview_rows(records: Sequence[ParticipantRecord], now: datetime, tz: tzinfo) -> list[OverviewRow]:
    """The trial at a glance: one row per participant, by study id."""
    today = local_date(now, tz)
    return [overview_row(record, today, tz) for record in sorted(records, key=lambda r: r.participant.study_id)]


async def load_all(session: AsyncSession, protocol: Protocol) -> list[ParticipantRecord]:
    """Every participant's whole record, by study id (reads everything: for a few
    participants; the overview reads only what it shows, `load_overview`)."""
    people = list(await session.scalars(select(Participant).order_by(Participant.study_id)))
    return [await load_record(session, p.study_id, protocol, participant=p) for p in people]


OVERVIEW_CHUNK = 2000
"""Participants read together by `load_overview`: its memory is one chunk's rows."""


async def load_overview(session: AsyncSession, protocol: Protocol, now: datetime) -> list[OverviewRow]:
    """The overview's rows, as `overview_rows(load_all(...))` gives them, read with a few
    set-based queries per chunk of OVERVIEW_CHUNK participants and only what the overview
    shows: the last four weeks' dose log, open alerts counted, the latest completed
    check-in, the visits, who is unreachable. Its cost grows with the participants, not
    with their history, and only one chunk's rows are held at a time (100,000 participants
    on a Sunday morning: issue 18). A completed check-in always has grades (every item was
    answered), so the latest completed one is the record's last check-in."""
    tz = protocol.tz
    today = local_date(now, tz)
    first_day = today - timedelta(days=7 * OVERVIEW_WEEKS - 1)
    rows: list[OverviewRow] = []
    held = set(session.identity_map.keys())
    after = 0
    while True:
        people = list(
            await session.scalars(
                select(Participant).where(Participant.id > after).order_by(Participant.id).limit(OVERVIEW_CHUNK)
            )
        )
        if not people:
            break
        after = people[-1].id
        ids = [p.id for p in people]
        visits: dict[int, dict[int, ClinicVisit]] = {}
        for visit in await session.scalars(select(ClinicVisit).where(ClinicVisit.participant_id.in_(ids))):
            visits.setdefault(visit.participant_id, {})[visit.week] = visit
        doses: dict[int, list[tuple[date, DoseAnswer | None]]] = {}
        dose_rows = await session.execute(
            select(DoseLog.participant_id, DoseLog.dose_date, DoseLog.answer).where(
                DoseLog.participant_id.in_(ids), DoseLog.dose_date >= first_day, DoseLog.dose_date <= today
            )
        )
        for pid, day, answer in dose_rows:
            doses.setdefault(pid, []).append((day, answer))
        open_alerts = dict(
            (
                await session.execute(
                    select(Alert.participant_id, func.count())
                    .where(Alert.participant_id.in_(ids), Alert.kind != DIGEST_KIND, Alert.acknowledged_at.is_(None))
                    .group_by(Alert.participant_id)
                )
            )
            .tuples()
            .all()
        )
        last_checkin = dict(
            (
                await session.execute(
                    select(QuestionnaireSession.participant_id, func.max(QuestionnaireSession.completed_at))
                    .where(
                        QuestionnaireSession.participant_id.in_(ids),
                        QuestionnaireSession.instrument_id == protocol.checkin.instrument,
                        QuestionnaireSession.status == QuestionnaireStatus.COMPLETED,
                    )
                    .group_by(QuestionnaireSession.participant_id)
                )
            )
            .tuples()
            .all()
        )
        unreachable = set(
            await session.scalars(
                select(ParticipantReach.participant_id).where(
                    ParticipantReach.participant_id.in_(ids), ParticipantReach.unreachable_since.is_not(None)
                )
            )
        )
        for person in people:
            stored = visits.get(person.id, {})
            infos = [_visit_info(protocol, person, v.week, stored.get(v.week)) for v in protocol.visits]
            rows.append(
                _overview_line(
                    person,
                    today,
                    infos,
                    doses.get(person.id, []),
                    int(open_alerts.get(person.id, 0)),
                    last_checkin.get(person.id),
                    person.id in unreachable,
                    tz,
                )
            )
        loaded = [*people, *(visit for by_week in visits.values() for visit in by_week.values())]
        for obj in loaded:  # let the chunk go, but not what the caller's session held before
            if inspect(obj).identity_key not in held:
                session.expunge(obj)
    rows.sort(key=lambda r: r.study_id)
    return rows
