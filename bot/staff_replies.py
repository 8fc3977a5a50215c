"""What admins read, the same from Telegram and from the shell. Admin replies
are in English: they go to the study team, not to participants."""

from __future__ import annotations

from datetime import tzinfo

from domain.adverse_events import CRITERIA, OUTCOMES, OutcomeSet, StaffSaeRecorded
from domain.enrollment import Enrolled, enroll_usage
from domain.participants import ParticipantLine
from domain.status_report import StatusReport
from domain.visit_questionnaires import SwitchResult
from domain.visits import AgreedDate
from models import Alert, Participant
from models.entities import ParticipantStatus
from models.schedule import ClinicVisit, VisitStatus
from scheduler.calendar import WEEKDAY_CODES
from scheduler.protocol import Protocol


def deep_link(bot_username: str | None, code: str) -> str:
    """The t.me link that opens the bot with the code filled in."""
    return f"https://t.me/{bot_username or '<bot username>'}?start={code}"


def _weekday(day: int | None) -> str:
    return WEEKDAY_CODES[day] if day is not None else "-"


def _dose_days(participant: Participant, protocol: Protocol) -> str:
    """ "MTX fri, folic sat": each weekly regimen's short name and the participant's day
    (their own, or the protocol's rule), "-" when the row has no day yet."""
    arm = protocol.arms.get(participant.arm)
    days: dict[str, int | None] = {}
    for reg in arm.regimens if arm is not None else ():
        rule = reg.weekday
        if rule is None or reg.frequency != "weekly":
            continue
        if rule.rule == "participant":
            days[reg.id] = participant.own_weekday
        elif rule.rule == "fixed":
            days[reg.id] = rule.day
        elif rule.participant_may_choose and participant.follow_weekday is not None:
            days[reg.id] = participant.follow_weekday
        else:
            base = days.get(rule.regimen or "")
            days[reg.id] = (base + (rule.days or 0)) % 7 if base is not None else None
    shorts = {reg.id: reg.short_name for reg in arm.regimens} if arm is not None else {}
    return ", ".join(f"{shorts[rid]} {_weekday(day)}" for rid, day in days.items())


def describe(participant: Participant, protocol: Protocol) -> str:
    """One line: study id, arm, baseline, language, status, weekly dose days, switches set on (e.g. "raynaud on")."""
    parts = [
        participant.study_id,
        f"arm {participant.arm}",
        f"baseline {participant.baseline_date.isoformat()}",
        participant.language.value,
        participant.status.value,
    ]
    dose_days = _dose_days(participant, protocol)
    if dose_days:
        parts.append(dose_days)
    parts += [f"{name} on" for name, on in sorted((participant.switches or {}).items()) if on]
    return " · ".join(parts)


def enrolled(result: Enrolled, tz: tzinfo, bot_username: str | None, protocol: Protocol) -> str:
    """The reply to /enroll: the code exists only in this message."""
    verb = "New code for" if result.reissued else "Enrolled"
    expires = result.expires_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    lines = [
        f"{verb} {describe(result.participant, protocol)}",
        f"One-time code: {result.code} (works once; expires {expires})",
        f"Link for the participant: {deep_link(bot_username, result.code)}",
    ]
    if result.reissued:
        lines.append("Earlier unused codes for this participant no longer work.")
    return "\n".join(lines)


def participant_list(lines: list[ParticipantLine], protocol: Protocol) -> str:
    """The reply to /participants: one line each."""
    if not lines:
        return f"No participants yet. Enroll one with /enroll {enroll_usage(protocol)}."
    rows = [f"{describe(line.participant, protocol)} · {'linked' if line.linked else 'not linked'}" for line in lines]
    return f"{len(lines)} participant(s):\n" + "\n".join(rows)


def withdrawn(participant: Participant) -> str:
    """The reply to /withdraw."""
    return f"{participant.study_id} is withdrawn. No more messages will be sent; all data recorded so far is kept."


def sae_recorded(recorded: StaffSaeRecorded, tz: tzinfo) -> str:
    """The reply to /sae: what was recorded, the alert, the sponsor deadline."""
    event, alert = recorded.event, recorded.alert
    assert alert.deadline_at is not None
    deadline = alert.deadline_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    criteria = ", ".join(k for k, n in CRITERIA.items() if n in recorded.criteria)
    lines = [
        f"Serious adverse event #{event.id} recorded for {recorded.participant.study_id} ({criteria}).",
        f"Urgent alert #{alert.id} sent to the coordinators; report to the sponsor by {deadline} (24 h).",
    ]
    if recorded.messages_stopped:
        lines.append(
            f"{recorded.participant.study_id} is withdrawn (died): no more messages will be sent; all data is kept."
        )
    return "\n".join(lines)


def outcome_set(result: OutcomeSet) -> str:
    """The reply to /outcome: which event, what it was, what it is now."""
    event = result.event
    now = OUTCOMES[event.outcome or "unknown"]
    if not result.changed:
        return f"Adverse event #{event.id} ({result.study_id}) already has the outcome {now}: nothing changed."
    was = OUTCOMES[result.previous] if result.previous else "not recorded"
    return f"Adverse event #{event.id} ({result.study_id}): outcome {now} (was: {was})."


