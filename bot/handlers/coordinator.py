"""The study team's side of alerts: the Acknowledge button, /ack and /alerts.

Only a coordinator or escalation chat, or an admin, may acknowledge; anyone
else is refused and the attempt audited. Acknowledging records who and when,
redraws the alert in every chat it went to, and stops its escalation."""

from __future__ import annotations

from telegram import Update

from bot import alerting, callbacks, staff_replies
from bot.context import BotContext
from bot.handlers import common
from bot.handlers.gate import stranger_actor
from bot.handlers.guards import admin_only, private_admin_only
from bot.i18n import _
from domain import audit
from domain.acknowledgement import acknowledge, open_alerts, parse_alert_id
from domain.errors import DomainError
from models import Participant


def _redraw_after_commit(context: BotContext, alert_id: int, extra: tuple[int, int] | None = None) -> None:
    app = context.application
    context.work.after_commit(lambda: alerting.redraw(app, alert_id, extra))  # type: ignore[arg-type]


async def acknowledge_button(update: Update, context: BotContext) -> None:
    """The Acknowledge button under an alert (callback data `ack:<alert id>`)."""
    query = update.callback_query
    user = update.effective_user
    chat = update.effective_chat
    assert query is not None and query.data is not None
    settings = context.services.settings
    team_chats = {*settings.coordinator_chat_ids, *settings.escalation_chat_ids}
    is_admin = user is not None and user.id in settings.admin_user_ids
    from_team_chat = chat is not None and chat.id in team_chats
    if user is None or not (is_admin or from_team_chat):
        audit.record(
            context.db,
            at=context.now,
            actor=stranger_actor(context, user.id if user else None),
            action="alert.ack.refuse",
            participant_id=context.participant.id if context.participant else None,
            detail=query.data[:64],
        )
        context.answer(_("Sorry, this command is only for the study team."), alert=True)
        return
    try:
        alert_id = parse_alert_id(callbacks.ack_field(query.data))
    except DomainError:
        context.answer(common.NO_LONGER_ACTIVE)
        return
    actor = audit.admin_actor(user.id) if is_admin else f"coordinator:{user.id}"
    try:
        done = await acknowledge(
            context.db, alert_id, actor=actor, display_name=user.first_name, note=None, now=context.now
        )
    except DomainError as error:
        context.answer(f"Not done: {error}")
        return
    message = query.message
    extra = (message.chat.id, message.message_id) if message is not None else None
    if done.already:
        context.answer(f"Already acknowledged by {done.alert.acknowledged_by}.")
    else:
        context.answer(f"Alert #{alert_id} acknowledged. Thank you.")
    _redraw_after_commit(context, alert_id, extra)


@admin_only
async def ack_command(update: Update, context: BotContext) -> None:
    """/ack ALERT_ID [NOTE…]: acknowledge an alert from any chat."""
    args = list(context.args or [])
    if not args:
        raise DomainError("usage: /ack ALERT_ID [NOTE…]")
    alert_id = parse_alert_id(args[0])
    user = update.effective_user
    assert user is not None
    done = await acknowledge(
        context.db,
        alert_id,
        actor=audit.admin_actor(user.id),
        display_name=user.first_name,
        note=" ".join(args[1:]) or None,
        now=context.now,
    )
    context.reply(staff_replies.alert_acknowledged(done.alert, done.already, context.services.settings.tz))
    _redraw_after_commit(context, alert_id)


@private_admin_only
async def list_alerts(update: Update, context: BotContext) -> None:
    """/alerts: every open alert, each with its Acknowledge button."""
    alerts = await open_alerts(context.db)
    if not alerts:
        context.reply(staff_replies.no_open_alerts())
        return
    settings = context.services.settings
    context.reply(staff_replies.open_alerts_header(len(alerts)))
    for alert in alerts:
        participant = await context.db.get(Participant, alert.participant_id) if alert.participant_id else None
        context.reply(
            alerting.render(
                alert,
                participant,
                settings.tz,
                protocol=context.services.protocol,
                escalate_after=settings.escalate_after_minutes,
            ),
            alerting.ack_keyboard(alert),
        )
