"""A protocol turned into plain values for the planner's loops, built once per protocol, and the
loops' small helpers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from scheduler.calendar import (
    DayClock,
    QuietHours,
    days_until_weekday,
    next_weekday_on_or_after,
    time_offset,
)
from scheduler.planner.model import _ONE_DAY, MessageKind, Payload, PayloadValue, PlannedMessage
from scheduler.protocol import Protocol, Regimen, StaleLimit

# --------------------------------------------------------------------------- the planner

_UTC_MIN: Final = datetime.min.replace(tzinfo=UTC)
_UTC_MAX: Final = datetime.max.replace(tzinfo=UTC)
_new_object = object.__new__


def _message(
    key: str, kind: MessageKind, due: datetime, stale: datetime, quiet: bool, payload: Payload
) -> PlannedMessage:
    """``PlannedMessage(...)`` without the frozen-dataclass ``__init__`` cost (≈4× faster).

    A frozen dataclass sets each field through ``object.__setattr__``; filling the instance
    ``__dict__`` directly gives an identical object (tests check equality with the normal
    constructor). Only the planner's hot loops use it.
    """
    m = _new_object(PlannedMessage)
    d = m.__dict__
    d["key"] = key
    d["kind"] = kind
    d["due_at"] = due
    d["stale_after"] = stale
    d["respects_quiet_hours"] = quiet
    d["payload"] = payload
    return m


@dataclass(frozen=True, slots=True)
class _At:
    """A configured local time, already moved out of quiet hours if the bot picks it."""

    shift: timedelta  # days added by the quiet-hours deferral (0 or 1)
    wall: time
    off: timedelta

    @classmethod
    def of(cls, wall: time, quiet: QuietHours, bot_timed: bool) -> _At:
        shift = 0
        if bot_timed and quiet.contains(wall):
            anchor = date(2000, 1, 1)
            moved, wall = quiet.defer_local(anchor, wall)
            shift = (moved - anchor).days
        return cls(timedelta(days=shift), wall, time_offset(wall))


@dataclass(frozen=True, slots=True)
class _Limit:
    late: timedelta | None
    same_day: bool


@dataclass(frozen=True, slots=True)
class _QRule:
    instrument: str
    switch: str | None
    default_enabled: bool
    weeks: tuple[int, ...]
    offsets: tuple[tuple[int, timedelta], ...]
    at: _At


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A protocol turned into plain values for the planner's loops (built once per protocol)."""

    protocol: Protocol
    tz: ZoneInfo
    clock: DayClock
    quiet: QuietHours
    default_at: _At
    close_days: timedelta
    close_at: _At
    reminder_limit: _Limit
    close_limit: _Limit
    treatment: timedelta
    lookback: timedelta
    arms: dict[str, tuple[tuple[Regimen, dict[str, PayloadValue]], ...]]
    regimens: dict[str, dict[str, Regimen]]
    visit_offsets: tuple[tuple[int, timedelta], ...]
    visit_at: _At
    visit_limit: _Limit
    check_days: timedelta
    check_at: _At
    check_limit: _Limit
    questionnaires: tuple[_QRule, ...]
    question_limit: _Limit
    checkin_delta_base: int
    checkin_weeks: range
    checkin_at: _At
    checkin_instrument: str
    checkin_limit: _Limit


def _compile(protocol: Protocol) -> _Compiled:
    derived = protocol.derived
    quiet = protocol.quiet
    st = protocol.staleness

    def lim(limit: StaleLimit) -> _Limit:
        return _Limit(limit.max_late, limit.same_local_day)

    arms: dict[str, tuple[tuple[Regimen, dict[str, PayloadValue]], ...]] = {}
    for arm_id, arm in protocol.arms.items():
        arms[arm_id] = tuple(
            (
                reg,
                {
                    "regimen": reg.id,
                    "drug": reg.drug.en,
                    "dose": reg.dose_label,
                    "dose_amount": reg.dose_amount,
                    "dose_unit": reg.dose_unit,
                    "frequency": reg.frequency,
                },
            )
            for reg in arm.regimens
        )
    return _Compiled(
        protocol=protocol,
        tz=derived.tz,
        clock=derived.day_clock,
        quiet=quiet,
        default_at=_At.of(protocol.default_reminder_time, quiet, True),
        close_days=timedelta(days=protocol.doses.no_answer_days_after),
        close_at=_At.of(protocol.doses.no_answer_local_time, quiet, False),
        reminder_limit=lim(st.dose_reminder),
        close_limit=lim(st.dose_no_answer_close),
        treatment=timedelta(weeks=protocol.treatment_weeks),
        lookback=timedelta(days=protocol.doses.no_answer_days_after + derived.max_stale_days + 2),
        arms=arms,
        regimens={a: {r.id: r for r in arm.regimens} for a, arm in protocol.arms.items()},
        visit_offsets=tuple((o, timedelta(days=o)) for o in protocol.visit_reminders.offsets_days),
        visit_at=_At.of(protocol.visit_reminders.local_time, quiet, True),
        visit_limit=lim(st.visit_reminder),
        check_days=timedelta(days=protocol.visit_window_check.days_after_window),
        check_at=_At.of(protocol.visit_window_check.local_time, quiet, False),
        check_limit=lim(st.visit_window_check),
        questionnaires=tuple(
            _QRule(
                q.instrument,
                q.switch,
                q.default_enabled,
                q.visit_weeks,
                tuple((o, timedelta(days=o)) for o in q.offsets_days),
                _At.of(q.local_time, quiet, True),
            )
            for q in protocol.questionnaires
        ),
        question_limit=lim(st.questionnaire_prompt),
        checkin_delta_base=protocol.checkin.weekday,
        checkin_weeks=range(protocol.checkin.start_week, protocol.checkin.end_week + 1),
        checkin_at=_At.of(protocol.checkin.local_time, quiet, True),
        checkin_instrument=protocol.checkin.instrument,
        checkin_limit=lim(st.checkin_prompt),
    )


_COMPILED: dict[int, _Compiled] = {}


def _compiled(protocol: Protocol) -> _Compiled:
    found = _COMPILED.get(id(protocol))
    if found is None or found.protocol is not protocol:
        if len(_COMPILED) > 16:
            _COMPILED.clear()
        found = _COMPILED[id(protocol)] = _compile(protocol)
    return found


def _stale(clock: DayClock, due: datetime, limit: _Limit, anchor: date) -> datetime:
    bound = due + limit.late if limit.late is not None else _UTC_MAX
    if limit.same_day:
        end = clock.midnight(anchor + _ONE_DAY)
        if end < bound:
            bound = end
    return bound


def _due(clock: DayClock, day: date, at: _At) -> datetime:
    day += at.shift
    return clock.at(day, at.off, at.wall)


def _dose_dates(
    reg: Regimen,
    weekdays: Mapping[str, int],
    regimens: Mapping[str, Regimen],
    start: date,
    end: date,
) -> tuple[date, int, int]:
    """(first date, step in days, count) of a regimen's doses between start and end."""
    if reg.frequency == "daily" or reg.weekday is None:
        return start, 1, (end - start).days + 1
    rule = reg.weekday
    if rule.rule == "after":
        assert rule.regimen is not None
        ref_first, _, count = _dose_dates(regimens[rule.regimen], weekdays, regimens, start, end)
        delta = days_until_weekday(weekdays[rule.regimen], weekdays[reg.id])
        return ref_first + timedelta(days=delta), 7, count
    first = next_weekday_on_or_after(start, weekdays[reg.id])
    count = (end - first).days // 7 + 1 if first <= end else 0
    return first, 7, count
