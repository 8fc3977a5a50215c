"""The protocol's data model: scalar parsers for the file's conventions and the pydantic models.

Conventions in the file: dates ``YYYY-MM-DD``; local wall-clock times ``"HH:MM"`` (quoted or
not: YAML 1.1's base-60 reading of ``22:00`` is switched off); durations ``"3h"``, ``"90m"``,
``"1d"``, ``"1h30m"``; weekdays ``friday`` or ``fri``. All local times are in ``timezone``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
)

from core.text import BilingualText
from scheduler.calendar import (
    ClinicCalendar,
    DayClock,
    QuietHours,
    VisitDate,
    parse_weekday,
    same_day_window,
    schedule_visit,
)


class ProtocolError(ValueError):
    """The protocol file is unreadable or wrong; ``problems`` lists (place, message) pairs.

    ``str(error)`` is one line per problem: ``protocol.yaml: visits[2].window_days: must be
    >= 0, got -1 (line 41)``.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {place}: {message}" if place else f"{source}: {message}" for place, message in problems]
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------- scalar parsers

_TIME_RE = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")
_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def parse_local_time(value: object) -> time:
    """Read ``"HH:MM"`` (24-hour, local) into a naive ``time``; refuse anything else.

    Exists because "7pm", "25:00" or a bare number in a reminder time would otherwise
    schedule messages at the wrong hour without anyone noticing.
    """
    if isinstance(value, time) and value.tzinfo is None:
        return value
    if not isinstance(value, str):
        raise ValueError(f'must be a time written "HH:MM" (24-hour), got {value!r}')
    match = _TIME_RE.match(value.strip())
    if match is None:
        raise ValueError(f'must be a time written "HH:MM" (24-hour, 00:00-23:59), got {value!r}')
    return time(int(match.group(1)), int(match.group(2)))


def parse_duration(value: object) -> timedelta:
    """Read ``"3h"``, ``"90m"``, ``"1d"``, ``"1h30m"`` into a timedelta (must be > 0).

    Short human-readable durations so that the study team can review staleness limits and
    follow-up delays without reading ISO 8601.
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, str) and value.strip() and (m := _DURATION_RE.match(value.strip())):
        days, hours, minutes = (int(g) if g else 0 for g in m.groups())
        result = timedelta(days=days, hours=hours, minutes=minutes)
    else:
        raise ValueError(f'must be a duration such as "3h", "90m", "1d" or "1h30m", got {value!r}')
    if result <= timedelta(0):
        raise ValueError(f"must be longer than zero, got {value!r}")
    return result


def _parse_weekday_field(value: object) -> int:
    if not isinstance(value, str):
        raise ValueError(f"must be a weekday name such as friday or fri, got {value!r}")
    return parse_weekday(value)


def _check_id(value: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError(
            f"must be lower-case letters, digits and _ starting with a letter "
            f"(it is part of message keys), got {value!r}"
        )
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Dhaka)") from exc
    return value


LocalTime = Annotated[time, BeforeValidator(parse_local_time)]
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
WeekdayNumber = Annotated[int, BeforeValidator(_parse_weekday_field)]
Identifier = Annotated[str, AfterValidator(_check_id)]
NonEmpty = Annotated[str, Field(min_length=1)]


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class WeekdayRule(_Model):
    """On which weekday a weekly regimen is taken.

    ``participant``: the participant's own fixed weekday (chosen at enrolment);
    ``fixed``: ``day`` for everyone; ``after``: ``days`` days after regimen ``regimen``
    (folic acid the day after methotrexate), optionally overridden by the participant when
    ``participant_may_choose`` is true.
    """

    rule: Literal["participant", "fixed", "after"]
    day: WeekdayNumber | None = None
    regimen: str | None = None
    days: int | None = None
    participant_may_choose: bool = False


class DoubleDoseCheck(_Model):
    """Two confirmed doses of a regimen closer than ``within`` are a possible overdose
    (weekly methotrexate taken daily is a known fatal error): an URGENT alert of kind
    ``alert_kind`` giving ``why`` (staff English), and the participant gets the triage
    table's ``advice`` at once."""

    within: Duration
    alert_kind: Identifier
    advice: Identifier
    why: NonEmpty


class Regimen(_Model):
    """One drug an arm takes: what, how much, how often, and on which day.

    ``short``: the study team's abbreviation in admin lines ("MTX"; the id when absent).
    ``instructions``: how the welcome and /help say it ({weekday}: the participant's day);
    ``reminder``: the dose reminder's words ({weekday}, {amount}); without them the
    bot builds both from ``drug`` and ``dose``."""

    id: Identifier
    drug: BilingualText
    short: NonEmpty | None = None
    dose_amount: float = Field(gt=0)
    dose_unit: NonEmpty
    dose: BilingualText
    frequency: Literal["daily", "weekly"]
    weekday: WeekdayRule | None = None
    never_same_day_as: tuple[str, ...] = ()
    instructions: BilingualText | None = None
    reminder: BilingualText | None = None
    double_dose_check: DoubleDoseCheck | None = None

    @property
    def short_name(self) -> str:
        """The abbreviation for staff lines (the id when the file gives none)."""
        return self.short or self.id

    @property
    def dose_label(self) -> str:
        """``"25 mg"``: amount and unit, language-neutral, for payloads and staff messages."""
        amount = self.dose_amount
        shown = str(int(amount)) if float(amount).is_integer() else f"{amount:g}"
        return f"{shown} {self.dose_unit}"


