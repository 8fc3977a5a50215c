"""Bad input, property-based, end to end: whatever a participant or a stranger
sends (any text, emoji, Bengali and Latin digits mixed, 4,096 characters,
commands with missing or extra arguments, photos, stickers, voice, edits), the
real bot answers in their language, stores nothing new or changed, and keeps
serving everyone else."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from devtools.botapi_server import BotAPIServer
from devtools.harness import BotHarness
from models import AuditEntry, ChatLink, EnrollmentCode, Participant
from tests.bothelpers import enroll, link, says
from tests.conftest import Figures

COMMANDS = ["/start", "/help", "/language", "/enroll", "/withdraw", "/participants", "/frobnicate", "/start@other_bot"]
mixed_digits = st.text(alphabet="0123456789০১২৩৪৫৬৭৮৯:-/. ", min_size=1, max_size=20)
anything = st.text(min_size=1, max_size=300).filter(lambda s: s.strip() != "")
long_text = st.text(alphabet="অআকখ abc123😀", min_size=4000, max_size=4096)
command_with_args = st.builds(lambda c, a: f"{c} {a}".strip(), st.sampled_from(COMMANDS), st.text(max_size=80))
messages = st.one_of(anything, mixed_digits, long_text, command_with_args, st.just("😀🤒💊"), st.just("্"))
media = st.sampled_from(["photo", "sticker", "voice", "document", "edit"])


async def snapshot(bot: BotHarness) -> dict[str, Any]:
    """What is stored, except the audit of refusals (which a stranger's attempt adds) and of
    files held for a report."""
    assert bot.services is not None
    async with bot.services.sessions() as session:
        return {
            "participants": [
                (p.study_id, p.status, p.language, p.arm, p.reminder_time)
                for p in await session.scalars(select(Participant).order_by(Participant.id))
            ],
            "links": [(c.participant_id, c.chat_id) for c in await session.scalars(select(ChatLink))],
            "codes": [(c.id, c.used_at, c.revoked_at) for c in await session.scalars(select(EnrollmentCode))],
            "changes": [
                a.action
                for a in await session.scalars(select(AuditEntry).order_by(AuditEntry.id))
                if a.action not in ("admin.refuse", "enrollment_code.refuse", "enrollment_code.rate_limited")
                # a participant's photo, voice note or file is held for a report on purpose
                # (README "Photos and voice notes"), and its update may be handled after
                # the text's answer this example waits for: not a change made by bad input
                and a.action != "media.receive"
            ],
        }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=messages, kind=media, as_participant=st.booleans())
async def test_any_message_gets_an_answer_and_changes_nothing(
    bot: BotHarness, server: BotAPIServer, figures: Figures, text: str, kind: str, as_participant: bool
) -> None:
    if not server.messages(6001):  # first example: one enrolled participant, reading Bangla
        code = await enroll(server, "BSM-600 B 2026-10-25 bn fri")
        await link(server, server.user(6001, language_code="bn"), code)
    before = await snapshot(bot)
    sender = server.user(6001) if as_participant else server.user(6002, "Stranger", language_code="en")
    mark = server.mark()
    sent = await sender.send(text)
    if kind == "photo":
        await sender.send_photo(caption=text[:100])
    elif kind == "sticker":
        await sender.send_sticker()
    elif kind == "voice":
        await sender.send_voice()
    elif kind == "document":
        await sender.send_document("notes.txt", text.encode()[:200])
    elif kind == "edit":
        await sender.edit(sent, text[::-1] + "!")
    answers = await server.wait_for(sender.id, since=mark, timeout=10)
    assert answers and all(m.content for m in answers)
    if as_participant:  # in the participant's language (Bangla letters present)
        assert any(any("\u0980" <= ch <= "\u09ff" for ch in m.content) for m in answers)
    assert await snapshot(bot) == before
    figures.add("bad inputs sent to the bot (hypothesis: text and media)", 2)
    # …and everyone else is still served
    reply = await says(server, server.user(6003, language_code="en"), "/help", "only for people taking part")
    assert reply.content
