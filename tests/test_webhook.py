"""Webhook mode (WEBHOOK_URL set): the same bot, updates pushed to it over HTTP,
and only requests that carry the secret header are accepted."""

from __future__ import annotations

import httpx

from core.clock import ManualClock
from devtools.botapi_server import BotAPIServer
from devtools.harness import BotHarness
from devtools.process import free_port
from tests.bothelpers import enroll, link, says


async def test_webhook_mode_serves_enrollment_and_checks_the_secret(
    server: BotAPIServer, db_url: str, clock: ManualClock
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    harness = BotHarness(
        server,
        db_url,
        clock,
        overrides={
            "webhook_url": url,
            "webhook_listen": "127.0.0.1",
            "webhook_port": port,
            "webhook_secret": "s3cret-Header_value",
        },
    )
    async with harness:
        assert server.webhook_url == url
        code = await enroll(server, "BSM-030 B 2026-10-25 bn fri")
        user = server.user(3001, language_code="bn")
        welcome = await link(server, user, code)
        assert "মেথোট্রেক্সেট" in welcome.content
        await says(server, user, "/help", "/language")

        forged = {
            "update_id": 999999,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": 3001, "type": "private"},
                "from": {"id": 3001, "is_bot": False, "first_name": "X"},
                "text": "/start FORGED",
            },
        }
        async with httpx.AsyncClient() as client:
            no_secret = await client.post(url, json=forged)
            wrong_secret = await client.post(url, json=forged, headers={"X-Telegram-Bot-Api-Secret-Token": "nope"})
        assert no_secret.status_code == 403 and wrong_secret.status_code == 403
        before = len(server.messages(3001))
        await says(server, user, "/help", "/language")
        assert len(server.messages(3001)) == before + 1  # the forged update was never handled
