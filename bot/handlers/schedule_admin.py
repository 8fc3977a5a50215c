"""Admin commands for reminders: /pause, /resume, /status, /visit (admins only, audited)."""

from __future__ import annotations

from telegram import Update

from bot import staff_replies
from bot.context import BotContext
from bot.handlers.guards import private_admin_only
from domain import audit, schedule_ops
from domain.errors import DomainError
from domain.parsing import parse_study_id


def _actor(update: Update) -> str:
    assert update.effective_user is not None
    return audit.admin_actor(update.effective_user.id)


@private_admin_only
async def pause(update: Update, context: BotContext) -> None:
    """/pause STUDY_ID [UNTIL_DATE] [REASON…]: no routine messages until the date or /resume."""
    request = schedule_ops.parse_pause_args(list(context.args or []))
    participant = await schedule_ops.pause(
        context.db, request, actor=_actor(update), now=context.now, protocol=context.services.protocol
    )
    context.reply(staff_replies.paused(participant))


@private_admin_only
async def resume(update: Update, context: BotContext) -> None:
    """/resume STUDY_ID: routine messages again, from now on."""
    args = list(context.args or [])
    if len(args) != 1:
        raise DomainError("usage: /resume STUDY_ID")
    participant = await schedule_ops.resume(
        context.db, parse_study_id(args[0]), actor=_actor(update), now=context.now, protocol=context.services.protocol
    )
    context.reply(staff_replies.resumed(participant))


@private_admin_only
async def status(update: Update, context: BotContext) -> None:
    """/status STUDY_ID: arm, status, next visit, adherence, last check-in, open alerts."""
    args = list(context.args or [])
    if len(args) != 1:
        raise DomainError("usage: /status STUDY_ID")
    protocol = context.services.protocol
    report = await schedule_ops.status_report(context.db, parse_study_id(args[0]), now=context.now, protocol=protocol)
    context.reply(staff_replies.status(report, protocol.tz))


@private_admin_only
async def visit(update: Update, context: BotContext) -> None:
    """/visit STUDY_ID WEEK done|missed [DATE]: record a clinic visit."""
    request = schedule_ops.parse_visit_args(list(context.args or []))
    recorded = await schedule_ops.record_visit(
        context.db, request, actor=_actor(update), now=context.now, protocol=context.services.protocol
    )
    context.reply(staff_replies.visit_recorded(request.study_id, recorded))
