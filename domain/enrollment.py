"""Enrollment: the study team registers a participant and hands out a one-time
code; the participant's `/start CODE` links their Telegram chat.

Codes are 12 characters from a 30-letter alphabet without look-alikes
(about 59 bits: guessing is hopeless, more so with the limit of wrong tries per
Telegram user, which in a private chat is the chat), stored only as an HMAC under a
key kept outside the database (domain.secrets: a dump alone gives no way to test a
guess), single use, expiring."""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.digits import to_ascii_digits
from domain import audit
from domain.errors import DomainError
from domain.parsing import (
    ParseError,
    parse_arm,
    parse_date,
    parse_language,
    parse_study_id,
    parse_weekday,
)
from domain.secrets import keyed_hash
from models import AuditEntry, ChatLink, EnrollmentCode, Language, Participant, ParticipantStatus
from scheduler.protocol import Protocol, Regimen
from scheduler.store import replan

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
CODE_LENGTH = 12
MAX_FAILED_ATTEMPTS_PER_HOUR = 5


def new_code() -> str:
    """A fresh random enrollment code (deep-link safe: letters and digits only)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(code: str) -> str:
    """What a person may type for a code: any case, spaces or hyphens, Bengali digits."""
    return "".join(ch for ch in to_ascii_digits(code).upper() if ch.isalnum())


def hash_code(code: str, key: bytes) -> str:
    """The stored form of a code: HMAC-SHA256 under `key` (see domain.secrets)."""
    return keyed_hash(key, normalize_code(code))


@dataclass(frozen=True)
class EnrollRequest:
    """A validated `/enroll` request."""

    study_id: str
    arm: str
    baseline: date
    language: str = "bn"
    own_weekday: int | None = None  # for an arm with a `rule: participant` regimen


def enroll_usage(protocol: Protocol) -> str:
    """The arguments of /enroll: ``STUDY_ID ARM BASELINE [LANG] [<SHORT>_WEEKDAY]`` when an arm
    takes a drug on the participant's own weekday, named by that regimen's short name (the
    shipped protocol: ``[MTX_WEEKDAY]``)."""
    own = _own_weekday_regimens(protocol)
    weekday = f" [{next(iter(own.values())).short_name.upper()}_WEEKDAY]" if own else ""
    return f"STUDY_ID ARM BASELINE [LANG]{weekday}"


def _own_weekday_regimens(protocol: Protocol) -> dict[str, Regimen]:
    """The arms whose participants choose a weekday at enrolment, and the regimen it is for."""
    return {arm_id: reg for arm_id, arm in protocol.arms.items() if (reg := arm.own_weekday_regimen) is not None}


def parse_enroll_args(args: list[str], protocol: Protocol) -> EnrollRequest:
    """`STUDY_ID ARM BASELINE [LANG] [WEEKDAY]` → EnrollRequest. The arms, and which
    of them take a drug on the participant's own weekday, come from the protocol. LANG
    and the weekday may come in either order; that weekday defaults to the baseline's."""
    if len(args) < 3 or len(args) > 5:
        raise ParseError(f"usage: /enroll {enroll_usage(protocol)}, e.g. /enroll BSM-001 B 2026-10-25 bn fri")
    study_id = parse_study_id(args[0])
    arm = parse_arm(args[1], tuple(protocol.arms))
    baseline = parse_date(args[2])
    language, weekday = "bn", None
    for extra in args[3:]:
        try:
            language = parse_language(extra)
            continue
        except ParseError:
            pass
        try:
            weekday = parse_weekday(extra)
        except ParseError:
            raise ParseError(f"'{extra[:20]}' is neither a language (bn/en) nor a weekday (mon…sun)") from None
    own = _own_weekday_regimens(protocol)
    if arm not in own and weekday is not None:
        if not own:
            raise ParseError("no arm of this trial takes a weekday")
        drug = next(iter(own.values())).drug.en
        raise ParseError(f"a {drug} weekday only applies to arm {', '.join(own)}")
    if arm in own and weekday is None:
        weekday = baseline.weekday()
    return EnrollRequest(study_id, arm, baseline, language, weekday)


@dataclass(frozen=True)
class Enrolled:
    """What the admin is told after enrolling: the code exists only here."""

    participant: Participant
    code: str
    expires_at: datetime
    reissued: bool


