"""/summary and /overview: the study team's pictures (charts/), sent as a photo to read
on a phone and as a PDF to print. Admins only; in a private chat or a coordinator chat
(the pictures carry study ids and clinical data, never names)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from telegram import Update

from bot.context import BotContext
from bot.handlers.guards import admin_only
from charts import Rendered, overview_files, summary_files
from domain import audit, summary
from domain.errors import DomainError
from domain.parsing import parse_study_id

log = logging.getLogger(__name__)


def _check_chat(update: Update, context: BotContext, command: str) -> int:
    """The chat to answer in, if pictures may go there (private or a coordinator chat)."""
    chat = update.effective_chat
    assert chat is not None
    if chat.type != "private" and chat.id not in context.services.settings.coordinator_chat_ids:
        raise DomainError(f"{command} works only in your private chat with the bot or in the coordinator chat")
    return chat.id


def _send_after_commit(
    context: BotContext, chat_id: int, draw: Callable[[], Awaitable[Rendered]], name: str, caption: str
) -> None:
    """Draw the page after the commit (a second or two of CPU: never inside the update's
    transaction, which on SQLite holds the one writer), then send it as a photo and as a
    PDF. A page that cannot be drawn gets a short apology instead (the error is logged)."""
    bot = context.bot
    drawn: list[Rendered | None] = []

    async def page() -> Rendered | None:
        if not drawn:
            try:
                drawn.append(await draw())
            except Exception as exc:
                log.error("%s not drawn: %s", name, type(exc).__name__, exc_info=exc)
                drawn.append(None)
                await bot.send_message(chat_id, f"Sorry, {name} could not be drawn; the error is logged.")
        return drawn[0]

    async def photo() -> None:
        rendered = await page()
        if rendered is not None:
            await bot.send_photo(chat_id, rendered.png, caption=caption, filename=f"{name}.png")

    async def document() -> None:
        rendered = await page()
        if rendered is not None:
            await bot.send_document(chat_id, rendered.pdf, filename=f"{name}.pdf", caption=f"{caption} (A4, to print)")

    context.work.after_commit(photo)
    context.work.after_commit(document)


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
    tz = services.protocol.tz
    _send_after_commit(
        context, chat_id, lambda: summary_files(page, tz), f"summary-{head.study_id}-{day:%Y%m%d}", caption
    )


@admin_only
async def overview_command(update: Update, context: BotContext) -> None:
    """/overview: the whole trial at a glance, one line per participant."""
    chat_id = _check_chat(update, context, "/overview")
    services = context.services
    tz = services.protocol.tz
    rows = await summary.load_overview(context.db, services.protocol, context.now)
    trial, now = services.protocol.trial_id, context.now
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
    _send_after_commit(
        context, chat_id, lambda: overview_files(rows, trial, now, tz), f"overview-{day:%Y%m%d}", caption
    )
