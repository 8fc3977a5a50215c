"""/export: the trial-record files, zipped, sent to the admin who asked.

Only in the admin's private chat: the files hold trial data (free text
included) and must never land in a group where others read along."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from telegram import Update

from bot.context import BotContext
from bot.handlers.guards import private_admin_only
from domain import audit
from domain.errors import DomainError
from domain.parsing import parse_date
from export.archive import zip_export
from export.run import export_trial_record


@private_admin_only
async def export(update: Update, context: BotContext) -> None:
    """/export [SINCE_DATE]: CSV, SPSS, dictionary, ODM and REDCap files as one
    zip; the ODM file is always checked against the CDISC ODM 1.3.2 schema and
    the caption says the result."""
    chat = update.effective_chat
    user = update.effective_user
    assert chat is not None and user is not None
    if chat.type != "private":
        raise DomainError("/export works only in your private chat with the bot (the files hold trial data)")
    args = list(context.args or [])
    since = parse_date(args[0]) if args else None
    services = context.services
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="ssc-export-"))
    try:
        result = await export_trial_record(
            services.engine,
            workdir / "export",
            services.settings.tz,
            protocol=services.protocol,
            instruments=services.instruments,
            now=context.now,
            since=since,
            validate=True,
        )
        stamp = context.now.astimezone(services.settings.tz).strftime("%Y%m%d-%H%M")
        archive = await asyncio.to_thread(zip_export, result, workdir / f"ssc-trial-record-{stamp}.zip")
    except Exception:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    audit.record(
        context.db,
        at=context.now,
        actor=audit.admin_actor(user.id),
        action="export.run",
        after={
            "since": since.isoformat() if since else None,
            "rows": result.row_counts,
            "odm_schema_errors": len(result.validation.errors) if result.validation else None,
        },
    )
    rows = ", ".join(f"{name} {count}" for name, count in result.row_counts.items())
    check = result.validation.summary() if result.validation else ""
    caption = f"Trial record export{' since ' + since.isoformat() if since else ''}. {check}. Rows: {rows}"[:1024]
    bot = context.bot

    async def send() -> None:
        with archive.open("rb") as handle:
            await bot.send_document(chat.id, handle, filename=archive.name, caption=caption)

    async def clean_up() -> None:
        await asyncio.to_thread(shutil.rmtree, workdir, True)

    context.work.after_commit(send)  # retried on a transient error (bot.unit_of_work)
    context.work.after_commit(clean_up)  # after the send and its retries
