"""The planner: 24 weeks of both arms walked through, day by day, in Dhaka local time."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.calendar import QuietHours
from scheduler.planner import (
    MessageKind,
    ParticipantStatus,
    PlanError,
    PlanInput,
    PlannedMessage,
    RecordedVisit,
    VisitOutcome,
    dose_followup_window,
    dose_no_answer_due,
    make_dose_followup,
    make_remind_later,
    plan,
    remind_later_window,
    replan_diff,
    resolve_dose_weekdays,
    validate_plan_input,
    visit_schedule,
)
from scheduler.protocol import Protocol, load_protocol, protocol_from_mapping

DHAKA = ZoneInfo("Asia/Dhaka")
SHIPPED = Path(__file__).resolve().parents[1] / "content" / "protocol.yaml"
PROTOCOL = load_protocol(SHIPPED)
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
K = MessageKind

BASELINE = date(2026, 11, 1)  # a Sunday
BEFORE = datetime(2026, 10, 31, 12, tzinfo=DHAKA)  # the day before baseline
QUIET = QuietHours(time(22), time(7))


def dhaka(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=DHAKA)


def local(instant: datetime) -> datetime:
    return instant.astimezone(DHAKA)


def arm_a(**kw: Any) -> PlanInput:
    return PlanInput("BSM-001", "A", kw.pop("baseline", BASELINE), **kw)


def arm_b(mtx: int | str = FRI, **kw: Any) -> PlanInput:
    weekdays = {"methotrexate": mtx, **kw.pop("extra_weekdays", {})}
    return PlanInput("BSM-002", "B", kw.pop("baseline", BASELINE), dose_weekdays=weekdays, **kw)


def of_kind(messages: list[PlannedMessage], kind: MessageKind) -> list[PlannedMessage]:
    return [m for m in messages if m.kind is kind]


def by_key(messages: list[PlannedMessage]) -> dict[str, PlannedMessage]:
    return {m.key: m for m in messages}


def shipped_data() -> dict[str, Any]:
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


# --------------------------------------------------------------------------- arm A, 24 weeks


def test_arm_a_walkthrough_counts_every_kind_of_message() -> None:
    messages = plan(arm_a(), PROTOCOL, BEFORE)
    assert Counter(m.kind for m in messages) == {
        K.DOSE_REMINDER: 168,  # 24 weeks x 7 days
        K.DOSE_NO_ANSWER_CLOSE: 168,
        K.VISIT_REMINDER: 9,  # weeks 4, 12, 24 x (-7, -1, 0)
        K.VISIT_WINDOW_CHECK: 3,
        K.QUESTIONNAIRE_PROMPT: 8,  # patient global + HAQ-DI at weeks 0, 4, 12, 24
        K.CHECKIN_PROMPT: 24,  # weeks 1..24
    }


def test_arm_a_has_one_baricitinib_reminder_a_day_at_the_default_time() -> None:
    doses = of_kind(plan(arm_a(), PROTOCOL, BEFORE), K.DOSE_REMINDER)
    days = [local(m.due_at).date() for m in doses]
    assert days == [BASELINE + timedelta(days=i) for i in range(168)]
    assert days[-1] == date(2027, 4, 17)
    assert {local(m.due_at).time() for m in doses} == {time(9)}
    first = doses[0]
    assert first.key == "dose:baricitinib:2026-11-01"
    assert first.payload == {
        "regimen": "baricitinib",
        "drug": "baricitinib",
        "dose": "4 mg",
        "dose_amount": 4.0,
        "dose_unit": "mg",
        "frequency": "daily",
        "local_time": "09:00",
        "participant_time": False,
        "date": "2026-11-01",
    }
    assert all(m.respects_quiet_hours for m in doses)  # the default time is the bot's choice


def test_arm_a_reminders_follow_the_participants_time() -> None:
    doses = of_kind(plan(arm_a(reminder_time=time(21, 15)), PROTOCOL, BEFORE), K.DOSE_REMINDER)
    assert len(doses) == 168
    assert {local(m.due_at).time() for m in doses} == {time(21, 15)}
    assert not any(m.respects_quiet_hours for m in doses)
    assert all(m.payload["participant_time"] is True for m in doses)


def test_each_dose_is_closed_as_no_answer_at_the_start_of_the_next_day() -> None:
    messages = by_key(plan(arm_a(), PROTOCOL, BEFORE))
    close = messages["dose:baricitinib:2026-11-01:no_answer"]
    assert close.kind is K.DOSE_NO_ANSWER_CLOSE
    assert local(close.due_at) == dhaka(2026, 11, 2)
    assert local(close.stale_after) == dhaka(2026, 11, 16)
    assert close.payload == {
        "regimen": "baricitinib",
        "date": "2026-11-01",
        "reminder_key": "dose:baricitinib:2026-11-01",
    }
    assert not close.respects_quiet_hours  # bookkeeping, not a message
    assert close.due_at >= messages["dose:baricitinib:2026-11-01"].stale_after


# --------------------------------------------------------------------------- arm B, 24 weeks


def test_arm_b_walkthrough_counts_every_kind_of_message() -> None:
    messages = plan(arm_b(), PROTOCOL, BEFORE)
    assert Counter(m.kind for m in messages) == {
        K.DOSE_REMINDER: 48,  # 24 methotrexate + 24 folic acid
        K.DOSE_NO_ANSWER_CLOSE: 48,
        K.VISIT_REMINDER: 9,
        K.VISIT_WINDOW_CHECK: 3,
        K.QUESTIONNAIRE_PROMPT: 8,
        K.CHECKIN_PROMPT: 24,
    }


def test_arm_b_methotrexate_only_on_its_weekday_with_25_mg_named() -> None:
    doses = of_kind(plan(arm_b(FRI), PROTOCOL, BEFORE), K.DOSE_REMINDER)
    mtx = [m for m in doses if m.payload["regimen"] == "methotrexate"]
    assert len(mtx) == 24
    assert {local(m.due_at).weekday() for m in mtx} == {FRI}
    assert {local(m.due_at).time() for m in mtx} == {time(9)}
    assert local(mtx[0].due_at).date() == date(2026, 11, 6)
    assert local(mtx[-1].due_at).date() == date(2027, 4, 16)
    assert mtx[0].key == "dose:methotrexate:2026-11-06"
    for m in mtx:
        assert m.payload["dose"] == "25 mg" and m.payload["dose_amount"] == 25.0
        assert m.payload["weekday"] == "friday" and m.payload["frequency"] == "weekly"
    gaps = {(b.due_at - a.due_at) for a, b in pairwise(mtx)}
    assert gaps == {timedelta(days=7)}  # never twice in a week


def test_arm_b_folic_acid_the_day_after_methotrexate_never_the_same_day() -> None:
    doses = of_kind(plan(arm_b(FRI), PROTOCOL, BEFORE), K.DOSE_REMINDER)
    mtx = [local(m.due_at).date() for m in doses if m.payload["regimen"] == "methotrexate"]
    folic = [m for m in doses if m.payload["regimen"] == "folic_acid"]
    assert len(folic) == 24
    assert [local(m.due_at).date() for m in folic] == [d + timedelta(days=1) for d in mtx]
    assert {m.payload["weekday"] for m in folic} == {"saturday"}
    assert {m.payload["dose"] for m in folic} == {"5 mg"}
    assert not set(mtx) & {local(m.due_at).date() for m in folic}


def test_folic_acid_day_can_be_overridden_but_never_to_the_methotrexate_day() -> None:
    doses = of_kind(plan(arm_b(FRI, extra_weekdays={"folic_acid": "wed"}), PROTOCOL, BEFORE), K.DOSE_REMINDER)
    folic = [local(m.due_at).date() for m in doses if m.payload["regimen"] == "folic_acid"]
    mtx = [local(m.due_at).date() for m in doses if m.payload["regimen"] == "methotrexate"]
    assert {d.weekday() for d in folic} == {WED}
    assert [f - m for f, m in zip(folic, mtx, strict=True)] == [timedelta(days=5)] * 24
    with pytest.raises(PlanError, match="folic_acid cannot be on friday"):
        plan(arm_b(FRI, extra_weekdays={"folic_acid": FRI}), PROTOCOL, BEFORE)


def test_arm_b_needs_the_methotrexate_weekday() -> None:
    with pytest.raises(PlanError, match="methotrexate weekday"):
        plan(PlanInput("BSM-003", "B", BASELINE), PROTOCOL, BEFORE)


@pytest.mark.parametrize(
    ("participant", "message"),
    [
        (PlanInput("X", "C", BASELINE), "unknown arm 'C'"),
        (PlanInput("X", "A", BASELINE, dose_weekdays={"baricitinib": 1}), "is daily"),
        (PlanInput("X", "B", BASELINE, dose_weekdays={"methotrexate": 4, "aspirin": 1}), "no regimen 'aspirin'"),
    ],
)
def test_participant_settings_that_do_not_fit_the_protocol_are_refused(participant: PlanInput, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan(participant, PROTOCOL, BEFORE)
    with pytest.raises(PlanError, match=message):
        validate_plan_input(participant, PROTOCOL)


def test_plan_input_refuses_naive_or_wrongly_typed_values() -> None:
    with pytest.raises(PlanError, match="baseline must be a date"):
        PlanInput("X", "A", datetime(2026, 11, 1, 9))
    with pytest.raises(PlanError, match="naive"):
        PlanInput("X", "A", BASELINE, reminder_time=time(9, tzinfo=UTC))
    with pytest.raises(PlanError):
        PlanInput("X", "A", BASELINE, status="sleeping")  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="unknown weekday"):
        PlanInput("X", "B", BASELINE, dose_weekdays={"methotrexate": "fryday"})
    with pytest.raises(PlanError, match="no visit at week 8"):
        validate_plan_input(PlanInput("X", "A", BASELINE, recorded_visits={8: "done"}), PROTOCOL)
    with pytest.raises(ValueError, match="timezone-aware"):
        plan(arm_a(), PROTOCOL, datetime(2026, 11, 1))


def test_resolved_weekdays_are_what_the_schedule_shows() -> None:
    assert resolve_dose_weekdays(arm_b("mon"), PROTOCOL) == {"methotrexate": MON, "folic_acid": TUE}
    assert resolve_dose_weekdays(arm_b(SUN), PROTOCOL) == {"methotrexate": SUN, "folic_acid": MON}
    assert resolve_dose_weekdays(arm_a(), PROTOCOL) == {}


# --------------------------------------------------------------------------- visits


def _visit_days(messages: list[PlannedMessage], week: int) -> list[tuple[str, datetime]]:
    return [(m.key, local(m.due_at)) for m in messages if m.key.startswith(f"visit:{week}:")]


def test_visit_reminders_seven_days_one_day_and_the_morning_before_each_visit() -> None:
    messages = plan(arm_a(), PROTOCOL, BEFORE)
    assert _visit_days(messages, 4) == [
        ("visit:4:remind:-7", dhaka(2026, 11, 22, 8)),
        ("visit:4:remind:-1", dhaka(2026, 11, 28, 8)),
        ("visit:4:remind:0", dhaka(2026, 11, 29, 8)),
        ("visit:4:window_check", dhaka(2026, 12, 3, 9)),  # window 26 Nov - 2 Dec
    ]
    # Week 12 target Sunday 24 Jan 2027 is Shab-e-Barat: moved to Monday 25 Jan.
    assert _visit_days(messages, 12) == [
        ("visit:12:remind:-7", dhaka(2027, 1, 18, 8)),
        ("visit:12:remind:-1", dhaka(2027, 1, 24, 8)),
        ("visit:12:remind:0", dhaka(2027, 1, 25, 8)),
        ("visit:12:window_check", dhaka(2027, 2, 1, 9)),
    ]
    assert _visit_days(messages, 24) == [
        ("visit:24:remind:-7", dhaka(2027, 4, 11, 8)),
        ("visit:24:remind:-1", dhaka(2027, 4, 17, 8)),
        ("visit:24:remind:0", dhaka(2027, 4, 18, 8)),
        ("visit:24:window_check", dhaka(2027, 4, 26, 9)),
    ]
    assert not _visit_days(messages, 0)  # baseline: no reminders, no window check


def test_visit_reminder_payload_describes_the_visit() -> None:
    reminder = by_key(plan(arm_a(), PROTOCOL, BEFORE))["visit:12:remind:-1"]
    assert reminder.kind is K.VISIT_REMINDER and reminder.respects_quiet_hours
    assert reminder.payload == {
        "week": 12,
        "visit_date": "2027-01-25",
        "window_start": "2027-01-17",
        "window_end": "2027-01-31",
        "offset_days": -1,
        "target_date": "2027-01-24",
        "moved": True,
        "no_clinic_day_in_window": False,
        "rescheduled": False,
    }
    check = by_key(plan(arm_a(), PROTOCOL, BEFORE))["visit:12:window_check"]
    assert check.kind is K.VISIT_WINDOW_CHECK and not check.respects_quiet_hours
    assert check.payload == {
        "week": 12,
        "visit_date": "2027-01-25",
        "window_start": "2027-01-17",
        "window_end": "2027-01-31",
    }


def _visit_dates(baseline: date) -> dict[int, date]:
    messages = by_key(plan(arm_a(baseline=baseline), PROTOCOL, baseline_eve(baseline)))
    return {w: date.fromisoformat(str(messages[f"visit:{w}:remind:0"].payload["visit_date"])) for w in (4, 12, 24)}


def baseline_eve(baseline: date) -> datetime:
    return datetime.combine(baseline - timedelta(days=1), time(12), tzinfo=DHAKA)


def test_visit_targets_on_friday_move_to_thursday() -> None:
    dates = _visit_dates(date(2026, 11, 6))  # Friday baseline: every target is a Friday
    assert dates == {4: date(2026, 12, 3), 12: date(2027, 1, 28), 24: date(2027, 4, 22)}
    assert {d.weekday() for d in dates.values()} == {THU}


def test_visit_targets_on_saturday_move_to_sunday() -> None:
    dates = _visit_dates(date(2026, 11, 7))
    assert dates == {4: date(2026, 12, 6), 12: date(2027, 1, 31), 24: date(2027, 4, 25)}
    assert {d.weekday() for d in dates.values()} == {SUN}


def test_visit_target_on_victory_day_moves_to_the_earlier_nearest_clinic_day() -> None:
    dates = _visit_dates(date(2026, 11, 18))  # week 4 target Wednesday 16 Dec 2026
    assert dates[4] == date(2026, 12, 15)
    reminders = by_key(plan(arm_a(baseline=date(2026, 11, 18)), PROTOCOL, BEFORE))
    assert local(reminders["visit:4:remind:0"].due_at) == dhaka(2026, 12, 15, 8)
    assert local(reminders["visit:4:remind:-1"].due_at) == dhaka(2026, 12, 14, 8)


def test_a_window_without_clinic_days_keeps_the_target_and_flags_it() -> None:
    data = shipped_data()
    data["clinic_days"] = ["monday"]
    data["visits"][1]["window_days"] = 2
    proto = protocol_from_mapping(data)
    baseline = date(2026, 11, 5)  # Thursday: week 4 target Thu 3 Dec, window Tue-Sat
    reminder = by_key(plan(arm_a(baseline=baseline), proto, BEFORE))["visit:4:remind:0"]
    assert reminder.payload["visit_date"] == "2026-12-03"
    assert reminder.payload["no_clinic_day_in_window"] is True
    assert reminder.payload["moved"] is False


def test_visit_schedule_lists_every_visit_with_its_window() -> None:
    visits = visit_schedule(arm_a(), PROTOCOL)
    assert [(v.week, v.date) for v in visits] == [
        (0, BASELINE),
        (4, date(2026, 11, 29)),
        (12, date(2027, 1, 25)),
        (24, date(2027, 4, 18)),
    ]
    agreed = visit_schedule(arm_a(visit_dates={4: date(2026, 12, 1)}), PROTOCOL)
    assert agreed[1].date == date(2026, 12, 1) and agreed[1].rescheduled


def test_an_agreed_visit_date_moves_its_reminders() -> None:
    messages = by_key(plan(arm_a(visit_dates={4: date(2026, 12, 1)}), PROTOCOL, BEFORE))
    assert local(messages["visit:4:remind:0:2026-12-01"].due_at) == dhaka(2026, 12, 1, 8)
    assert messages["visit:4:remind:0:2026-12-01"].payload["rescheduled"] is True
    assert "visit:4:remind:0" not in messages  # the old date's reminders are gone


def test_an_agreed_date_after_the_window_moves_the_window_check_after_it() -> None:
    messages = by_key(plan(arm_a(visit_dates={4: date(2026, 12, 10)}), PROTOCOL, BEFORE))
    check = messages["visit:4:window_check:2026-12-10"]
    assert local(check.due_at).date() > date(2026, 12, 10)
    assert "visit:4:window_check" not in messages


@pytest.mark.parametrize("outcome", ["done", "missed", RecordedVisit(VisitOutcome.DONE, date(2026, 11, 30))])
def test_a_recorded_visit_gets_no_more_reminders_questionnaires_or_window_check(
    outcome: Any,
) -> None:
    before = plan(arm_a(switches={"raynaud": True}), PROTOCOL, BEFORE)
    after = plan(arm_a(switches={"raynaud": True}, recorded_visits={4: outcome}), PROTOCOL, BEFORE)
    gone = {m.key for m in before} - {m.key for m in after}
    assert gone == (
        {
            "visit:4:remind:-7",
            "visit:4:remind:-1",
            "visit:4:remind:0",
            "visit:4:window_check",
            "questionnaire:patient_global:4:0",
            "questionnaire:haq_di:4:0",
        }
        | {f"questionnaire:raynaud_condition_score:4:{d}" for d in range(-7, 0)}
    )
    assert {m.key for m in after} <= {m.key for m in before}


# --------------------------------------------------------------------------- questionnaires, check-ins


def test_visit_questionnaires_on_each_visit_day() -> None:
    prompts = of_kind(plan(arm_a(), PROTOCOL, BEFORE), K.QUESTIONNAIRE_PROMPT)
    assert [(m.key, local(m.due_at)) for m in prompts] == [
        ("questionnaire:patient_global:0:0", dhaka(2026, 11, 1, 10)),
        ("questionnaire:haq_di:0:0", dhaka(2026, 11, 1, 10)),
        ("questionnaire:patient_global:4:0", dhaka(2026, 11, 29, 10)),
        ("questionnaire:haq_di:4:0", dhaka(2026, 11, 29, 10)),
        ("questionnaire:patient_global:12:0", dhaka(2027, 1, 25, 10)),
        ("questionnaire:haq_di:12:0", dhaka(2027, 1, 25, 10)),
        ("questionnaire:patient_global:24:0", dhaka(2027, 4, 18, 10)),
        ("questionnaire:haq_di:24:0", dhaka(2027, 4, 18, 10)),
    ]
    assert prompts[3].payload == {
        "instrument": "haq_di",
        "week": 4,
        "offset_days": 0,
        "date": "2026-11-29",
        "visit_date": "2026-11-29",
    }


def test_raynaud_score_daily_for_the_seven_days_before_each_visit_only_when_switched_on() -> None:
    off = plan(arm_a(), PROTOCOL, BEFORE)
    assert not [m for m in off if "raynaud" in m.key]
    on = plan(arm_a(switches={"raynaud": True}), PROTOCOL, BEFORE)
    rcs = [m for m in on if "raynaud" in m.key]
    assert len(rcs) == 21
    week12 = [local(m.due_at) for m in rcs if m.payload["week"] == 12]
    assert week12 == [dhaka(2027, 1, d, 20) for d in range(18, 25)]  # visit Mon 25 Jan
    assert rcs[0].key == "questionnaire:raynaud_condition_score:4:-7"


def test_weekly_checkin_every_sunday_from_week_1_to_week_24() -> None:
    checkins = of_kind(plan(arm_b(), PROTOCOL, BEFORE), K.CHECKIN_PROMPT)
    assert [m.key for m in checkins] == [f"checkin:{w}" for w in range(1, 25)]
    assert [local(m.due_at) for m in checkins] == [
        datetime.combine(BASELINE + timedelta(weeks=w), time(10), tzinfo=DHAKA) for w in range(1, 25)
    ]
    assert checkins[0].payload == {"week": 1, "instrument": "weekly_checkin", "date": "2026-11-08"}


def test_checkin_week_k_falls_within_study_week_k() -> None:
    baseline = date(2026, 11, 3)  # Tuesday
    checkins = of_kind(plan(arm_a(baseline=baseline), PROTOCOL, BEFORE), K.CHECKIN_PROMPT)
    for m in checkins:
        week = int(str(m.payload["week"]))
        offset = (local(m.due_at).date() - baseline).days
        assert 7 * week <= offset <= 7 * week + 6
        assert local(m.due_at).weekday() == SUN


# --------------------------------------------------------------------------- quiet hours


def test_a_participant_chosen_0430_reminder_is_honoured_inside_quiet_hours() -> None:
    doses = of_kind(plan(arm_a(reminder_time=time(4, 30)), PROTOCOL, BEFORE), K.DOSE_REMINDER)
    assert {local(m.due_at).time() for m in doses} == {time(4, 30)}
    assert not any(m.respects_quiet_hours for m in doses)
    assert local(doses[0].stale_after) == dhaka(2026, 11, 1, 7, 30)


def test_bot_timed_messages_are_never_due_in_quiet_hours() -> None:
    for participant in (arm_a(switches={"raynaud": True}), arm_b(SAT)):
        for m in plan(participant, PROTOCOL, BEFORE):
            if m.respects_quiet_hours:
                assert not QUIET.contains(local(m.due_at).time()), m.key


def test_a_bot_time_inside_quiet_hours_would_still_wait_for_them_to_end() -> None:
    # load_protocol refuses such a file; the planner defends itself anyway.
    data = shipped_data()
    data["checkin"]["local_time"] = "23:30"
    proto = Protocol.model_validate(data)
    checkins = of_kind(plan(arm_a(), proto, BEFORE), K.CHECKIN_PROMPT)
    assert local(checkins[0].due_at) == dhaka(2026, 11, 9, 7)  # Monday 07:00, not Sunday 23:30
    assert local(checkins[0].stale_after) == dhaka(2026, 11, 10, 7)


# --------------------------------------------------------------------------- pause, stop, withdrawal


def test_paused_without_end_date_plans_nothing() -> None:
    assert plan(arm_a(status=ParticipantStatus.PAUSED), PROTOCOL, BEFORE) == []


def test_paused_until_a_date_plans_only_from_that_local_midnight() -> None:
    active = plan(arm_b(), PROTOCOL, BEFORE)
    paused = plan(arm_b(status="paused", paused_until=date(2027, 1, 1)), PROTOCOL, BEFORE)
    resume = dhaka(2027, 1, 1)
    assert paused == [m for m in active if m.due_at >= resume]
    assert paused and min(m.due_at for m in paused) >= resume


def test_paused_mid_course_still_closes_doses_already_reminded() -> None:
    now = dhaka(2026, 12, 10, 12)
    paused = plan(arm_a(status="paused"), PROTOCOL, now)
    assert paused, "doses reminded before the pause must still be closed"
    assert {m.kind for m in paused} == {K.DOSE_NO_ANSWER_CLOSE}
    assert max(str(m.payload["date"]) for m in paused) == "2026-12-10"
    assert all(m.stale_after > now for m in paused)


@pytest.mark.parametrize("status", ["withdrawn", "stopped", "invited"])
def test_withdrawn_stopped_or_not_yet_linked_participants_get_an_empty_plan(status: str) -> None:
    assert plan(arm_a(status=status), PROTOCOL, BEFORE) == []
    assert plan(arm_b(status=status), PROTOCOL, dhaka(2027, 1, 1)) == []


# --------------------------------------------------------------------------- staleness and now


def test_staleness_per_kind() -> None:
    messages = by_key(plan(arm_a(switches={"raynaud": True}), PROTOCOL, BEFORE))
    dose = messages["dose:baricitinib:2026-11-02"]
    assert local(dose.stale_after) == dhaka(2026, 11, 2, 12)  # 3 hours late at most
    visit = messages["visit:4:remind:-1"]
    assert local(visit.stale_after) == dhaka(2026, 11, 29)  # end of that day
    checkin = messages["checkin:1"]
    assert checkin.stale_after - checkin.due_at == timedelta(days=1)
    check = messages["visit:4:window_check"]
    assert check.stale_after - check.due_at == timedelta(days=14)
    rcs = messages["questionnaire:raynaud_condition_score:4:-1"]
    assert local(rcs.stale_after) == dhaka(2026, 11, 29)


def test_a_late_evening_dose_reminder_is_not_sent_after_midnight() -> None:
    dose = of_kind(plan(arm_a(reminder_time=time(23)), PROTOCOL, BEFORE), K.DOSE_REMINDER)[0]
    assert local(dose.due_at) == dhaka(2026, 11, 1, 23)
    assert local(dose.stale_after) == dhaka(2026, 11, 2)  # not 02:00: never a next-day dose


def test_now_keeps_messages_until_they_are_stale() -> None:
    keys = {m.key for m in plan(arm_a(), PROTOCOL, dhaka(2026, 11, 3, 10, 30))}
    assert "dose:baricitinib:2026-11-03" in keys  # due 09:00, still worth sending until 12:00
    assert "dose:baricitinib:2026-11-02" not in keys
    assert "dose:baricitinib:2026-11-02:no_answer" in keys  # due at midnight, kept 14 days
    assert "questionnaire:haq_di:0:0" not in keys
    keys_at_noon = {m.key for m in plan(arm_a(), PROTOCOL, dhaka(2026, 11, 3, 12))}
    assert "dose:baricitinib:2026-11-03" not in keys_at_noon


def test_nothing_is_planned_after_the_last_window() -> None:
    assert plan(arm_b(), PROTOCOL, dhaka(2027, 5, 20)) == []
    last = plan(arm_a(), PROTOCOL, BEFORE)[-1]
    assert last.key == "visit:24:window_check"


def test_horizon_limits_how_far_ahead_rows_are_made() -> None:
    now = dhaka(2026, 11, 10, 12)
    week = plan(arm_a(), PROTOCOL, now, timedelta(days=7))
    assert week == [m for m in plan(arm_a(), PROTOCOL, now) if m.due_at < now + timedelta(days=7)]
    assert max(m.due_at for m in week) < now + timedelta(days=7)


# --------------------------------------------------------------------------- properties

participants = st.builds(
    lambda arm, baseline, wall, mtx, folic, raynaud: PlanInput(
        "BSM-H",
        arm,
        baseline,
        reminder_time=wall,
        dose_weekdays=(
            {}
            if arm == "A"
            else {"methotrexate": mtx} | ({"folic_acid": folic} if folic is not None and folic != mtx else {})
        ),
        switches={"raynaud": raynaud},
    ),
    st.sampled_from(["A", "B"]),
    st.dates(date(2025, 6, 1), date(2027, 12, 31)),
    st.none() | st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    st.integers(0, 6),
    st.none() | st.integers(0, 6),
    st.booleans(),
)


def _now_for(participant: PlanInput, days: int, minutes: int) -> datetime:
    start = datetime.combine(participant.baseline, time(0), tzinfo=DHAKA)
    return start + timedelta(days=days, minutes=minutes)


@settings(max_examples=60, deadline=None)
@given(participants, st.integers(-5, 200), st.integers(0, 1439))
def test_plans_are_deterministic_unique_sorted_and_well_formed(participant: PlanInput, days: int, minutes: int) -> None:
    now = _now_for(participant, days, minutes)
    first = plan(participant, PROTOCOL, now)
    assert first == plan(participant, PROTOCOL, now)
    assert [m.key for m in first] == [m.key for m in plan(participant, PROTOCOL, now)]
    keys = [m.key for m in first]
    assert len(keys) == len(set(keys))
    assert [m.due_at for m in first] == sorted(m.due_at for m in first)
    for m in first:
        assert re.fullmatch(
            r"dose:[a-z_]+:\d{4}-\d\d-\d\d(:no_answer)?|visit:\d+:(remind:-?\d+|window_check)"
            r"|checkin:\d+|questionnaire:[a-z_]+:\d+:-?\d+",
            m.key,
        ), m.key
        assert m.due_at.tzinfo is UTC and m.stale_after.tzinfo is UTC
        assert m.stale_after > m.due_at and m.stale_after > now
        json.dumps(m.payload)
        if m.respects_quiet_hours:
            assert not QUIET.contains(local(m.due_at).time())
        if m.kind is K.DOSE_REMINDER and participant.reminder_time is not None:
            assert local(m.due_at).time() == participant.reminder_time


@settings(max_examples=60, deadline=None)
@given(participants, st.integers(-5, 200), st.integers(0, 1439), st.integers(1, 30))
def test_planning_later_only_drops_what_went_stale(
    participant: PlanInput, days: int, minutes: int, horizon_days: int
) -> None:
    early = plan(participant, PROTOCOL, _now_for(participant, -10, 0))
    now = _now_for(participant, days, minutes)
    later = plan(participant, PROTOCOL, now)
    assert later == [m for m in early if m.stale_after > now]
    horizon = timedelta(days=horizon_days)
    assert plan(participant, PROTOCOL, now, horizon) == [m for m in later if m.due_at < now + horizon]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 6), st.none() | st.integers(0, 6), st.dates(date(2026, 1, 1), date(2027, 6, 30)))
def test_methotrexate_and_folic_acid_never_share_a_day(mtx: int, folic: int | None, baseline: date) -> None:
    weekdays: dict[str, int] = {"folic_acid": folic} if folic is not None else {}
    participant = arm_b(mtx, extra_weekdays=weekdays, baseline=baseline)
    if folic == mtx:
        with pytest.raises(PlanError):
            plan(participant, PROTOCOL, baseline_eve(baseline))
        return
    doses = of_kind(plan(participant, PROTOCOL, baseline_eve(baseline)), K.DOSE_REMINDER)
    mtx_days = [local(m.due_at).date() for m in doses if m.payload["regimen"] == "methotrexate"]
    folic_days = [local(m.due_at).date() for m in doses if m.payload["regimen"] == "folic_acid"]
    assert len(mtx_days) == len(folic_days) == 24
    assert {d.weekday() for d in mtx_days} == {mtx}
    assert not set(mtx_days) & set(folic_days)
    assert all(0 < (f - m).days < 7 for m, f in zip(mtx_days, folic_days, strict=True))


# --------------------------------------------------------------------------- re-planning


def _stored(messages: list[PlannedMessage]) -> dict[str, datetime]:
    return {m.key: m.due_at for m in messages}


def test_replan_from_nothing_adds_everything_and_again_changes_nothing() -> None:
    messages = plan(arm_a(), PROTOCOL, BEFORE)
    diff = replan_diff({}, messages)
    assert list(diff.to_add) == messages and not diff.to_cancel and not diff.to_move
    assert replan_diff(_stored(messages), plan(arm_a(), PROTOCOL, BEFORE)).empty
    to_add, to_cancel, to_move = replan_diff({}, messages[:2])
    assert list(to_add) == messages[:2] and to_cancel == () and to_move == ()


def test_settime_moves_dose_reminders_and_nothing_else() -> None:
    old = plan(arm_a(), PROTOCOL, BEFORE)
    new = plan(arm_a(reminder_time=time(20)), PROTOCOL, BEFORE)
    diff = replan_diff(_stored(old), new)
    assert not diff.to_add and not diff.to_cancel
    assert len(diff.to_move) == 168
    assert {m.kind for m in diff.to_move} == {K.DOSE_REMINDER}
    assert {local(m.due_at).time() for m in diff.to_move} == {time(20)}


def test_changing_the_methotrexate_weekday_cancels_and_adds_doses() -> None:
    old = plan(arm_b(FRI), PROTOCOL, BEFORE)
    new = plan(arm_b(MON), PROTOCOL, BEFORE)
    diff = replan_diff(_stored(old), new)
    assert len(diff.to_cancel) == 96 and len(diff.to_add) == 96  # 48 reminders + 48 closes
    assert all(k.startswith("dose:") for k in diff.to_cancel)
    assert list(diff.to_cancel) == sorted(diff.to_cancel)
    assert not diff.to_move


def test_recording_a_visit_or_withdrawing_cancels_rows() -> None:
    old = plan(arm_a(), PROTOCOL, BEFORE)
    recorded = replan_diff(_stored(old), plan(arm_a(recorded_visits={12: "missed"}), PROTOCOL, BEFORE))
    assert set(recorded.to_cancel) == {
        "visit:12:remind:-7",
        "visit:12:remind:-1",
        "visit:12:remind:0",
        "visit:12:window_check",
        "questionnaire:patient_global:12:0",
        "questionnaire:haq_di:12:0",
    }
    withdrawn = replan_diff(_stored(old), plan(arm_a(status="withdrawn"), PROTOCOL, BEFORE))
    assert set(withdrawn.to_cancel) == {m.key for m in old}


def test_replan_with_a_horizon_leaves_rows_beyond_it_alone() -> None:
    full = plan(arm_a(), PROTOCOL, BEFORE)
    horizon_end = BEFORE + timedelta(days=7)
    window = plan(arm_a(), PROTOCOL, BEFORE, timedelta(days=7))
    diff = replan_diff(_stored(full), window, keep_from=horizon_end)
    assert diff.empty
    assert replan_diff(_stored(full), window).to_cancel  # without keep_from they would go


def test_replan_refuses_a_plan_with_duplicate_keys() -> None:
    m = plan(arm_a(), PROTOCOL, BEFORE)[0]
    with pytest.raises(ValueError, match="duplicate key"):
        replan_diff({}, [m, m])


# --------------------------------------------------------------------------- follow-ups


def _reminder(day: int = 6, wall: time = time(9)) -> PlannedMessage:
    messages = by_key(plan(arm_b(FRI, reminder_time=wall), PROTOCOL, BEFORE))
    return messages[f"dose:methotrexate:2026-11-{day:02d}"]


def test_dose_follow_up_two_hours_after_an_unanswered_reminder() -> None:
    reminder = _reminder()
    follow = make_dose_followup(reminder, reminder.due_at, PROTOCOL)
    assert follow is not None
    assert follow.key == "dose:methotrexate:2026-11-06:followup"
    assert follow.kind is K.DOSE_FOLLOWUP and follow.respects_quiet_hours
    assert local(follow.due_at) == dhaka(2026, 11, 6, 11)
    assert local(follow.stale_after) == dhaka(2026, 11, 6, 14)
    assert follow.payload["reminder_key"] == reminder.key
    assert follow.payload["dose"] == "25 mg"


def test_dose_follow_up_counts_from_a_late_send_and_respects_quiet_hours() -> None:
    reminder = _reminder()
    late = make_dose_followup(reminder, dhaka(2026, 11, 6, 11, 30), PROTOCOL)
    assert late is not None and local(late.due_at) == dhaka(2026, 11, 6, 13, 30)
    # Sent at 20:30: the follow-up would fall at 22:30, wait until 07:00, and by then the
    # dose day is over: no follow-up.
    assert make_dose_followup(reminder, dhaka(2026, 11, 6, 20, 30), PROTOCOL) is None
    # Ramadan: reminder at 04:30; the follow-up waits for 07:00 the same day.
    early = _reminder(wall=time(4, 30))
    follow = make_dose_followup(early, early.due_at, PROTOCOL)
    assert follow is not None and local(follow.due_at) == dhaka(2026, 11, 6, 7)
    assert local(follow.stale_after) == dhaka(2026, 11, 6, 10)


def test_remind_me_later_comes_back_an_hour_later() -> None:
    reminder = _reminder()
    later = make_remind_later(reminder, dhaka(2026, 11, 6, 9, 10), PROTOCOL)
    assert later is not None
    assert later.key == "dose:methotrexate:2026-11-06:later:20261106T1010"
    assert later.kind is K.DOSE_REMIND_LATER and not later.respects_quiet_hours
    assert local(later.due_at) == dhaka(2026, 11, 6, 10, 10)
    assert local(later.stale_after) == dhaka(2026, 11, 6, 13, 10)
    # Pressed at 04:35 after a 04:30 suhoor reminder: honoured at 05:35.
    suhoor = make_remind_later(_reminder(wall=time(4, 30)), dhaka(2026, 11, 6, 4, 35), PROTOCOL)
    assert suhoor is not None and local(suhoor.due_at) == dhaka(2026, 11, 6, 5, 35)
    # Pressed at 23:30: an hour later is the next day: too late for this dose.
    assert make_remind_later(reminder, dhaka(2026, 11, 6, 23, 30), PROTOCOL) is None


def test_follow_up_windows_never_outlive_the_no_answer_close() -> None:
    close = dose_no_answer_due(date(2026, 11, 6), PROTOCOL)
    assert local(close) == dhaka(2026, 11, 7)
    for hour in range(24):
        sent = dhaka(2026, 11, 6, hour)
        for window in (
            dose_followup_window(sent, date(2026, 11, 6), PROTOCOL),
            remind_later_window(sent, date(2026, 11, 6), PROTOCOL),
        ):
            if window is not None:
                assert window.due_at < window.stale_after <= close


def test_follow_ups_are_only_made_from_dose_reminders() -> None:
    checkin = plan(arm_a(), PROTOCOL, BEFORE)
    visit = by_key(checkin)["visit:4:remind:0"]
    with pytest.raises(ValueError, match="not a dose reminder"):
        make_dose_followup(visit, visit.due_at, PROTOCOL)


# --------------------------------------------------------------------------- the message type


def test_planned_messages_are_frozen_and_equal_to_normally_built_ones() -> None:
    m = plan(arm_a(), PROTOCOL, BEFORE)[0]
    twin = PlannedMessage(m.key, m.kind, m.due_at, m.stale_after, m.respects_quiet_hours, dict(m.payload))
    assert m == twin and hash(m) == hash(twin)
    assert dataclasses.asdict(m) == dataclasses.asdict(twin)
    assert dataclasses.replace(m, key="x").key == "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.key = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- another trial


def test_another_trial_in_a_daylight_saving_zone_keeps_local_reminder_times() -> None:
    data = shipped_data()
    data.update(
        timezone="Europe/London",
        treatment_weeks=8,
        clinic_days=["monday", "tuesday", "wednesday", "thursday", "friday"],
    )
    data["arms"] = {"X": data["arms"]["A"]}
    proto = protocol_from_mapping(data, "other-trial.yaml")
    baseline = date(2026, 3, 1)  # clocks go forward on 29 March 2026
    now = datetime(2026, 2, 28, tzinfo=UTC)
    doses = of_kind(plan(PlanInput("OT-1", "X", baseline), proto, now), K.DOSE_REMINDER)
    london = ZoneInfo("Europe/London")
    assert len(doses) == 56
    assert {m.due_at.astimezone(london).time() for m in doses} == {time(9)}
    utc_hours = {m.due_at.astimezone(london).date(): m.due_at.hour for m in doses}
    assert utc_hours[date(2026, 3, 28)] == 9 and utc_hours[date(2026, 3, 29)] == 8
