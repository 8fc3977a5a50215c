"""What every update passes first (handler group -1), before any command or answer:

- an edited message is never handled again (fixing a typo in an old /pause must not
  pause anyone again, and an edit is not a new answer); in a private chat the sender
  is told to send it again;
- in a group, the bot talks only to the study team: the configured coordinator and
  escalation chats, and admins; any other group it is in, it leaves (audited) without
  a word, so a stranger cannot make it talk, or keep it busy, there."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ApplicationHandlerStop

from bot.context import BotContext
from bot.i18n import _
from domain import audit
from domain.secrets import AUDIT_STRANGERS

GROUP_TYPES = frozenset({"group", "supergroup", "channel"})


def team_chats(context: BotContext) -> set[int]:
    """The group chats the study team uses with the bot."""
    settings = context.services.settings
    return set(settings.coordinator_chat_ids) | set(settings.escalation_chat_ids)


def stranger_actor(context: BotContext, user_id: int | None) -> str:
    """Audit label for someone the bot does not know, without their Telegram id."""
    return audit.stranger_actor(user_id, context.services.secret_key(AUDIT_STRANGERS))


async def gate(update: Update, context: BotContext) -> None:
    """Stop edits and strangers' groups here; let everything else through."""
    chat = update.effective_chat
    if update.edited_message is not None or update.edited_channel_post is not None:
        if chat is not None and chat.type == "private":
            context.reply(_("Edits are not read. Please send your message again."))
        raise ApplicationHandlerStop
    if chat is None or chat.type not in GROUP_TYPES or chat.id in team_chats(context):
        return
    user = update.effective_user
    if user is not None and user.id in context.services.settings.admin_user_ids:
        return  # an admin in another group: they are told to use their private chat
    membership = update.my_chat_member
    if membership is not None and membership.new_chat_member.status in ("left", "kicked"):
        raise ApplicationHandlerStop  # the bot is out (its own leaving, or a kick): nothing to do
    left: set[int] = context.bot_data.setdefault("left_chats", set())
    if chat.id in left and membership is None:
        raise ApplicationHandlerStop  # already left: updates queued before that are dropped
    audit.record(
        context.db,
        at=context.now,
        actor=stranger_actor(context, user.id if user else None),
        action="chat.leave",
        detail=f"{chat.type} not a team chat",
    )
    bot = context.bot

    async def leave() -> None:
        left.add(chat.id)  # after the commit: the chat's next update waits for this (see TrialApplication)
        await bot.leave_chat(chat.id)

    context.work.after_commit(leave)
    raise ApplicationHandlerStop
