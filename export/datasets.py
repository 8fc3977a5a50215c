"""The exported datasets, built from the shared database inside one read
snapshot. Each definition says where every column comes from; no Telegram id,
name or phone number is ever selected."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.questionnaires import Instrument
from export.spec import Dataset, Variable
from models import Alert, ChatLink, Participant
from scheduler.protocol import Protocol

LANGUAGES = {"bn": "Bangla", "en": "English"}
STATUSES = {"invited": "Invited (not linked)", "active": "Active", "paused": "Paused", "withdrawn": "Withdrawn"}


@dataclass(frozen=True)
class Scope:
    """What to export (every record, or the records created or changed since a
    time, by each record's own times) and the definitions the datasets are
    generated from."""

    tz: ZoneInfo
    participant_ids: frozenset[int] | None  # None = all
    protocol: Protocol
    instruments: dict[str, Instrument]
    since: datetime | None = None  # None = every record

    @property
    def visit_weeks(self) -> tuple[int, ...]:
        """The protocol's visit weeks (the scheduled study events)."""
        return tuple(v.week for v in self.protocol.visits)


Q = TypeVar("Q", bound=Select[Any])


def selected(query: Q, scope: Scope, participant_column: Any, *record_times: Any) -> Q:
    """`query` narrowed to the scope: the participants asked for, and with
    `since`, the records one of whose own times (`record_times`) is at or after it."""
    if scope.participant_ids is not None:
        query = query.where(participant_column.in_(scope.participant_ids))
    if scope.since is not None:
        query = query.where(or_(*(column >= scope.since for column in record_times)))
    return query


_ROLE_RE = re.compile(r"\b(admin|coordinator|cli|participant|system)(?::|$)")

STUDY_ID = Variable("study_id", "Study id", "string", "participants.study_id")


def staff_role(actor: str | None) -> str | None:
    """`admin:123` or `Dr Nasreen (coordinator:5100)` → `admin` / `coordinator`:
    who acted, by role, without their name or Telegram id."""
    if not actor:
        return None
    match = _ROLE_RE.search(actor)
    return match.group(1) if match else "staff"


async def participants(session: AsyncSession, scope: Scope) -> Dataset:
    """One row per participant."""
    variables = [
        STUDY_ID,
        Variable(
            "arm",
            "Randomised arm",
            "string",
            "participants.arm",
            {arm_id: arm.summary_text("en") for arm_id, arm in scope.protocol.arms.items()},
            {arm_id: arm.summary_text("bn") for arm_id, arm in scope.protocol.arms.items()},
        ),
        Variable("baseline_date", "Baseline date (week 0)", "date", "participants.baseline_date"),
        Variable("language", "Language of the bot", "string", "participants.language", LANGUAGES),
        Variable("status", "Follow-up status at export", "string", "participants.status", STATUSES),
        Variable("enrolled_at", "Enrolled in the bot", "datetime", "participants.created_at"),
        Variable("linked_at", "Telegram chat linked", "datetime", "chat_links.linked_at"),
        Variable(
            "reminder_time",
            "Dose reminder time (local; empty = protocol default)",
            "time",
            "participants.reminder_time",
        ),
        Variable(
            "mtx_weekday",
            "Methotrexate weekday (0=Monday … 6=Sunday; arm B)",
            "integer",
            "participants.own_weekday",
            {
                i: d
                for i, d in enumerate(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"])
            },
        ),
        Variable("paused_until", "Reminders paused until (inclusive)", "date", "participants.paused_until"),
        Variable("pause_reason", "Reason for the pause", "string", "participants.pause_reason", free_text=True),
        Variable("withdrawn_at", "Withdrawn at", "datetime", "participants.withdrawn_at"),
        Variable(
            "withdrawal_reason", "Reason for withdrawal", "string", "participants.withdrawal_reason", free_text=True
        ),
    ]
    query = selected(
        select(Participant, ChatLink.linked_at)
        .outerjoin(ChatLink, ChatLink.participant_id == Participant.id)
        .order_by(Participant.study_id),
        scope,
        Participant.id,
        Participant.created_at,
        Participant.updated_at,
        Participant.withdrawn_at,
        ChatLink.linked_at,
    )
    rows = []
    for p, linked_at in (await session.execute(query)).all():
        reminder: time | None = p.reminder_time
        rows.append(
            {
                "study_id": p.study_id,
                "arm": p.arm,
                "baseline_date": p.baseline_date,
                "language": p.language,
                "status": p.status,
                "enrolled_at": p.created_at,
                "linked_at": linked_at,
                "reminder_time": reminder.strftime("%H:%M") if reminder else None,
                "mtx_weekday": p.own_weekday,  # the export keeps its variable name
                "paused_until": p.paused_until,
                "pause_reason": p.pause_reason,
                "withdrawn_at": p.withdrawn_at,
                "withdrawal_reason": p.withdrawal_reason,
                "_recorded_at": p.updated_at,
                "_recorded_by": "admin",
            }
        )
    return Dataset("participants", "Participants", variables, rows, event="WEEK0")


def _acknowledged(row: dict[str, object]) -> bool:
    return bool(row.get("acknowledged"))


ALERT_LEVELS = {"urgent": "Urgent", "same_day": "Same-day review", "info": "For information"}


async def alerts(session: AsyncSession, scope: Scope) -> Dataset:
    """One row per alert raised to the coordinators (safety events, missed visits …)."""
    variables = [
        Variable("alert_id", "Alert number", "integer", "alerts.id"),
        STUDY_ID,
        Variable("kind", "What raised it", "string", "alerts.kind"),
        Variable("level", "Urgency", "string", "alerts.level", ALERT_LEVELS, measure="ordinal"),
        Variable("summary", "What was reported", "string", "alerts.summary", free_text=True),
        Variable("reasons", "Why it was raised", "string", "alerts.reasons"),
        Variable("aware_at", "Time of awareness", "datetime", "alerts.aware_at"),
        Variable("sae_deadline_at", "24-hour SAE reporting deadline", "datetime", "alerts.deadline_at"),
        Variable("acknowledged", "Acknowledged by the study team", "boolean", "alerts.acknowledged_at"),
        Variable("acknowledged_at", "Acknowledged at", "datetime", "alerts.acknowledged_at"),
        Variable("acknowledged_by_role", "Acknowledged by (role)", "string", "alerts.acknowledged_by"),
        Variable("ack_note", "Acknowledgement note", "string", "alerts.ack_note", free_text=True),
        Variable("escalated", "Escalated (nobody acknowledged in time)", "boolean", "alerts.escalated_at"),
        Variable("escalated_at", "Escalated at", "datetime", "alerts.escalated_at"),
    ]
    query = selected(
        select(Alert, Participant.study_id)
        .outerjoin(Participant, Participant.id == Alert.participant_id)
        .order_by(Alert.id),
        scope,
        Alert.participant_id,
        Alert.aware_at,
        Alert.acknowledged_at,
        Alert.escalated_at,
    )
    rows = [
        {
            "alert_id": a.id,
            "study_id": study_id,
            "kind": a.kind,
            "level": a.level,
            "summary": a.summary,
            "reasons": "; ".join(str(r) for r in a.reasons),
            "aware_at": a.aware_at,
            "sae_deadline_at": a.deadline_at,
            "acknowledged": a.acknowledged_at is not None,
            "acknowledged_at": a.acknowledged_at,
            "acknowledged_by_role": staff_role(a.acknowledged_by),
            "ack_note": a.ack_note,
            "escalated": a.escalated_at is not None,
            "escalated_at": a.escalated_at,
            "_recorded_at": a.aware_at,
            "_recorded_by": "system",
        }
        for a, study_id in (await session.execute(query)).all()
    ]
    return Dataset(
        "alerts",
        "Alerts to coordinators",
        variables,
        rows,
        repeat_key_var="alert_id",
        prefix="alert",
        complete=_acknowledged,
    )


def _plain(value: object) -> object:
    """Enum members → their value; everything else unchanged."""
    return getattr(value, "value", value)


def plain_values(datasets: list[Dataset]) -> list[Dataset]:
    """Enum members → their values, in every row (after the snapshot is released:
    nothing here needs the database)."""
    for dataset in datasets:
        dataset.rows = [{k: _plain(v) for k, v in row.items()} for row in dataset.rows]
    return datasets
