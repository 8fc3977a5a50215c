"""Calendar rules: weekdays, visit dates on clinic days, quiet hours, local time in Dhaka."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.calendar import (
    WEEKDAY_NAMES,
    ClinicCalendar,
    DayClock,
    QuietHours,
    Timing,
    apply_quiet_hours,
    days_until_weekday,
    end_of_local_day,
    local_date,
    local_to_utc,
    nearest_clinic_day,
    next_weekday_on_or_after,
    parse_weekday,
    require_aware,
    schedule_visit,
    start_of_local_day,
    time_offset,
    to_local,
    visit_target,
    visit_window,
    weekday_key,
)

DHAKA = ZoneInfo("Asia/Dhaka")
LONDON = ZoneInfo("Europe/London")
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
BD_CLINIC = ClinicCalendar(frozenset({SUN, MON, TUE, WED, THU}))
NIGHT = QuietHours(time(22), time(7))

dates = st.dates(date(2025, 1, 1), date(2028, 12, 31))
walls = st.times().map(lambda t: t.replace(microsecond=0))


def dhaka(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=DHAKA)


# --------------------------------------------------------------------------- weekdays


@pytest.mark.parametrize(
    ("text", "expected"),
    [("monday", MON), ("Fri", FRI), ("FRIDAY", FRI), (" sat ", SAT), ("sun", SUN), (3, THU)],
)
def test_parse_weekday_accepts_names_abbreviations_and_numbers(text: str | int, expected: int) -> None:
    assert parse_weekday(text) == expected


@pytest.mark.parametrize("bad", ["fryday", "", "jumma", 7, -1, True])
def test_parse_weekday_refuses_anything_else(bad: str | int) -> None:
    with pytest.raises(ValueError):
        parse_weekday(bad)


def test_weekday_names_round_trip_and_match_python_numbering() -> None:
    for i, name in enumerate(WEEKDAY_NAMES):
        assert parse_weekday(name) == i
        assert weekday_key(i) == name
    assert date(2026, 11, 6).weekday() == parse_weekday("friday")  # a Friday


@given(dates, st.integers(0, 6))
def test_next_weekday_on_or_after_is_the_first_matching_day(day: date, weekday: int) -> None:
    found = next_weekday_on_or_after(day, weekday)
    assert found.weekday() == weekday
    assert 0 <= (found - day).days <= 6


def test_days_until_weekday_wraps_round_the_week() -> None:
    assert days_until_weekday(FRI, SAT) == 1
    assert days_until_weekday(FRI, WED) == 5
    assert days_until_weekday(FRI, FRI) == 0


# --------------------------------------------------------------------------- local time


def test_dhaka_is_utc_plus_six_without_daylight_saving() -> None:
    for month in range(1, 13):
        assert local_to_utc(date(2026, month, 15), time(9), DHAKA) == datetime(2026, month, 15, 3, tzinfo=UTC)


def test_local_helpers_return_utc_instants_for_local_days() -> None:
    assert start_of_local_day(date(2026, 11, 6), DHAKA) == datetime(2026, 11, 5, 18, tzinfo=UTC)
    assert end_of_local_day(date(2026, 11, 6), DHAKA) == datetime(2026, 11, 6, 18, tzinfo=UTC)
    instant = datetime(2026, 11, 5, 19, tzinfo=UTC)  # 01:00 on the 6th in Dhaka
    assert local_date(instant, DHAKA) == date(2026, 11, 6)
    assert to_local(instant, DHAKA).hour == 1
    assert local_to_utc(date(2026, 11, 6), time(9), DHAKA).tzinfo is UTC


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        require_aware(datetime(2026, 11, 6, 9))
    with pytest.raises(ValueError):
        to_local(datetime(2026, 11, 6, 9), DHAKA)
    with pytest.raises(ValueError):
        local_to_utc(date(2026, 11, 6), time(9, tzinfo=UTC), DHAKA)


@given(dates, walls)
def test_day_clock_matches_exact_conversion_in_dhaka(day: date, wall: time) -> None:
    clock = DayClock(DHAKA)
    assert clock.at(day, time_offset(wall), wall) == local_to_utc(day, wall, DHAKA)
    assert clock.midnight(day) == start_of_local_day(day, DHAKA)


@given(dates, walls)
def test_day_clock_matches_exact_conversion_across_daylight_saving(day: date, wall: time) -> None:
    clock = DayClock(LONDON)
    assert clock.at(day, time_offset(wall), wall) == local_to_utc(day, wall, LONDON)


def test_day_clock_knows_when_a_range_has_one_utc_offset() -> None:
    assert DayClock(DHAKA).fixed_offset(date(2026, 1, 1), date(2027, 12, 31)) == timedelta(hours=6)
    london = DayClock(LONDON)
    assert london.fixed_offset(date(2026, 3, 1), date(2026, 4, 30)) is None  # clocks go forward
    assert london.fixed_offset(date(2026, 4, 1), date(2026, 4, 30)) == timedelta(hours=1)
    assert london.fixed_offset(date(2026, 3, 29), date(2026, 3, 29)) is None  # the DST day


# --------------------------------------------------------------------------- visits and clinic days


def test_visit_target_is_baseline_plus_whole_weeks() -> None:
    assert visit_target(date(2026, 11, 1), 0) == date(2026, 11, 1)
    assert visit_target(date(2026, 11, 1), 4) == date(2026, 11, 29)
    assert visit_target(date(2026, 11, 1), 24) == date(2027, 4, 18)


def test_visit_window_is_inclusive_both_sides() -> None:
    assert visit_window(date(2026, 11, 29), 3) == (date(2026, 11, 26), date(2026, 12, 2))
    assert visit_window(date(2026, 11, 29), 0) == (date(2026, 11, 29), date(2026, 11, 29))
    with pytest.raises(ValueError):
        visit_window(date(2026, 11, 29), -1)


def test_clinic_days_exclude_the_bangladesh_weekend_and_holidays() -> None:
    clinic = ClinicCalendar(BD_CLINIC.clinic_weekdays, frozenset({date(2026, 12, 16)}))
    assert clinic.is_clinic_day(date(2026, 12, 13))  # Sunday
    assert clinic.is_clinic_day(date(2026, 12, 17))  # Thursday
    assert not clinic.is_clinic_day(date(2026, 12, 18))  # Friday
    assert not clinic.is_clinic_day(date(2026, 12, 19))  # Saturday
    assert not clinic.is_clinic_day(date(2026, 12, 16))  # Victory Day (Wednesday)


def test_visit_on_a_clinic_day_stays() -> None:
    vd = schedule_visit(date(2026, 11, 1), 4, 3, BD_CLINIC)  # target Sunday 29 Nov
    assert vd.date == vd.target == date(2026, 11, 29)
    assert not vd.moved and not vd.no_clinic_day_in_window and vd.in_window


def test_visit_target_on_friday_moves_to_thursday() -> None:
    # Baseline Friday 6 Nov 2026 -> week 4 target Friday 4 Dec; Thursday is 1 day away.
    vd = schedule_visit(date(2026, 11, 6), 4, 3, BD_CLINIC)
    assert vd.target == date(2026, 12, 4) and vd.target.weekday() == FRI
    assert vd.date == date(2026, 12, 3) and vd.date.weekday() == THU
    assert vd.moved and vd.in_window


def test_visit_target_on_saturday_moves_to_sunday() -> None:
    vd = schedule_visit(date(2026, 11, 7), 4, 3, BD_CLINIC)  # target Saturday 5 Dec
    assert vd.target.weekday() == SAT
    assert vd.date == date(2026, 12, 6) and vd.date.weekday() == SUN


def test_visit_target_on_a_holiday_moves_to_the_earlier_of_two_equally_near_days() -> None:
    clinic = ClinicCalendar(BD_CLINIC.clinic_weekdays, frozenset({date(2026, 12, 16)}))
    vd = schedule_visit(date(2026, 11, 18), 4, 3, clinic)  # target Wed 16 Dec, Victory Day
    assert vd.target == date(2026, 12, 16)
    assert vd.date == date(2026, 12, 15)  # Tuesday and Thursday tie: earlier wins


def test_friday_with_a_thursday_holiday_ties_wednesday_and_sunday_and_takes_wednesday() -> None:
    clinic = ClinicCalendar(BD_CLINIC.clinic_weekdays, frozenset({date(2026, 12, 3)}))
    vd = schedule_visit(date(2026, 11, 6), 4, 3, clinic)  # target Fri 4 Dec, Thu 3 Dec holiday
    assert vd.date == date(2026, 12, 2)  # Wed (-2) beats Sun 6 Dec (+2)


def test_visit_window_without_any_clinic_day_keeps_the_target_and_flags_it() -> None:
    clinic = ClinicCalendar(BD_CLINIC.clinic_weekdays, frozenset({date(2026, 12, 3)}))
    vd = schedule_visit(date(2026, 11, 6), 4, 1, clinic)  # Fri 4 Dec ±1: Thu (holiday)..Sat
    assert vd.date == vd.target == date(2026, 12, 4)
    assert vd.no_clinic_day_in_window and not vd.moved
    assert nearest_clinic_day(date(2026, 12, 4), 1, clinic) is None
    assert nearest_clinic_day(date(2026, 12, 4), 2, clinic) == date(2026, 12, 2)


def test_weekend_target_with_a_zero_day_window_is_flagged() -> None:
    vd = schedule_visit(date(2026, 11, 6), 4, 0, BD_CLINIC)
    assert vd.no_clinic_day_in_window and vd.date == vd.target


def test_baseline_week_zero_is_never_moved() -> None:
    vd = schedule_visit(date(2026, 11, 6), 0, 0, BD_CLINIC)  # a Friday
    assert vd.date == date(2026, 11, 6) and not vd.moved and not vd.no_clinic_day_in_window


def test_an_agreed_date_wins_even_outside_the_window() -> None:
    vd = schedule_visit(date(2026, 11, 1), 4, 3, BD_CLINIC, agreed=date(2026, 12, 10))
    assert vd.date == date(2026, 12, 10) and vd.rescheduled and vd.moved and not vd.in_window


@given(
    baseline=dates,
    weeks=st.integers(1, 30),
    window=st.integers(0, 10),
    holidays=st.frozensets(dates, max_size=40),
    clinic_days=st.frozensets(st.integers(0, 6), min_size=1),
)
def test_moved_visit_is_the_nearest_clinic_day_inside_the_window(
    baseline: date, weeks: int, window: int, holidays: frozenset[date], clinic_days: frozenset[int]
) -> None:
    clinic = ClinicCalendar(clinic_days, holidays)
    vd = schedule_visit(baseline, weeks, window, clinic)
    target = baseline + timedelta(weeks=weeks)
    open_days = [
        target + timedelta(days=d)
        for d in range(-window, window + 1)
        if clinic.is_clinic_day(target + timedelta(days=d))
    ]
    if not open_days:
        assert vd.no_clinic_day_in_window and vd.date == target
    else:
        best = min(open_days, key=lambda d: (abs((d - target).days), d))
        assert vd.date == best and clinic.is_clinic_day(vd.date) and vd.in_window


# --------------------------------------------------------------------------- quiet hours


@pytest.mark.parametrize(
    ("wall", "quiet"),
    [
        (time(22), True),
        (time(23, 59), True),
        (time(0), True),
        (time(6, 59), True),
        (time(7), False),
        (time(12), False),
        (time(21, 59), False),
    ],
)
def test_quiet_hours_cross_midnight_and_end_exclusive(wall: time, quiet: bool) -> None:
    assert NIGHT.contains(wall) is quiet
    assert NIGHT.crosses_midnight


def test_quiet_hours_within_one_day_also_work() -> None:
    siesta = QuietHours(time(13), time(15))
    assert siesta.contains(time(13)) and siesta.contains(time(14, 59))
    assert not siesta.contains(time(15)) and not siesta.contains(time(12, 59))
    assert siesta.defer_local(date(2026, 11, 6), time(14)) == (date(2026, 11, 6), time(15))


def test_malformed_quiet_hours_are_refused() -> None:
    with pytest.raises(ValueError):
        QuietHours(time(22), time(22))
    with pytest.raises(ValueError):
        QuietHours(time(22, tzinfo=UTC), time(7))


def test_defer_local_moves_to_the_end_of_quiet_hours() -> None:
    day = date(2026, 11, 6)
    assert NIGHT.defer_local(day, time(23, 10)) == (date(2026, 11, 7), time(7))
    assert NIGHT.defer_local(day, time(5)) == (day, time(7))
    assert NIGHT.defer_local(day, time(12)) == (day, time(12))


def test_bot_timed_message_waits_participant_time_is_honoured_safety_never_waits() -> None:
    at_2230 = dhaka(2026, 11, 6, 22, 30)
    at_0430 = dhaka(2026, 11, 7, 4, 30)
    assert apply_quiet_hours(at_2230, Timing.BOT, NIGHT, DHAKA) == dhaka(2026, 11, 7, 7)
    assert apply_quiet_hours(at_0430, Timing.BOT, NIGHT, DHAKA) == dhaka(2026, 11, 7, 7)
    assert apply_quiet_hours(at_0430, Timing.PARTICIPANT, NIGHT, DHAKA) == at_0430
    assert apply_quiet_hours(at_2230, Timing.SAFETY, NIGHT, DHAKA) == at_2230
    assert apply_quiet_hours(at_2230, Timing.SAFETY, NIGHT, DHAKA).tzinfo is UTC
    noon = dhaka(2026, 11, 6, 12)
    assert apply_quiet_hours(noon, Timing.BOT, NIGHT, DHAKA) == noon


@given(st.datetimes(datetime(2025, 1, 1), datetime(2028, 12, 31)))
def test_deferred_instants_are_never_quiet_and_never_earlier(naive: datetime) -> None:
    instant = naive.replace(tzinfo=DHAKA)
    out = NIGHT.defer(instant, DHAKA)
    assert out >= instant
    assert not NIGHT.is_quiet(out, DHAKA)
    assert out - instant <= timedelta(hours=9)  # at most the length of quiet hours
    if not NIGHT.is_quiet(instant, DHAKA):
        assert out == instant
