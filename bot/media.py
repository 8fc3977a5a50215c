"""Photos, voice notes and audio files in the chat (domain.media keeps them).

A participant's file during an open /report (or right after it, while its alert
is open) is attached to that report and acknowledged in their language; outside
a report they are offered one button, "Report a problem with this photo", which
starts /report with the file attached. The download (getFile, then the file
itself) and the forward to the coordinator chats happen after the commit, in the
"alerts" tick: the download with the alert deliveries' back-off
(scheduler.outbox.ALERTS), the forward as an alert delivery of the outbox
(bot.alerting): nothing is lost when either fails. Logs carry ids only: never a
file's content, name or caption."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, ReplyParameters, Update
from telegram.error import BadRequest

from bot import callbacks
from bot.context import BotContext
from bot.handlers import common, questionnaire
from bot.i18n import _, format_number
from domain import media, questionnaire_sessions
from domain.media import Incoming, Received, Refusal
from models import Alert, AlertDelivery, DeliveryStatus, MediaStatus, Participant, ParticipantStatus, ReportMedia
from scheduler import outbox

if TYPE_CHECKING:
    from telegram import Bot

    from bot.app import TrialApplication

log = logging.getLogger(__name__)

KIND_WORDS = {"photo": "photo", "voice": "voice note", "audio": "audio file", "document": "file"}


def incoming_of(message: Message) -> Incoming | None:
    """The file a message carries, as announced (None: no file we look at)."""
    group = message.media_group_id
    if message.photo:
        largest = message.photo[-1]
        return Incoming("photo", largest.file_id, largest.file_unique_id, "image/jpeg", largest.file_size, group)
    for kind in ("voice", "audio", "document", "video", "video_note", "animation"):
        item = getattr(message, kind, None)
        if item is not None:
            mime = getattr(item, "mime_type", None) or ("audio/ogg" if kind == "voice" else "application/octet-stream")
            return Incoming(kind, item.file_id, item.file_unique_id, mime, item.file_size, group)
    return None


async def file_message(update: Update, context: BotContext) -> None:
    """A photo, voice note, audio file or other file in a private chat."""
    participant = context.participant
    message = update.effective_message
    incoming = incoming_of(message) if message is not None else None
    if participant is None or incoming is None or participant.status is ParticipantStatus.WITHDRAWN:
        await questionnaire.typed_answer(update, context)
        return
    # expiry first: a session past its time is closed before a file is held for it
    await questionnaire_sessions.current_progress(context.db, participant, context.now, questionnaire.env(context))
    report = await media.report_for_files(context.db, participant, context.services.protocol.report_instrument)
    if report is None and media.supported(incoming):
        received = await media.receive(context.db, participant, incoming, None, context.now)
        if received.media is not None:
            if not received.quiet:  # an album gets one offer, for all its photos
                _offer_report(context, received.media)
            return
    else:
        received = await media.receive(context.db, participant, incoming, report, context.now)
    _acknowledge(context, received, incoming.kind)


def _offer_report(context: BotContext, held: ReportMedia) -> None:
    label = (
        _("Report a problem with this photo") if held.kind == "photo" else _("Report a problem with this voice message")
    )
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=callbacks.report_media(held.id))]])
    context.reply(
        _("Is something wrong? Press the button to tell the study team about it. The study team sees the file then."),
        keyboard,
    )


def _acknowledge(context: BotContext, received: Received, kind: str) -> None:
    """Say what became of the file, in the participant's language."""
    if received.quiet:
        return
    if received.refusal is Refusal.UNSUPPORTED:
        context.reply(
            _("I can take photos, voice messages and audio files only. Please send a photo or a voice message.")
        )
    elif received.refusal is Refusal.TOO_BIG:
        context.reply(
            _(
                "This file is too big: I can take files up to {size} MB. "
                "Please send a smaller photo or a shorter voice message."
            ).format(size=format_number(media.MAX_BYTES // (1024 * 1024)))
        )
    elif received.refusal is Refusal.TOO_MANY:
        context.reply(
            _(
                "One report can hold {count} photos or voice messages. This one was not added. "
                "Please call the study team to show more."
            ).format(count=format_number(media.MAX_FILES))
        )
    elif received.already:
        context.reply(_("This file is already with your report."))
    elif received.media is not None and received.media.media_group_id is not None:
        context.reply(_("Thank you. Your photos are added to your report. The study team will see them."))
    elif kind == "photo" or (received.media is not None and received.media.mime_type.startswith("image/")):
        context.reply(_("Thank you. Your photo is added to your report. The study team will see it."))
    else:
        context.reply(_("Thank you. Your voice message is added to your report. The study team will listen to it."))


async def report_button(update: Update, context: BotContext) -> None:
    """The "Report a problem with this photo" button: start (or continue) /report with the file attached."""
    query = update.callback_query
    assert query is not None and query.data is not None
    participant = common.button_participant(context)
    if participant is None:
        return
    media_id = callbacks.parse_report_media(query.data)
    held = await context.db.get(ReportMedia, media_id) if media_id is not None else None
    if held is None or held.participant_id != participant.id or held.status is not MediaStatus.HELD:
        common.button_no_longer_active(context)
        return
    context.answer()
    context.edit_markup(None)
    environment = questionnaire.env(context)
    outcome = await questionnaire_sessions.begin(
        context.db,
        participant,
        environment.report_instrument,
        questionnaire_sessions.ORIGIN_REPORT,
        now=context.now,
        env=environment,
    )
    if outcome.current is None:
        context.reply(_("These questions are not for you right now."))
        return
    received = await media.attach_held(context.db, participant, held.id, outcome.current.session, context.now)
    _acknowledge(context, received, held.kind)
    questionnaire.show(context, outcome)


# ------------------------------------------------------------------ download (the alerts tick)


async def download_pending(app: TrialApplication) -> None:
    """Download every due file of a report, each under a short claim; a failure waits
    for the alert deliveries' back-off, a refusal (400) is dead-lettered."""
    services = app.services
    async with services.sessions() as session:
        due = await media.due_downloads(session, services.clock.now())
    for media_id in due:
        await _download_one(app, media_id)


async def _download_one(app: TrialApplication, media_id: int) -> None:
    services = app.services
    settings = services.settings
    now = services.clock.now()
    async with services.sessions() as session:
        claimed = await media.claim_download(session, media_id, now, timedelta(seconds=settings.alert_lease_seconds))
        if claimed is None:
            await session.rollback()
            return
        file_id = claimed.file_id
        await session.commit()
    try:
        telegram_file = await app.bot.get_file(file_id)
        content = bytes(await telegram_file.download_as_bytearray())
    except BadRequest as exc:
        async with services.sessions() as session:
            dead = await media.give_up_download(session, media_id, now, f"BadRequest: {exc.message}")
            await session.commit()
        log.error("media %s: the Bot API refused its download for good (BadRequest): dead-lettered", media_id)
        if dead is not None:
            await _tell_admins(
                app,
                f"⚠️ A file attached to report #{dead.session_id} (media #{media_id}) could not be downloaded: "
                f"Telegram refused it ({exc.message[:100]}). Please ask the participant to send it again.",
            )
        return
    except Exception as exc:
        async with services.sessions() as session:
            row = await session.get(ReportMedia, media_id)
            attempts = (row.attempts if row else 0) + 1
            delay = outbox.ALERTS.backoff(attempts)  # the one back-off policy, with the alerts' delays
            await media.retry_download(session, media_id, now, delay, type(exc).__name__)
            await session.commit()
        log.warning("media %s not downloaded (%s); will retry", media_id, type(exc).__name__)
        return
    async with services.sessions() as session:
        stored = await media.store(session, media_id, content, services.clock.now(), settings.coordinator_chat_ids)
        await session.commit()
    if stored is not None:
        log.info("media %s downloaded (%s, %d bytes)", media_id, stored.status.value, stored.size or 0)


async def _tell_admins(app: TrialApplication, text: str) -> None:
    for admin_id in app.services.settings.admin_user_ids:
        try:
            await app.bot.send_message(admin_id, text)
        except Exception as exc:
            log.error("an admin was not told of a dead media download (%s)", type(exc).__name__)


# ------------------------------------------------------------------ forward (an alert delivery)


@dataclass(frozen=True)
class Forward:
    """One file to one coordinator chat, as a reply to the alert's message there."""

    kind: str
    file_id: str
    caption: str
    reply_to: int | None


async def prepare_forward(
    session: AsyncSession, alert: Alert, participant: Participant | None, delivery: AlertDelivery, media_id: int
) -> Forward | datetime | None:
    """What to send for a media delivery; a time when the alert's own message to that
    chat has not gone out yet (the file waits for it, to reply to it); None when the
    file is gone (nothing to send)."""
    row = await session.get(ReportMedia, media_id)
    if row is None:
        return None
    own = (
        await session.scalars(
            select(AlertDelivery).where(
                AlertDelivery.alert_id == alert.id,
                AlertDelivery.chat_id == delivery.chat_id,
                AlertDelivery.purpose == "alert",
            )
        )
    ).first()
    if own is not None and own.status is DeliveryStatus.PENDING:
        return own.next_attempt_at
    if own is not None and own.status is DeliveryStatus.SENDING:  # being sent: until its claim ends, at most
        assert own.claimed_until is not None
        return own.claimed_until
    number, total = await media.number_in_report(session, row)
    who = participant.study_id if participant else "no participant"
    caption = (
        f"📎 {who} · {KIND_WORDS.get(row.kind, 'file')} {number} of {total} from report #{row.session_id} "
        f"· alert #{alert.id} · {row.size or 0:,} bytes · SHA-256 {(row.sha256 or '')[:12]}…"
    )
    return Forward(row.kind, row.file_id, caption, own.message_id if own is not None else None)


async def forward(bot: Bot, chat_id: int, item: Forward) -> Message:
    """Send one file by its Bot API id (no upload), replying to the alert's message."""
    reply = ReplyParameters(item.reply_to, allow_sending_without_reply=True) if item.reply_to else None
    if item.kind == "photo":
        return await bot.send_photo(chat_id, item.file_id, caption=item.caption, reply_parameters=reply)
    if item.kind == "voice":
        return await bot.send_voice(chat_id, item.file_id, caption=item.caption, reply_parameters=reply)
    if item.kind == "audio":
        return await bot.send_audio(chat_id, item.file_id, caption=item.caption, reply_parameters=reply)
    return await bot.send_document(chat_id, item.file_id, caption=item.caption, reply_parameters=reply)
