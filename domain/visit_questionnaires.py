"""Visit-week questionnaires: which visit a response belongs to, one response per visit,
and the per-participant switches (the Raynaud's diary).

The protocol file plans each visit questionnaire (`questionnaires:` in
content/protocol.yaml): on a visit day (HAQ-DI, patient global) or daily on the days
before a visit (the Raynaud's diary, behind a switch). A response belongs to the visit
whose period it was STARTED in, and keeps it when finished later (the next day, or after
the window closed): the period of a visit runs from its first prompt day (or its window's
first day, whichever is earlier) until the next visit's period starts. A second
completed response for the same visit (for a daily diary: the same day) is refused.

Switches: the protocol names them (`switch: raynaud`) with a default; the participant
row keeps the ones the study team set (`/raynaud STUDY_ID on|off` turns the protocol's
switch, whatever the protocol calls it), audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain import audit
from domain.errors import DomainError
from domain.parsing import parse_study_id
from domain.participants import by_study_id
from models import (
    ClinicVisit,
    MessageStatus,
    Participant,
    QuestionnaireSession,
    QuestionnaireStatus,
    ScheduledMessage,
)
from scheduler import store
from scheduler.calendar import local_date
from scheduler.protocol import Protocol, QuestionnaireRule

ON_OFF = {"on": True, "off": False}


@dataclass(frozen=True)
class SwitchRequest:
    """`/raynaud STUDY_ID on|off` as parsed."""

    study_id: str
    on: bool


@dataclass(frozen=True)
class SwitchResult:
    """What a switch command did (for the admin's reply)."""

    participant: Participant
    name: str
    on: bool
    changed: bool
    planned: int  # visit questionnaire prompts of that switch now planned


# --------------------------------------------------------------------------- switches


def switch_states(participant: Participant, protocol: Protocol) -> dict[str, bool]:
    """Every switch the protocol knows, as set for this participant (else its default)."""
    chosen = participant.switches or {}
    return {name: bool(chosen.get(name, default)) for name, default in protocol.switches().items()}


def enabled_instruments(participant: Participant, protocol: Protocol) -> frozenset[str]:
    """The switchable instruments this participant gets (the engine's switch names are
    the instrument ids: an instrument file's `enabled_by`)."""
    states = switch_states(participant, protocol)
    return frozenset(q.instrument for q in protocol.questionnaires if q.switch is not None and states[q.switch])


def default_instruments(protocol: Protocol) -> frozenset[str]:
    """The switchable instruments that are on for a participant who has set nothing."""
    return frozenset(q.instrument for q in protocol.questionnaires if q.switch is not None and q.default_enabled)


def the_switch(protocol: Protocol) -> str:
    """The per-participant switch the study team's switch command (`/raynaud`) turns: the
    protocol's one switch (`switch:` on a questionnaire in content/protocol.yaml).

    Why: the switch's name is the protocol's, not the code's, so a second protocol's
    diary is switched by the same command. A DomainError when the protocol has none,
    or several (then the command would not know which)."""
    names = list(protocol.switches())
    if not names:
        raise DomainError("the protocol has no per-participant switch")
    if len(names) > 1:
        raise DomainError(f"the protocol has several switches ({', '.join(names)}); this command turns only one")
    return names[0]


def parse_switch_args(command: str, args: list[str]) -> SwitchRequest:
    """`STUDY_ID on|off` (words after the command); DomainError with the usage line."""
    usage = f"usage: /{command} STUDY_ID on|off"
    if len(args) != 2 or args[1].lower() not in ON_OFF:
        raise DomainError(usage)
    return SwitchRequest(parse_study_id(args[0]), ON_OFF[args[1].lower()])


async def set_switch(
    db: AsyncSession, request: SwitchRequest, name: str, *, actor: str, now: datetime, protocol: Protocol
) -> SwitchResult:
    """Turn one protocol switch on or off for one participant: audited, re-planned (the
    prompts of that switch appear or are cancelled from now on; answers already given stay)."""
    if name not in protocol.switches():
        raise DomainError(f"the protocol has no switch {name!r}")
    participant = await by_study_id(db, request.study_id, for_update=True)
    before = switch_states(participant, protocol)[name]
    changed = before != request.on
    if changed:
        participant.switches = {**(participant.switches or {}), name: request.on}
        participant.updated_at = now
        await store.replan(db, participant, now, protocol)
    audit.record(
        db,
        at=now,
        actor=actor,
        action="participant.switch",
        participant_id=participant.id,
        before={"switch": name, "on": before},
        after={"switch": name, "on": request.on},
        detail=None if changed else "unchanged",
    )
    return SwitchResult(participant, name, request.on, changed, await _planned_prompts(db, participant, name, protocol))


async def _planned_prompts(db: AsyncSession, participant: Participant, name: str, protocol: Protocol) -> int:
    """How many prompts of the instruments behind switch `name` are planned (not sent yet)."""
    await db.flush()
    instruments = [q.instrument for q in protocol.questionnaires if q.switch == name]
    found = await db.scalar(
        select(func.count())
        .select_from(ScheduledMessage)
        .where(
            ScheduledMessage.participant_id == participant.id,
            ScheduledMessage.status == MessageStatus.PLANNED,
            or_(*(ScheduledMessage.key.startswith(f"questionnaire:{i}:") for i in instruments)),
        )
    )
    return int(found or 0)


# --------------------------------------------------------------------------- which visit


def rule_for(protocol: Protocol, instrument_id: str) -> QuestionnaireRule | None:
    """The protocol's visit rule of an instrument (None: not a visit questionnaire)."""
    return next((q for q in protocol.questionnaires if q.instrument == instrument_id), None)


def period_start(rule: QuestionnaireRule, visit: ClinicVisit) -> date:
    """The first day a response can belong to this visit: its first prompt day or its
    window's first day, whichever is earlier."""
    first_prompt = visit.visit_date + timedelta(days=rule.offsets_days[0])
    return min(first_prompt, visit.window_start)


async def visit_week_on(
    db: AsyncSession, participant: Participant, rule: QuestionnaireRule, today: date, protocol: Protocol
) -> int | None:
    """The visit a response of `rule`'s instrument started on `today` belongs to: the
    latest of its visits whose period has begun (None: before the first one)."""
    visits = {v.week: v for v in await store.ensure_visits(db, participant, protocol)}
    begun = [week for week in rule.visit_weeks if week in visits and period_start(rule, visits[week]) <= today]
    return max(begun) if begun else None


async def answered_for_visit(
    db: AsyncSession, participant: Participant, rule: QuestionnaireRule, week: int, today: date, protocol: Protocol
) -> bool:
    """Whether a completed response already exists for this visit (a daily diary: for
    this visit and today)."""
    completed = await db.scalars(
        select(QuestionnaireSession.started_at).where(
            QuestionnaireSession.participant_id == participant.id,
            QuestionnaireSession.instrument_id == rule.instrument,
            QuestionnaireSession.visit_week == week,
            QuestionnaireSession.status == QuestionnaireStatus.COMPLETED,
        )
    )
    if rule.daily_before_visit is None:
        return completed.first() is not None
    return any(local_date(started, protocol.tz) == today for started in completed)


async def prompt_answered(
    db: AsyncSession, participant: Participant, payload: dict[str, object], now: datetime, protocol: Protocol
) -> bool:
    """Whether a visit questionnaire prompt (planner payload) is already answered: no
    invitation is sent for a visit (or a diary day) that has its response."""
    rule = rule_for(protocol, str(payload.get("instrument", "")))
    week = payload.get("week")
    if rule is None or not isinstance(week, int):
        return False
    day = date.fromisoformat(str(payload["date"])) if payload.get("date") else local_date(now, protocol.tz)
    return await answered_for_visit(db, participant, rule, week, day, protocol)
