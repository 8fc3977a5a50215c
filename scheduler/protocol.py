"""The trial protocol as a validated data file (``content/protocol.yaml``).

Why a file: the study team reviews arms, doses, visit windows, reminder times and holidays
as data, and another trial can reuse the bot by writing its own file. Nothing trial-specific
lives in code. Why so strict: a typo in a weekday or a window would silently mis-schedule
real participants, so every mistake stops the bot at start with one :class:`ProtocolError`
naming the file, the place (``visits[2].window_days``) and the line.

Conventions in the file: dates ``YYYY-MM-DD``; local wall-clock times ``"HH:MM"`` (quoted or
not: YAML 1.1's base-60 reading of ``22:00`` is switched off); durations ``"3h"``, ``"90m"``,
``"1d"``, ``"1h30m"``; weekdays ``friday`` or ``fri``. All local times are in ``timezone``.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
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
    weekday_key,
)

__all__ = [
    "Arm",
    "BilingualText",
    "Checkin",
    "ClinicHours",
    "Derived",
    "DoseRules",
    "Holiday",
    "Protocol",
    "ProtocolError",
    "QuestionnaireRule",
    "Regimen",
    "StaleLimit",
    "Staleness",
    "Visit",
    "VisitReminders",
    "VisitWindowCheck",
    "WeekdayRule",
    "load_protocol",
    "max_stale_days",
    "parse_duration",
    "parse_local_time",
    "protocol_from_mapping",
]


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


# --------------------------------------------------------------------------- YAML loading


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 surprises.

    Dates stay strings (so pydantic reports ``2026-02-30`` with its place instead of PyYAML
    crashing), ``22:00`` is not the base-60 number 1320, ``010`` is not octal 8.
    """


_DROPPED_TAGS = {
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9][0-9_]*)$"),
    list("-+0123456789."),
)


