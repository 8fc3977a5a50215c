"""Photos, voice notes and audio files attached to a report, without Telegram.

A file a participant sends during an open /report (or right after it, while the
report's alert is open) becomes a `report_media` row at once, in the update's
transaction: who, when, kind, MIME type, announced size. Its bytes are fetched
later, outside any transaction (the bot's download job), stored with their
SHA-256 (the same bytes twice in one report are kept once), and only then queued
for the coordinator chats as replies to the report's alert: `alert_deliveries`
rows with purpose "media-<id>", sent, retried and dead-lettered like every alert
delivery. A file sent outside a report is held (never downloaded) until the
participant presses "Report a problem with this photo".

Limits (the answers are the bot's): at most MAX_FILES files in one report, none
over MAX_BYTES (the Bot API's download limit), only photos, voice notes, audio
files and pictures sent as files."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain import audit
from domain.alerts import ALERTS_RAISED, queue_delivery, raise_alert
from models import (
    Alert,
    AlertLevel,
    MediaStatus,
    Participant,
    QuestionnaireSession,
    QuestionnaireStatus,
    ReportMedia,
)

MAX_FILES = 10
MAX_BYTES = 20 * 1024 * 1024
KINDS = ("photo", "voice", "audio", "document")
PICTURE_TYPES = frozenset({"image/jpeg", "image/png", "image/heic", "image/heif", "image/webp"})
MEDIA_PURPOSE = "media-"
MEDIA_ALERT_KIND = "report_media"
KEPT = (MediaStatus.PENDING, MediaStatus.STORED)


class Refusal(enum.StrEnum):
    """Why a file was not taken."""

    UNSUPPORTED = "unsupported"
    TOO_BIG = "too_big"
    TOO_MANY = "too_many"


@dataclass(frozen=True)
class Incoming:
    """A file as a message announces it (nothing downloaded yet)."""

    kind: str  # photo | voice | audio | document | anything else (refused)
    file_id: str
    file_unique_id: str
    mime_type: str
    size: int | None
    media_group_id: str | None = None


@dataclass(frozen=True)
class Received:
    """What became of an incoming file, for the handler to put into words."""

    media: ReportMedia | None = None
    refusal: Refusal | None = None
    already: bool = False  # the very same file is already with this report
    quiet: bool = False  # a later photo of an album already acknowledged


def purpose(media_id: int) -> str:
    """The `alert_deliveries.purpose` of one file's forward."""
    return f"{MEDIA_PURPOSE}{media_id}"


def media_id_of(delivery_purpose: str) -> int | None:
    """The file a delivery forwards (None for an alert's own messages)."""
    if not delivery_purpose.startswith(MEDIA_PURPOSE):
        return None
    return int(delivery_purpose[len(MEDIA_PURPOSE) :])


def supported(incoming: Incoming) -> bool:
    """Photos, voice notes, audio files, and pictures or audio sent as a file."""
    if incoming.kind in ("photo", "voice", "audio"):
        return True
    mime = incoming.mime_type.lower()
    return incoming.kind == "document" and (mime in PICTURE_TYPES or mime.startswith("audio/"))


def _sources(session_id: int) -> tuple[str, str]:
    return f"questionnaire_session:{session_id}", f"{MEDIA_ALERT_KIND}:{session_id}"


async def report_alert(db: AsyncSession, session_id: int) -> Alert | None:
    """The report's latest alert (its findings, or the one raised for its files)."""
    found = await db.scalars(select(Alert).where(Alert.source.in_(_sources(session_id))).order_by(Alert.id.desc()))
    return found.first()


async def report_for_files(
    db: AsyncSession, participant: Participant, report_instrument: str
) -> QuestionnaireSession | None:
    """The report a file goes with now: the open /report, else the latest report
    whose alert nobody has acknowledged yet ("right after it"); None otherwise."""
    reports = list(
        await db.scalars(
            select(QuestionnaireSession)
            .where(
                QuestionnaireSession.participant_id == participant.id,
                QuestionnaireSession.instrument_id == report_instrument,
            )
            .order_by(QuestionnaireSession.id.desc())
            .limit(1)
        )
    )
    if not reports:
        return None
    latest = reports[0]
    if latest.status is QuestionnaireStatus.IN_PROGRESS:
        return latest
    alert = await report_alert(db, latest.id)
    if alert is not None and alert.acknowledged_at is None:
        return latest
    return None


