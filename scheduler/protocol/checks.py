"""Cross-field rules of the protocol that a schema cannot express, one function per subject."""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Mapping
from datetime import time, timedelta
from typing import TypeAlias

from scheduler.calendar import QuietHours, weekday_key
from scheduler.protocol.model import Protocol, Regimen, StaleLimit, Staleness, Visit, WeekdayRule

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


Problem: TypeAlias = tuple[tuple[str | int, ...], str]

_EMPTY = "must have at least one entry"


def _semantic_problems(proto: Protocol, known_instruments: Collection[str] | None) -> list[Problem]:
    """Cross-field rules a schema cannot express; each returns a location and a message.

    One check per subject, in the order the reader meets them in the file."""
    return [
        *_empty_lists(proto),
        *_clock_problems(proto),
        *_arm_problems(proto),
        *_visit_problems(proto),
        *_questionnaire_problems(proto, known_instruments),
        *_checkin_problems(proto, known_instruments),
        *_calendar_problems(proto),
        *_staleness_problems(proto),
    ]


def _empty_lists(proto: Protocol) -> list[Problem]:
    """Lists that must not be empty (checked here, not in the schema, because pydantic also
    reports a list as too short when one of its items is wrong: noise for the reader)."""
    out: list[Problem] = []
    if not proto.arms:
        out.append((("arms",), _EMPTY))
    for arm_id, arm in proto.arms.items():
        if not arm.regimens:
            out.append((("arms", arm_id, "regimens"), _EMPTY))
    if not proto.visits:
        out.append((("visits",), _EMPTY))
    if not proto.visit_reminders.offsets_days:
        out.append((("visit_reminders", "offsets_days"), _EMPTY))
    for i, q in enumerate(proto.questionnaires):
        if not q.visit_weeks:
            out.append((("questionnaires", i, "visit_weeks"), _EMPTY))
    if not proto.clinic_days:
        out.append((("clinic_days",), _EMPTY))
    return out


def _clock_problems(proto: Protocol) -> list[Problem]:
    """Clinic hours, the report's idle close, quiet hours, and the times the bot picks itself."""
    out: list[Problem] = []
    if proto.clinic_hours.start >= proto.clinic_hours.end:
        out.append((("clinic_hours", "end"), "must be after clinic_hours.start (on the same day)"))
    if proto.report_idle_close <= timedelta(0):
        out.append((("report_idle_close",), "must be longer than zero"))
    if proto.quiet_hours.start == proto.quiet_hours.end:
        out.append((("quiet_hours", "end"), "must differ from quiet_hours.start"))
    out += _in_quiet_hours(proto, ("default_reminder_time",), proto.default_reminder_time)
    out += _in_quiet_hours(proto, ("visit_reminders", "local_time"), proto.visit_reminders.local_time)
    out += _in_quiet_hours(proto, ("visit_window_check", "local_time"), proto.visit_window_check.local_time)
    out += _in_quiet_hours(proto, ("checkin", "local_time"), proto.checkin.local_time)
    return out


def _in_quiet_hours(proto: Protocol, loc: tuple[str | int, ...], wall: time) -> list[Problem]:
    """A time the bot picks itself must lie outside quiet hours (when those are valid)."""
    if proto.quiet_hours.start == proto.quiet_hours.end:
        return []
    quiet = QuietHours(proto.quiet_hours.start, proto.quiet_hours.end)
    if not quiet.contains(wall):
        return []
    q_text = f"{proto.quiet_hours.start:%H:%M}-{proto.quiet_hours.end:%H:%M}"
    return [
        (
            loc,
            f"{wall:%H:%M} is inside quiet hours {q_text}; the bot picks this time itself, so it must lie outside them",
        )
    ]


def _arm_problems(proto: Protocol) -> list[Problem]:
    """Arm ids, duplicate regimen ids, each regimen's weekday rule, words and avoided days."""
    out: list[Problem] = []
    for arm_id, arm in proto.arms.items():
        if not re.match(r"^[A-Za-z0-9_]+$", arm_id):
            out.append((("arms", arm_id), "arm ids must be letters, digits and _"))
        by_id: dict[str, tuple[int, Regimen]] = {}
        for i, reg in enumerate(arm.regimens):
            if reg.id in by_id:
                out.append(
                    (
                        ("arms", arm_id, "regimens", i, "id"),
                        f"duplicate regimen id {reg.id!r} (also regimens[{by_id[reg.id][0]}])",
                    )
                )
            else:
                by_id[reg.id] = (i, reg)
        for i, reg in enumerate(arm.regimens):
            base: tuple[str | int, ...] = ("arms", arm_id, "regimens", i)
            out += _weekday_problems(arm_id, reg, by_id, base)
            out += [((*base, *where), message) for where, message in _regimen_text_problems(reg)]
            out += _never_same_day_problems(arm_id, reg, by_id, base)
    return out


