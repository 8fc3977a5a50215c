"""The planner: one participant, the protocol and ``now`` → the messages still worth sending,
built in steps (doses, visits, visit questionnaires, weekly check-ins)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter

from scheduler.calendar import (
    VisitDate,
    days_until_weekday,
    local_date,
    require_aware,
    schedule_visit,
    weekday_key,
)
from scheduler.planner.compiled import (
    _UTC_MAX,
    _UTC_MIN,
    _At,
    _Compiled,
    _compiled,
    _dose_dates,
    _due,
    _message,
    _stale,
)
from scheduler.planner.model import _ONE_DAY, MessageKind, ParticipantStatus, PayloadValue, PlanInput, PlannedMessage
from scheduler.planner.participant import resolve_dose_weekdays
from scheduler.protocol import Protocol

# --------------------------------------------------------------------------- the planner


@dataclass(frozen=True, slots=True)
class _Span:
    """What one call of :func:`plan` keeps: instants as UTC, the pause floor, the useful dates."""

    now: datetime
    until: datetime
    paused: bool
    floor: datetime
    floor_visits: datetime
    first_useful: date
    last_useful: date


def plan(
    participant: PlanInput,
    protocol: Protocol,
    now: datetime,
    horizon: timedelta | None = None,
) -> list[PlannedMessage]:
    """Every message still worth sending to one participant, sorted by due time.

    Covers baseline to the end of the last visit window: dose reminders (and their "no
    answer" closes), visit reminders, end-of-window checks, weekly check-ins and visit
    questionnaires. Keeps rows with ``stale_after > now`` (so a row due a little in the past
    is still offered; the dispatcher de-duplicates by key) and, with ``horizon``, only
    ``due_at < now + horizon``. Nothing for INVITED, STOPPED or WITHDRAWN participants; while
    PAUSED nothing due before local midnight of ``paused_until`` (nothing at all without
    one), except the "no answer" close of doses already reminded before ``now``; nothing for
    recorded visits; nothing due before the baseline date. Deterministic: same inputs, same
    list (ties in due time keep a fixed order). Never reads a clock.

    Raises :class:`PlanError` when the participant's arm or weekdays do not fit the protocol.
    Cost: about 0.5 ms for a full 24-week plan (see the module docstring for the timeit).
    """
    require_aware(now, "now")
    status = participant.status
    if status is not ParticipantStatus.ACTIVE and status is not ParticipantStatus.PAUSED:
        return []
    weekdays = resolve_dose_weekdays(participant, protocol)
    c = _compiled(protocol)
    span = _span(participant, c, now, horizon)
    out = _dose_messages(participant, c, weekdays, span)
    schedule = _visit_messages(participant, c, span, out)
    _questionnaire_messages(participant, c, span, schedule, out)
    _checkin_messages(participant, c, span, out)
    out.sort(key=_DUE)
    return out


_DUE = attrgetter("due_at")


def _span(participant: PlanInput, c: _Compiled, now: datetime, horizon: timedelta | None) -> _Span:
    clock = c.clock
    now = now.astimezone(UTC)
    until = now + horizon if horizon is not None else _UTC_MAX
    paused = participant.status is ParticipantStatus.PAUSED
    floor = _UTC_MIN
    if paused:
        floor = clock.midnight(participant.paused_until) if participant.paused_until else _UTC_MAX
    baseline_start = clock.midnight(participant.baseline)
    return _Span(
        now=now,
        until=until,
        paused=paused,
        floor=floor,
        floor_visits=max(floor, baseline_start),
        first_useful=local_date(now, c.tz) - c.lookback,  # anything dated earlier is stale
        last_useful=local_date(until, c.tz) + _ONE_DAY if horizon is not None else date.max,
    )


def _dose_messages(
    participant: PlanInput, c: _Compiled, weekdays: Mapping[str, int], span: _Span
) -> list[PlannedMessage]:
    """Doses: a reminder and a "no answer" close per dose."""
    clock = c.clock
    now, until, floor, paused = span.now, span.until, span.floor, span.paused
    first_useful, last_useful = span.first_useful, span.last_useful
    baseline = participant.baseline
    out: list[PlannedMessage] = []
    append = out.append
    chosen_time = participant.reminder_time
    at = c.default_at if chosen_time is None else _At.of(chosen_time, c.quiet, False)
    bot_timed = chosen_time is None
    local_time = f"{at.wall:%H:%M}"
    r_late, r_same = c.reminder_limit.late, c.reminder_limit.same_day
    c_late, c_same = c.close_limit.late, c.close_limit.same_day
    close_days, close_at = c.close_days, c.close_at
    treatment_end = baseline + c.treatment - _ONE_DAY
    regimens = c.regimens[participant.arm]
    kind_reminder = MessageKind.DOSE_REMINDER
    kind_close = MessageKind.DOSE_NO_ANSWER_CLOSE
    for reg, static0 in c.arms[participant.arm]:
        first, step, count = _dose_dates(reg, weekdays, regimens, baseline, treatment_end)
        lo = -(-(first_useful - first).days // step) if first < first_useful else 0
        hi = count
        if last_useful < first:
            hi = 0
        elif last_useful != date.max:
            hi = min(count, (last_useful - first).days // step + 1)
        if lo >= hi:
            continue
        static = dict(static0)
        if reg.frequency == "weekly":
            static["weekday"] = weekday_key(weekdays[reg.id])
        static["local_time"] = local_time
        static["participant_time"] = not bot_timed
        step_td = timedelta(days=step)
        day = first + step_td * lo
        last_day = first + step_td * (hi - 1)
        # One UTC offset over the whole range: step instants by whole days.
        fixed = clock.fixed_offset(day, last_day + close_days + at.shift + _ONE_DAY) is not None
        prefix = f"dose:{reg.id}:"
        due = eod = close = close_eod = _UTC_MIN
        for i in range(lo, hi):
            if i == lo or not fixed:
                due = _due(clock, day, at)
                eod = clock.midnight(day + _ONE_DAY)
                close = _due(clock, day + close_days, close_at)
                close_eod = clock.midnight(day + close_days + _ONE_DAY)
            stale = due + r_late if r_late is not None else _UTC_MAX
            if r_same and eod < stale:
                stale = eod
            iso = day.isoformat()
            key = prefix + iso
            if stale > now and stale > due and floor <= due < until:
                payload = static.copy()
                payload["date"] = iso
                append(_message(key, kind_reminder, due, stale, bot_timed, payload))
            closing = close if close >= stale else stale
            c_stale = closing + c_late if c_late is not None else _UTC_MAX
            if c_same and close_eod < c_stale:
                c_stale = close_eod
            if c_stale > now and c_stale > closing and closing < until and (closing >= floor or (paused and due < now)):
                append(
                    _message(
                        key + ":no_answer",
                        kind_close,
                        closing,
                        c_stale,
                        False,
                        {"regimen": reg.id, "date": iso, "reminder_key": key},
                    )
                )
            day += step_td
            if fixed:
                due += step_td
                eod += step_td
                close += step_td
                close_eod += step_td
    return out


def _visit_messages(
    participant: PlanInput, c: _Compiled, span: _Span, out: list[PlannedMessage]
) -> dict[int, VisitDate]:
    """Visits: reminders and end-of-window checks, appended to ``out``; returns every
    visit's date (recorded ones too) for the visit questionnaires."""
    clock = c.clock
    now, until, floor_visits = span.now, span.until, span.floor_visits
    append = out.append
    baseline = participant.baseline
    recorded = participant.recorded_visits
    agreed = participant.visit_dates
    schedule: dict[int, VisitDate] = {}
    for visit in c.protocol.visits:
        week = visit.week
        vd = schedule_visit(baseline, week, visit.window_days, c.protocol.clinic, agreed=agreed.get(week))
        schedule[week] = vd
        if week in recorded:
            continue
        common: dict[str, PayloadValue] = {
            "week": week,
            "visit_date": vd.date.isoformat(),
            "window_start": vd.window_start.isoformat(),
            "window_end": vd.window_end.isoformat(),
        }
        # An agreed date gets reminders of its own: those already sent for the old date
        # must not stop the new date's (a key is never planned twice).
        suffix = f":{vd.date.isoformat()}" if vd.rescheduled else ""
        if visit.reminders:
            for offset, offset_td in c.visit_offsets:
                day = vd.date + offset_td
                due = _due(clock, day, c.visit_at)
                stale = _stale(clock, due, c.visit_limit, day)
                if stale > now and stale > due and floor_visits <= due < until:
                    append(
                        _message(
                            f"visit:{week}:remind:{offset}{suffix}",
                            MessageKind.VISIT_REMINDER,
                            due,
                            stale,
                            True,
                            {
                                **common,
                                "offset_days": offset,
                                "target_date": vd.target.isoformat(),
                                "moved": vd.moved,
                                "no_clinic_day_in_window": vd.no_clinic_day_in_window,
                                "rescheduled": vd.rescheduled,
                            },
                        )
                    )
        if visit.window_check:
            day = max(vd.window_end, vd.date) + c.check_days  # an agreed date after the window
            due = _due(clock, day, c.check_at)
            stale = _stale(clock, due, c.check_limit, day)
            if stale > now and stale > due and floor_visits <= due < until:
                append(
                    _message(
                        f"visit:{week}:window_check{suffix}", MessageKind.VISIT_WINDOW_CHECK, due, stale, False, common
                    )
                )
    return schedule


def _questionnaire_messages(
    participant: PlanInput,
    c: _Compiled,
    span: _Span,
    schedule: Mapping[int, VisitDate],
    out: list[PlannedMessage],
) -> None:
    """Visit questionnaires, appended to ``out``: each switched-on rule, around each visit
    not yet recorded."""
    clock = c.clock
    now, until, floor_visits = span.now, span.until, span.floor_visits
    append = out.append
    recorded = participant.recorded_visits
    switches = participant.switches
    for rule in c.questionnaires:
        if rule.switch is not None and not switches.get(rule.switch, rule.default_enabled):
            continue
        for week in rule.weeks:
            if week in recorded:
                continue
            vd = schedule[week]
            visit_iso = vd.date.isoformat()
            for offset, offset_td in rule.offsets:
                day = vd.date + offset_td
                due = _due(clock, day, rule.at)
                stale = _stale(clock, due, c.question_limit, day)
                if stale > now and stale > due and floor_visits <= due < until:
                    append(
                        _message(
                            f"questionnaire:{rule.instrument}:{week}:{offset}",
                            MessageKind.QUESTIONNAIRE_PROMPT,
                            due,
                            stale,
                            True,
                            {
                                "instrument": rule.instrument,
                                "week": week,
                                "offset_days": offset,
                                "date": day.isoformat(),
                                "visit_date": visit_iso,
                            },
                        )
                    )


def _checkin_messages(participant: PlanInput, c: _Compiled, span: _Span, out: list[PlannedMessage]) -> None:
    """Weekly check-in, appended to ``out``: on the check-in weekday of each study week
    (days 7k .. 7k+6)."""
    clock = c.clock
    now, until, floor = span.now, span.until, span.floor
    baseline = participant.baseline
    delta = days_until_weekday(baseline.weekday(), c.checkin_delta_base)
    for week in c.checkin_weeks:
        day = baseline + timedelta(days=7 * week + delta)
        if day < span.first_useful or day > span.last_useful:
            continue
        due = _due(clock, day, c.checkin_at)
        stale = _stale(clock, due, c.checkin_limit, day)
        if stale > now and stale > due and floor <= due < until:
            out.append(
                _message(
                    f"checkin:{week}",
                    MessageKind.CHECKIN_PROMPT,
                    due,
                    stale,
                    True,
                    {"week": week, "instrument": c.checkin_instrument, "date": day.isoformat()},
                )
            )