async def receive(
    db: AsyncSession,
    participant: Participant,
    incoming: Incoming,
    report: QuestionnaireSession | None,
    now: datetime,
) -> Received:
    """Take a file: refused (type, size, count), already there, attached to `report`
    (its download queued), or held for the "Report a problem" button."""
    if not supported(incoming):
        return Received(refusal=Refusal.UNSUPPORTED)
    if incoming.size is not None and incoming.size > MAX_BYTES:
        return Received(refusal=Refusal.TOO_BIG)
    quiet = False
    if report is not None:
        kept = await _kept(db, report.id)
        if any(m.file_unique_id == incoming.file_unique_id for m in kept):
            return Received(already=True)
        if len(kept) >= MAX_FILES:
            return Received(refusal=Refusal.TOO_MANY)
        quiet = incoming.media_group_id is not None and any(m.media_group_id == incoming.media_group_id for m in kept)
    elif incoming.media_group_id is not None:  # an album outside a report: one offer for all its photos
        quiet = bool(await _held_album(db, participant, incoming.media_group_id))
    media = ReportMedia(
        participant_id=participant.id,
        session_id=report.id if report else None,
        kind=incoming.kind,
        file_id=incoming.file_id,
        file_unique_id=incoming.file_unique_id,
        media_group_id=incoming.media_group_id,
        mime_type=incoming.mime_type,
        size=incoming.size,
        status=MediaStatus.PENDING if report else MediaStatus.HELD,
        received_by=audit.participant_actor(participant.study_id),
        received_at=now,
        attempts=0,
        next_attempt_at=now,
    )
    db.add(media)
    await db.flush()
    _audit(db, media, participant, now, "media.receive")
    if report is not None:
        db.info[ALERTS_RAISED] = True  # the bot downloads and forwards it right after the commit
    return Received(media=media, quiet=quiet)


async def attach_held(
    db: AsyncSession, participant: Participant, media_id: int, report: QuestionnaireSession, now: datetime
) -> Received:
    """The "Report a problem with this photo" button: the held file (with the rest of
    its album) goes with `report`, under the same limits as a file sent during it; an
    empty Received when it is not held any more."""
    media = await db.get(ReportMedia, media_id)
    if media is None or media.participant_id != participant.id or media.status is not MediaStatus.HELD:
        return Received()
    album = await _held_album(db, participant, media.media_group_id) if media.media_group_id else [media]
    kept = await _kept(db, report.id)
    attached: list[ReportMedia] = []
    for held in album:
        if any(m.file_unique_id == held.file_unique_id for m in kept):
            continue
        if len(kept) >= MAX_FILES:
            return Received(media=attached[0] if attached else None, refusal=Refusal.TOO_MANY)
        held.session_id, held.status, held.next_attempt_at = report.id, MediaStatus.PENDING, now
        _audit(db, held, participant, now, "media.attach")
        kept.append(held)
        attached.append(held)
    if not attached:
        return Received(already=True)
    db.info[ALERTS_RAISED] = True
    return Received(media=attached[0])


async def _held_album(db: AsyncSession, participant: Participant, group: str) -> list[ReportMedia]:
    """The held files of one album (sent outside a report), in the order they came."""
    found = await db.scalars(
        select(ReportMedia)
        .where(
            ReportMedia.participant_id == participant.id,
            ReportMedia.media_group_id == group,
            ReportMedia.status == MediaStatus.HELD,
        )
        .order_by(ReportMedia.id)
    )
    return list(found)


async def _kept(db: AsyncSession, session_id: int) -> list[ReportMedia]:
    return list(
        await db.scalars(select(ReportMedia).where(ReportMedia.session_id == session_id, ReportMedia.status.in_(KEPT)))
    )


def _audit(db: AsyncSession, media: ReportMedia, participant: Participant, now: datetime, action: str) -> None:
    # Ids, kind and size only: never the file, its name or its caption.
    audit.record(
        db,
        at=now,
        actor=media.received_by,
        action=action,
        participant_id=participant.id,
        after={"media": media.id, "session": media.session_id, "kind": media.kind, "size": media.size},
    )


async def due_downloads(db: AsyncSession, now: datetime) -> list[int]:
    """Files whose download is due, oldest first."""
    found = await db.scalars(
        select(ReportMedia.id)
        .where(ReportMedia.status == MediaStatus.PENDING, ReportMedia.next_attempt_at <= now)
        .order_by(ReportMedia.id)
    )
    return list(found)