class Arm(_Model):
    """A randomised arm and the regimens it takes."""

    label: BilingualText
    summary: BilingualText | None = None  # the treatment in one line, for the export's value labels
    regimens: tuple[Regimen, ...]

    def summary_text(self, lang: str) -> str:
        """The treatment in one line (the label when the file gives no summary)."""
        return (self.summary or self.label).get(lang)

    def regimen(self, regimen_id: str) -> Regimen:
        """The arm's regimen called ``regimen_id``; ``KeyError`` when it has none."""
        for reg in self.regimens:
            if reg.id == regimen_id:
                return reg
        raise KeyError(regimen_id)

    @property
    def own_weekday_regimen(self) -> Regimen | None:
        """The regimen taken on the participant's own weekday (chosen at enrolment), if any."""
        return next((r for r in self.regimens if r.weekday is not None and r.weekday.rule == "participant"), None)


class Visit(_Model):
    """A protocol visit ``week`` weeks after baseline with a ±``window_days`` window."""

    week: int = Field(ge=0)
    name: BilingualText
    window_days: int = Field(ge=0)
    reminders: bool = True
    window_check: bool = True


class VisitReminders(_Model):
    """Visit reminders: ``offsets_days`` relative to the visit date (0 = the morning of)."""

    local_time: LocalTime
    offsets_days: tuple[int, ...]


class VisitWindowCheck(_Model):
    """When the 'visit not recorded by the end of its window' check runs."""

    days_after_window: int = Field(ge=1)
    local_time: LocalTime


class QuestionnaireRule(_Model):
    """Which instrument is asked around which visits, and when.

    Exactly one of ``on_day`` (one prompt, days relative to the visit date: 0 = visit day)
    or ``daily_before_visit`` (a prompt on each of the N days before the visit).
    ``switch`` names a per-participant switch; the rule runs only when it is on
    (``default_enabled`` when the participant has not set it).
    """

    instrument: Identifier
    visit_weeks: tuple[int, ...]
    on_day: int | None = None
    daily_before_visit: int | None = Field(default=None, ge=1)
    local_time: LocalTime
    switch: Identifier | None = None
    default_enabled: bool = True

    @property
    def offsets_days(self) -> tuple[int, ...]:
        """The prompt days relative to the visit date, earliest first."""
        if self.daily_before_visit is not None:
            return tuple(range(-self.daily_before_visit, 0))
        return (self.on_day if self.on_day is not None else 0,)


class Checkin(_Model):
    """The weekly symptom check-in: on ``weekday`` of study weeks ``start_week``..``end_week``.

    Study week k covers baseline + 7k .. baseline + 7k + 6 days.
    """

    instrument: Identifier
    weekday: WeekdayNumber
    local_time: LocalTime
    start_week: int = Field(ge=0)
    end_week: int = Field(ge=0)


class QuietHoursSpec(_Model):
    """Quiet hours in local time, e.g. 22:00 to 07:00 (may cross midnight)."""

    start: LocalTime
    end: LocalTime


class ClinicHours(_Model):
    """When the study team is at work on a clinic day (same-day alerts go out then)."""

    start: LocalTime = time(8, 0)
    end: LocalTime = time(20, 0)


class Holiday(_Model):
    """A public holiday (no clinic). ``tentative``: moon-dependent, to be confirmed."""

    date: date
    name: NonEmpty
    tentative: bool = False


class StaleLimit(_Model):
    """How late a planned message is still worth sending.

    ``max_late``: after due + this, skip. ``same_local_day``: skip once the local day it
    belongs to has ended. Both may be given (the earlier wins); at least one must be.
    """

    max_late: Duration | None = None
    same_local_day: bool = False


class Staleness(_Model):
    """A staleness limit per kind of planned message."""

    dose_reminder: StaleLimit
    dose_followup: StaleLimit
    dose_remind_later: StaleLimit
    dose_no_answer_close: StaleLimit
    visit_reminder: StaleLimit
    visit_window_check: StaleLimit
    checkin_prompt: StaleLimit
    questionnaire_prompt: StaleLimit


class DoseRules(_Model):
    """Dose reminder follow-ups and when an unanswered dose is recorded as "no answer"."""

    followup_after: Duration
    remind_later_after: Duration
    remind_later_respects_quiet_hours: bool = False
    no_answer_days_after: int = Field(ge=1)
    no_answer_local_time: LocalTime


@dataclass(frozen=True, slots=True)
class Derived:
    """What the planner needs from a protocol, computed once when the file is loaded."""

    tz: ZoneInfo
    clinic: ClinicCalendar
    quiet: QuietHours | None
    day_clock: DayClock
    visits_by_week: dict[int, Visit]
    max_stale_days: int