async def enroll(
    session: AsyncSession,
    request: EnrollRequest,
    *,
    actor: str,
    now: datetime,
    code_ttl: timedelta,
    code_key: bytes,
) -> Enrolled:
    """Register a participant and issue a one-time code. Enrolling an existing,
    not yet linked study id with the same details issues a new code and revokes
    the old ones (a lost code)."""
    participant = await session.scalar(
        select(Participant).where(Participant.study_id == request.study_id).with_for_update()
    )
    reissued = participant is not None
    if participant is None:
        participant = Participant(
            study_id=request.study_id,
            arm=request.arm,
            baseline_date=request.baseline,
            language=Language(request.language),
            status=ParticipantStatus.INVITED,
            own_weekday=request.own_weekday,
            created_at=now,
            updated_at=now,
        )
        session.add(participant)
        await session.flush()
        audit.record(
            session,
            at=now,
            actor=actor,
            action="participant.enroll",
            participant_id=participant.id,
            after=participant_snapshot(participant),
        )
    else:
        if participant.status == ParticipantStatus.WITHDRAWN:
            raise DomainError(f"{request.study_id} has withdrawn; a withdrawn participant cannot be re-enrolled")
        if participant.status != ParticipantStatus.INVITED:
            raise DomainError(f"{request.study_id} is already linked to a chat; no new code is needed")
        if (participant.arm, participant.baseline_date) != (request.arm, request.baseline):
            raise DomainError(
                f"{request.study_id} is already enrolled with arm {participant.arm}, baseline "
                f"{participant.baseline_date.isoformat()}; study id, arm and baseline cannot change"
            )
        await revoke_unused_codes(session, participant.id, now)
    code = new_code()
    expires_at = now + code_ttl
    session.add(
        EnrollmentCode(
            participant_id=participant.id,
            code_hash=hash_code(code, code_key),
            created_at=now,
            created_by=actor[:64],
            expires_at=expires_at,
        )
    )
    audit.record(
        session,
        at=now,
        actor=actor,
        action="enrollment_code.issue",
        participant_id=participant.id,
        after={"expires_at": expires_at.isoformat(), "reissued": reissued},
    )
    return Enrolled(participant, code, expires_at, reissued)


async def unlink(
    session: AsyncSession,
    study_id: str,
    *,
    actor: str,
    now: datetime,
    code_ttl: timedelta,
    code_key: bytes,
    protocol: Protocol,
) -> Enrolled:
    """A lost or stolen phone: the participant's chat is unlinked (the bot treats it as
    a stranger from now on), they are invited again, and a new one-time code links the
    new phone. Their data is kept; a pause is lifted (set it again after linking)."""
    participant = await session.scalar(select(Participant).where(Participant.study_id == study_id).with_for_update())
    if participant is None:
        raise DomainError(f"there is no participant {study_id}")
    if participant.status in (ParticipantStatus.WITHDRAWN, ParticipantStatus.INVITED):
        raise DomainError(f"{study_id} is {participant.status.value}: no chat to unlink")
    link = await session.scalar(select(ChatLink).where(ChatLink.participant_id == participant.id))
    before = participant_snapshot(participant)
    if link is not None:
        await session.delete(link)
    participant.status = ParticipantStatus.INVITED
    participant.paused_until = None
    participant.pause_reason = None
    participant.updated_at = now
    await session.flush()
    await replan(session, participant, now, protocol)  # nothing is sent to the old chat any more
    audit.record(
        session,
        at=now,
        actor=actor,
        action="participant.unlink_chat",
        participant_id=participant.id,
        before=before,
        after=participant_snapshot(participant),
    )
    request = EnrollRequest(
        participant.study_id, participant.arm, participant.baseline_date, participant.language.value
    )
    return await enroll(session, request, actor=actor, now=now, code_ttl=code_ttl, code_key=code_key)


