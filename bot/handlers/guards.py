"""Who may run a handler, in one place for every handler module: `admin_only`
(ADMIN_USER_IDS; anyone else is refused in their own language and audited) and
`private_admin_only` (the same, and only in the admin's private chat). The
participant-only button guard is `bot.handlers.common.button_participant`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

from telegram import Update

from bot.context import BotContext
from bot.handlers.gate import stranger_actor
from bot.i18n import _
from domain import audit
from domain.errors import DomainError

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
