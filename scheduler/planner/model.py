"""What the planner takes and gives: the kinds of message, the participant's plan input, planned
messages, send windows and the re-plan diff."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Final, NamedTuple

from scheduler.calendar import (
    parse_weekday,
)

PayloadValue = str | int | float | bool | None
Payload = Mapping[str, PayloadValue]

_ONE_DAY: Final = timedelta(days=1)
_WEEK: Final = timedelta(days=7)


class MessageKind(StrEnum):
    """What a planned row is for. The value is what the dispatcher stores.

    DOSE_REMINDER: "time for your dose" at the participant's time (Taken / Later / Skipped).
    DOSE_FOLLOWUP: the one gentle follow-up when a dose reminder is unanswered (dispatcher).
    DOSE_REMIND_LATER: the reminder again after "Remind me later" (dispatcher).
    DOSE_NO_ANSWER_CLOSE: not a message; records an unanswered dose as "no answer".
    VISIT_REMINDER: a visit is coming (I will come / I need another date).
    VISIT_WINDOW_CHECK: not a participant message; at the end of a visit window, alert the
    coordinators if the visit is still not recorded.
    CHECKIN_PROMPT: start the weekly symptom check-in.
    QUESTIONNAIRE_PROMPT: start a visit-linked questionnaire (HAQ-DI, patient global, RCS).
    VISIT_DATE_NOTICE: tell the participant the visit date agreed with the study team.
    """

    DOSE_REMINDER = "dose_reminder"
    DOSE_FOLLOWUP = "dose_followup"
    DOSE_REMIND_LATER = "dose_remind_later"
    DOSE_NO_ANSWER_CLOSE = "dose_no_answer_close"
    VISIT_REMINDER = "visit_reminder"
    VISIT_WINDOW_CHECK = "visit_window_check"
    CHECKIN_PROMPT = "checkin_prompt"
    QUESTIONNAIRE_PROMPT = "questionnaire_prompt"
    VISIT_DATE_NOTICE = "visit_date_notice"


class ParticipantStatus(StrEnum):
    """Where a participant is in the study; only ACTIVE and PAUSED get any plan."""

    INVITED = "invited"  # enrolment code issued, chat not linked yet
    ACTIVE = "active"
    PAUSED = "paused"  # by a coordinator, until paused_until or /resume
    STOPPED = "stopped"  # the participant asked for no more messages (/stop)
    WITHDRAWN = "withdrawn"


class VisitOutcome(StrEnum):
    """How a visit was recorded by the coordinator (``/visit … done|missed``)."""

    DONE = "done"
    MISSED = "missed"


@dataclass(frozen=True, slots=True)
class RecordedVisit:
    """A visit the coordinator has recorded; it gets no more reminders or window check."""

    outcome: VisitOutcome
    on: date | None = None


class PlanError(ValueError):
    """The participant's settings cannot be planned under this protocol (say why, for /enroll)."""


@dataclass(frozen=True, slots=True)
class PlanInput:
    """Everything about one participant that the schedule depends on.

    ``reminder_time``: local dose reminder time from ``/settime`` (``None``: the protocol's
    default, which then counts as bot-timed). ``dose_weekdays``: regimen id → weekday
    (0 = Monday, or a name such as ``"fri"``), e.g. ``{"methotrexate": 4}`` for arm B, plus
    ``"folic_acid"`` to override its default day. ``paused_until``: first local date on which
    messages resume (``None`` while PAUSED: until ``/resume``). ``recorded_visits``: visit week
    → :class:`RecordedVisit` (or just ``"done"``/``"missed"``). ``switches``: e.g.
    ``{"raynaud": True}`` (unset: protocol default). ``visit_dates``: visit week → a date
    agreed with the participant (overrides the computed date; "I need another date").
    """

    study_id: str
    arm: str
    baseline: date
    reminder_time: time | None = None
    dose_weekdays: Mapping[str, int | str] = field(default_factory=dict)
    status: ParticipantStatus = ParticipantStatus.ACTIVE
    paused_until: date | None = None
    recorded_visits: Mapping[int, RecordedVisit | VisitOutcome | str] = field(default_factory=dict)
    switches: Mapping[str, bool] = field(default_factory=dict)
    visit_dates: Mapping[int, date] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.baseline, datetime) or not isinstance(self.baseline, date):
            raise PlanError(f"{self.study_id}: baseline must be a date, not {self.baseline!r}")
        if self.reminder_time is not None and self.reminder_time.tzinfo is not None:
            raise PlanError(f"{self.study_id}: reminder_time is local and must be naive")
        if isinstance(self.paused_until, datetime):
            raise PlanError(f"{self.study_id}: paused_until must be a date")
        try:
            status = ParticipantStatus(self.status)
            weekdays = {k: parse_weekday(v) for k, v in self.dose_weekdays.items()}
            recorded = {
                int(week): v if isinstance(v, RecordedVisit) else RecordedVisit(VisitOutcome(v))
                for week, v in self.recorded_visits.items()
            }
        except ValueError as exc:
            raise PlanError(f"{self.study_id}: {exc}") from None
        # Own copies: the plan must not change because a caller later mutates its dicts.
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "dose_weekdays", weekdays)
        object.__setattr__(self, "recorded_visits", recorded)
        object.__setattr__(self, "switches", dict(self.switches))
        object.__setattr__(self, "visit_dates", dict(self.visit_dates))


@dataclass(frozen=True)
class PlannedMessage:
    """One row the dispatcher stores and later sends (or runs).

    ``key``: stable, unique per participant, deterministic (the diff key). ``due_at``: UTC;
    never inside quiet hours when ``respects_quiet_hours``. ``stale_after``: UTC; a row not
    sent by then is marked skipped, never sent late. ``respects_quiet_hours``: the dispatcher
    must still defer it if it sends it late into quiet hours (see
    :func:`scheduler.calendar.apply_quiet_hours`). ``payload``: small, JSON-serialisable,
    language-neutral (texts are looked up at send time, so a language change needs no
    re-plan); treat it as read-only.
    """

    key: str
    kind: MessageKind
    due_at: datetime
    stale_after: datetime
    respects_quiet_hours: bool
    payload: Payload = field(hash=False)


@dataclass(frozen=True, slots=True)
class SendWindow:
    """When a follow-up row is due and when it goes stale (both UTC)."""

    due_at: datetime
    stale_after: datetime


class PlanDiff(NamedTuple):
    """What to do to the stored pending rows to match a new plan.

    A named tuple, so ``to_add, to_cancel, to_move = replan_diff(...)`` also works.
    """

    to_add: tuple[PlannedMessage, ...]
    to_cancel: tuple[str, ...]
    to_move: tuple[PlannedMessage, ...]

    @property
    def empty(self) -> bool:
        """True when the stored rows already match the plan."""
        return not (self.to_add or self.to_cancel or self.to_move)
