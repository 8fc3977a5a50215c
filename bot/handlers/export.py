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

WITH_FILES = "with-files"
TELEGRAM_DOCUMENT_LIMIT = 50 * 1024 * 1024


@private_admin_only
async def export(update: Update, context: BotContext) -> None:
    """/export [SINCE_DATE] [with-files]: CSV, SPSS, dictionary, ODM and REDCap files
    as one zip (with `with-files`, also the photos and voice notes attached to reports,
    under media/: large and personal, so only when asked); the ODM file is always
    checked against the CDISC ODM 1.3.2 schema and the caption says the result."""
    chat = update.effective_chat
    user = update.effective_user
    assert chat is not None and user is not None
    if chat.type != "private":
        raise DomainError("/export works only in your private chat with the bot (the files hold trial data)")
    args = list(context.args or [])
    with_files = WITH_FILES in args
    args = [a for a in args if a != WITH_FILES]
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
            with_files=with_files,
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
            "with_files": with_files,
            "rows": result.row_counts,
            "odm_schema_errors": len(result.validation.errors) if result.validation else None,
        },
    )
    rows = ", ".join(f"{name} {count}" for name, count in result.row_counts.items())
    check = result.validation.summary() if result.validation else ""
    written = sum(1 for f in result.files if f.relative_to(result.directory).parts[0] == "media")
    files = f" With {written} photo/voice file(s) under media/." if with_files else ""
    caption = f"Trial record export{' since ' + since.isoformat() if since else ''}. {check}.{files} Rows: {rows}"[
        :1024
    ]
    bot = context.bot
    size = archive.stat().st_size
    if size > TELEGRAM_DOCUMENT_LIMIT:  # Telegram would refuse it: say so instead of failing
        shutil.rmtree(workdir, ignore_errors=True)
        context.reply(
            f"The export zip is {size / 1024 / 1024:.0f} MB, over the {TELEGRAM_DOCUMENT_LIMIT // 1024 // 1024} MB "
            "Telegram lets a bot send. Export from the shell instead: python -m cli export --out DIR"
            + (" --with-files" if with_files else "")
        )
        return

    async def send() -> None:
        with archive.open("rb") as handle:
            await bot.send_document(chat.id, handle, filename=archive.name, caption=caption)

    async def clean_up() -> None:
        await asyncio.to_thread(shutil.rmtree, workdir, True)

    context.work.after_commit(send)  # retried on a transient error (bot.unit_of_work)
    context.work.after_commit(clean_up)  # after the send and its retries
