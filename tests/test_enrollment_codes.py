"""Enrollment codes' promises not covered by tests/test_enrollment.py and
tests/test_safety_paths.py (issue 11: mutation testing of domain/enrollment.py): a lost
phone unlinked (who may be, what it lifts, what the old chat stops getting), a code
typed the way people type it, and what issuing, linking and unlinking leave in the audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from core.digits import to_bengali_digits
from devtools.botapi_server import BotAPIServer
from devtools.harness import ADMIN_ID, BotHarness
from domain.enrollment import CODE_ALPHABET, CODE_LENGTH, hash_code, new_code, normalize_code
from domain.secrets import ENROLLMENT_CODES, keyed_hash
from models import AuditEntry, ChatLink, EnrollmentCode, Participant, ParticipantStatus
from tests.bothelpers import CODE_RE, admin_says, enroll, link, says
from tests.schedule_helpers import dhaka, reminders

ADMIN = f"admin:{ADMIN_ID}"


async def participant(bot: BotHarness, study_id: str) -> Participant:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        found = await session.scalar(select(Participant).where(Participant.study_id == study_id))
        assert found is not None
        return found


async def audits(bot: BotHarness, action: str) -> list[AuditEntry]:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        query = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        return list(await session.scalars(query))


async def test_unlink_is_refused_for_an_unknown_a_not_yet_linked_and_a_withdrawn_participant(
    bot: BotHarness, server: BotAPIServer
) -> None:
    reply = await admin_says(server, "/unlink BSM-099", "Not done")
    assert "there is no participant BSM-099" in reply.content
    await enroll(server, "BSM-040 A 2026-10-25 en")
    reply = await admin_says(server, "/unlink BSM-040", "Not done")
    assert "BSM-040 is invited: no chat to unlink" in reply.content
    code = await enroll(server, "BSM-041 A 2026-10-25 en")
    await link(server, server.user(4101, "P", language_code="en"), code, "English")
    await admin_says(server, "/withdraw BSM-041 moved away", "withdrawn")
    reply = await admin_says(server, "/unlink BSM-041", "Not done")
    assert "BSM-041 is withdrawn: no chat to unlink" in reply.content
    assert await audits(bot, "participant.unlink_chat") == []


async def test_unlink_lifts_a_pause_invites_again_and_the_old_chat_gets_nothing_more(
    bot: BotHarness, server: BotAPIServer
) -> None:
    code = await enroll(server, "BSM-042 A 2026-10-25 en")
    old = server.user(4201, "P", language_code="en")
    await link(server, old, code, "English")
    await admin_says(server, "/pause BSM-042 2026-11-20 travelling", "paused")
    reply = await admin_says(server, "/unlink BSM-042", "One-time code")
    assert "The old chat is unlinked" in reply.content
    unlinked = await participant(bot, "BSM-042")
    assert unlinked.status is ParticipantStatus.INVITED
    assert unlinked.paused_until is None and unlinked.pause_reason is None
    assert unlinked.updated_at == bot.clock.now()
    assert bot.services is not None
    async with bot.services.sessions() as session:
        assert await session.scalar(select(ChatLink).where(ChatLink.participant_id == unlinked.id)) is None
    (entry,) = await audits(bot, "participant.unlink_chat")
    assert entry.actor == ADMIN and entry.participant_id == unlinked.id and entry.at == bot.clock.now()
    assert entry.before is not None and entry.after is not None
    assert (entry.before["status"], entry.before["pause_reason"]) == ("paused", "travelling")
    assert (entry.after["status"], entry.after["paused_until"], entry.after["pause_reason"]) == ("invited", None, None)
    new_code = CODE_RE.search(reply.content)
    assert new_code is not None
    new = server.user(4202, "P", language_code="en")
    await link(server, new, new_code.group(1), "English")
    assert (await participant(bot, "BSM-042")).status is ParticipantStatus.ACTIVE
    before_old, before_new = len(server.messages(old.id)), len(reminders(server, new.id))
    bot.clock.set(dhaka(2026, 11, 21, 9))  # past the old pause's end: the dose goes to the new phone only
    await bot.tick()
    assert len(server.messages(old.id)) == before_old
    assert len(reminders(server, new.id)) > before_new
    (reissue,) = [e for e in await audits(bot, "enrollment_code.issue") if e.after and e.after["reissued"]]
    assert reissue.participant_id == unlinked.id


async def test_a_code_typed_in_small_letters_with_hyphens_and_bangla_digits_links(
    bot: BotHarness, server: BotAPIServer
) -> None:
    code = await enroll(server, "BSM-043 A 2026-10-25 en")
    typed = "-".join(to_bengali_digits(code.lower()[i : i + 4]) for i in range(0, len(code), 4))
    user = server.user(4301, "P", language_code="en")
    await says(server, user, f"/start {typed}", "Which language")
    assert (await participant(bot, "BSM-043")).status is ParticipantStatus.ACTIVE


async def test_issuing_and_redeeming_a_code_is_audited_and_only_its_keyed_hash_is_stored(
    bot: BotHarness, server: BotAPIServer
) -> None:
    issued_at = bot.clock.now()
    code = await enroll(server, "BSM-044 B 2026-10-25 en fri")
    enrolled = await participant(bot, "BSM-044")
    (entry,) = await audits(bot, "participant.enroll")
    assert entry.actor == ADMIN and entry.participant_id == enrolled.id and entry.after is not None
    assert entry.after["study_id"] == "BSM-044" and entry.after["arm"] == "B" and entry.after["status"] == "invited"
    (issue,) = await audits(bot, "enrollment_code.issue")
    expires = issued_at + timedelta(days=14)
    assert issue.after == {"expires_at": expires.isoformat(), "reissued": False}
    assert issue.actor == ADMIN and issue.participant_id == enrolled.id
    assert bot.services is not None
    async with bot.services.sessions() as session:
        (stored,) = list(await session.scalars(select(EnrollmentCode)))
    assert code not in stored.code_hash and len(stored.code_hash) >= 32
    assert (stored.created_by, stored.created_at, stored.expires_at) == (ADMIN, issued_at, expires)
    assert stored.used_at is None and stored.revoked_at is None

    bot.clock.advance(timedelta(hours=2))
    await link(server, server.user(4401, "P", language_code="en"), code, "English")
    (linked,) = await audits(bot, "participant.link_chat")
    assert linked.actor == "participant:BSM-044" and linked.participant_id == enrolled.id
    assert linked.at == issued_at + timedelta(hours=2)
    assert linked.before is not None and linked.after is not None
    assert (linked.before["status"], linked.after["status"]) == ("invited", "active")
    async with bot.services.sessions() as session:
        (stored,) = list(await session.scalars(select(EnrollmentCode)))
        link_row = await session.scalar(select(ChatLink).where(ChatLink.participant_id == enrolled.id))
    assert stored.used_at == issued_at + timedelta(hours=2)
    assert link_row is not None and (link_row.chat_id, link_row.user_id) == (4401, 4401)
    assert link_row.linked_at == issued_at + timedelta(hours=2)


async def test_a_try_beyond_the_limit_is_audited_as_rate_limited_not_as_a_refusal(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """The sixth try within the hour is not even looked up: the audit says it was held
    back by the limit (who, when), and it does not count as one more wrong code."""
    code = await enroll(server, "BSM-045 A 2026-10-25 en")
    guesser = server.user(4501)
    for attempt in range(5):
        await says(server, guesser, f"/start WRONGCODE{attempt:03d}", "not right")
    await says(server, guesser, f"/start {code}", "Too many wrong codes")
    refusals = await audits(bot, "enrollment_code.refuse")
    (limited,) = await audits(bot, "enrollment_code.rate_limited")
    assert len(refusals) == 5 and limited.actor == refusals[0].actor and limited.at == bot.clock.now()
    assert limited.actor.startswith("telegram:h:") and "4501" not in limited.actor  # keyed-hashed


async def test_a_withdrawn_participants_code_refused_is_audited_against_that_participant(
    bot: BotHarness, server: BotAPIServer
) -> None:
    code = await enroll(server, "BSM-046 A 2026-10-25 en")
    await admin_says(server, "/withdraw BSM-046 changed her mind", "withdrawn")
    await says(server, server.user(4601), f"/start {code}", "can no longer be used")
    (refusal,) = await audits(bot, "enrollment_code.refuse")
    assert refusal.detail == "withdrawn" and refusal.participant_id == (await participant(bot, "BSM-046")).id


async def test_enrolling_again_is_refused_with_the_reason_and_issues_no_code(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """/enroll for a study id that exists issues a new code only while it is still
    invited with the same arm and baseline; otherwise the admin is told why, in words
    that name the study id, and no code is issued."""
    await enroll(server, "BSM-041 A 2026-10-25 en")
    linked = await enroll(server, "BSM-042 B 2026-10-25 en fri")
    await link(server, server.user(1042), linked, "English")
    await enroll(server, "BSM-043 A 2026-10-25 en")
    await admin_says(server, "/withdraw BSM-043 moved away", "withdrawn")
    issued = len(await audits(bot, "enrollment_code.issue"))
    for text, reason in [
        ("/enroll BSM-041 B 2026-10-25", "BSM-041 is already enrolled with arm A, baseline 2026-10-25"),
        ("/enroll BSM-041 A 2026-10-26", "BSM-041 is already enrolled with arm A, baseline 2026-10-25"),
        ("/enroll BSM-042 B 2026-10-25 fri", "BSM-042 is already linked to a chat; no new code is needed"),
        ("/enroll BSM-043 A 2026-10-25", "BSM-043 has withdrawn; a withdrawn participant cannot be re-enrolled"),
    ]:
        reply = await admin_says(server, text, "Not done")
        assert reason in reply.content, (text, reply.content)
        assert not CODE_RE.search(reply.content)
    assert len(await audits(bot, "enrollment_code.issue")) == issued
    assert (await participant(bot, "BSM-041")).arm == "A"


def test_a_new_code_is_twelve_letters_or_digits_from_the_unambiguous_alphabet() -> None:
    codes = {new_code() for _ in range(200)}
    assert len(codes) == 200  # random, not repeated
    for code in codes:
        assert len(code) == CODE_LENGTH and set(code) <= set(CODE_ALPHABET), code


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("ABCD-EFGH-2345", "ABCDEFGH2345"),
        ("abcd efgh 2345", "ABCDEFGH2345"),
        ("abcd-efgh-২৩৪৫", "ABCDEFGH2345"),
        (" Abcd\tEfgh.2345 ", "ABCDEFGH2345"),
    ],
)
def test_a_code_as_typed_is_read_as_its_canonical_form(typed: str, canonical: str) -> None:
    """The stored hash is of the canonical form (capitals and ASCII digits, nothing
    else), so a code issued before an upgrade still links after it: the form is pinned
    here, not only matched against itself."""
    assert normalize_code(typed) == canonical
    key = b"k" * 32
    assert hash_code(typed, key) == hash_code(canonical, key) == keyed_hash(key, canonical)


async def test_every_refused_code_of_a_known_participant_is_audited_against_them(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """A revoked code, a used code, and a code still usable for a participant who is
    already linked (a row no normal flow leaves: a code issued revokes the others, and
    linking uses it) are refused, each audited against its participant; one participant
    never gets a second chat."""
    old = await enroll(server, "BSM-047 A 2026-10-25 en")
    new = await enroll(server, "BSM-047 A 2026-10-25 en")  # a lost code: the old one is revoked
    await says(server, server.user(4701), f"/start {old}", "can no longer be used")
    await link(server, server.user(4702), new, "English")
    await says(server, server.user(4703), f"/start {new}", "already been used")
    assert bot.services is not None
    pid = (await participant(bot, "BSM-047")).id
    extra = new_code()
    async with bot.services.sessions() as session:
        session.add(
            EnrollmentCode(
                participant_id=pid,
                code_hash=hash_code(extra, bot.services.secret_key(ENROLLMENT_CODES)),
                created_at=bot.clock.now(),
                created_by="test",
                expires_at=bot.clock.now() + timedelta(days=1),
            )
        )
        await session.commit()
    await says(server, server.user(4704), f"/start {extra}", "already been used")
    refusals = await audits(bot, "enrollment_code.refuse")
    assert [(r.detail, r.participant_id) for r in refusals] == [("revoked", pid), ("used", pid), ("used", pid)]
    async with bot.services.sessions() as session:
        links = list(await session.scalars(select(ChatLink).where(ChatLink.participant_id == pid)))
    assert [link.chat_id for link in links] == [4702]
