"""The trial calendar: weekdays, clinic days, visit dates and windows, quiet hours, local time.

Pure functions and small immutable value objects; nothing here reads a clock, a file or a
database. All instants that come in or go out are *aware* datetimes; the ones produced here
are in UTC (how they are stored). Local dates and wall-clock times (``date`` and naive
``time``) are always in the trial's time zone, which callers pass in as a ``ZoneInfo``.

Weekdays are Python's ``date.weekday()`` numbers: 0 = Monday … 6 = Sunday.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum

__all__ = [
    "WEEKDAY_CODES",
    "WEEKDAY_NAMES",
    "ClinicCalendar",
    "DayClock",
    "QuietHours",
    "Timing",
    "VisitDate",
    "apply_quiet_hours",
    "days_until_weekday",
    "end_of_local_day",
    "local_date",
    "local_to_utc",
    "nearest_clinic_day",
    "next_weekday_on_or_after",
    "parse_weekday",
    "require_aware",
    "same_day_window",
    "schedule_visit",
    "start_of_local_day",
    "time_offset",
    "to_local",
    "visit_target",
    "visit_window",
    "weekday_key",
]

WEEKDAY_NAMES: tuple[str, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
WEEKDAY_CODES: tuple[str, ...] = tuple(name[:3] for name in WEEKDAY_NAMES)
_OTHER_NAMES: tuple[tuple[str, ...], ...] = (  # what people type, in both study languages
    ("সোম", "সোমবার"),
    ("tues", "মঙ্গল", "মঙ্গলবার"),
    ("বুধ", "বুধবার"),
    ("thur", "thurs", "বৃহস্পতি", "বৃহস্পতিবার"),
    ("শুক্র", "শুক্রবার"),
    ("শনি", "শনিবার"),
    ("রবি", "রবিবার"),
)
_WEEKDAY_LOOKUP: dict[str, int] = {
    **{name: i for i, name in enumerate(WEEKDAY_NAMES)},
    **{code: i for i, code in enumerate(WEEKDAY_CODES)},
    **{name: i for i, names in enumerate(_OTHER_NAMES) for name in names},
}
_ONE_DAY = timedelta(days=1)
_Date = date  # VisitDate has a field called "date"


# --------------------------------------------------------------------------- weekdays


def parse_weekday(value: str | int) -> int:
    """Turn ``"friday"``, ``"Fri"``, ``"শুক্রবার"`` or ``4`` into 0–6 (Monday = 0).

    The one weekday parser: the protocol file, ``/enroll … fri`` (through
    domain.parsing) and tests all name weekdays the same way; anything else is
    refused with a message listing what is accepted.
    """
    if isinstance(value, bool):  # bool is an int; never a weekday
        raise ValueError(f"not a weekday: {value!r}")
    if isinstance(value, int):
        if 0 <= value <= 6:
            return value
        raise ValueError(f"weekday number must be 0 (Monday) to 6 (Sunday), not {value}")
    found = _WEEKDAY_LOOKUP.get(value.strip().lower())
    if found is None:
        raise ValueError(
            f"unknown weekday {value!r}; use one of {', '.join(WEEKDAY_NAMES)} (or their first three letters)"
        )
    return found


def weekday_key(weekday: int) -> str:
    """A weekday number as the files spell it ("friday"): for payloads, keys and messages
    to staff. (What a participant reads is ``bot.i18n.weekday_name``, in their language.)"""
    return WEEKDAY_NAMES[weekday]


def days_until_weekday(from_weekday: int, to_weekday: int) -> int:
    """Days (0–6) from one weekday forward to the next occurrence of another.

    Used to place a weekly dose relative to another (folic acid the day after methotrexate).
    """
    return (to_weekday - from_weekday) % 7


def next_weekday_on_or_after(day: date, weekday: int) -> date:
    """The first date on or after ``day`` that falls on ``weekday``.

    Weekly doses and weekly check-ins are anchored to a weekday, not to the baseline date.
    """
    return day + timedelta(days=(weekday - day.weekday()) % 7)


# --------------------------------------------------------------------------- instants


def require_aware(value: datetime, what: str = "datetime") -> datetime:
    """Refuse naive datetimes: a naive 'now' silently shifts every reminder by six hours."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value


def local_to_utc(day: date, at: time, tz: tzinfo) -> datetime:
    """The UTC instant of a local date and wall-clock time (``at`` must be naive)."""
    if at.tzinfo is not None:
        raise ValueError("local wall-clock times must be naive (the trial zone is implied)")
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def to_local(value: datetime, tz: tzinfo) -> datetime:
    """An aware instant seen in the trial's zone, for showing and for local-time rules."""
    return require_aware(value).astimezone(tz)


def local_date(value: datetime, tz: tzinfo) -> date:
    """The local calendar date of an instant ("today" for the participant)."""
    return to_local(value, tz).date()


def start_of_local_day(day: date, tz: tzinfo) -> datetime:
    """UTC instant of local midnight at the start of ``day`` (pause ends, day boundaries)."""
    return local_to_utc(day, time(0), tz)


