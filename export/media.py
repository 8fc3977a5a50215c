"""The media manifest: every photo, voice note and audio file attached to a report
(report, study id, kind, size, SHA-256, times), and, for an export with files, the
files themselves under `media/` (read one at a time, after the snapshot: a stored
file never changes, so they are the bytes the manifest's SHA-256 describes)."""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from export.datasets import STUDY_ID, Scope, selected
from export.spec import Dataset, Variable
from models import MediaStatus, Participant, ReportMedia

KINDS = {"photo": "Photo", "voice": "Voice note", "audio": "Audio file", "document": "Picture or audio sent as a file"}
KINDS_BN = {"photo": "ছবি", "voice": "ভয়েস মেসেজ", "audio": "অডিও ফাইল", "document": "ফাইল হিসেবে পাঠানো ছবি বা অডিও"}
STATUSES = {
    "pending": "Received, not downloaded yet (retried)",
    "stored": "Stored",
    "dead": "Download refused by Telegram (the participant was asked to send it again)",
}
LISTED = (MediaStatus.PENDING, MediaStatus.STORED, MediaStatus.DEAD)  # not: held (no report), duplicate (kept once)
FOLDER = "media"


def file_name(media: ReportMedia) -> str:
    """Where a file goes in an export with files: `media/<report>/<id>-<sha256 head>.<ext>`."""
    ext = mimetypes.guess_extension(media.mime_type) or ".bin"
    ext = {".jpe": ".jpg", ".oga": ".ogg"}.get(ext, ext)
    return f"{FOLDER}/report-{media.session_id}/media-{media.id}-{(media.sha256 or 'pending')[:12]}{ext}"


async def media_files(session: AsyncSession, scope: Scope) -> Dataset:
    """One row per file attached to a report (a duplicate of a stored one is not listed)."""
    variables = [
        Variable("media_id", "File number", "integer", "report_media.id"),
        STUDY_ID,
        Variable("response_id", "Report (questionnaire response) it belongs to", "integer", "report_media.session_id"),
        Variable("kind", "Kind of file", "string", "report_media.kind", KINDS, KINDS_BN),
        Variable("mime_type", "MIME type", "string", "report_media.mime_type"),
        Variable("size_bytes", "Size", "integer", "report_media.size", unit="bytes"),
        Variable("sha256", "SHA-256 of the stored bytes", "string", "report_media.sha256"),
        Variable("received_at", "Received at", "datetime", "report_media.received_at"),
        Variable("stored_at", "Downloaded and stored at", "datetime", "report_media.stored_at"),
        Variable("status", "Stored or not", "string", "report_media.status", STATUSES),
        Variable("alert_id", "Alert it was sent to the coordinators under", "integer", "report_media.alert_id"),
        Variable("file", "Its path in an export with files", "string", "report_media.id"),
    ]
    query = selected(
        select(ReportMedia, Participant.study_id)
        .join(Participant, Participant.id == ReportMedia.participant_id)
        .where(ReportMedia.session_id.is_not(None), ReportMedia.status.in_(LISTED))
        .order_by(ReportMedia.id),
        scope,
        ReportMedia.participant_id,
        ReportMedia.received_at,
        ReportMedia.stored_at,
    )
    rows = [
        {
            "media_id": m.id,
            "study_id": study_id,
            "response_id": m.session_id,
            "kind": m.kind,
            "mime_type": m.mime_type,
            "size_bytes": m.size,
            "sha256": m.sha256,
            "received_at": m.received_at,
            "stored_at": m.stored_at,
            "status": m.status,
            "alert_id": m.alert_id,
            "file": file_name(m) if m.status is MediaStatus.STORED else None,
            "_recorded_at": m.received_at,
            "_recorded_by": "participant",
        }
        for m, study_id in (await session.execute(query)).all()
    ]
    return Dataset(
        "media",
        "Photos and voice notes attached to reports",
        variables,
        rows,
        repeat_key_var="media_id",
        prefix="media",
        complete=lambda row: row.get("status") == "stored",
    )


async def write_media_files(engine: AsyncEngine, out_dir: Path, manifest: Dataset) -> list[Path]:
    """The stored files the manifest lists, one read at a time, `0600` under a `0700` folder."""
    written: list[Path] = []
    wanted: Sequence[tuple[int, str]] = [
        (int(str(row["media_id"])), str(row["file"])) for row in manifest.rows if row.get("file")
    ]
    async with AsyncSession(engine) as session:
        for media_id, relative in wanted:
            content = await session.scalar(select(ReportMedia.content).where(ReportMedia.id == media_id))
            if content is None:
                continue
            path = out_dir / relative
            for folder in reversed(path.relative_to(out_dir).parents[:-1]):
                (out_dir / folder).mkdir(mode=0o700, exist_ok=True)
            await asyncio.to_thread(_write_private, path, content)
            written.append(path)
    return written


def _write_private(path: Path, content: bytes) -> None:
    path.touch(mode=0o600)
    path.write_bytes(content)
    path.chmod(0o600)
