"""Adverse events: a participant's /report as the trial record's row, and the serious
events the study team records themselves, and each event's outcome.

A /report becomes one `adverse_events` row (source "participant"), with the ICH E2A
criteria its answers met and the alert it raised; a criterion found later (a corrected
answer) is added to it, never removed.

Serious adverse events the study team records themselves:

A participant cannot report their own death, and many admissions reach the team
by a phone call from the family (CLINICAL.md). `/sae` in Telegram and
`python -m cli sae` record such an event: the same `adverse_events` row
as a participant's /report (source "staff", who recorded it, when, their note),
an URGENT alert with the 24-hour sponsor deadline (escalated like any urgent
alert), an audit row, and the same export rows. A death also stops every
message to the participant: they are withdrawn (status "withdrawn", reason
"died", data kept), so that no reminder or check-in reaches the family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.digits import to_ascii_digits
from domain import audit, participants
from domain.alerts import raise_alert
from domain.content import Content
from domain.errors import DomainError
from domain.parsing import ParseError, parse_date, parse_study_id
from domain.questionnaires import Instrument
from domain.questionnaires.conditions import Answer
from domain.questionnaires.grading import answer_label
from domain.triage import TriageResult, TriageTable
from models import AdverseEvent, Alert, AlertLevel, Participant, ParticipantStatus, QuestionnaireSession

CRITERIA: dict[str, int] = {
    "death": 1,
    "life_threatening": 2,
    "hospitalisation": 3,
    "disability": 4,
    "congenital_anomaly": 5,
    "important_medical_event": 6,
}
"""The words staff type for each ICH E2A criterion (content/triage.yaml names them)."""
_ALIASES = {"died": "death", "hospitalization": "hospitalisation", "admission": "hospitalisation"}
USAGE = (
    "usage: /sae STUDY_ID CRITERION[,CRITERION…] [ONSET_DATE] [NOTE…]; criteria: "
    + ", ".join(CRITERIA)
    + " (e.g. /sae BSM-001 hospitalisation 2026-11-20 daughter phoned, admitted to BSMMU)"
)
STAFF_CATEGORY = "staff_report"
DEATH_REASON = "died"
NOTE_MAX = 500


async def record_reported_event(
    db: AsyncSession,
    participant: Participant,
    session: QuestionnaireSession,
    instrument: Instrument,
    answers: Mapping[str, Answer],
    result: TriageResult,
    now: datetime,
    *,
    complete: bool,
) -> AdverseEvent:
    """The /report as an adverse-event row for the trial record (`complete` False:
    the report was left unfinished with a seriousness criterion met). One row per
    report: a later call adds criteria to it, never removes one."""
    category = str(answers.get("ae_what") or "other")
    other = answers.get("ae_what_other")
    term = str(other) if other else answer_label(instrument.item("ae_what"), category).get("en")
    onset_raw = answers.get("ae_start")
    onset = date.fromisoformat(onset_raw) if isinstance(onset_raw, str) else None
    criteria = {hit.criterion for hit in result.seriousness}
    existing = await db.scalar(select(AdverseEvent).where(AdverseEvent.session_id == session.id))
    if existing is not None:
        return _add_criteria(db, participant, existing, criteria, now)
    urgent = list(
        await db.scalars(
            select(Alert)
            .where(Alert.source == f"questionnaire_session:{session.id}", Alert.level == AlertLevel.URGENT)
            .order_by(Alert.id)
        )
    )
    serious_alerts = [a.id for a in urgent if any(k.startswith("criterion:") for k in a.details.get("keys", []))]
    candidates = serious_alerts or [a.id for a in urgent]
    alert_id = candidates[0] if candidates else None
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
        complete=complete,
    )
    db.add(event)
    await db.flush()
    audit.record(
        db,
        at=now,
        actor=audit.participant_actor(participant.study_id),
        action="adverse_event.report",
        participant_id=participant.id,
        after={
            "adverse_event": event.id,
            "category": event.category,
            "grade": event.grade,
            "serious": event.serious,
            "complete": complete,
        },
    )
    return event


CRITERION_FIELDS = {
    1: "results_in_death",
    2: "life_threatening",
    3: "hospitalisation",
    4: "disability",
    5: "congenital_anomaly",
    6: "important_medical_event",
}


def _add_criteria(
    db: AsyncSession, participant: Participant, event: AdverseEvent, criteria: set[int], now: datetime
) -> AdverseEvent:
    """A criterion found later (a corrected answer) is added to the report's row, audited."""
    added = sorted(c for c in criteria if not getattr(event, CRITERION_FIELDS[c]))
    if not added:
        return event
    for criterion in added:
        setattr(event, CRITERION_FIELDS[criterion], True)
    event.serious = True
    audit.record(
        db,
        at=now,
        actor=audit.participant_actor(participant.study_id),
        action="adverse_event.criteria_added",
        participant_id=participant.id,
        after={"adverse_event": event.id, "criteria": added},
    )
    return event