def _weekday_problems(
    arm_id: str, reg: Regimen, by_id: Mapping[str, tuple[int, Regimen]], base: tuple[str | int, ...]
) -> list[Problem]:
    """A daily regimen has no weekday; a weekly one has a complete rule of its kind."""
    rule = reg.weekday
    if reg.frequency == "daily":
        out: list[Problem] = []
        if rule is not None:
            out.append(((*base, "weekday"), "a daily regimen has no weekday; remove it"))
        if reg.never_same_day_as:
            out.append(
                (
                    (*base, "never_same_day_as"),
                    "a daily regimen is taken every day and cannot avoid another's day",
                )
            )
        return out
    if rule is None:
        return [((*base, "weekday"), "required for a weekly regimen")]
    wl = (*base, "weekday")
    if rule.rule == "participant":
        return [
            ((*wl, extra), "not used with rule: participant")
            for extra in ("day", "regimen", "days")
            if getattr(rule, extra) is not None
        ]
    if rule.rule == "fixed":
        out = [((*wl, "day"), "required with rule: fixed")] if rule.day is None else []
        return out + [
            ((*wl, extra), "not used with rule: fixed")
            for extra in ("regimen", "days")
            if getattr(rule, extra) is not None
        ]
    return _after_rule_problems(arm_id, reg, rule, by_id, wl)


def _after_rule_problems(
    arm_id: str,
    reg: Regimen,
    rule: WeekdayRule,
    by_id: Mapping[str, tuple[int, Regimen]],
    wl: tuple[str | int, ...],
) -> list[Problem]:
    """``rule: after``: which regimen it follows (weekly, with its own weekday) and how many days."""
    out: list[Problem] = []
    if rule.day is not None:
        out.append(((*wl, "day"), "not used with rule: after"))
    if rule.regimen is None:
        out.append(((*wl, "regimen"), "required with rule: after"))
    elif rule.regimen == reg.id:
        out.append(((*wl, "regimen"), "a regimen cannot follow itself"))
    elif rule.regimen not in by_id:
        out.append(
            (
                (*wl, "regimen"),
                f"unknown regimen {rule.regimen!r} in arm {arm_id}; known: {', '.join(by_id)}",
            )
        )
    else:
        ref = by_id[rule.regimen][1]
        if ref.frequency != "weekly":
            out.append(((*wl, "regimen"), f"{ref.id} is not weekly"))
        elif ref.weekday is not None and ref.weekday.rule == "after":
            out.append(
                (
                    (*wl, "regimen"),
                    f"{ref.id} is itself placed after another regimen; point at the one with its own weekday",
                )
            )
    if rule.days is None:
        out.append(((*wl, "days"), "required with rule: after"))
    elif not 0 <= rule.days <= 6:
        out.append(((*wl, "days"), f"must be 0 to 6, got {rule.days}"))
    elif rule.regimen is not None and rule.regimen in reg.never_same_day_as and rule.days == 0:
        out.append(((*wl, "days"), f"0 puts {reg.id} on the {rule.regimen} day, which never_same_day_as forbids"))
    return out


def _never_same_day_problems(
    arm_id: str, reg: Regimen, by_id: Mapping[str, tuple[int, Regimen]], base: tuple[str | int, ...]
) -> list[Problem]:
    """Each regimen a regimen avoids exists, is weekly, and does not fall on the same day."""
    out: list[Problem] = []
    rule = reg.weekday
    for j, other in enumerate(reg.never_same_day_as):
        nl = (*base, "never_same_day_as", j)
        if other == reg.id:
            out.append((nl, "a regimen cannot avoid itself"))
        elif other not in by_id:
            out.append((nl, f"unknown regimen {other!r} in arm {arm_id}"))
        else:
            o = by_id[other][1]
            if o.frequency == "daily":
                out.append((nl, f"{other} is daily; {reg.id} could never be taken"))
            elif (
                rule is not None
                and rule.rule == "fixed"
                and o.weekday is not None
                and o.weekday.rule == "fixed"
                and rule.day == o.weekday.day
                and rule.day is not None
            ):
                out.append(
                    (
                        (*base, "weekday", "day"),
                        f"{weekday_key(rule.day)} is also the {other} day, which never_same_day_as forbids",
                    )
                )
            elif (
                o.weekday is not None
                and o.weekday.rule == "after"
                and o.weekday.regimen == reg.id
                and o.weekday.days == 0
            ):
                out.append((nl, f"{other} is placed 0 days after {reg.id}: the same day"))
    return out


def _visit_weeks(proto: Protocol) -> dict[int, int]:
    """Each visit week and the index of its first visit, in file order."""
    weeks: dict[int, int] = {}
    for i, visit in enumerate(proto.visits):
        weeks.setdefault(visit.week, i)
    return weeks


