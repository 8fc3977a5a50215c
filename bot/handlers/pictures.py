"""/summary and /overview: the study team's pictures (charts/), sent as a photo to read
on a phone and as a PDF to print. Admins only; in a private chat or a coordinator chat
(the pictures carry study ids and clinical data, never names)."""

from __future__ import annotations

from telegram import Update

from bot.context import BotContext
from bot.handlers.admin import admin_only
from charts import Rendered, overview_files, summary_files
from domain import audit, summary
from domain.errors import DomainError
from domain.parsing import parse_study_id


def _check_chat(update: Update, context: BotContext, command: str) -> int:
    """The chat to answer in, if pictures may go there (private or a coordinator chat)."""
    chat = update.effective_chat
    assert chat is not None
    if chat.type != "private" and chat.id not in context.services.settings.coordinator_chat_ids:
        raise DomainError(f"{command} works only in your private chat with the bot or in the coordinator chat")
    return chat.id


def _send_after_commit(context: BotContext, chat_id: int, rendered: Rendered, name: str, caption: str) -> None:
    """The page as a photo, then the same page as a PDF, once the audit row is stored."""
    bot = context.bot
    context.work.after_commit(lambda: bot.send_photo(chat_id, rendered.png, caption=caption, filename=f"{name}.png"))
    context.work.after_commit(
        lambda: bot.send_document(chat_id, rendered.pdf, filename=f"{name}.pdf", caption=f"{caption} (A4, to print)")
    )


@admin_only
async def summary_command(update: Update, context: BotContext) -> None:
    """/summary STUDY_ID: the one-page visit summary for the clinician."""
    chat_id = _check_chat(update, context, "/summary")
    args = list(context.args or [])
    if len(args) != 1:
        raise DomainError("usage: /summary STUDY_ID")
    services = context.services
    record = await summary.load_record(context.db, parse_study_id(args[0]), services.protocol)
    page = summary.build_summary(record, services.protocol, services.instruments, context.now)
    rendered = await summary_files(page, services.protocol.tz)
    user = update.effective_user
    assert user is not None
    audit.record(
        context.db,
        at=context.now,
        actor=audit.admin_actor(user.id),
        action="summary.view",
        participant_id=record.participant.id,
        after={"chat": "private" if chat_id > 0 else "coordinator", "empty": page.empty},
    )
    head = page.header
    day = context.now.astimezone(services.protocol.tz)
    caption = f"Visit summary · {head.study_id} · arm {head.arm} · {day:%d %b %Y}"
    if page.empty:
        caption += " · no data yet"
    _send_after_commit(context, chat_id, rendered, f"summary-{head.study_id}-{day:%Y%m%d}", caption)


@admin_only
async def overview_command(update: Update, context: BotContext) -> None:
    """/overview: the whole trial at a glance, one line per participant."""
    chat_id = _check_chat(update, context, "/overview")
    services = context.services
    tz = services.protocol.tz
    rows = summary.overview_rows(await summary.load_all(context.db, services.protocol), context.now, tz)
    rendered = await overview_files(rows, services.protocol.trial_id, context.now, tz)
    user = update.effective_user
    assert user is not None
    audit.record(
        context.db,
        at=context.now,
        actor=audit.admin_actor(user.id),
        action="overview.view",
        after={"participants": len(rows)},
    )
    day = context.now.astimezone(tz)
    caption = f"Trial at a glance · {services.protocol.trial_id} · {len(rows)} participant(s) · {day:%d %b %Y}"
    _send_after_commit(context, chat_id, rendered, f"overview-{day:%Y%m%d}", caption)
