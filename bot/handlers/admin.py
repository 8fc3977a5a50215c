"""Admin commands, for user ids in ADMIN_USER_IDS only. Anyone else is refused
in their own language, and the attempt is audited."""

from __future__ import annotations

from datetime import timedelta

from telegram import Update

from bot import staff_replies
from bot.context import BotContext
from bot.handlers.guards import private_admin_only
from domain import adverse_events, audit, enrollment, participants, visit_questionnaires
from domain.errors import DomainError
from domain.parsing import parse_study_id
from domain.secrets import ENROLLMENT_CODES
from scheduler.calendar import local_date


def _actor(update: Update) -> str:
    assert update.effective_user is not None
    return audit.admin_actor(update.effective_user.id)


@private_admin_only
async def enroll(update: Update, context: BotContext) -> None:
    """/enroll STUDY_ID ARM BASELINE [LANG] [WEEKDAY]: register and issue a one-time code
    (the weekday, for an arm whose drug is taken on the participant's own day: the protocol's;
    the menu and the usage line name it after that drug, `enroll_usage`)."""
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
    context.reply(staff_replies.enrolled(result, settings.tz, context.bot.username, context.services.protocol))


@private_admin_only
async def list_participants(update: Update, context: BotContext) -> None:
    """/participants: one line each."""
    context.reply(staff_replies.participant_list(await participants.list_all(context.db), context.services.protocol))


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
    context.reply(staff_replies.withdrawn(participant))


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
    context.reply(staff_replies.sae_recorded(recorded, settings.tz))


@private_admin_only
async def outcome(update: Update, context: BotContext) -> None:
    """/outcome AE_NUMBER OUTCOME: record how an adverse event ended (or is going), audited."""
    request = adverse_events.parse_outcome_args(list(context.args or []))
    result = await adverse_events.set_outcome(context.db, request, actor=_actor(update), now=context.now)
    context.reply(staff_replies.outcome_set(result))


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
        + staff_replies.enrolled(result, settings.tz, context.bot.username, context.services.protocol)
    )


@private_admin_only
async def raynaud(update: Update, context: BotContext) -> None:
    """/raynaud STUDY_ID on|off: the Raynaud's diary for this participant (the 7 days
    before each visit), audited and re-planned."""
    request = visit_questionnaires.parse_switch_args("raynaud", list(context.args or []))
    result = await visit_questionnaires.set_switch(
        context.db,
        request,
        visit_questionnaires.the_switch(context.services.protocol),
        actor=_actor(update),
        now=context.now,
        protocol=context.services.protocol,
    )
    context.reply(staff_replies.switch_set(result, "Raynaud's diary"))