def end_of_local_day(day: date, tz: tzinfo) -> datetime:
    """UTC instant at which local ``day`` ends (exclusive: the next local midnight).

    Staleness limits such as "a visit reminder is worth sending until the end of that day".
    """
    return local_to_utc(day + _ONE_DAY, time(0), tz)


class DayClock:
    """Fast local→UTC conversion for many wall-clock times on the same few hundred dates.

    The planner converts hundreds of (date, time) pairs per participant; ``datetime.combine``
    plus ``astimezone`` costs about a microsecond each. This caches each date's UTC midnight
    and UTC offset (``None`` when the offset changes during that day, i.e. a DST day); a
    whole range of dates with one offset (always, in Asia/Dhaka) can then be walked by plain
    timedelta additions. Days with a DST change fall back to the exact conversion, so results
    always equal :func:`local_to_utc`. Safe to share between threads (the caches only ever
    gain identical entries).
    """

    __slots__ = ("_days", "_ranges", "tz")

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self._days: dict[date, tuple[datetime, timedelta | None]] = {}
        self._ranges: dict[tuple[date, date], timedelta | None] = {}

    def _day(self, day: date) -> tuple[datetime, timedelta | None]:
        hit = self._days.get(day)
        if hit is None:
            tz = self.tz
            start = datetime.combine(day, time(0), tzinfo=tz)
            offset = start.utcoffset()
            nxt = datetime.combine(day + _ONE_DAY, time(0), tzinfo=tz).utcoffset()
            hit = (start.astimezone(UTC), offset if offset == nxt else None)
            if len(self._days) > 50_000:  # bound memory in very long-running processes
                self._days.clear()
            self._days[day] = hit
        return hit

    def midnight(self, day: date) -> datetime:
        """UTC instant of local midnight starting ``day``."""
        return self._day(day)[0]

    def at(self, day: date, offset: timedelta, wall: time) -> datetime:
        """UTC instant of local ``day`` at ``wall``; ``offset`` must equal ``wall`` as a timedelta.

        Passing both avoids rebuilding the timedelta in tight loops (see :func:`time_offset`).
        """
        start, utc_offset = self._day(day)
        if utc_offset is not None:
            return start + offset
        return local_to_utc(day, wall, self.tz)

    def fixed_offset(self, first: date, last: date) -> timedelta | None:
        """The UTC offset if it is the same all through ``first``..``last``, else ``None``.

        When it is, local time ``t`` on day ``d + n`` is exactly ``n`` days after ``t`` on
        ``d``, which lets loops step by adding days.
        """
        key = (first, last)
        if key in self._ranges:
            return self._ranges[key]
        found: timedelta | None = self._day(first)[1]
        day = first
        while found is not None and day < last:
            day += _ONE_DAY
            if self._day(day)[1] != found:
                found = None
        if len(self._ranges) > 50_000:
            self._ranges.clear()
        self._ranges[key] = found
        return found


def time_offset(wall: time) -> timedelta:
    """A naive wall-clock time as the timedelta since midnight (for :meth:`DayClock.at`)."""
    return timedelta(hours=wall.hour, minutes=wall.minute, seconds=wall.second, microseconds=wall.microsecond)


# --------------------------------------------------------------------------- clinic days and visits


@dataclass(frozen=True, slots=True)
class ClinicCalendar:
    """Which days the clinic sees participants: open weekdays minus listed public holidays.

    Bangladesh: Sunday–Thursday open, Friday and Saturday are the weekend (CLDR has no weekend
    data for BD, so it is configured, not looked up).
    """

    clinic_weekdays: frozenset[int]
    holidays: frozenset[date] = field(default_factory=frozenset)

    def is_clinic_day(self, day: date) -> bool:
        """True when a participant can be seen on ``day``."""
        return day.weekday() in self.clinic_weekdays and day not in self.holidays


def same_day_window(
    now: datetime, tz: tzinfo, clinic: ClinicCalendar, opens: time, closes: time, search_days: int = 60
) -> tuple[datetime, datetime]:
    """When a same-day alert raised at ``now`` reaches the coordinators, and when it
    escalates if nobody acknowledged it: (now, today's closing) inside clinic hours on a
    clinic day, else (the next opening, that day's closing). Aware datetimes in ``tz``.

    Why: "same day" means the same clinic day to the people on call (CLINICAL.md).
    """
    local = now.astimezone(tz)
    day = local.date()
    for offset in range(search_days + 1):
        current = day + timedelta(days=offset)
        if not clinic.is_clinic_day(current):
            continue
        start = datetime.combine(current, opens, tz)
        end = datetime.combine(current, closes, tz)
        if local < start:
            return start, end
        if local < end:
            return now, end
    raise ValueError(f"no clinic day within {search_days} days of {day}")


def visit_target(baseline: date, weeks: int) -> date:
    """The protocol's nominal visit date: baseline + ``weeks`` weeks (week 0 = baseline)."""
    return baseline + timedelta(weeks=weeks)


def visit_window(target: date, window_days: int) -> tuple[date, date]:
    """First and last acceptable dates (inclusive) of a visit window of ±``window_days``."""
    if window_days < 0:
        raise ValueError("window_days must be >= 0")
    span = timedelta(days=window_days)
    return target - span, target + span