def _duplicate_keys(node: yaml.Node) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    stack: list[yaml.Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in current.value:
                name = str(key.value)
                if name in seen:
                    problems.append(
                        (
                            f"line {key.start_mark.line + 1}",
                            f"duplicate key {name!r} (first at line {seen[name]})",
                        )
                    )
                else:
                    seen[name] = key.start_mark.line + 1
                stack.append(value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return problems


def _line_of(root: yaml.Node | None, loc: Iterable[str | int]) -> int | None:
    if root is None:
        return None
    node: yaml.Node = root
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if str(key.value) == str(part):
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _place(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _describe(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    given = err.get("input")
    got = "" if isinstance(given, (dict, list)) else f", got {given!r}"
    if kind == "missing":
        return "required, but missing"
    if kind == "extra_forbidden":
        return "unknown field (check the spelling)"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign, key = {
            "greater_than_equal": (">=", "ge"),
            "greater_than": (">", "gt"),
            "less_than_equal": ("<=", "le"),
            "less_than": ("<", "lt"),
        }[kind]
        return f"must be {sign} {ctx.get(key)}{got}"
    if kind.startswith("date"):
        return f"must be a date written YYYY-MM-DD{got}"
    if kind.startswith("int"):
        return f"must be a whole number{got}"
    if kind.startswith("float"):
        return f"must be a number{got}"
    if kind.startswith("bool"):
        return f"must be true or false{got}"
    if kind == "string_type":
        return f"must be text{got}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind in ("too_short",):
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping of names to values{got}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list{got}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}{got}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    message = str(err["msg"])
    return message.replace("Input should be", "must be", 1) + got


_REGIMEN_PLACEHOLDERS = {"instructions": {"weekday"}, "reminder": {"weekday", "amount"}}


def _regimen_text_problems(reg: Regimen) -> list[tuple[tuple[str, ...], str]]:
    """A regimen's own words may use only the placeholders the bot fills in, in both
    languages alike; a day-bound wording or a double-dose check needs a weekly regimen."""
    out: list[tuple[tuple[str, ...], str]] = []
    for field, allowed in _REGIMEN_PLACEHOLDERS.items():
        text = getattr(reg, field)
        if text is None:
            continue
        for lang in ("en", "bn"):
            used = _placeholders(text.get(lang))
            if used - allowed:
                out.append(((field, lang), f"unknown placeholder(s) {sorted(used - allowed)}; use {sorted(allowed)}"))
        if "weekday" in _placeholders(text.en) and reg.frequency != "weekly":
            out.append(((field,), "{weekday} needs a weekly regimen"))
    if reg.double_dose_check is not None and reg.frequency != "weekly":
        out.append((("double_dose_check",), "only a weekly regimen has a double-dose check"))
    return out


def _placeholders(text: str) -> set[str]:
    return {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name is not None}


def _semantic_problems(
    proto: Protocol, known_instruments: Collection[str] | None
) -> list[tuple[tuple[str | int, ...], str]]:
    """Cross-field rules a schema cannot express; each returns a location and a message."""
    problems: list[tuple[tuple[str | int, ...], str]] = []

    def add(loc: tuple[str | int, ...], message: str) -> None:
        problems.append((loc, message))

    # Lists that must not be empty (checked here, not in the schema, because pydantic also
    # reports a list as too short when one of its items is wrong: noise for the reader).
    empty = "must have at least one entry"
    if not proto.arms:
        add(("arms",), empty)
    for arm_id, arm in proto.arms.items():
        if not arm.regimens:
            add(("arms", arm_id, "regimens"), empty)
    if not proto.visits:
        add(("visits",), empty)
    if not proto.visit_reminders.offsets_days:
        add(("visit_reminders", "offsets_days"), empty)
    for i, q in enumerate(proto.questionnaires):
        if not q.visit_weeks:
            add(("questionnaires", i, "visit_weeks"), empty)
    if not proto.clinic_days:
        add(("clinic_days",), empty)
    if proto.clinic_hours.start >= proto.clinic_hours.end:
        add(("clinic_hours", "end"), "must be after clinic_hours.start (on the same day)")
    if proto.report_idle_close <= timedelta(0):
        add(("report_idle_close",), "must be longer than zero")

    quiet_ok = proto.quiet_hours.start != proto.quiet_hours.end
    if not quiet_ok:
        add(("quiet_hours", "end"), "must differ from quiet_hours.start")
    quiet = QuietHours(proto.quiet_hours.start, proto.quiet_hours.end) if quiet_ok else None
    q_text = f"{proto.quiet_hours.start:%H:%M}-{proto.quiet_hours.end:%H:%M}"

    def bot_time(loc: tuple[str | int, ...], wall: time) -> None:
        if quiet is not None and quiet.contains(wall):
            add(
                loc,
                f"{wall:%H:%M} is inside quiet hours {q_text}; the bot picks this time "
                "itself, so it must lie outside them",
            )

    bot_time(("default_reminder_time",), proto.default_reminder_time)
    bot_time(("visit_reminders", "local_time"), proto.visit_reminders.local_time)
    bot_time(("visit_window_check", "local_time"), proto.visit_window_check.local_time)
    bot_time(("checkin", "local_time"), proto.checkin.local_time)

    # arms and regimens
    for arm_id, arm in proto.arms.items():
        if not re.match(r"^[A-Za-z0-9_]+$", arm_id):
            add(("arms", arm_id), "arm ids must be letters, digits and _")
        by_id: dict[str, tuple[int, Regimen]] = {}
        for i, reg in enumerate(arm.regimens):
            if reg.id in by_id:
                add(
                    ("arms", arm_id, "regimens", i, "id"),
                    f"duplicate regimen id {reg.id!r} (also regimens[{by_id[reg.id][0]}])",
                )
            else:
                by_id[reg.id] = (i, reg)
        for i, reg in enumerate(arm.regimens):
            base: tuple[str | int, ...] = ("arms", arm_id, "regimens", i)
            rule = reg.weekday
            if reg.frequency == "daily":
                if rule is not None:
                    add((*base, "weekday"), "a daily regimen has no weekday; remove it")
                if reg.never_same_day_as:
                    add(
                        (*base, "never_same_day_as"),
                        "a daily regimen is taken every day and cannot avoid another's day",
                    )
            elif rule is None:
                add((*base, "weekday"), "required for a weekly regimen")
            else:
                wl = (*base, "weekday")
                if rule.rule == "participant":
                    for extra in ("day", "regimen", "days"):
                        if getattr(rule, extra) is not None:
                            add((*wl, extra), "not used with rule: participant")
                elif rule.rule == "fixed":
                    if rule.day is None:
                        add((*wl, "day"), "required with rule: fixed")
                    for extra in ("regimen", "days"):
                        if getattr(rule, extra) is not None:
                            add((*wl, extra), "not used with rule: fixed")
                else:  # after
                    if rule.day is not None:
                        add((*wl, "day"), "not used with rule: after")
                    if rule.regimen is None:
                        add((*wl, "regimen"), "required with rule: after")
                    elif rule.regimen == reg.id:
                        add((*wl, "regimen"), "a regimen cannot follow itself")
                    elif rule.regimen not in by_id:
                        add(
                            (*wl, "regimen"),
                            f"unknown regimen {rule.regimen!r} in arm {arm_id}; known: {', '.join(by_id)}",
                        )
                    else:
                        ref = by_id[rule.regimen][1]
                        if ref.frequency != "weekly":
                            add((*wl, "regimen"), f"{ref.id} is not weekly")
                        elif ref.weekday is not None and ref.weekday.rule == "after":
                            add(
                                (*wl, "regimen"),
                                f"{ref.id} is itself placed after another regimen; "
                                "point at the one with its own weekday",
                            )
                    if rule.days is None:
                        add((*wl, "days"), "required with rule: after")
                    elif not 0 <= rule.days <= 6:
                        add((*wl, "days"), f"must be 0 to 6, got {rule.days}")
                    elif rule.regimen is not None and rule.regimen in reg.never_same_day_as and rule.days == 0:
                        add(
                            (*wl, "days"), f"0 puts {reg.id} on the {rule.regimen} day, which never_same_day_as forbids"
                        )
            for where, message in _regimen_text_problems(reg):
                add((*base, *where), message)
            for j, other in enumerate(reg.never_same_day_as):
                nl = (*base, "never_same_day_as", j)
                if other == reg.id:
                    add(nl, "a regimen cannot avoid itself")
                elif other not in by_id:
                    add(nl, f"unknown regimen {other!r} in arm {arm_id}")
                else:
                    o = by_id[other][1]
                    if o.frequency == "daily":
                        add(nl, f"{other} is daily; {reg.id} could never be taken")
                    elif (
                        rule is not None
                        and rule.rule == "fixed"
                        and o.weekday is not None
                        and o.weekday.rule == "fixed"
                        and rule.day == o.weekday.day
                        and rule.day is not None
                    ):
                        add(
                            (*base, "weekday", "day"),
                            f"{weekday_key(rule.day)} is also the {other} day, which never_same_day_as forbids",
                        )
                    elif (
                        o.weekday is not None
                        and o.weekday.rule == "after"
                        and o.weekday.regimen == reg.id
                        and o.weekday.days == 0
                    ):
                        add(nl, f"{other} is placed 0 days after {reg.id}: the same day")

    # visits
    weeks_seen: dict[int, int] = {}
    previous: tuple[int, Visit] | None = None
    for i, visit in enumerate(proto.visits):
        if visit.week in weeks_seen:
            add(("visits", i, "week"), f"duplicate week {visit.week} (also visits[{weeks_seen[visit.week]}])")
            continue
        weeks_seen[visit.week] = i
        if previous is not None:
            j, prev = previous
            if visit.week < prev.week:
                add(("visits", i, "week"), f"visits must be in week order; {visit.week} comes after week {prev.week}")
            else:
                prev_end = prev.week * 7 + prev.window_days
                this_start = visit.week * 7 - visit.window_days
                if this_start <= prev_end:
                    add(
                        ("visits", i, "window_days"),
                        f"window of week {visit.week} (±{visit.window_days} days, from day "
                        f"{this_start}) overlaps the window of week {prev.week} in visits[{j}] "
                        f"(±{prev.window_days} days, to day {prev_end})",
                    )
        previous = (i, visit)
    for i, offset in enumerate(proto.visit_reminders.offsets_days):
        if offset > 0:
            add(
                ("visit_reminders", "offsets_days", i),
                f"must be <= 0 (days before the visit; 0 = that morning), got {offset}",
            )
    if len(set(proto.visit_reminders.offsets_days)) != len(proto.visit_reminders.offsets_days):
        add(("visit_reminders", "offsets_days"), "contains the same offset twice")

    # questionnaires
    planned: dict[tuple[str, int, int], int] = {}
    for i, rule_q in enumerate(proto.questionnaires):
        ql: tuple[str | int, ...] = ("questionnaires", i)
        if known_instruments is not None and rule_q.instrument not in known_instruments:
            add(
                (*ql, "instrument"),
                f"unknown questionnaire {rule_q.instrument!r}; known: "
                f"{', '.join(sorted(known_instruments)) or '(none)'}",
            )
        if (rule_q.on_day is None) == (rule_q.daily_before_visit is None):
            add(ql, "give exactly one of on_day or daily_before_visit")
        bot_time((*ql, "local_time"), rule_q.local_time)
        for j, week in enumerate(rule_q.visit_weeks):
            if week not in weeks_seen:
                add(
                    (*ql, "visit_weeks", j),
                    f"no visit at week {week}; visits are at weeks {', '.join(str(w) for w in weeks_seen)}",
                )
                continue
            for offset in rule_q.offsets_days:
                key = (rule_q.instrument, week, offset)
                if key in planned:
                    add(
                        (*ql, "visit_weeks", j),
                        f"{rule_q.instrument} is already asked at week {week} day {offset} by "
                        f"questionnaires[{planned[key]}]",
                    )
                planned[key] = i
    if known_instruments is not None and proto.checkin.instrument not in known_instruments:
        add(
            ("checkin", "instrument"),
            f"unknown questionnaire {proto.checkin.instrument!r}; "
            f"known: {', '.join(sorted(known_instruments)) or '(none)'}",
        )
    if known_instruments is not None and proto.report_instrument not in known_instruments:
        add(
            ("report_instrument",),
            f"unknown questionnaire {proto.report_instrument!r}; "
            f"known: {', '.join(sorted(known_instruments)) or '(none)'}",
        )
    if proto.checkin.end_week < proto.checkin.start_week:
        add(("checkin", "end_week"), f"must be >= start_week ({proto.checkin.start_week})")

    # calendar
    seen_days: set[int] = set()
    for i, day in enumerate(proto.clinic_days):
        if day in seen_days:
            add(("clinic_days", i), f"{weekday_key(day)} is listed twice")
        seen_days.add(day)

    # staleness
    for name in Staleness.model_fields:
        limit: StaleLimit = getattr(proto.staleness, name)
        if limit.max_late is None and not limit.same_local_day:
            add(("staleness", name), "give max_late, same_local_day: true, or both")
    return problems


def protocol_from_mapping(
    data: object,
    source: str = "protocol",
    known_instruments: Collection[str] | None = None,
    *,
    _root: yaml.Node | None = None,
) -> Protocol:
    """Validate already-parsed protocol data (a dict); for tests and other file formats.

    Raises :class:`ProtocolError` listing every problem with its place.
    """
    if not isinstance(data, dict):
        raise ProtocolError(source, [("(top level)", "must be a mapping of settings")])
    try:
        proto = Protocol.model_validate(data)
    except ValidationError as exc:
        problems: list[tuple[str, str]] = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_of(_root, loc)
            suffix = f" (line {line})" if line is not None else ""
            problems.append((_place(loc), _describe(err) + suffix))
        raise ProtocolError(source, problems) from None
    semantic = _semantic_problems(proto, known_instruments)
    if semantic:
        out: list[tuple[str, str]] = []
        for loc, message in semantic:
            line = _line_of(_root, loc)
            out.append((_place(loc), message + (f" (line {line})" if line is not None else "")))
        raise ProtocolError(source, out)
    return proto


def load_protocol(path: str | Path, known_instruments: Collection[str] | None = None) -> Protocol:
    """Read and validate the protocol file; the only way the bot gets its schedule rules.

    ``known_instruments``: the questionnaire ids that exist (instrument files); when given,
    any other id in the protocol is refused. Every problem raises :class:`ProtocolError`
    with the file name, the place and the line.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(source, [("", f"cannot read the file: {exc}")]) from None
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise ProtocolError(source, [("", "the file is empty")])
        duplicates = _duplicate_keys(root)
        if duplicates:
            raise ProtocolError(source, duplicates)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ProtocolError(source, [(where, f"not valid YAML: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise ProtocolError(source, [("", f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    return protocol_from_mapping(data, source, known_instruments, _root=root)


def max_stale_days(proto: Protocol) -> int:
    """Upper bound, in whole days, of how long any planned message stays worth sending."""
    longest = timedelta(days=1)
    for name in Staleness.model_fields:
        limit: StaleLimit = getattr(proto.staleness, name)
        if limit.max_late is not None:
            longest = max(longest, limit.max_late)
    return math.ceil(longest / timedelta(days=1))