def _visit_problems(proto: Protocol) -> list[Problem]:
    """Visits once per week, in week order, windows that do not overlap; reminder offsets."""
    out: list[Problem] = []
    weeks_seen: dict[int, int] = {}
    previous: tuple[int, Visit] | None = None
    for i, visit in enumerate(proto.visits):
        if visit.week in weeks_seen:
            out.append((("visits", i, "week"), f"duplicate week {visit.week} (also visits[{weeks_seen[visit.week]}])"))
            continue
        weeks_seen[visit.week] = i
        if previous is not None:
            j, prev = previous
            if visit.week < prev.week:
                out.append(
                    (
                        ("visits", i, "week"),
                        f"visits must be in week order; {visit.week} comes after week {prev.week}",
                    )
                )
            else:
                prev_end = prev.week * 7 + prev.window_days
                this_start = visit.week * 7 - visit.window_days
                if this_start <= prev_end:
                    out.append(
                        (
                            ("visits", i, "window_days"),
                            f"window of week {visit.week} (±{visit.window_days} days, from day "
                            f"{this_start}) overlaps the window of week {prev.week} in visits[{j}] "
                            f"(±{prev.window_days} days, to day {prev_end})",
                        )
                    )
        previous = (i, visit)
    for i, offset in enumerate(proto.visit_reminders.offsets_days):
        if offset > 0:
            out.append(
                (
                    ("visit_reminders", "offsets_days", i),
                    f"must be <= 0 (days before the visit; 0 = that morning), got {offset}",
                )
            )
    if len(set(proto.visit_reminders.offsets_days)) != len(proto.visit_reminders.offsets_days):
        out.append((("visit_reminders", "offsets_days"), "contains the same offset twice"))
    return out


def _unknown_instrument(known: Collection[str], instrument: str) -> str:
    return f"unknown questionnaire {instrument!r}; known: {', '.join(sorted(known)) or '(none)'}"


def _questionnaire_problems(proto: Protocol, known_instruments: Collection[str] | None) -> list[Problem]:
    """Each questionnaire rule: a known instrument, one kind of timing, existing visit weeks,
    nothing asked twice on the same day."""
    out: list[Problem] = []
    weeks_seen = _visit_weeks(proto)
    planned: dict[tuple[str, int, int], int] = {}
    for i, rule_q in enumerate(proto.questionnaires):
        ql: tuple[str | int, ...] = ("questionnaires", i)
        if known_instruments is not None and rule_q.instrument not in known_instruments:
            out.append(((*ql, "instrument"), _unknown_instrument(known_instruments, rule_q.instrument)))
        if (rule_q.on_day is None) == (rule_q.daily_before_visit is None):
            out.append((ql, "give exactly one of on_day or daily_before_visit"))
        out += _in_quiet_hours(proto, (*ql, "local_time"), rule_q.local_time)
        for j, week in enumerate(rule_q.visit_weeks):
            if week not in weeks_seen:
                out.append(
                    (
                        (*ql, "visit_weeks", j),
                        f"no visit at week {week}; visits are at weeks {', '.join(str(w) for w in weeks_seen)}",
                    )
                )
                continue
            for offset in rule_q.offsets_days:
                key = (rule_q.instrument, week, offset)
                if key in planned:
                    out.append(
                        (
                            (*ql, "visit_weeks", j),
                            f"{rule_q.instrument} is already asked at week {week} day {offset} by "
                            f"questionnaires[{planned[key]}]",
                        )
                    )
                planned[key] = i
    return out


def _checkin_problems(proto: Protocol, known_instruments: Collection[str] | None) -> list[Problem]:
    """The check-in's and the report's instruments exist; the check-in weeks are in order."""
    out: list[Problem] = []
    if known_instruments is not None and proto.checkin.instrument not in known_instruments:
        out.append((("checkin", "instrument"), _unknown_instrument(known_instruments, proto.checkin.instrument)))
    if known_instruments is not None and proto.report_instrument not in known_instruments:
        out.append((("report_instrument",), _unknown_instrument(known_instruments, proto.report_instrument)))
    if proto.checkin.end_week < proto.checkin.start_week:
        out.append((("checkin", "end_week"), f"must be >= start_week ({proto.checkin.start_week})"))
    return out


def _calendar_problems(proto: Protocol) -> list[Problem]:
    """No clinic day listed twice."""
    out: list[Problem] = []
    seen_days: set[int] = set()
    for i, day in enumerate(proto.clinic_days):
        if day in seen_days:
            out.append((("clinic_days", i), f"{weekday_key(day)} is listed twice"))
        seen_days.add(day)
    return out


def _staleness_problems(proto: Protocol) -> list[Problem]:
    """Each kind of message says how long it stays worth sending."""
    out: list[Problem] = []
    for name in Staleness.model_fields:
        limit: StaleLimit = getattr(proto.staleness, name)
        if limit.max_late is None and not limit.same_local_day:
            out.append((("staleness", name), "give max_late, same_local_day: true, or both"))
    return out
