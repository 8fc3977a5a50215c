"""Exported datasets for the follow-up itself: clinic visits, doses with
adherence, questionnaire responses (one dataset per instrument, one column per
item, generated from the instrument files) and adverse events."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.adverse_events import OUTCOMES, OUTCOMES_BN
from domain.questionnaires import Instrument
from export.datasets import STUDY_ID, Scope, selected, staff_role
from export.spec import Column, Dataset, Variable, row_of
from models import Participant
from models.questionnaires import AdverseEvent, QuestionnaireSession
from models.schedule import ClinicVisit, DoseLog
from scheduler.calendar import local_date
from scheduler.protocol import Protocol

VISIT_STATUSES = {"planned": "Not yet recorded", "done": "Attended", "missed": "Missed"}
DOSE_ANSWERS = {
    "taken": "Taken",
    "skipped": "Skipped",
    "later": "Remind me later (no final answer yet)",
    "no_answer": "No answer",
}
SESSION_STATUSES = {
    "in_progress": "In progress",
    "completed": "Completed",
    "cancelled": "Cancelled (partial answers kept)",
    "suspended": "Put aside for a problem report",
    "expired": "Expired (left unfinished; partial answers kept)",
}
TRIAGE_LEVELS = {"ROUTINE": "Routine", "SAME_DAY": "Same-day review", "URGENT": "Urgent"}


VisitRecord = tuple[ClinicVisit, str]

# The clinic-visit columns: one `Column` per exported variable (adding a visit
# column, e.g. an agreed date, is one more entry here).
VISIT_COLUMNS: list[Column[VisitRecord]] = [
    Column(STUDY_ID, lambda r: r[1]),
    Column(Variable("week", "Visit week", "integer", "clinic_visits.week", measure="ordinal"), lambda r: r[0].week),
    Column(
        Variable("target_date", "Target date (baseline + weeks)", "date", "clinic_visits.target_date"),
        lambda r: r[0].target_date,
    ),
    Column(
        Variable("visit_date", "Planned date (moved to a clinic day)", "date", "clinic_visits.visit_date"),
        lambda r: r[0].visit_date,
    ),
    Column(
        Variable("window_start", "Visit window opens", "date", "clinic_visits.window_start"),
        lambda r: r[0].window_start,
    ),
    Column(
        Variable("window_end", "Visit window closes", "date", "clinic_visits.window_end"), lambda r: r[0].window_end
    ),
    Column(Variable("status", "Visit status", "string", "clinic_visits.status", VISIT_STATUSES), lambda r: r[0].status),
    Column(Variable("attended_on", "Date attended", "date", "clinic_visits.attended_on"), lambda r: r[0].attended_on),
    Column(Variable("missed", "Visit missed", "boolean", "clinic_visits.status"), lambda r: r[0].status == "missed"),
    Column(
        Variable(
            "reschedule_requested",
            "Participant asked for another date",
            "boolean",
            "clinic_visits.reschedule_requested_at",
        ),
        lambda r: r[0].reschedule_requested_at is not None,
    ),
    Column(
        Variable("agreed_date", "Date agreed with the participant (rescheduled)", "date", "clinic_visits.agreed_date"),
        lambda r: r[0].agreed_date,
    ),
    Column(
        Variable(
            "deviation",
            "Agreed date outside the visit window (protocol deviation)",
            "boolean",
            "clinic_visits.deviation",
        ),
        lambda r: bool(r[0].deviation),
    ),
    Column(
        Variable("recorded_by_role", "Recorded by (role)", "string", "clinic_visits.recorded_by"),
        lambda r: staff_role(r[0].recorded_by),
    ),
]
# A visit's own times, for `since` (a visit is planned when its participant is enrolled).
VISIT_TIMES = (
    ClinicVisit.recorded_at,
    ClinicVisit.will_come_at,
    ClinicVisit.reschedule_requested_at,
    ClinicVisit.agreed_at,
    Participant.created_at,
)


def _visit_recorded(row: dict[str, object]) -> bool:
    return row.get("status") in ("done", "missed")


async def visits(session: AsyncSession, scope: Scope) -> Dataset:
    """One row per participant-visit (the protocol's visit weeks)."""
    query = selected(
        select(ClinicVisit, Participant.study_id)
        .join(Participant, Participant.id == ClinicVisit.participant_id)
        .order_by(Participant.study_id, ClinicVisit.week),
        scope,
        ClinicVisit.participant_id,
        *VISIT_TIMES,
    )
    rows = []
    for v, study_id in (await session.execute(query)).all():
        row = row_of(VISIT_COLUMNS, (v, study_id))
        row["_recorded_at"] = v.recorded_at
        row["_recorded_by"] = staff_role(v.recorded_by) or "system"
        rows.append(row)
    return Dataset(
        "visits",
        "Clinic visits",
        [c.variable for c in VISIT_COLUMNS],
        rows,
        event_week_var="week",
        weeks=scope.visit_weeks,
        prefix="visit",
        complete=_visit_recorded,
    )


def _dose_final(row: dict[str, object]) -> bool:
    return row.get("answer") in ("taken", "skipped", "no_answer")


async def doses(session: AsyncSession, scope: Scope) -> Dataset:
    """One row per dose reminder and what the participant answered."""
    variables = [
        Variable("dose_id", "Dose record number", "integer", "dose_log.id"),
        STUDY_ID,
        Variable("regimen", "Regimen", "string", "dose_log.regimen"),
        Variable("drug", "Drug and dose", "string", "dose_log.drug"),
        Variable("dose_date", "Planned date (local)", "date", "dose_log.dose_date"),
        Variable("planned_time", "Planned time (local, HH:MM)", "time", "dose_log.planned_time"),
        Variable("reminded_at", "Reminder sent", "datetime", "dose_log.reminded_at"),
        Variable("answer", "Answer", "string", "dose_log.answer", DOSE_ANSWERS),
        Variable("answered_at", "Answered", "datetime", "dose_log.answered_at"),
        Variable("later_count", "Times 'remind me later' was pressed", "integer", "dose_log.later_count"),
    ]
    query = selected(
        select(DoseLog.__table__, Participant.study_id)  # plain rows: no ORM objects for the largest table
        .join(Participant, Participant.id == DoseLog.participant_id)
        .order_by(Participant.study_id, DoseLog.dose_date, DoseLog.regimen),
        scope,
        DoseLog.participant_id,
        DoseLog.reminded_at,
        DoseLog.answered_at,
    )
    rows = [
        {
            "dose_id": d.id,
            "study_id": d.study_id,
            "regimen": d.regimen,
            "drug": d.drug,
            "dose_date": d.dose_date,
            "planned_time": d.planned_time.strftime("%H:%M"),
            "reminded_at": d.reminded_at,
            "answer": d.answer,
            "answered_at": d.answered_at,
            "later_count": d.later_count,
            "_recorded_at": d.answered_at or d.reminded_at,
            "_recorded_by": "participant" if d.answered_at else "system",
            "_participant_id": d.participant_id,
        }
        for d in (await session.execute(query)).all()
    ]
    return Dataset(
        "doses",
        "Dose reminders and answers",
        variables,
        rows,
        repeat_key_var="dose_id",
        prefix="dose",
        complete=_dose_final,
    )


def adherence(doses_dataset: Dataset, final_week: int = 24) -> Dataset:
    """Per participant and regimen: doses reminded, taken, skipped, unanswered,
    and adherence % (taken / reminded), derived from the dose rows exported."""
    variables = [
        STUDY_ID,
        Variable("regimen", "Regimen", "string", "dose_log.regimen"),
        Variable("doses_reminded", "Dose reminders sent", "integer", "count of dose_log"),
        Variable("taken", "Taken", "integer", "dose_log.answer = taken"),
        Variable("skipped", "Skipped", "integer", "dose_log.answer = skipped"),
        Variable("no_answer", "No answer", "integer", "dose_log.answer = no_answer or none yet"),
        Variable("adherence_pct", "Adherence % (taken / reminded)", "decimal", "derived", unit="%"),
    ]
    counts: dict[tuple[str, str], Counter[str]] = {}
    for row in doses_dataset.rows:
        key = (str(row["study_id"]), str(row["regimen"]))
        answer = str(row["answer"]) if row["answer"] in ("taken", "skipped") else "no_answer"
        counts.setdefault(key, Counter())[answer] += 1
    rows: list[dict[str, object]] = []
    for (study_id, regimen), c in sorted(counts.items()):
        total = sum(c.values())
        rows.append(
            {
                "study_id": study_id,
                "regimen": regimen,
                "doses_reminded": total,
                "taken": c["taken"],
                "skipped": c["skipped"],
                "no_answer": c["no_answer"],
                "adherence_pct": round(100 * c["taken"] / total, 1) if total else None,
            }
        )
    return Dataset(
        "adherence",
        "Adherence per participant and regimen",
        variables,
        rows,
        event=f"WEEK{final_week}",
        repeat_key_var="regimen",
        prefix="adh",
    )


def _item_variable(instrument: Instrument, item: object) -> Variable:
    source = f"{instrument.id}.yaml: {item.id}"  # type: ignore[attr-defined]
    label = (item.text.en or item.id)[:200]  # type: ignore[attr-defined]
    kind = item.type  # type: ignore[attr-defined]
    name = item.id  # type: ignore[attr-defined]
    asked = {
        "label_bn": (item.text.bn or None),  # type: ignore[attr-defined]
        "show_if": item.show_if,  # type: ignore[attr-defined]
    }
    if kind == "single_choice":
        return Variable(
            name,
            label,
            "string",
            source,
            {c.value: c.label.en or c.value for c in item.choices},  # type: ignore[attr-defined]
            {c.value: c.label.bn or "" for c in item.choices},  # type: ignore[attr-defined]
            **asked,
        )
    if kind == "yes_no":
        return Variable(name, label, "boolean", source, **asked)
    if kind == "scale_0_10":
        bounds = {"minimum": item.min, "maximum": item.max}  # type: ignore[attr-defined]
        return Variable(name, label, "integer", source, measure="scale", **bounds, **asked)
    if kind == "number":
        unit = item.unit.en if item.unit is not None else None  # type: ignore[attr-defined]
        bounds = {"minimum": item.min, "maximum": item.max}  # type: ignore[attr-defined]
        return Variable(name, label, "decimal", source, unit=unit, **bounds, **asked)
    if kind == "date":
        return Variable(name, label, "date", source, **asked)
    return Variable(name, label, "string", source, free_text=True, **asked)


def _score_variables(instrument: Instrument) -> list[Variable]:
    out: list[Variable] = []
    for rule in instrument.scoring:
        source = f"{instrument.id}.yaml: scoring {rule.id}"
        if rule.kind == "value":
            out.append(Variable(f"score_{rule.id}", f"Score: {rule.id}", "decimal", source))
        elif rule.kind == "haq_di":
            out.append(Variable(f"score_{rule.id}_index", "HAQ-DI index (0–3)", "decimal", source))
            out.append(Variable(f"score_{rule.id}_categories", "HAQ-DI categories answered", "integer", source))
            for category in rule.categories:
                out.append(
                    Variable(
                        f"score_{rule.id}_{category.id}",
                        f"HAQ-DI category: {category.label.en}",
                        "integer",
                        source,
                        measure="ordinal",
                    )
                )
        elif rule.kind == "symptom_grades":
            out.append(
                Variable(
                    f"score_{rule.id}_max_grade",
                    "Highest provisional symptom grade",
                    "integer",
                    source,
                    measure="ordinal",
                )
            )
    return out


def _scores(instrument: Instrument, scores: dict[str, object] | None) -> dict[str, object]:
    out: dict[str, object] = {}
    scores = scores or {}
    for rule in instrument.scoring:
        value = scores.get(rule.id)
        if rule.kind == "value":
            out[f"score_{rule.id}"] = value
        elif rule.kind == "haq_di" and isinstance(value, dict):
            out[f"score_{rule.id}_index"] = value.get("index")
            out[f"score_{rule.id}_categories"] = value.get("answered_categories")
            for category, score in (value.get("categories") or {}).items():
                out[f"score_{rule.id}_{category}"] = score
        elif rule.kind == "symptom_grades" and isinstance(value, dict):
            out[f"score_{rule.id}_max_grade"] = value.get("max_grade")
    return out


def _visit_week(protocol: Protocol, baseline: object, day: object) -> int | None:
    for visit in protocol.visits:
        target = baseline + timedelta(weeks=visit.week)  # type: ignore[operator]
        if abs((day - target).days) <= visit.window_days:  # type: ignore[operator]
            return int(visit.week)
    return None


def form_prefix(instrument_id: str) -> str:
    """A short REDCap field prefix for an instrument: the initials of its id
    (`weekly_checkin` → `wc`, `raynaud_condition_score` → `rcs`)."""
    return "".join(part[0] for part in instrument_id.split("_") if part)


def _completed(row: dict[str, object]) -> bool:
    return row.get("status") == "completed"


def responses(instrument: Instrument, protocol: Protocol) -> object:
    """A builder for one instrument's responses: one row per questionnaire
    session, one column per item, then the scores and the triage summary."""

    async def build(session: AsyncSession, scope: Scope) -> Dataset:
        items = [_item_variable(instrument, item) for item in instrument.items]
        variables = [
            Variable("response_id", "Response number", "integer", "questionnaire_sessions.id"),
            STUDY_ID,
            Variable("instrument_version", "Instrument version", "string", "questionnaire_sessions.instrument_version"),
            Variable("status", "Response status", "string", "questionnaire_sessions.status", SESSION_STATUSES),
            Variable("started_at", "Started", "datetime", "questionnaire_sessions.started_at"),
            Variable("completed_at", "Completed", "datetime", "questionnaire_sessions.completed_at"),
            Variable("study_week", "Study week (days since baseline / 7)", "integer", "derived"),
            Variable(
                "visit_week",
                "Visit the response belongs to (fixed when it was started)",
                "integer",
                "questionnaire_sessions.visit_week",
            ),
            *items,
            *_score_variables(instrument),
            Variable(
                "triage_level",
                "Triage level",
                "string",
                "questionnaire_sessions.triage",
                TRIAGE_LEVELS,
                measure="ordinal",
            ),
            Variable(
                "triage_grade",
                "Provisional overall grade",
                "integer",
                "questionnaire_sessions.triage",
                measure="ordinal",
            ),
            Variable("red_flags", "Red flags hit (codes)", "string", "questionnaire_sessions.triage"),
            Variable("seriousness", "ICH E2A criteria met (numbers)", "string", "questionnaire_sessions.triage"),
        ]
        query = selected(
            select(QuestionnaireSession.__table__, Participant.study_id, Participant.baseline_date)  # plain rows
            .join(Participant, Participant.id == QuestionnaireSession.participant_id)
            .where(QuestionnaireSession.instrument_id == instrument.id)
            .order_by(QuestionnaireSession.id),
            scope,
            QuestionnaireSession.participant_id,
            QuestionnaireSession.started_at,
            QuestionnaireSession.updated_at,
            QuestionnaireSession.completed_at,
            QuestionnaireSession.cancelled_at,
        )
        rows = []
        for s in (await session.execute(query)).all():
            study_id, baseline = s.study_id, s.baseline_date
            answers = dict((s.state or {}).get("answers") or {})
            day = local_date(s.started_at, scope.tz)
            result = ((s.triage or {}).get("result") or {}) if isinstance(s.triage, dict) else {}
            row: dict[str, object] = {
                "response_id": s.id,
                "study_id": study_id,
                "instrument_version": s.instrument_version,
                "status": s.status,
                "started_at": s.started_at,
                "completed_at": s.completed_at,
                "study_week": (day - baseline).days // 7,
                "visit_week": s.visit_week if s.visit_week is not None else _visit_week(protocol, baseline, day),
                "triage_level": result.get("level"),
                "triage_grade": result.get("grade"),
                "red_flags": ", ".join(f.get("code", "") for f in result.get("red_flags", [])) or None,
                "seriousness": ", ".join(str(c.get("criterion", "")) for c in result.get("seriousness", [])) or None,
                "_recorded_at": s.completed_at or s.updated_at,
                "_recorded_by": "participant",
            }
            for variable in items:
                value = answers.get(variable.name)
                if variable.kind == "date" and isinstance(value, str):
                    from datetime import date as _date

                    value = _date.fromisoformat(value)
                row[variable.name] = value
            row.update(_scores(instrument, s.scores))
            rows.append(row)
        weekly = instrument.visit_weeks is None
        return Dataset(
            f"responses_{instrument.id}",
            f"Responses: {instrument.title.en or instrument.id}",
            variables,
            rows,
            event_week_var=None if weekly else "visit_week",
            repeat_key_var="response_id",
            weeks=tuple(instrument.visit_weeks or ()),
            prefix=form_prefix(instrument.id),
            complete=_completed,
        )

    return build


AeRecord = tuple[AdverseEvent, str]


def _criterion(name: str, label: str, column: str) -> Column[AeRecord]:
    return Column(Variable(name, label, "boolean", f"adverse_events.{column}"), lambda r: getattr(r[0], column))


# The adverse-event columns: one `Column` per exported variable. Adding an
# adverse_events column (e.g. `source`, `recorded_by`, `complete`, `note`) to the
# CSV, SPSS, ODM and REDCap files is one more entry here.
AE_COLUMNS: list[Column[AeRecord]] = [
    Column(Variable("ae_id", "Adverse event number", "integer", "adverse_events.id"), lambda r: r[0].id),
    Column(STUDY_ID, lambda r: r[1]),
    Column(
        Variable("response_id", "Report (questionnaire response) number", "integer", "adverse_events.session_id"),
        lambda r: r[0].session_id,
    ),
    Column(
        Variable("category", "What happened (list choice)", "string", "adverse_events.category"),
        lambda r: r[0].category,
    ),
    Column(
        Variable("term", "What happened, as reported", "string", "adverse_events.term", free_text=True),
        lambda r: r[0].term,
    ),
    Column(Variable("onset_date", "Onset date", "date", "adverse_events.onset_date"), lambda r: r[0].onset_date),
    Column(
        Variable(
            "grade",
            "Provisional grade (CTCAE-like; investigator confirms)",
            "integer",
            "adverse_events.grade",
            measure="ordinal",
        ),
        lambda r: r[0].grade,
    ),
    Column(
        Variable("serious", "Serious (any ICH E2A criterion)", "boolean", "adverse_events.serious"),
        lambda r: r[0].serious,
    ),
    Column(
        Variable(
            "complete",
            "Report finished (false: left unfinished, what was answered)",
            "boolean",
            "adverse_events.complete",
        ),
        lambda r: r[0].complete,
    ),
    _criterion("sae_death", "Criterion 1: results in death", "results_in_death"),
    _criterion("sae_life_threatening", "Criterion 2: life-threatening", "life_threatening"),
    _criterion("sae_hospitalisation", "Criterion 3: hospital admission or longer stay", "hospitalisation"),
    _criterion("sae_disability", "Criterion 4: persistent or significant disability", "disability"),
    _criterion("sae_congenital_anomaly", "Criterion 5: congenital anomaly / birth defect", "congenital_anomaly"),
    _criterion("sae_important_medical_event", "Criterion 6: important medical event", "important_medical_event"),
    Column(
        Variable("reported_at", "Reported (time of awareness)", "datetime", "adverse_events.reported_at"),
        lambda r: r[0].reported_at,
    ),
    Column(
        Variable("alert_id", "Alert raised (see alerts)", "integer", "adverse_events.alert_id"), lambda r: r[0].alert_id
    ),
    Column(
        Variable(
            "source",
            "Who reported it",
            "string",
            "adverse_events.source",
            values={"participant": "Participant (/report)", "staff": "Study team (/sae)"},
        ),
        lambda r: r[0].source,
    ),
    Column(
        Variable("recorded_by", "Recorded by (staff role)", "string", "adverse_events.recorded_by"),
        lambda r: staff_role(r[0].recorded_by),
    ),
    Column(
        Variable(
            "outcome",
            "Outcome (CDISC AEOUT; empty: not recorded yet)",
            "string",
            "adverse_events.outcome",
            values=OUTCOMES,
            values_bn=OUTCOMES_BN,
        ),
        lambda r: r[0].outcome,
    ),
    Column(
        Variable("outcome_at", "Outcome recorded at", "datetime", "adverse_events.outcome_at"),
        lambda r: r[0].outcome_at,
    ),
]


def _ae_complete(row: dict[str, object]) -> bool:
    """Complete unless the row says otherwise (a `complete` column, when there is one)."""
    return row.get("complete", True) not in (False, 0)


# An adverse event's own times, for `since`.
AE_TIMES = (AdverseEvent.reported_at, AdverseEvent.outcome_at)


async def adverse_events(session: AsyncSession, scope: Scope) -> Dataset:
    """One row per adverse event: reported with /report, or recorded by staff (/sae)."""
    query = selected(
        select(AdverseEvent, Participant.study_id)
        .join(Participant, Participant.id == AdverseEvent.participant_id)
        .order_by(AdverseEvent.id),
        scope,
        AdverseEvent.participant_id,
        *AE_TIMES,
    )
    rows = []
    for ae, study_id in (await session.execute(query)).all():
        row = row_of(AE_COLUMNS, (ae, study_id))
        row["_recorded_at"] = ae.reported_at
        row["_recorded_by"] = staff_role(getattr(ae, "recorded_by", None)) or "participant"
        rows.append(row)
    return Dataset(
        "adverse_events",
        "Adverse events",
        [c.variable for c in AE_COLUMNS],
        rows,
        repeat_key_var="ae_id",
        prefix="ae",
        complete=_ae_complete,
    )