def nearest_clinic_day(target: date, window_days: int, clinic: ClinicCalendar) -> date | None:
    """The clinic day closest to ``target`` within ±``window_days`` (a tie goes to the earlier).

    ``None`` when the whole window is weekend or holiday: the caller keeps the target and
    flags it for the coordinators rather than silently leaving the window.
    """
    if clinic.is_clinic_day(target):
        return target
    for distance in range(1, window_days + 1):
        step = timedelta(days=distance)
        if clinic.is_clinic_day(target - step):
            return target - step
        if clinic.is_clinic_day(target + step):
            return target + step
    return None


@dataclass(frozen=True, slots=True)
class VisitDate:
    """Where a visit lands on the calendar.

    ``date`` is the day the participant is asked to come: the target, moved to the nearest
    clinic day inside the window when the target is a weekend day or a holiday.
    ``no_clinic_day_in_window`` is set when no such day exists (``date`` is then the target and
    the coordinators must arrange something by hand). ``rescheduled`` is set when the date was
    agreed with the participant instead of computed.
    """

    week: int
    target: _Date
    date: _Date
    window_start: _Date
    window_end: _Date
    moved: bool
    no_clinic_day_in_window: bool
    rescheduled: bool = False

    @property
    def in_window(self) -> bool:
        """True when ``date`` lies inside the protocol window."""
        return self.window_start <= self.date <= self.window_end


def schedule_visit(
    baseline: date,
    weeks: int,
    window_days: int,
    clinic: ClinicCalendar,
    *,
    agreed: date | None = None,
) -> VisitDate:
    """Compute a visit's date and window from the baseline (the one rule for every visit).

    Week 0 is the baseline itself and is never moved (it has already been fixed by
    enrolment). ``agreed`` is a date the coordinator set with the participant ("I need
    another date"); it wins, and may even lie outside the window.
    """
    target = visit_target(baseline, weeks)
    start, end = visit_window(target, window_days)
    if agreed is not None:
        return VisitDate(weeks, target, agreed, start, end, agreed != target, False, True)
    if weeks == 0:
        return VisitDate(weeks, target, target, start, end, False, False)
    found = nearest_clinic_day(target, window_days, clinic)
    if found is None:
        return VisitDate(weeks, target, target, start, end, False, True)
    return VisitDate(weeks, target, found, start, end, found != target, False)


# --------------------------------------------------------------------------- quiet hours


class Timing(StrEnum):
    """Who chose a message's time, which decides whether quiet hours apply.

    BOT: the bot timed it (visit reminders, check-ins, follow-ups): waits for quiet hours
    to end. PARTICIPANT: the participant chose the time (``/settime 04:30`` for suhoor):
    honoured. SAFETY: safety replies and alerts: never wait.
    """

    BOT = "bot"
    PARTICIPANT = "participant"
    SAFETY = "safety"


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily local quiet period ``[start, end)``; it may cross midnight (22:00–07:00)."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours are local wall-clock times and must be naive")
        if self.start == self.end:
            raise ValueError("quiet hours start and end must differ")

    @property
    def crosses_midnight(self) -> bool:
        """True for the usual night-time period (start later in the day than end)."""
        return self.start > self.end

    def contains(self, wall: time) -> bool:
        """True when a local wall-clock time is inside quiet hours (end is exclusive)."""
        if self.start > self.end:
            return wall >= self.start or wall < self.end
        return self.start <= wall < self.end

    def defer_local(self, day: date, wall: time) -> tuple[date, time]:
        """Move a local (date, time) inside quiet hours to the moment quiet hours end.

        Outside quiet hours it is returned unchanged. 23:10 → 07:00 the next day;
        05:00 → 07:00 the same day.
        """
        if not self.contains(wall):
            return day, wall
        if self.start > self.end and wall >= self.start:
            return day + _ONE_DAY, self.end
        return day, self.end

    def is_quiet(self, instant: datetime, tz: tzinfo) -> bool:
        """True when an aware instant falls inside quiet hours in the trial's zone."""
        local = to_local(instant, tz)
        return self.contains(local.time().replace(tzinfo=None))

    def defer(self, instant: datetime, tz: tzinfo) -> datetime:
        """The first UTC instant at or after ``instant`` that is outside quiet hours."""
        local = to_local(instant, tz)
        wall = local.time().replace(tzinfo=None)
        if not self.contains(wall):
            return instant.astimezone(UTC)
        day, end = self.defer_local(local.date(), wall)
        return local_to_utc(day, end, tz)


def apply_quiet_hours(instant: datetime, timing: Timing, quiet: QuietHours, tz: tzinfo) -> datetime:
    """When a message may actually go out, given who chose its time.

    The one place the quiet-hours rule lives, for the planner and for the dispatcher's
    re-check at send time (a bot-timed message due in the past must still wait if it is
    now 23:00).
    """
    if timing is Timing.BOT:
        return quiet.defer(instant, tz)
    return require_aware(instant).astimezone(UTC)