class Site(_Model):
    """Where the study runs, as participants are told it: the study team's to set."""

    name: BilingualText  # the institution ("BSMMU")
    department: BilingualText  # the clinic participants come to
    hospital: BilingualText  # the name people know ("পিজি হাসপাতাল")


class Condition(_Model):
    """What the study is about, as participants are told it ("the {condition} study")."""

    name: BilingualText  # "scleroderma"
    explained: BilingualText  # "scleroderma (systemic sclerosis)", for people who do not know the word


class Protocol(_Model):
    """The whole protocol. Build it with :func:`load_protocol`; it is immutable."""

    trial_id: NonEmpty
    title: NonEmpty
    site: Site
    condition: Condition
    timezone: Annotated[str, AfterValidator(_check_timezone)]
    treatment_weeks: int = Field(ge=1)
    default_reminder_time: LocalTime
    arms: dict[str, Arm]
    visits: tuple[Visit, ...]
    visit_reminders: VisitReminders
    visit_window_check: VisitWindowCheck
    questionnaires: tuple[QuestionnaireRule, ...] = ()
    checkin: Checkin
    quiet_hours: QuietHoursSpec
    clinic_days: tuple[WeekdayNumber, ...]
    clinic_hours: ClinicHours = ClinicHours()
    report_idle_close: Duration = timedelta(hours=2)
    report_instrument: Identifier  # what /report asks (an instrument file's id)
    holidays: tuple[Holiday, ...] = ()
    staleness: Staleness
    doses: DoseRules

    _derived: Derived = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        """Derive the time zone, clinic calendar and quiet hours once, for fast planning."""
        tz = ZoneInfo(self.timezone)
        quiet = None
        if self.quiet_hours.start != self.quiet_hours.end:  # else refused by semantic checks
            quiet = QuietHours(self.quiet_hours.start, self.quiet_hours.end)
        self._derived = Derived(
            tz=tz,
            clinic=ClinicCalendar(frozenset(self.clinic_days), frozenset(h.date for h in self.holidays)),
            quiet=quiet,
            day_clock=DayClock(tz),
            visits_by_week={v.week: v for v in self.visits},
            max_stale_days=max_stale_days(self),
        )

    @property
    def derived(self) -> Derived:
        """Values computed once from the file (zone, calendars, caches) for hot paths."""
        return self._derived

    @property
    def tz(self) -> ZoneInfo:
        """The trial's time zone."""
        return self._derived.tz

    @property
    def clinic(self) -> ClinicCalendar:
        """Clinic weekdays and holidays, for moving visit dates."""
        return self._derived.clinic

    @property
    def quiet(self) -> QuietHours:
        """Quiet hours as a calendar object."""
        quiet = self._derived.quiet
        assert quiet is not None  # guaranteed by load_protocol's checks
        return quiet

    @property
    def day_clock(self) -> DayClock:
        """A shared cached local→UTC converter for this protocol's zone."""
        return self._derived.day_clock

    def visit(self, week: int) -> Visit:
        """The visit at ``week``; ``KeyError`` when the protocol has none."""
        return self._derived.visits_by_week[week]

    def arm(self, arm_id: str) -> Arm:
        """The arm called ``arm_id``; ``KeyError`` when the protocol has none."""
        return self.arms[arm_id]

    def schedule_visit(self, baseline: date, week: int, agreed: date | None = None) -> VisitDate:
        """A visit's date and window for a participant, with weekend/holiday moves applied."""
        visit = self.visit(week)
        return schedule_visit(baseline, week, visit.window_days, self._derived.clinic, agreed=agreed)

    def is_clinic_day(self, day: date) -> bool:
        """True when the clinic is open on ``day``."""
        return self._derived.clinic.is_clinic_day(day)

    def same_day_window(self, now: datetime) -> tuple[datetime, datetime]:
        """(deliver at, escalate at) of a same-day alert raised at ``now`` (clinic days and hours)."""
        hours = self.clinic_hours
        return same_day_window(now, self._derived.tz, self._derived.clinic, hours.start, hours.end)

    def instrument_ids(self) -> frozenset[str]:
        """Every instrument the protocol asks for (to check against the instrument files)."""
        return frozenset(
            {q.instrument for q in self.questionnaires} | {self.checkin.instrument, self.report_instrument}
        )

    def switches(self) -> dict[str, bool]:
        """Every per-participant switch the protocol knows, with its default."""
        return {q.switch: q.default_enabled for q in self.questionnaires if q.switch is not None}


def max_stale_days(proto: Protocol) -> int:
    """Upper bound, in whole days, of how long any planned message stays worth sending."""
    longest = timedelta(days=1)
    for name in Staleness.model_fields:
        limit: StaleLimit = getattr(proto.staleness, name)
        if limit.max_late is not None:
            longest = max(longest, limit.max_late)
    return math.ceil(longest / timedelta(days=1))
