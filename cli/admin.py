"""`python -m cli …`: the admin actions from the shell, for scripts and for
when Telegram is unreachable. Same domain code, same audit, same texts as the
Telegram commands; the actor is recorded as `cli:<os user>`.

    python -m cli enroll BSM-001 B 2026-10-25 bn fri
    python -m cli participants
    python -m cli withdraw BSM-001 moved away
    python -m cli unlink BSM-001
    python -m cli pause BSM-001 2026-12-01 travelling
    python -m cli resume BSM-001
    python -m cli status BSM-001
    python -m cli visit BSM-001 4 done 2026-11-22
    python -m cli visit BSM-001 4 on 2026-11-24 [--confirm-deviation]
    python -m cli sae BSM-001 hospitalisation 2026-11-20 daughter phoned
    python -m cli outcome 12 recovered
    python -m cli summary BSM-001 --out BSM-001.pdf
    python -m cli overview --out overview.pdf
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot import staff_replies
from core.clock import Clock, SystemClock
from core.settings import DatabaseSettings, describe_error
from domain import audit, enrollment, participant_state, participants, status_report, visit_questionnaires, visits
from domain.content import Content, load_content
from domain.errors import DomainError
from domain.parsing import parse_date, parse_study_id
from domain.questionnaires import InstrumentError
from domain.secrets import ENROLLMENT_CODES, derive_key
from domain.triage import TriageTableError
from models.db import create_engine, create_session_factory
from scheduler.calendar import local_date
from scheduler.protocol import ProtocolError


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except Exception:
        return "cli:unknown"


async def _bot_username() -> str | None:
    """Ask the Bot API for the bot's username when a token is configured, so the
    deep link is complete; without one (or offline) the link shows a placeholder."""
    try:
        from telegram import Bot

        from core.settings import TokenSettings

        settings = TokenSettings()
        bot = Bot(settings.telegram_bot_token.get_secret_value(), base_url=settings.telegram_api_url)
        async with asyncio.timeout(5):
            async with bot:
                return bot.username
    except Exception:
        return None


def _code_key() -> bytes:
    """The key codes are stored under, derived from the bot token as the bot does: a
    code issued here must work there."""
    from core.settings import TokenSettings

    try:
        token = TokenSettings().telegram_bot_token.get_secret_value()
    except ValidationError as error:
        raise DomainError(
            "issuing a code needs TELEGRAM_BOT_TOKEN (the bot's token: codes are stored keyed with it); "
            + describe_error(error)
        ) from None
    return derive_key(token, ENROLLMENT_CODES)


Action = Callable[[AsyncSession, argparse.Namespace, DatabaseSettings, Clock, Content], Awaitable[str]]


async def _enroll(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    request = enrollment.parse_enroll_args(args.args, content.protocol)
    result = await enrollment.enroll(
        session,
        request,
        actor=_actor(),
        now=clock.now(),
        code_ttl=timedelta(days=settings.enrollment_code_days),
        code_key=_code_key(),
    )
    return staff_replies.enrolled(result, settings.tz, await _bot_username(), content.protocol)


async def _unlink(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    result = await enrollment.unlink(
        session,
        parse_study_id(args.study_id),
        actor=_actor(),
        now=clock.now(),
        code_ttl=timedelta(days=settings.enrollment_code_days),
        code_key=_code_key(),
        protocol=content.protocol,
    )
    return "The old chat is unlinked: it gets nothing more.\n" + staff_replies.enrolled(
        result, settings.tz, await _bot_username(), content.protocol
    )


async def _participants(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    return staff_replies.participant_list(await participants.list_all(session), content.protocol)


async def _withdraw(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    participant = await participants.withdraw(
        session,
        parse_study_id(args.study_id),
        reason=" ".join(args.reason) or None,
        actor=_actor(),
        now=clock.now(),
        protocol=content.protocol,
    )
    return staff_replies.withdrawn(participant)


async def _pause(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    request = participant_state.parse_pause_args(args.args)
    participant = await participant_state.pause(
        session, request, actor=_actor(), now=clock.now(), protocol=content.protocol
    )
    return staff_replies.paused(participant)


async def _resume(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    participant = await participant_state.resume(
        session, parse_study_id(args.study_id), actor=_actor(), now=clock.now(), protocol=content.protocol
    )
    return staff_replies.resumed(participant)


async def _status(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    protocol = content.protocol
    report = await status_report.status_report(
        session, parse_study_id(args.study_id), now=clock.now(), protocol=protocol
    )
    return staff_replies.status(report, protocol.tz)


async def _raynaud(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    request = visit_questionnaires.parse_switch_args("raynaud", [args.study_id, args.state])
    result = await visit_questionnaires.set_switch(
        session,
        request,
        visit_questionnaires.the_switch(content.protocol),
        actor=_actor(),
        now=clock.now(),
        protocol=content.protocol,
    )
    return staff_replies.switch_set(result, "Raynaud's diary")


async def _visit(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    if visits.is_agreed_date(args.args):
        return await _agree_visit_date(session, args, content, clock)
    request = visits.parse_visit_args(args.args)
    visit = await visits.record_visit(session, request, actor=_actor(), now=clock.now(), protocol=content.protocol)
    return staff_replies.visit_recorded(request.study_id, visit)


async def _agree_visit_date(session: AsyncSession, args: argparse.Namespace, content: Content, clock: Clock) -> str:
    """`visit STUDY_ID WEEK on DATE [--confirm-deviation]`: the flag is the shell's
    Confirm button for a date outside the window."""
    request = visits.parse_agreed_date_args(args.args)
    agreed = await visits.agree_visit_date(
        session,
        request,
        actor=_actor(),
        now=clock.now(),
        protocol=content.protocol,
        deviation_confirmed=args.confirm_deviation,
    )
    if agreed.needs_confirmation:
        raise DomainError(
            staff_replies.visit_date_outside_window(agreed).replace(
                "Confirm to", "Run again with --confirm-deviation to"
            )
        )
    return staff_replies.visit_date_agreed(agreed)


async def _export(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    from export.run import export_trial_record

    protocol, instruments = content.protocol, content.instruments
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    since = parse_date(args.since) if args.since else None
    now = clock.now()
    result = await export_trial_record(
        engine,
        Path(args.out),
        settings.tz,
        protocol=protocol,
        instruments=instruments,
        now=now,
        since=since,
        validate=args.validate,
        with_files=args.with_files,
    )
    after: dict[str, object] = {"since": since.isoformat() if since else None, "rows": result.row_counts}
    if args.with_files:
        after["with_files"] = True
    if result.validation is not None:
        after["odm_schema_errors"] = len(result.validation.errors)
    audit.record(session, at=now, actor=_actor(), action="export.run", after=after)
    rows = "\n".join(f"  {name}: {count} row(s)" for name, count in result.row_counts.items())
    text = f"Exported {len(result.files)} files to {result.directory.resolve()}\n{rows}"
    if result.validation is None:
        return text
    if not result.validation.valid:
        args.exit_code = 1  # the files are written and the export audited, but an EDC would refuse the ODM
        return "\n".join([text, result.validation.summary(), *result.validation.errors])
    return f"{text}\n{result.validation.summary()}"


async def _write_pages(out: str, png: bytes, pdf: bytes) -> str:
    """Write the PDF to `out` and the PNG beside it (same name, .png)."""

    def write() -> Path:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pdf)
        path.with_suffix(".png").write_bytes(png)
        return path.resolve()

    path = await asyncio.to_thread(write)
    return f"Wrote {path} and {path.with_suffix('.png').name}"


async def _summary(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    from charts import summary_files
    from domain import summary

    protocol, instruments = content.protocol, content.instruments
    now = clock.now()
    record = await summary.load_record(session, parse_study_id(args.study_id), protocol)
    page = summary.build_summary(record, protocol, instruments, now)
    rendered = await summary_files(page, protocol.tz)
    audit.record(
        session,
        at=now,
        actor=_actor(),
        action="summary.view",
        participant_id=record.participant.id,
        after={"chat": "cli", "empty": page.empty},
    )
    return await _write_pages(args.out, rendered.png, rendered.pdf)


async def _overview(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    from charts import overview_files
    from domain import summary

    protocol = content.protocol
    now = clock.now()
    rows = await summary.load_overview(session, protocol, now)
    rendered = await overview_files(rows, protocol.trial_id, now, protocol.tz)
    audit.record(session, at=now, actor=_actor(), action="overview.view", after={"participants": len(rows)})
    return await _write_pages(args.out, rendered.png, rendered.pdf)


async def _audit_verify(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    from domain.audit_chain import parse_published, seal, verify

    published = None
    if args.published:
        try:
            published = parse_published(args.published)
        except ValueError as error:
            raise DomainError(str(error)) from None
    await seal(session)
    report = await verify(session, published)
    if not report.ok:
        raise DomainError("the audit chain is broken:\n  " + "\n  ".join(report.problems))
    checked = f"; it holds the published head #{published[0]}" if published else ""
    return (
        f"Audit chain intact: {report.sealed} row(s) sealed, {report.unsealed} waiting; "
        f"head #{report.head_seq} {report.head_hash[:16]}…{checked}"
    )


async def _alerts(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    from bot import alerting
    from domain.acknowledgement import open_alerts
    from models import Participant

    alerts = await open_alerts(session)
    if not alerts:
        return staff_replies.no_open_alerts()
    blocks = [staff_replies.open_alerts_header(len(alerts))]
    for alert in alerts:
        participant = await session.get(Participant, alert.participant_id) if alert.participant_id else None
        blocks.append(
            alerting.render(
                alert,
                participant,
                settings.tz,
                protocol=content.protocol,
                escalate_after=settings.escalate_after_minutes,
            )
        )
    return "\n\n".join(blocks)


async def _ack(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    from domain.acknowledgement import acknowledge, parse_alert_id

    actor = _actor()
    done = await acknowledge(
        session,
        parse_alert_id(args.alert_id),
        actor=actor,
        display_name=actor.removeprefix("cli:"),
        note=" ".join(args.note) or None,
        now=clock.now(),
    )
    text = staff_replies.alert_acknowledged(done.alert, done.already, settings.tz)
    if not done.already:
        text += "\n(The copies in Telegram show it the next time someone presses their button.)"
    return text


async def _sae(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    """Needs COORDINATOR_CHAT_IDS: the alert is queued here and sent by the running bot."""
    from core.settings import CoordinatorSettings
    from domain import adverse_events

    try:
        chats = CoordinatorSettings().coordinator_chat_ids
    except ValidationError as error:
        raise DomainError(describe_error(error)) from None
    now = clock.now()
    actor = _actor()
    try:
        request = adverse_events.parse_sae_args(args.args, local_date(now, settings.tz))
        recorded = await adverse_events.record_staff_sae(
            session,
            request,
            actor=actor,
            display_name=actor.removeprefix("cli:"),
            now=now,
            coordinator_chats=chats,
            content=content,
        )
    except adverse_events.SaeUsageError as error:
        raise DomainError(str(error).replace("usage: /sae", "usage: python -m cli sae")) from None
    text = staff_replies.sae_recorded(recorded, settings.tz)
    return text.replace("sent to the coordinators", "queued for the coordinators (the running bot sends it)")


async def _outcome(
    session: AsyncSession, args: argparse.Namespace, settings: DatabaseSettings, clock: Clock, content: Content
) -> str:
    from domain import adverse_events

    try:
        request = adverse_events.parse_outcome_args(args.args)
    except adverse_events.OutcomeUsageError as error:
        raise DomainError(str(error).replace("usage: /outcome", "usage: python -m cli outcome")) from None
    result = await adverse_events.set_outcome(session, request, actor=_actor(), now=clock.now())
    return staff_replies.outcome_set(result)


def build_parser() -> argparse.ArgumentParser:
    """The command line, one sub-command per admin action."""
    parser = argparse.ArgumentParser(prog="python -m cli", description="Admin actions from the shell.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("enroll", help="enroll a participant and print a one-time code")
    p.add_argument(
        "args",
        nargs="+",
        metavar="STUDY_ID ARM BASELINE [LANG] [WEEKDAY]",
        help="WEEKDAY: for an arm whose drug is taken on the participant's own day (the protocol's "
        "`rule: participant` regimen); default the baseline's weekday",
    )
    p.set_defaults(action=_enroll)
    p = sub.add_parser("unlink", help="unlink a participant's chat (lost phone) and print a new one-time code")
    p.add_argument("study_id")
    p.set_defaults(action=_unlink)
    p = sub.add_parser("participants", help="list participants, one line each")
    p.set_defaults(action=_participants)
    p = sub.add_parser("withdraw", help="withdraw a participant (data kept)")
    p.add_argument("study_id")
    p.add_argument("reason", nargs="*")
    p.set_defaults(action=_withdraw)
    p = sub.add_parser("pause", help="pause reminders (until a date, or until resume)")
    p.add_argument("args", nargs="+", metavar="STUDY_ID [UNTIL_DATE] [REASON…]")
    p.set_defaults(action=_pause)
    p = sub.add_parser("resume", help="restart a paused participant's reminders")
    p.add_argument("study_id")
    p.set_defaults(action=_resume)
    p = sub.add_parser("status", help="arm, next visit, adherence, last check-in, open alerts")
    p.add_argument("study_id")
    p.set_defaults(action=_status)
    p = sub.add_parser(
        "visit",
        help="record a clinic visit: STUDY_ID WEEK done|missed [DATE], or agree its date: STUDY_ID WEEK on DATE",
    )
    p.add_argument("args", nargs="+", metavar="STUDY_ID WEEK done|missed [DATE] | STUDY_ID WEEK on DATE")
    p.add_argument(
        "--confirm-deviation",
        action="store_true",
        help="with on DATE: the date is outside the window; record it as a protocol deviation",
    )
    p.set_defaults(action=_visit)
    p = sub.add_parser("raynaud", help="the Raynaud's diary for one participant: STUDY_ID on|off")
    p.add_argument("study_id")
    p.add_argument("state", metavar="on|off")
    p.set_defaults(action=_raynaud)
    p = sub.add_parser("alerts", help="open (unacknowledged) alerts, oldest first")
    p.set_defaults(action=_alerts)
    p = sub.add_parser("ack", help="acknowledge an alert: ALERT_ID [NOTE…] (stops its escalation)")
    p.add_argument("alert_id")
    p.add_argument("note", nargs="*")
    p.set_defaults(action=_ack)
    p = sub.add_parser(
        "sae",
        help="record a serious event the team learned of: STUDY_ID CRITERION[,CRITERION…] [ONSET_DATE] [NOTE…] "
        "(death, life_threatening, hospitalisation, disability, congenital_anomaly, important_medical_event)",
    )
    p.add_argument("args", nargs="*", metavar="STUDY_ID CRITERION[,CRITERION…] [ONSET_DATE] [NOTE…]")
    p.set_defaults(action=_sae)
    p = sub.add_parser(
        "outcome",
        help="an adverse event's outcome: AE_NUMBER OUTCOME "
        "(recovered, recovering, not_recovered, recovered_with_sequelae, fatal, unknown)",
    )
    p.add_argument("args", nargs="*", metavar="AE_NUMBER OUTCOME")
    p.set_defaults(action=_outcome)
    p = sub.add_parser("export", help="write the trial-record files (CSV, SPSS, dictionary, ODM)")
    p.add_argument("--out", required=True, help="directory to write into")
    p.add_argument(
        "--since",
        help="only the records created or changed on or after this date (YYYY-MM-DD), by each record's own times",
    )
    p.add_argument(
        "--validate",
        action="store_true",
        help="check the ODM file against the official CDISC ODM 1.3.2 schema (exit 1 if it is refused)",
    )
    p.add_argument(
        "--with-files",
        action="store_true",
        help="also write the photos and voice notes the media manifest lists, under media/ (large and personal)",
    )
    p.set_defaults(action=_export)
    p = sub.add_parser("summary", help="one-page visit summary of a participant: A4 PDF (and a PNG beside it)")
    p.add_argument("study_id", metavar="STUDY_ID")
    p.add_argument("--out", required=True, help="the PDF file to write (the PNG goes beside it)")
    p.set_defaults(action=_summary)
    p = sub.add_parser("overview", help="the whole trial at a glance: A4 PDF (and a PNG beside it)")
    p.add_argument("--out", required=True, help="the PDF file to write (the PNG goes beside it)")
    p.set_defaults(action=_overview)
    p = sub.add_parser("audit-verify", help="seal new audit rows and check the whole hash chain")
    p.add_argument(
        "--published",
        metavar="SEQ:HASH",
        help="a head published outside the database (the coordinator chat, an export): the chain must still hold it",
    )
    p.set_defaults(action=_audit_verify)
    return parser


async def run(argv: list[str], clock: Clock | None = None) -> tuple[int, str]:
    """Run one admin command; returns (exit code, text to print)."""
    args = build_parser().parse_args(argv)
    try:
        settings = DatabaseSettings()
    except ValidationError as error:
        return 2, describe_error(error)
    try:
        content = load_content(settings.content_dir)
    except (InstrumentError, ProtocolError, TriageTableError) as error:
        return 2, str(error)
    engine = create_engine(settings.database_url)
    try:
        async with create_session_factory(engine)() as session:
            action: Action = args.action
            try:
                text = await action(session, args, settings, clock or SystemClock(), content)
            except DomainError as error:
                await session.rollback()
                return 1, f"Not done: {error}"
            await session.commit()
            return getattr(args, "exit_code", 0), text
    finally:
        await engine.dispose()


def main() -> int:
    """Entry point."""
    code, text = asyncio.run(run(sys.argv[1:]))
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
