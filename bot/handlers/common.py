"""Handlers of last resort: nobody is left without an answer."""

from __future__ import annotations

from telegram import Update

from bot.context import BotContext
from bot.i18n import N_, _
from bot.texts import not_enrolled
from models import Participant, ParticipantStatus

NO_LONGER_ACTIVE = N_("This button is no longer active.")


def button_no_longer_active(context: BotContext) -> None:
    """The one answer to a button that changes nothing any more (an old message, a
    finished questionnaire, someone who left the study): say so, change nothing."""
    context.answer(_(NO_LONGER_ACTIVE))


def button_participant(context: BotContext, *, withdrawn_too: bool = False) -> Participant | None:
    """The one guard of a participant-only button: the participant it belongs to, or
    None once it has answered that the button is no longer active (someone the bot
    does not know; someone who has withdrawn, unless `withdrawn_too`: those buttons
    leave the refusal to the domain, which records why)."""
    participant = context.participant
    if participant is None or (participant.status == ParticipantStatus.WITHDRAWN and not withdrawn_too):
        button_no_longer_active(context)
        return None
    return participant


async def stale_button(update: Update, context: BotContext) -> None:
    """A button nobody handles any more (an old message): say so, change nothing."""
    button_no_longer_active(context)


async def unknown_command(update: Update, context: BotContext) -> None:
    """A command the bot does not have (or not for this person)."""
    if context.participant is None:
        context.reply(not_enrolled(context.services.settings.study_contact_phone, context.services.protocol))
        return
    context.reply(_("I do not know that command. Send /help to see what I can do."))


async def not_understood(update: Update, context: BotContext) -> None:
    """Text, a photo, a sticker, a voice note … that nothing was waiting for."""
    if context.participant is None:
        context.reply(not_enrolled(context.services.settings.study_contact_phone, context.services.protocol))
        return
    message = update.effective_message
    if message is not None and message.text is None:
        context.reply(
            _(
                "Sorry, I cannot open photos, stickers, voice or other files. "
                "Please use the buttons or type a command. Send /help to see what I can do."
            )
        )
        return
    context.reply(_("Sorry, I did not understand. Please use the buttons, or send /help to see what I can do."))
