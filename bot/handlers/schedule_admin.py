"""Admin commands for reminders: /pause, /resume, /status, /visit (admins only, audited),
and the Confirm button of a visit date outside its window."""

from __future__ import annotations

from datetime import date

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot import callbacks, staff_replies
from bot.context import BotContext
from bot.handlers import common
from bot.handlers.guards import private_admin_only
from domain import audit, participant_state, status_report, visits
from domain.errors import DomainError
from domain.parsing import parse_study_id


def _actor(update: Update) -> str:
    assert update.effective_user is not None
    return audit.admin_actor(update.effective_user.id)


@private_admin_only
async def pause(update: Update, context: BotContext) -> None:
    """/pause STUDY_ID [UNTIL_DATE] [REASON…]: no routine messages until the date or /resume."""
    request = participant_state.parse_pause_args(list(context.args or []))
    participant = await participant_state.pause(
        context.db, request, actor=_actor(update), now=context.now, protocol=context.services.protocol
    )
    context.reply(staff_replies.paused(participant))


@private_admin_only
async def resume(update: Update, context: BotContext) -> None:
    """/resume STUDY_ID: routine messages again, from now on."""
    args = list(context.args or [])
    if len(args) != 1:
        raise DomainError("usage: /resume STUDY_ID")
    participant = await participant_state.resume(
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
    report = await status_report.status_report(context.db, parse_study_id(args[0]), now=context.now, protocol=protocol)
    context.reply(staff_replies.status(report, protocol.tz))


@private_admin_only
async def visit(update: Update, context: BotContext) -> None:
    """/visit STUDY_ID WEEK done|missed [DATE]: record a clinic visit;
    /visit STUDY_ID WEEK on DATE: the date agreed with the participant."""
    args = list(context.args or [])
    if visits.is_agreed_date(args):
        await _agree_date(update, context, visits.parse_agreed_date_args(args), confirmed=False)
        return
    request = visits.parse_visit_args(args)
    recorded = await visits.record_visit(
        context.db, request, actor=_actor(update), now=context.now, protocol=context.services.protocol
    )
    context.reply(staff_replies.visit_recorded(request.study_id, recorded))


async def _agree_date(
    update: Update, context: BotContext, request: visits.AgreedDateRequest, *, confirmed: bool
) -> None:
    """Store the agreed date, or (outside the window, not yet confirmed) ask with a button."""
    agreed = await visits.agree_visit_date(
        context.db,
        request,
        actor=_actor(update),
        now=context.now,
        protocol=context.services.protocol,
        deviation_confirmed=confirmed,
    )
    if agreed.needs_confirmation:
        context.reply(staff_replies.visit_date_outside_window(agreed), _deviation_buttons(agreed))
    else:
        context.reply(staff_replies.visit_date_agreed(agreed))


@private_admin_only
async def visit_date_button(update: Update, context: BotContext) -> None:
    """The admin's Confirm / Cancel under a visit date outside its window."""
    query = update.callback_query
    assert query is not None and query.data is not None
    pressed = callbacks.parse_visit_date(query.data)
    if pressed is None:
        common.button_no_longer_active(context)
        return
    context.answer()
    context.edit_markup(None)  # one answer per question: the buttons go
    if not pressed.confirmed:
        context.reply(f"{pressed.study_id}: nothing changed; the week {pressed.week} visit keeps its date.")
        return
    request = visits.AgreedDateRequest(pressed.study_id, pressed.week, date.fromisoformat(pressed.on))
    await _agree_date(update, context, request, confirmed=True)


def _deviation_buttons(agreed: visits.AgreedDate) -> InlineKeyboardMarkup:
    """Confirm the deviation / keep the date."""
    study_id, week, on = agreed.study_id, agreed.visit.week, agreed.on.isoformat()
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    "Confirm: record a deviation", callback_data=callbacks.visit_date(study_id, week, on, True)
                )
            ],
            [InlineKeyboardButton("Cancel", callback_data=callbacks.visit_date(study_id, week, on, False))],
        ]
    )
