"""The command menus Telegram shows, per audience and language. A test checks
that every command listed here has a handler, so the menu never advertises
something the bot cannot do."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from telegram import BotCommand, BotCommandScopeAllPrivateChats, BotCommandScopeChat
from telegram.error import TelegramError

from bot.i18n import N_, _, use_locale
from domain.enrollment import enroll_usage

if TYPE_CHECKING:
    from bot.app import TrialApplication

log = logging.getLogger(__name__)

PARTICIPANT_COMMANDS: list[tuple[str, str]] = [
    ("help", N_("What this bot does, and the study phone")),
    ("language", N_("বাংলা / English")),
    ("checkin", N_("Answer this week's health questions")),
    ("report", N_("Tell us about a health problem, at any time")),
    ("cancel", N_("Stop the questions you are answering")),
    ("schedule", N_("Your next visits and medicine reminders")),
    ("settime", N_("Change your medicine reminder time, e.g. /settime 9:30 pm")),
    ("stop", N_("Stop all reminders")),
]

# Admin menu descriptions are for the study team: English.
ADMIN_COMMANDS: list[tuple[str, str]] = [
    ("enroll", "{enroll_usage}: enroll, get a one-time code"),  # the arguments from the protocol
    ("participants", "everyone, one line each"),
    ("withdraw", "STUDY_ID [REASON]: stop everything; data kept"),
    ("unlink", "STUDY_ID: lost phone; unlink the chat, new code"),
    ("alerts", "open alerts, each with its Acknowledge button"),
    ("ack", "ALERT_ID [NOTE]: acknowledge an alert"),
    ("sae", "STUDY_ID CRITERIA [ONSET_DATE] [NOTE]: record a serious event (death, admission…)"),
    ("outcome", "AE_NUMBER OUTCOME: an adverse event's outcome (recovered, recovering, fatal…)"),
    ("pause", "STUDY_ID [UNTIL_DATE] [REASON]: pause reminders"),
    ("resume", "STUDY_ID: restart reminders"),
    ("status", "STUDY_ID: arm, next visit, adherence, alerts"),
    ("visit", "STUDY_ID WEEK done|missed [DATE] | on DATE: record a visit or agree its date"),
    ("raynaud", "STUDY_ID on|off: the Raynaud's diary (7 days before each visit) for one participant"),
    ("summary", "STUDY_ID: one-page visit summary (picture and PDF)"),
    ("overview", "the whole trial at a glance (picture and PDF)"),
    ("export", "[SINCE_DATE]: trial-record files (CSV, SPSS, ODM) as a zip, here"),
]


def participant_menu() -> list[BotCommand]:
    """The participant menu in the current language."""
    return [BotCommand(name, _(description)) for name, description in PARTICIPANT_COMMANDS]


async def set_menus(app: TrialApplication) -> None:
    """Participants see their commands (in Bangla when their app is in Bangla);
    admins see the admin commands too, in their private chat and in the
    coordinator chats. A chat that cannot be reached is logged, not fatal."""
    bot = app.bot
    with use_locale("en"):
        await bot.set_my_commands(participant_menu(), scope=BotCommandScopeAllPrivateChats())
    with use_locale("bn"):
        await bot.set_my_commands(participant_menu(), scope=BotCommandScopeAllPrivateChats(), language_code="bn")
    with use_locale("en"):
        usage = enroll_usage(app.services.protocol)
        admin_menu = [BotCommand(n, d.format(enroll_usage=usage)) for n, d in ADMIN_COMMANDS] + participant_menu()
    settings = app.services.settings
    for chat_id in (*settings.admin_user_ids, *settings.coordinator_chat_ids):
        try:
            await bot.set_my_commands(admin_menu, scope=BotCommandScopeChat(chat_id))
        except TelegramError as error:
            log.warning("admin menu not set for one chat: %s", type(error).__name__)