async def claim_download(db: AsyncSession, media_id: int, now: datetime, lease: timedelta) -> ReportMedia | None:
    """Claim one due download for `lease` (a conditional UPDATE, as alert deliveries
    are claimed): another process, or this one after a crash, takes it up after."""
    media = await db.get(ReportMedia, media_id)
    if media is None or media.status is not MediaStatus.PENDING or media.next_attempt_at > now:
        return None
    claimed = await db.execute(
        update(ReportMedia)
        .where(
            ReportMedia.id == media_id,
            ReportMedia.status == MediaStatus.PENDING,
            ReportMedia.next_attempt_at == media.next_attempt_at,
        )
        .values(next_attempt_at=now + lease)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return media


async def store(
    db: AsyncSession, media_id: int, content: bytes, now: datetime, coordinator_chats: Sequence[int]
) -> ReportMedia | None:
    """Keep a downloaded file with its size and SHA-256, once per report (the same
    bytes again become a `duplicate` row without content), and queue the kept one
    for every coordinator chat as a reply to the report's alert."""
    media = await db.get(ReportMedia, media_id)
    if media is None or media.status is not MediaStatus.PENDING or media.session_id is None:
        return None
    digest = hashlib.sha256(content).hexdigest()
    media.sha256, media.size, media.stored_at = digest, len(content), now
    media.attempts += 1
    media.last_error = None
    same = await db.scalar(
        select(func.count(ReportMedia.id)).where(
            ReportMedia.session_id == media.session_id,
            ReportMedia.sha256 == digest,
            ReportMedia.status == MediaStatus.STORED,
        )
    )
    participant = await db.get(Participant, media.participant_id)
    assert participant is not None
    if same:
        media.status = MediaStatus.DUPLICATE
        _audit(db, media, participant, now, "media.duplicate")
        return media
    media.status, media.content = MediaStatus.STORED, content
    alert = await report_alert(db, media.session_id) or await _raise_media_alert(
        db, participant, media.session_id, now, coordinator_chats
    )
    media.alert_id = alert.id
    for chat_id in coordinator_chats:
        queue_delivery(db, alert, chat_id, purpose(media.id), now)
    audit.record(
        db,
        at=now,
        actor=audit.SYSTEM,
        action="media.store",
        participant_id=participant.id,
        after={
            "media": media.id,
            "session": media.session_id,
            "sha256": digest,
            "size": len(content),
            "alert": alert.id,
        },
    )
    return media


async def _raise_media_alert(
    db: AsyncSession, participant: Participant, session_id: int, now: datetime, chats: Sequence[int]
) -> Alert:
    """A report that raised no alert gets an INFO one for its files, so they have
    something to reply to and the coordinators an Acknowledge button."""
    return await raise_alert(
        db,
        participant=participant,
        kind=MEDIA_ALERT_KIND,
        level=AlertLevel.INFO,
        summary=f"Files attached to report #{session_id} (photos or voice notes: see the replies)",
        reasons=[],
        now=now,
        coordinator_chats=chats,
        details={"session_id": session_id},
        source=f"{MEDIA_ALERT_KIND}:{session_id}",
    )


async def retry_download(db: AsyncSession, media_id: int, now: datetime, delay: timedelta, error: str) -> None:
    """A failed download waits `delay` (the alert deliveries' back-off) and is tried again."""
    media = await db.get(ReportMedia, media_id)
    if media is not None and media.status is MediaStatus.PENDING:
        media.attempts += 1
        media.next_attempt_at = now + delay
        media.last_error = error[:200]


async def give_up_download(db: AsyncSession, media_id: int, now: datetime, error: str) -> ReportMedia | None:
    """The Bot API refused the download for good (a 400): the row is marked dead
    (kept, listed in the export), audited, never retried."""
    media = await db.get(ReportMedia, media_id)
    if media is None or media.status is not MediaStatus.PENDING:
        return None
    media.status, media.attempts, media.last_error = MediaStatus.DEAD, media.attempts + 1, error[:200]
    audit.record(
        db,
        at=now,
        actor=audit.SYSTEM,
        action="media.download.dead",
        participant_id=media.participant_id,
        after={"media": media.id, "session": media.session_id, "error": error[:200]},
    )
    return media


async def number_in_report(db: AsyncSession, media: ReportMedia) -> tuple[int, int]:
    """(this file's number, files kept so far) in its report, for the caption."""
    assert media.session_id is not None
    ids = list(
        await db.scalars(
            select(ReportMedia.id)
            .where(ReportMedia.session_id == media.session_id, ReportMedia.status.in_(KEPT))
            .order_by(ReportMedia.id)
        )
    )
    return (ids.index(media.id) + 1 if media.id in ids else len(ids)), len(ids)
