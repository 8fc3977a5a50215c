"""Timing helpers the dispatcher uses at send/answer time: staleness, the "no answer" close, the
follow-up and "remind me later" messages."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from scheduler.calendar import (
    local_to_utc,
    require_aware,
    to_local,
)
from scheduler.planner.model import _ONE_DAY, MessageKind, PlannedMessage, SendWindow
from scheduler.protocol import Protocol, StaleLimit

# --------------------------------------------------------------------------- timing helpers


def stale_after(due_at: datetime, limit: StaleLimit, anchor_day: date, protocol: Protocol) -> datetime:
    """The instant after which a message due at ``due_at`` is no longer worth sending.

    ``anchor_day`` is the local day the message belongs to (the dose date for doses), for
    ``same_local_day`` limits. Kept public so the dispatcher applies the same rule to rows it
    creates.
    """
    bound: datetime | None = due_at + limit.max_late if limit.max_late is not None else None
    if limit.same_local_day:
        end = protocol.day_clock.midnight(anchor_day + _ONE_DAY)
        bound = end if bound is None or end < bound else bound
    assert bound is not None  # a limit has max_late or same_local_day (checked at load)
    return bound


def dose_no_answer_due(dose_date: date, protocol: Protocol) -> datetime:
    """When an unanswered dose of ``dose_date`` is recorded as "no answer" (UTC).

    "No answer by the next day": ``doses.no_answer_days_after`` days later at
    ``doses.no_answer_local_time``. The planner also keeps it after the reminder's own
    staleness so that a reminder is never sent after its dose was closed.
    """
    rules = protocol.doses
    return local_to_utc(
        dose_date + timedelta(days=rules.no_answer_days_after),
        rules.no_answer_local_time,
        protocol.tz,
    )


def dose_followup_window(sent_at: datetime, dose_date: date, protocol: Protocol) -> SendWindow | None:
    """Due and stale times of the one gentle follow-up to an unanswered dose reminder.

    ``sent_at``: when the reminder actually went out (it may have been late). Bot-timed, so
    it waits for quiet hours to end; it goes stale per ``staleness.dose_followup`` and never
    after the dose is closed as "no answer". ``None`` when it would already be stale.
    """
    require_aware(sent_at, "sent_at")
    due = protocol.quiet.defer(sent_at + protocol.doses.followup_after, protocol.tz)
    return _window(due, protocol.staleness.dose_followup, dose_date, protocol)


def remind_later_window(pressed_at: datetime, dose_date: date, protocol: Protocol) -> SendWindow | None:
    """Due and stale times of the reminder repeated after "Remind me later".

    ``doses.remind_later_after`` after the press; waits for quiet hours only if
    ``doses.remind_later_respects_quiet_hours``. ``None`` when it would already be stale
    (e.g. pressed late in the evening of a same-day-only dose).
    """
    require_aware(pressed_at, "pressed_at")
    due = pressed_at.astimezone(UTC) + protocol.doses.remind_later_after
    if protocol.doses.remind_later_respects_quiet_hours:
        due = protocol.quiet.defer(due, protocol.tz)
    return _window(due, protocol.staleness.dose_remind_later, dose_date, protocol)


def _window(due: datetime, limit: StaleLimit, dose_date: date, protocol: Protocol) -> SendWindow | None:
    stale = min(stale_after(due, limit, dose_date, protocol), dose_no_answer_due(dose_date, protocol))
    if stale <= due:
        return None
    return SendWindow(due, stale)


def _dose_date_of(reminder: PlannedMessage) -> date:
    if reminder.kind is not MessageKind.DOSE_REMINDER:
        raise ValueError(f"{reminder.key} is not a dose reminder")
    raw = reminder.payload.get("date")
    if not isinstance(raw, str):
        raise ValueError(f"{reminder.key}: payload has no date")
    return date.fromisoformat(raw)


def make_dose_followup(reminder: PlannedMessage, sent_at: datetime, protocol: Protocol) -> PlannedMessage | None:
    """The follow-up row to store when a dose reminder is sent (cancel it when answered).

    Key ``{reminder key}:followup``; ``None`` when it would be stale before it is due.
    """
    window = dose_followup_window(sent_at, _dose_date_of(reminder), protocol)
    if window is None:
        return None
    return PlannedMessage(
        f"{reminder.key}:followup",
        MessageKind.DOSE_FOLLOWUP,
        window.due_at,
        window.stale_after,
        True,
        {**reminder.payload, "reminder_key": reminder.key},
    )


def make_remind_later(reminder: PlannedMessage, pressed_at: datetime, protocol: Protocol) -> PlannedMessage | None:
    """The row to store when the participant presses "Remind me later".

    Key ``{reminder key}:later:{local due YYYYMMDDTHHMM}``, so two presses in the same minute
    give one row. ``None`` when it would be stale before it is due (then say so to the
    participant instead).
    """
    window = remind_later_window(pressed_at, _dose_date_of(reminder), protocol)
    if window is None:
        return None
    local = to_local(window.due_at, protocol.tz)
    return PlannedMessage(
        f"{reminder.key}:later:{local:%Y%m%dT%H%M}",
        MessageKind.DOSE_REMIND_LATER,
        window.due_at,
        window.stale_after,
        protocol.doses.remind_later_respects_quiet_hours,
        {**reminder.payload, "reminder_key": reminder.key},
    )