class SaeUsageError(DomainError):
    """Arguments that do not say what /sae needs; the message ends with the usage line."""


@dataclass(frozen=True)
class StaffSae:
    """A staff-reported serious event, as typed."""

    study_id: str
    criteria: tuple[int, ...]
    onset: date | None
    note: str | None


@dataclass(frozen=True)
class StaffSaeRecorded:
    """What recording it did (for the admin's reply)."""

    event: AdverseEvent
    alert: Alert
    participant: Participant
    messages_stopped: bool
    criteria: tuple[int, ...]


def _usage(problem: str) -> SaeUsageError:
    return SaeUsageError(f"{problem}\n{USAGE}")


def parse_sae_args(args: Sequence[str], today: date) -> StaffSae:
    """`STUDY_ID CRITERION[,CRITERION…] [ONSET_DATE] [NOTE…]` → StaffSae.

    Why: a mistyped criterion or date on a serious event must be refused with the
    usage line, never recorded as something else. `today` is the trial's local
    date (an onset after it is refused). A third word starting with a digit is
    the onset date; anything after is the note.
    """
    if len(args) < 2:
        raise _usage("a study id and at least one criterion are needed")
    try:
        study_id = parse_study_id(args[0])
    except ParseError as error:
        raise _usage(str(error)) from None
    criteria: list[int] = []
    for word in args[1].split(","):
        key = word.strip().casefold().replace("-", "_")
        key = _ALIASES.get(key, key)
        if key not in CRITERIA:
            raise _usage(f"unknown criterion '{word.strip()[:40]}'")
        if CRITERIA[key] not in criteria:
            criteria.append(CRITERIA[key])
    rest = list(args[2:])
    onset: date | None = None
    if rest and to_ascii_digits(rest[0])[:1].isdigit():
        try:
            onset = parse_date(rest.pop(0))
        except ParseError as error:
            raise _usage(str(error)) from None
        if onset > today:
            raise _usage(f"the onset date {onset.isoformat()} is in the future")
    note = " ".join(rest).strip()[:NOTE_MAX] or None
    return StaffSae(study_id, tuple(sorted(criteria)), onset, note)


def _implied_grade(criteria: Sequence[int], table: TriageTable) -> int | None:
    grades = [g for c in criteria if (g := table.seriousness_criteria[c].implies_grade) is not None]
    return max(grades, default=None)


def _summary(request: StaffSae, recorded_by: str, event_id: int) -> str:
    lines = [f"Serious adverse event recorded by the study team: {recorded_by}"]
    lines.append(f"Criteria: {', '.join(k for k, n in CRITERIA.items() if n in request.criteria)}")
    lines.append(f"Onset: {request.onset.isoformat() if request.onset else 'not given'}")
    if request.note:
        lines.append(f"Note: {request.note}")
    if 1 in request.criteria:
        lines.append("Death: all messages to the participant are stopped.")
    lines.append(f"Adverse event #{event_id}")
    return "\n".join(lines)


async def record_staff_sae(
    db: AsyncSession,
    request: StaffSae,
    *,
    actor: str,
    display_name: str,
    now: datetime,
    coordinator_chats: Sequence[int],
    content: Content,
) -> StaffSaeRecorded:
    """Record a staff-reported serious event: the AE row, the URGENT alert with the
    24-hour deadline, the audit row, and for a death the end of all messages.

    Why: the same record and the same alert as a participant's serious /report,
    so that exports and the people on call cannot tell them apart except by
    `source`. An unknown study id is refused with the usage line.
    """
    table = content.triage
    try:
        participant = await participants.by_study_id(db, request.study_id, for_update=True)
    except DomainError as error:
        raise _usage(str(error)) from None
    keywords = [k for k, n in CRITERIA.items() if n in request.criteria]
    event = AdverseEvent(
        participant_id=participant.id,
        session_id=None,
        source="staff",
        recorded_by=actor[:64],
        note=request.note,
        category=STAFF_CATEGORY,
        term=request.note or f"Recorded by the study team: {', '.join(keywords)}",
        onset_date=request.onset,
        grade=_implied_grade(request.criteria, table),
        serious=True,
        results_in_death=1 in request.criteria,
        life_threatening=2 in request.criteria,
        hospitalisation=3 in request.criteria,
        disability=4 in request.criteria,
        congenital_anomaly=5 in request.criteria,
        important_medical_event=6 in request.criteria,
        reported_at=now,
    )
    db.add(event)
    await db.flush()
    template = table.reasons.seriousness.get("en")
    reasons = [template.format(number=n, name=table.seriousness_criteria[n].name.get("en")) for n in request.criteria]
    alert = await raise_alert(
        db,
        participant=participant,
        kind="serious_ae",
        level=AlertLevel.URGENT,
        summary=_summary(request, f"{display_name} ({actor})", event.id),
        reasons=reasons,
        now=now,
        coordinator_chats=coordinator_chats,
        details={
            "source": "staff",
            "adverse_event": event.id,
            "criteria": list(request.criteria),
            "keys": [f"seriousness:{n}" for n in request.criteria],
        },
        source=f"adverse_event:{event.id}",
        serious=True,
    )
    event.alert_id = alert.id
    audit.record(
        db,
        at=now,
        actor=actor,
        action="adverse_event.staff_report",
        participant_id=participant.id,
        after={
            "adverse_event": event.id,
            "alert": alert.id,
            "criteria": keywords,
            "onset_date": request.onset.isoformat() if request.onset else None,
            "note": "[free text]" if request.note else None,
        },
    )
    stopped = False
    if 1 in request.criteria and participant.status != ParticipantStatus.WITHDRAWN:
        await participants.withdraw(
            db,
            participant.study_id,
            reason=f"{DEATH_REASON} (adverse event #{event.id})",
            actor=actor,
            now=now,
            protocol=content.protocol,
        )
        stopped = True
    return StaffSaeRecorded(event, alert, participant, stopped, request.criteria)