def alert_acknowledged(alert: Alert, already: bool, tz: tzinfo) -> str:
    """The reply to /ack: who took the alert, and when."""
    assert alert.acknowledged_at is not None
    when = alert.acknowledged_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    if already:
        return f"Alert #{alert.id} was already acknowledged by {alert.acknowledged_by} at {when}."
    return f"Alert #{alert.id} acknowledged at {when}; escalation stopped."


def no_open_alerts() -> str:
    """The reply to /alerts when every alert has been acknowledged."""
    return "No open alerts."


def open_alerts_header(count: int) -> str:
    """The first line of the reply to /alerts."""
    return f"{count} open alert(s), oldest first:"


def paused(participant: Participant) -> str:
    """The reply to /pause."""
    until = (
        f"until {participant.paused_until.isoformat()} (they restart by themselves that day)"
        if participant.paused_until
        else "until /resume"
    )
    reason = f" Reason: {participant.pause_reason}." if participant.pause_reason else ""
    return f"{participant.study_id}: reminders paused {until}.{reason} Nothing recorded is deleted."


def resumed(participant: Participant) -> str:
    """The reply to /resume."""
    return f"{participant.study_id}: reminders restarted from now on."


def switch_set(result: SwitchResult, what: str) -> str:
    """The reply to a per-participant switch (/raynaud)."""
    study_id, state = result.participant.study_id, "ON" if result.on else "OFF"
    if not result.changed:
        return f"{study_id}: the {what} was already {state}; nothing changed."
    if result.on:
        return (
            f"{study_id}: the {what} is ON: a prompt on each of the 7 days before each visit "
            f"({result.planned} planned from now on)."
        )
    return f"{study_id}: the {what} is OFF: no more prompts (answers already given are kept)."


def visit_recorded(study_id: str, visit: ClinicVisit) -> str:
    """The reply to /visit."""
    if visit.status is VisitStatus.DONE:
        assert visit.attended_on is not None
        what = f"done on {visit.attended_on.isoformat()}"
    else:
        what = "missed"
    return f"{study_id}: week {visit.week} visit recorded as {what}. Its reminders and window check are stopped."


def _window(visit: ClinicVisit) -> str:
    start, end = visit.window_start.isoformat(), visit.window_end.isoformat()
    return f"target {visit.target_date.isoformat()}, window {start} to {end}"


def visit_date_agreed(agreed: AgreedDate) -> str:
    """The reply to /visit … on DATE once the date is stored."""
    visit = agreed.visit
    deviation = " Outside the window: recorded as a protocol deviation." if visit.deviation else ""
    told = (
        "the participant is told in their language."
        if agreed.told
        else "the participant is paused and gets no message: please tell them by phone."
    )
    return (
        f"{agreed.study_id}: week {visit.week} visit agreed for {agreed.on.isoformat()} ({_window(visit)}).{deviation} "
        f"Its reminders and window check follow the new date; {told}"
    )


def visit_date_outside_window(agreed: AgreedDate) -> str:
    """The question when the agreed date lies outside the window."""
    return (
        f"{agreed.study_id}: {agreed.on.isoformat()} is outside the week {agreed.visit.week} visit window "
        f"({_window(agreed.visit)}). Confirm to record it as a protocol deviation; nothing is changed until you do."
    )


def status(report: StatusReport, tz: tzinfo) -> str:
    """The reply to /status: one fact per line."""
    p = report.participant
    lines = [f"{p.study_id} · arm {p.arm} · {p.status.value}"]
    if p.status == ParticipantStatus.PAUSED:
        until = p.paused_until.isoformat() if p.paused_until else "/resume"
        lines.append(f"Paused until: {until}" + (f" ({p.pause_reason})" if p.pause_reason else ""))
    else:
        lines.append("Paused until: —")
    v = report.next_visit
    if v is None:
        lines.append("Next visit: —")
    else:
        lines.append(
            f"Next visit: week {v.week} on {v.visit_date.isoformat()} "
            f"(window {v.window_start.isoformat()} to {v.window_end.isoformat()})"
        )
        if v.agreed_date is not None:
            deviation = ", outside the window: protocol deviation" if v.deviation else ""
            lines.append(
                f"Agreed date: {v.agreed_date.isoformat()} (target {v.target_date.isoformat()}, "
                f"window {v.window_start.isoformat()} to {v.window_end.isoformat()}{deviation})"
            )
    if report.adherence is None:
        lines.append("Adherence (last 4 weeks): — (no dose reminders yet)")
    else:
        counts = f"{report.doses_taken} taken of {report.doses_due} reminders"
        lines.append(f"Adherence (last 4 weeks): {report.adherence:.0f}% ({counts})")
    last = report.last_checkin
    lines.append(f"Last check-in: {last.astimezone(tz).strftime('%Y-%m-%d %H:%M') if last else '—'}")
    lines.append(f"Open alerts: {report.open_alerts}")
    if report.unreachable_since is not None:
        since = report.unreachable_since.astimezone(tz).strftime("%Y-%m-%d %H:%M")
        lines.append(f"Unreachable on Telegram since {since}")
    return "\n".join(lines)
