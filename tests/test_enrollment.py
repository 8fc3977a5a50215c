"""Enrollment end to end: the real bot, over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from bot.commands import PARTICIPANT_COMMANDS
from devtools.botapi_server import BotAPIServer
from devtools.harness import ADMIN_ID, STUDY_PHONE, BotHarness
from models import (
    AuditEntry,
    ChatLink,
    EnrollmentCode,
    Language,
    Participant,
    ParticipantStatus,
    ProcessedUpdate,
)
from tests.bothelpers import admin_says, enroll, link, presses, says


async def participant(bot: BotHarness, study_id: str) -> Participant:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        found = await session.scalar(select(Participant).where(Participant.study_id == study_id))
        assert found is not None
        return found


async def count(bot: BotHarness, model: type, *where: object) -> int:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def actions(bot: BotHarness) -> list[str]:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        return list(await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


async def test_enroll_start_and_choose_bangla(bot: BotHarness, server: BotAPIServer) -> None:
    reply = await admin_says(server, "/enroll BSM-001 B 2026-10-25 bn fri", "One-time code")
    assert "https://t.me/ssc_trial_test_bot?start=" in reply.content
    assert "MTX fri, folic sat" in reply.content
    code = reply.content.split("start=")[1].split()[0]

    user = server.user(1001, "Rahima", language_code="bn")
    prompt = await says(server, user, f"/start {code}", "Which language")
    assert "ভাষায়" in prompt.content and "Which language" in prompt.content
    assert prompt.button_texts == ["বাংলা", "English"]

    welcome = await presses(server, user, prompt, "বাংলা", "BSM-001")
    assert "স্বাগতম" in welcome.content
    assert "মেথোট্রেক্সেট" in welcome.content and "২৫ মিলিগ্রাম" in welcome.content
    assert "শুক্রবার" in welcome.content  # methotrexate day
    assert "শনিবার" in welcome.content  # folic acid the day after
    assert STUDY_PHONE in welcome.content
    assert server.messages(1001)[0].buttons == []  # the language buttons are gone

    stored = await participant(bot, "BSM-001")
    assert stored.status == ParticipantStatus.ACTIVE and stored.language == Language.BN
    assert await count(bot, ChatLink, ChatLink.chat_id == 1001) == 1
    assert await actions(bot) == [
        "participant.enroll",
        "enrollment_code.issue",
        "participant.link_chat",
        "participant.set_language",
    ]
    # no Telegram id and no name in the participant row
    assert "Rahima" not in repr(stored.__dict__) and "1001" not in repr(stored.__dict__)


async def test_enroll_arm_a_in_english(bot: BotHarness, server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-002 A 2026-10-25 en")
    user = server.user(1002, "Karim", language_code="en")
    welcome = await link(server, user, code, "English")
    assert "Welcome" in welcome.content and "Baricitinib 4 mg" in welcome.content
    assert "Methotrexate" not in welcome.content


async def test_help_and_language_switch(bot: BotHarness, server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-003 B 2026-10-25 bn mon")
    user = server.user(1003, language_code="bn")
    await link(server, user, code)
    help_reply = await says(server, user, "/help", "/language")
    assert "BSM-003" in help_reply.content and "সোমবার" in help_reply.content and STUDY_PHONE in help_reply.content
    prompt = await says(server, user, "/language", "Which language")
    done = await presses(server, user, prompt, "English", "From now on")
    assert "English" in done.content
    assert (await participant(bot, "BSM-003")).language == Language.EN
    help_en = await says(server, user, "/help", "/language")
    assert "Methotrexate 25 mg" in help_en.content and "Monday" in help_en.content


async def test_unknown_code_is_refused_in_both_languages(bot: BotHarness, server: BotAPIServer) -> None:
    user = server.user(1010, language_code="en")
    reply = await says(server, user, "/start ZZZZZZZZZZZZ", "not right")
    assert "ঠিক নয়" in reply.content and STUDY_PHONE in reply.content
    assert await count(bot, ChatLink) == 0
    assert await actions(bot) == ["enrollment_code.refuse"]


async def test_a_code_works_once(bot: BotHarness, server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-004 A 2026-10-25")
    await link(server, server.user(1004), code)
    reply = await says(server, server.user(1005), f"/start {code}", "already been used")
    assert "আগেই ব্যবহার" in reply.content
    assert await count(bot, ChatLink) == 1


async def test_an_expired_code_is_refused(bot: BotHarness, server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-005 A 2026-10-25")
    bot.clock.advance(timedelta(days=14, minutes=1))
    await says(server, server.user(1006), f"/start {code}", "too old")
    assert (await participant(bot, "BSM-005")).status == ParticipantStatus.INVITED


async def test_a_linked_chat_cannot_take_a_second_code(bot: BotHarness, server: BotAPIServer) -> None:
    first = await enroll(server, "BSM-006 A 2026-10-25")
    second = await enroll(server, "BSM-007 A 2026-10-25")
    user = server.user(1007)
    await link(server, user, first, "English")
    reply = await says(server, user, f"/start {second}", "already linked")
    assert "BSM-006" in reply.content
    assert (await participant(bot, "BSM-007")).status == ParticipantStatus.INVITED
    # …and the second code still works for its owner
    await link(server, server.user(1008), second)


async def test_a_reissued_code_replaces_the_old_one(bot: BotHarness, server: BotAPIServer) -> None:
    old = await enroll(server, "BSM-008 A 2026-10-25")
    reply = await admin_says(server, "/enroll BSM-008 A 2026-10-25", "One-time code")
    assert "New code for" in reply.content and "no longer work" in reply.content
    await says(server, server.user(1009), f"/start {old}", "can no longer be used")
    new = reply.content.split("start=")[1].split()[0]
    await link(server, server.user(1009), new)


async def test_a_withdrawn_participants_code_is_refused(bot: BotHarness, server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-009 A 2026-10-25")
    reply = await admin_says(server, "/withdraw BSM-009 changed mind", "withdrawn")
    assert "data recorded so far is kept" in reply.content
    await says(server, server.user(1011), f"/start {code}", "can no longer be used")
    stored = await participant(bot, "BSM-009")
    assert stored.status == ParticipantStatus.WITHDRAWN and stored.withdrawal_reason == "changed mind"


async def test_code_guessing_is_rate_limited_per_chat(bot: BotHarness, server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-010 A 2026-10-25")
    guesser = server.user(1012)
    for attempt in range(5):
        await says(server, guesser, f"/start WRONGCODE{attempt:03d}", "not right")
    await says(server, guesser, f"/start {code}", "Too many wrong codes")
    assert (await participant(bot, "BSM-010")).status == ParticipantStatus.INVITED
    bot.clock.advance(timedelta(hours=1, minutes=1))
    await link(server, guesser, code)


async def test_start_without_a_code_from_a_stranger(bot: BotHarness, server: BotAPIServer) -> None:
    reply = await says(server, server.user(1013, language_code="en"), "/start", "only for people taking part")
    assert "শুধু" in reply.content and STUDY_PHONE in reply.content
    assert await count(bot, Participant) == 0 and await count(bot, AuditEntry) == 0
    # any other message from a stranger gets the same polite explanation
    await says(server, server.user(1013), "hello", "only for people taking part")
    await says(server, server.user(1013), "/help", "only for people taking part")


async def test_admin_commands_from_a_stranger_are_refused_and_audited(bot: BotHarness, server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-011 A 2026-10-25 bn")
    user = server.user(1014, language_code="bn")
    await link(server, user, code)
    for command in ("/enroll BSM-099 A 2026-10-25", "/participants", "/withdraw BSM-011"):
        reply = await says(server, user, command, "গবেষণা দলের জন্য")
        assert "study team" not in reply.content  # in the participant's language only
    assert await count(bot, Participant) == 1
    assert (await participant(bot, "BSM-011")).status == ParticipantStatus.ACTIVE
    assert await count(bot, AuditEntry, AuditEntry.action == "admin.refuse") == 3


async def test_admin_mistakes_get_a_clear_answer_and_change_nothing(bot: BotHarness, server: BotAPIServer) -> None:
    for text, expect in [
        ("/enroll", "usage: /enroll"),
        ("/enroll BSM-001 C 2026-10-25", "arm must be one of"),
        ("/enroll BSM-001 A 25-13-2026", "is not a date"),
        ("/enroll BSM-001 A 2026-10-25 fri", "only applies to arm B"),
        ("/withdraw", "usage: /withdraw"),
        ("/withdraw BSM-404", "no participant with study id BSM-404"),
    ]:
        reply = await admin_says(server, text, "Not done")
        assert expect in reply.content, (text, reply.content)
    assert await count(bot, Participant) == 0


async def test_participants_list(bot: BotHarness, server: BotAPIServer) -> None:
    assert "No participants yet" in (await admin_says(server, "/participants")).content
    code = await enroll(server, "BSM-012 B 2026-10-25 en thu")
    await enroll(server, "BSM-013 A 2026-10-26")
    await link(server, server.user(1015), code, "English")
    listing = (await admin_says(server, "/participants", "participant(s)")).content
    assert "2 participant(s)" in listing
    assert "BSM-012 · arm B · baseline 2026-10-25 · en · active · MTX thu, folic fri · linked" in listing
    assert "BSM-013 · arm A · baseline 2026-10-26 · bn · invited · not linked" in listing


async def test_a_redelivered_update_is_applied_once(bot: BotHarness, server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-014 A 2026-10-25")
    user = server.user(1016)
    start = await user.send(f"/start {code}")
    await server.wait_for(1016, "Which language", since=start)
    server.redeliver(start)
    # the bot handles updates in order: once /help is answered, the duplicate was seen
    await says(server, user, "/help", "/language")
    assert len(server.messages(1016)) == 2
    assert await count(bot, ChatLink) == 1
    assert await count(bot, AuditEntry, AuditEntry.action == "participant.link_chat") == 1
    assert await count(bot, AuditEntry, AuditEntry.action == "enrollment_code.refuse") == 0
    assert await count(bot, ProcessedUpdate, ProcessedUpdate.update_id == start.update_id) == 1


async def test_a_restart_mid_enrollment_keeps_everything(bot: BotHarness, server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-015 B 2026-10-25 bn fri")
    user = server.user(1017, language_code="bn")
    prompt = await says(server, user, f"/start {code}", "Which language")
    await bot.restart()
    welcome = await presses(server, user, prompt, "বাংলা", "BSM-015")
    assert "মেথোট্রেক্সেট" in welcome.content
    await bot.restart()
    await says(server, user, "/help", "BSM-015")
    assert await count(bot, ChatLink) == 1
    assert await count(bot, EnrollmentCode, EnrollmentCode.used_at.is_not(None)) == 1
    assert await actions(bot) == [
        "participant.enroll",
        "enrollment_code.issue",
        "participant.link_chat",
        "participant.set_language",
    ]


async def test_media_and_unknown_commands_get_an_answer_in_the_participants_language(
    bot: BotHarness, server: BotAPIServer
) -> None:
    code = await enroll(server, "BSM-016 A 2026-10-25 bn")
    user = server.user(1018, language_code="bn")
    await link(server, user, code)
    update = await user.send_sticker()
    await server.wait_for(1018, "ছবি, স্টিকার", since=update)
    # a photo or a voice note outside a report: one button that reports a problem with it (issue 14)
    update = await user.send_photo()
    (offer,) = await server.wait_for(1018, "বোতামটি চাপুন", since=update)
    assert offer.button_texts == ["এই ছবির সমস্যাটা জানান"]
    update = await user.send_voice()
    (offer,) = await server.wait_for(1018, "বোতামটি চাপুন", since=update)
    assert offer.button_texts == ["এই ভয়েস মেসেজের সমস্যাটা জানান"]
    await says(server, user, "/frobnicate", "কমান্ডটি আমি চিনি না")
    await says(server, user, "asdf", "বুঝতে পারিনি")


async def test_a_stale_button_changes_nothing(bot: BotHarness, server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-017 A 2026-10-25 en")
    user = server.user(1019)
    await link(server, user, code, "English")
    prompt = await says(server, user, "/language", "Which language")
    await admin_says(server, "/withdraw BSM-017", "withdrawn")
    press = await user.press(prompt, "বাংলা")
    await says(server, user, "/help")  # updates are handled in order: the press is done
    found = server.callback_answer(press)
    assert found is not None and "no longer active" in (found.text or "")
    assert (await participant(bot, "BSM-017")).language == Language.EN


async def test_command_menus_are_set_per_scope_and_language(bot: BotHarness, server: BotAPIServer) -> None:
    menus = server.command_menus
    flat = {key: [c["command"] for c in value] for key, value in menus.items()}
    participant_en = next(v for (scope, lang), v in menus.items() if "all_private_chats" in scope and lang == "")
    participant_bn = next(v for (scope, lang), v in menus.items() if "all_private_chats" in scope and lang == "bn")
    assert [c["command"] for c in participant_en] == [name for name, _ in PARTICIPANT_COMMANDS]
    assert {"help", "language"} <= {c["command"] for c in participant_en}
    assert "গবেষণা" in participant_bn[0]["description"]
    admin_menu = next(v for (scope, _), v in flat.items() if str(ADMIN_ID) in scope)
    assert {"enroll", "participants", "withdraw", "help"} <= set(admin_menu)