# --------------------------------------------------------------------------- outcome

OUTCOMES: dict[str, str] = {
    "recovered": "Recovered/resolved",
    "recovering": "Recovering/resolving",
    "not_recovered": "Not recovered/not resolved",
    "recovered_with_sequelae": "Recovered/resolved with sequelae",
    "fatal": "Fatal",
    "unknown": "Unknown",
}
"""An adverse event's outcome, as CDISC's AEOUT code list (the codes staff type)."""
OUTCOMES_BN: dict[str, str] = {
    "recovered": "সেরে উঠেছেন",
    "recovering": "সেরে উঠছেন",
    "not_recovered": "সেরে ওঠেননি",
    "recovered_with_sequelae": "সেরে উঠেছেন, তবে স্থায়ী সমস্যা রয়ে গেছে",
    "fatal": "মৃত্যু",
    "unknown": "জানা নেই",
}
_OUTCOME_ALIASES = {
    "resolved": "recovered",
    "resolving": "recovering",
    "not_resolved": "not_recovered",
    "sequelae": "recovered_with_sequelae",
    "died": "fatal",
    "death": "fatal",
}
OUTCOME_USAGE = (
    "usage: /outcome AE_NUMBER OUTCOME; outcomes: "
    + ", ".join(OUTCOMES)
    + " (e.g. /outcome 12 recovered; the AE number is in /alerts, the alert and the export)"
)


class OutcomeUsageError(DomainError):
    """Arguments that do not say what /outcome needs; the message ends with the usage line."""


@dataclass(frozen=True)
class OutcomeRequest:
    """An outcome to set on an adverse event, as typed."""

    ae_id: int
    outcome: str


@dataclass(frozen=True)
class OutcomeSet:
    """What setting it did (for the admin's reply)."""

    event: AdverseEvent
    study_id: str
    previous: str | None
    changed: bool


def parse_outcome_args(args: Sequence[str]) -> OutcomeRequest:
    """`AE_NUMBER OUTCOME` → OutcomeRequest.

    Why: a mistyped outcome on a safety record must be refused with the usage
    line, never stored as something else (``#12`` and Bengali digits are read)."""
    if len(args) != 2:
        raise OutcomeUsageError(f"an adverse event number and one outcome are needed\n{OUTCOME_USAGE}")
    number = to_ascii_digits(args[0]).strip().lstrip("#")
    if not number.isdecimal():
        raise OutcomeUsageError(f"'{args[0][:20]}' is not an adverse event number\n{OUTCOME_USAGE}")
    key = args[1].strip().casefold().replace("-", "_").replace("/", "_")
    key = _OUTCOME_ALIASES.get(key, key)
    if key not in OUTCOMES:
        raise OutcomeUsageError(f"unknown outcome '{args[1].strip()[:40]}'\n{OUTCOME_USAGE}")
    return OutcomeRequest(int(number), key)


async def set_outcome(db: AsyncSession, request: OutcomeRequest, *, actor: str, now: datetime) -> OutcomeSet:
    """Record an adverse event's outcome (the same one again changes nothing); audited
    with the outcome before and after. Any adverse event: a participant's report or a
    staff-recorded one."""
    event = await db.get(AdverseEvent, request.ae_id, with_for_update=True)
    if event is None:
        raise DomainError(f"no adverse event #{request.ae_id}")
    participant = await db.get(Participant, event.participant_id)
    assert participant is not None
    previous = event.outcome
    if previous == request.outcome:
        return OutcomeSet(event, participant.study_id, previous, changed=False)
    event.outcome = request.outcome
    event.outcome_at = now
    audit.record(
        db,
        at=now,
        actor=actor,
        action="adverse_event.outcome",
        participant_id=event.participant_id,
        before={"adverse_event": event.id, "outcome": previous},
        after={"adverse_event": event.id, "outcome": request.outcome},
    )
    return OutcomeSet(event, participant.study_id, previous, changed=True)
