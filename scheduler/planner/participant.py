"""Checks of one participant against the protocol: dose weekdays, the plan input, the visit dates."""

from __future__ import annotations

from scheduler.calendar import (
    VisitDate,
    weekday_key,
)
from scheduler.planner.model import PlanError, PlanInput
from scheduler.protocol import Protocol

# --------------------------------------------------------------------------- participant checks


def resolve_dose_weekdays(participant: PlanInput, protocol: Protocol) -> dict[str, int]:
    """Each weekly regimen's weekday for this participant (regimen id → 0–6).

    One place applies the protocol's weekday rules (participant's day, fixed day, N days after
    another regimen, allowed overrides, never on the same day) so that /enroll, /schedule and
    the planner agree. Raises :class:`PlanError` with a reason a coordinator can act on.
    """
    try:
        arm = protocol.arm(participant.arm)
    except KeyError:
        raise PlanError(
            f"{participant.study_id}: unknown arm {participant.arm!r}; the protocol has {', '.join(protocol.arms)}"
        ) from None
    chosen = participant.dose_weekdays
    regimens = {r.id: r for r in arm.regimens}
    for rid in chosen:
        if rid not in regimens:
            raise PlanError(f"{participant.study_id}: arm {participant.arm} has no regimen {rid!r}")
    result: dict[str, int] = {}
    # First the regimens with their own day, then those placed after another.
    ordered = sorted(arm.regimens, key=lambda r: r.weekday is not None and r.weekday.rule == "after")
    for reg in ordered:
        rule = reg.weekday
        if reg.frequency == "daily" or rule is None:
            if reg.id in chosen:
                raise PlanError(f"{participant.study_id}: {reg.id} is daily; it has no weekday")
            continue
        if rule.rule == "participant":
            if reg.id not in chosen:
                raise PlanError(
                    f"{participant.study_id}: arm {participant.arm} needs the participant's {reg.id} weekday"
                )
            result[reg.id] = int(chosen[reg.id])
        elif rule.rule == "fixed":
            assert rule.day is not None
            if reg.id in chosen and chosen[reg.id] != rule.day:
                raise PlanError(f"{participant.study_id}: {reg.id} is always on {weekday_key(rule.day)}")
            result[reg.id] = rule.day
        else:
            assert rule.regimen is not None and rule.days is not None
            if reg.id in chosen:
                if not rule.participant_may_choose:
                    raise PlanError(
                        f"{participant.study_id}: the {reg.id} day follows {rule.regimen} and cannot be chosen"
                    )
                result[reg.id] = int(chosen[reg.id])
            else:
                result[reg.id] = (result[rule.regimen] + rule.days) % 7
    for reg in arm.regimens:
        for other in reg.never_same_day_as:
            if reg.id in result and other in result and result[reg.id] == result[other]:
                raise PlanError(
                    f"{participant.study_id}: {reg.id} cannot be on {weekday_key(result[reg.id])}, the {other} day"
                )
    return result


def validate_plan_input(participant: PlanInput, protocol: Protocol) -> None:
    """Check a participant's settings before storing them (e.g. at /enroll or a weekday change).

    Raises :class:`PlanError`; returns nothing when the participant can be planned.
    """
    resolve_dose_weekdays(participant, protocol)
    for week in (*participant.recorded_visits, *participant.visit_dates):
        try:
            protocol.visit(week)
        except KeyError:
            raise PlanError(f"{participant.study_id}: the protocol has no visit at week {week}") from None


def visit_schedule(participant: PlanInput, protocol: Protocol) -> tuple[VisitDate, ...]:
    """Every protocol visit's date and window for this participant (for /schedule, /status).

    Agreed dates in ``participant.visit_dates`` win over computed ones.
    """
    return tuple(
        protocol.schedule_visit(participant.baseline, v.week, participant.visit_dates.get(v.week))
        for v in protocol.visits
    )