async def revoke_unused_codes(session: AsyncSession, participant_id: int, now: datetime) -> None:
    """Make every code of this participant that was not used yet stop working
    (a new code was issued, or the participant withdrew)."""
    await session.execute(
        update(EnrollmentCode)
        .where(
            EnrollmentCode.participant_id == participant_id,
            EnrollmentCode.used_at.is_(None),
            EnrollmentCode.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )


class Redeem(enum.StrEnum):
    """Every way a `/start CODE` can end."""

    LINKED = "linked"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED = "used"
    CHAT_ALREADY_LINKED = "chat_already_linked"
    REVOKED = "revoked"  # replaced by a newer code
    WITHDRAWN = "withdrawn"
    TOO_MANY_ATTEMPTS = "too_many_attempts"


@dataclass(frozen=True)
class RedeemResult:
    """The outcome, and the participant when one is concerned."""

    outcome: Redeem
    participant: Participant | None = None


async def _recent_failures(session: AsyncSession, actor: str, now: datetime) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(AuditEntry)
        .where(
            AuditEntry.actor == actor,
            AuditEntry.action == "enrollment_code.refuse",
            AuditEntry.at >= now - timedelta(hours=1),
        )
    )
    return int(count or 0)


async def redeem(
    session: AsyncSession,
    code: str,
    *,
    chat_id: int,
    user_id: int,
    now: datetime,
    code_key: bytes,
    stranger_key: bytes,
    protocol: Protocol,
) -> RedeemResult:
    """Link `chat_id` to the participant the code belongs to, if the code is good,
    unused, unexpired and the chat is not linked already. Every refusal is audited
    (the user's id keyed-hashed) and counts towards the per-user attempt limit."""
    actor = audit.stranger_actor(user_id, stranger_key)
    existing = await session.scalar(select(ChatLink).where(ChatLink.chat_id == chat_id))
    if existing is not None:
        participant = await session.get(Participant, existing.participant_id)
        return _refuse(session, Redeem.CHAT_ALREADY_LINKED, actor, now, participant)
    if await _recent_failures(session, actor, now) >= MAX_FAILED_ATTEMPTS_PER_HOUR:
        audit.record(session, at=now, actor=actor, action="enrollment_code.rate_limited")
        return RedeemResult(Redeem.TOO_MANY_ATTEMPTS)

    row = await session.scalar(
        select(EnrollmentCode).where(EnrollmentCode.code_hash == hash_code(code, code_key)).with_for_update()
    )
    if row is None:
        return _refuse(session, Redeem.UNKNOWN, actor, now)
    participant = await session.get(Participant, row.participant_id, with_for_update=True)
    assert participant is not None
    if participant.status == ParticipantStatus.WITHDRAWN:
        return _refuse(session, Redeem.WITHDRAWN, actor, now, participant)
    if row.used_at is not None:
        return _refuse(session, Redeem.USED, actor, now, participant)
    if row.revoked_at is not None:
        return _refuse(session, Redeem.REVOKED, actor, now, participant)
    if row.expires_at <= now:
        return _refuse(session, Redeem.EXPIRED, actor, now, participant)
    if participant.status != ParticipantStatus.INVITED:
        return _refuse(session, Redeem.USED, actor, now, participant)

    row.used_at = now
    session.add(ChatLink(participant_id=participant.id, chat_id=chat_id, user_id=user_id, linked_at=now))
    before = participant_snapshot(participant)
    participant.status = ParticipantStatus.ACTIVE
    participant.updated_at = now
    await replan(session, participant, now, protocol)
    audit.record(
        session,
        at=now,
        actor=audit.participant_actor(participant.study_id),
        action="participant.link_chat",
        participant_id=participant.id,
        before=before,
        after=participant_snapshot(participant),
    )
    return RedeemResult(Redeem.LINKED, participant)


def _refuse(
    session: AsyncSession,
    outcome: Redeem,
    actor: str,
    now: datetime,
    participant: Participant | None = None,
) -> RedeemResult:
    audit.record(
        session,
        at=now,
        actor=actor,
        action="enrollment_code.refuse",
        participant_id=participant.id if participant else None,
        detail=outcome.value,
    )
    return RedeemResult(outcome, participant)


def participant_snapshot(participant: Participant) -> dict[str, object]:
    """The participant's fields as JSON for the audit's before/after."""
    return {
        "study_id": participant.study_id,
        "arm": participant.arm,
        "baseline_date": participant.baseline_date.isoformat(),
        "language": participant.language.value,
        "status": participant.status.value,
        "reminder_time": participant.reminder_time.strftime("%H:%M") if participant.reminder_time else None,
        "mtx_weekday": participant.own_weekday,  # audit keys as before 0017
        "folic_weekday": participant.follow_weekday,
        "paused_until": participant.paused_until.isoformat() if participant.paused_until else None,
        "pause_reason": participant.pause_reason,
        "withdrawal_reason": participant.withdrawal_reason,
    }
