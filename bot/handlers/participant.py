"""Participant commands (private chat): /start, /language, /help."""

from __future__ import annotations

from telegram import Update

from bot import callbacks, keyboards
from bot.context import BotContext
from bot.handlers import common
from bot.i18n import _, use_locale
from bot.texts import REFUSALS, bilingual, help_text, not_enrolled, welcome, with_contact
from domain import enrollment, participants
from domain.enrollment import Redeem
from domain.secrets import AUDIT_STRANGERS, ENROLLMENT_CODES


async def start(update: Update, context: BotContext) -> None:
    """/start CODE links this chat to a participant; /start alone greets or explains."""
    phone = context.services.settings.study_contact_phone
    code = context.args[0] if context.args else None
    known = context.participant
    if code is None:
        if known is None:
            context.reply(not_enrolled(phone, context.services.protocol))
        else:
            context.reply(_("Welcome back! Send /help to see what I can do."))
        return
    user = update.effective_user
    chat = update.effective_chat
    assert user is not None and chat is not None
    services = context.services
    result = await enrollment.redeem(
        context.db,
        code,
        chat_id=chat.id,
        user_id=user.id,
        now=context.now,
        code_key=services.secret_key(ENROLLMENT_CODES),
        stranger_key=services.secret_key(AUDIT_STRANGERS),
        protocol=services.protocol,
    )
    if result.outcome is Redeem.LINKED:
        context.reply(
            bilingual(lambda: _("Your Telegram is now linked to the study. Which language do you want?")),
            keyboards.language_choice(welcome=True),
        )
        return
    if result.outcome is Redeem.CHAT_ALREADY_LINKED:
        assert result.participant is not None
        context.reply(
            with_contact(
                _(
                    "This Telegram account is already linked to study number {study_id}. "
                    "One account can hold only one study number. If this is not right, please contact the study team."
                ).format(study_id=result.participant.study_id),
                phone,
            )
        )
        return
    msgid = REFUSALS[result.outcome.value]
    context.reply(bilingual(lambda: _(msgid), phone))


async def language(update: Update, context: BotContext) -> None:
    """/language: offer বাংলা / English."""
    if context.participant is None:
        context.reply(not_enrolled(context.services.settings.study_contact_phone, context.services.protocol))
        return
    context.reply(
        bilingual(lambda: _("Which language do you want?")),
        keyboards.language_choice(welcome=False),
    )


async def choose_language(update: Update, context: BotContext) -> None:
    """A language button: remember the choice and answer in that language."""
    query = update.callback_query
    assert query is not None and query.data is not None
    participant = common.button_participant(context)
    if participant is None:
        return
    pressed = callbacks.parse_lang(query.data)
    if pressed is None:
        common.button_no_longer_active(context)
        return
    lang, first_time = pressed.language, pressed.welcome
    await participants.set_language(context.db, participant, lang, now=context.now)
    context.edit_markup(None)
    phone = context.services.settings.study_contact_phone
    with use_locale(lang):
        context.answer(_("Saved"))
        if first_time:
            context.reply(welcome(participant, phone, context.services.protocol))
        else:
            name = "বাংলা" if lang == "bn" else "English"
            context.reply(_("Done. From now on I will write to you in {language}.").format(language=name))


async def help_command(update: Update, context: BotContext) -> None:
    """/help: what the bot does and the study phone number."""
    phone = context.services.settings.study_contact_phone
    if context.participant is None:
        context.reply(not_enrolled(phone, context.services.protocol))
        return
    context.reply(help_text(context.participant, phone, context.services.protocol))
