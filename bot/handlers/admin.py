"""Admin commands, for user ids in ADMIN_USER_IDS only. Anyone else is refused
in their own language, and the attempt is audited."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from telegram import Update

from bot import admin_text
from bot.context import BotContext
from bot.handlers.gate import stranger_actor
from bot.i18n import _
from domain import adverse_events, audit, enrollment, participants
from domain.errors import DomainError
from domain.parsing import parse_study_id
from domain.secrets import ENROLLMENT_CODES
from scheduler.calendar import local_date

Handler = Callable[[Update, BotContext], Coroutine[Any, Any, None]]


def admin_only(handler: Handler) -> Handler:
    """Run `handler` only for admins; refuse and audit everyone else. A DomainError
    (bad arguments, unknown study id) becomes a reply and changes nothing."""

    @functools.wraps(handler)
    async def wrapper(update: Update, context: BotContext) -> None:
        user = update.effective_user
        if user is None or user.id not in context.services.settings.admin_user_ids:
            command = (update.effective_message.text or "").split()[0][:32] if update.effective_message else ""
            audit.record(
                context.db,
                at=context.now,
                actor=stranger_actor(context, user.id if user else None),
                action="admin.refuse",
                participant_id=context.participant.id if context.participant else None,
                detail=command,
            )
            context.reply(_("Sorry, this command is only for the study team."))
            return
        try:
            await handler(update, context)
        except DomainError as error:
            # Domain operations validate before they change anything: nothing to undo.
            context.reply(f"Not done: {error}")

    return wrapper


def private_admin_only(handler: Handler) -> Handler:
    """`admin_only`, and in the admin's private chat only: these commands show trial
    data or enrollment codes, which a group (typed there by mistake) must never see.
    Elsewhere a clear refusal, audited, and nothing shown."""

    checked = admin_only(handler)

    @functools.wraps(handler)
    async def wrapper(update: Update, context: BotContext) -> None:
        chat, user = update.effective_chat, update.effective_user
        is_admin = user is not None and user.id in context.services.settings.admin_user_ids
        if chat is None or chat.type == "private" or not is_admin or user is None:
            await checked(update, context)  # strangers are refused there, as anywhere
            return
        command = (update.effective_message.text or "").split()[0][:32] if update.effective_message else ""
        audit.record(
            context.db, at=context.now, actor=audit.admin_actor(user.id), action="admin.refuse_in_group", detail=command
        )
        context.reply(
            f"{command or 'This command'} works only in your private chat with the bot: it shows trial data or codes."
        )

    return wrapper


def _actor(update: Update) -> str:
    assert update.effective_user is not None
    return audit.admin_actor(update.effective_user.id)


@private_admin_only
async def enroll(update: Update, context: BotContext) -> None:
    """/enroll STUDY_ID ARM BASELINE [LANG] [MTX_WEEKDAY]: register and issue a one-time code."""
    request = enrollment.parse_enroll_args(list(context.args or []), context.services.protocol)
    settings = context.services.settings
    result = await enrollment.enroll(
        context.db,
        request,
        actor=_actor(update),
        now=context.now,
        code_ttl=timedelta(days=settings.enrollment_code_days),
        code_key=context.services.secret_key(ENROLLMENT_CODES),
    )
    context.reply(admin_text.enrolled(result, settings.tz, context.bot.username, context.services.protocol))


@private_admin_only
async def list_participants(update: Update, context: BotContext) -> None:
    """/participants: one line each."""
    context.reply(admin_text.participant_list(await participants.list_all(context.db), context.services.protocol))


@private_admin_only
async def withdraw(update: Update, context: BotContext) -> None:
    """/withdraw STUDY_ID [REASON…]: stop everything for that participant; data kept."""
    args = list(context.args or [])
    if not args:
        raise DomainError("usage: /withdraw STUDY_ID [REASON…]")
    study_id = parse_study_id(args[0])
    participant = await participants.withdraw(
        context.db,
        study_id,
        reason=" ".join(args[1:]) or None,
        actor=_actor(update),
        now=context.now,
        protocol=context.services.protocol,
    )
    context.reply(admin_text.withdrawn(participant))


@private_admin_only
async def sae(update: Update, context: BotContext) -> None:
    """/sae STUDY_ID CRITERION[,CRITERION…] [ONSET_DATE] [NOTE…]: record a serious event
    the team learned of (a death, an admission), alert the coordinators."""
    settings = context.services.settings
    request = adverse_events.parse_sae_args(list(context.args or []), local_date(context.now, settings.tz))
    user = update.effective_user
    assert user is not None
    recorded = await adverse_events.record_staff_sae(
        context.db,
        request,
        actor=_actor(update),
        display_name=user.first_name,
        now=context.now,
        coordinator_chats=settings.coordinator_chat_ids,
        content=context.services.content,
    )
    context.reply(admin_text.sae_recorded(recorded, settings.tz))


@private_admin_only
async def outcome(update: Update, context: BotContext) -> None:
    """/outcome AE_NUMBER OUTCOME: record how an adverse event ended (or is going), audited."""
    request = adverse_events.parse_outcome_args(list(context.args or []))
    result = await adverse_events.set_outcome(context.db, request, actor=_actor(update), now=context.now)
    context.reply(admin_text.outcome_set(result))


@private_admin_only
async def unlink(update: Update, context: BotContext) -> None:
    """/unlink STUDY_ID: a lost or stolen phone; unlink the chat and issue a new code."""
    args = list(context.args or [])
    if len(args) != 1:
        raise DomainError("usage: /unlink STUDY_ID")
    settings = context.services.settings
    result = await enrollment.unlink(
        context.db,
        parse_study_id(args[0]),
        actor=_actor(update),
        now=context.now,
        code_ttl=timedelta(days=settings.enrollment_code_days),
        code_key=context.services.secret_key(ENROLLMENT_CODES),
        protocol=context.services.protocol,
    )
    context.reply(
        "The old chat is unlinked: it gets nothing more.\n"
        + admin_text.enrolled(result, settings.tz, context.bot.username, context.services.protocol)
    )
