"""Several bot processes on one PostgreSQL: two `python -m bot` processes in webhook
mode behind one URL (a round-robin forwarder, as a load balancer would be), sharing
the reminders and the alerts.

- 1,000 reminders due at once: each is sent exactly once, and both processes send.
- One process SIGKILLed in the middle of a dispatch: nothing is lost. The rows it had
  claimed stay SENDING until their lease (5 minutes) runs out; the test finds exactly
  those rows by the claim tokens the killed process logged, and instead of waiting
  5 minutes moves their ``claimed_until`` into the past, which is what the passing of
  the lease does. At most one reminder (the one whose send
  Telegram had accepted when the process died, before its "sent" was stored) may be
  sent twice: the documented window of bot.dispatch.
- An URGENT alert raised by one process is escalated by the other once the first is
  dead (the wait for ESCALATE_AFTER_MINUTES is likewise moved into the past).

The processes run on the test's clock (devtools.process.test_clock), so the hour of the
run does not matter, and duplicates are counted once nothing more has arrived for a few
heartbeats (tests.bothelpers.settled).

PostgreSQL only (SQLite is one process's database); it fails rather than skips with
CI=true, through the ``postgres_template`` fixture."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import ClientError, ClientSession, web
from sqlalchemy import select, update

from bench.seed import CHAT_BASE, same_minute_profiles, seed
from core.clock import OffsetClock
from devtools.botapi_server import BotAPIServer, SentMessage
from devtools.harness import COORDINATOR_CHAT, ESCALATION_CHAT
from devtools.process import WebhookProcess, free_port, test_clock, webhook_env
from domain.content import load_content
from models import Alert, AlertLevel, MessageStatus, ScheduledMessage
from models.db import SessionFactory, create_engine, create_session_factory
from scheduler.calendar import to_local
from tests.bothelpers import eventually, settled
from tests.conftest import Figures

pytestmark = pytest.mark.postgres

REMINDERS = 1_000
KILL_PHASE = 400
REMINDER_BUTTON = "dose:"
DOSE_REMINDERS_ONLY = frozenset({"dose_reminder"})  # what else is due "now" depends on the time of day
CLAIM_RE = re.compile(r"claimed \d+ row\(s\) under token ([0-9a-f]+)")


@dataclass
class RoundRobin:
    """One URL in front of several webhook servers: each update goes to the next backend
    that answers (a backend that refuses the connection is skipped, as a load balancer's
    health check would), and the forwarder remembers who took which update."""

    backends: list[str]
    port: int = field(default_factory=free_port)
    handled_by: dict[int, int] = field(default_factory=dict)
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _runner: web.AppRunner | None = None
    _http: ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/telegram"

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._http is not None
        body = await request.read()
        headers = {
            k: v for k, v in request.headers.items() if k.lower() in ("content-type", "x-telegram-bot-api-secret-token")
        }
        start = next(self._turn)
        for step in range(len(self.backends)):
            index = (start + step) % len(self.backends)
            try:
                async with self._http.post(self.backends[index], data=body, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        self.handled_by[int(json.loads(body)["update_id"])] = index
                    return web.Response(status=response.status)
            except (ClientError, OSError):
                continue
        return web.Response(status=502)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/telegram", self._forward)
        self._http = ClientSession()
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()


def _bot(
    server: BotAPIServer, url: str, tmp_path: Path, name: str, port: int, forwarder: RoundRobin, clock: OffsetClock
) -> WebhookProcess:
    env = {**webhook_env(port, url=forwarder.url, secret="scale-out-secret"), "HEARTBEAT_SECONDS": "1"}
    return WebhookProcess(server, url, tmp_path / f"{name}.log", extra_env=env, clock=clock)


async def _seed_due(url: str, first: int, count: int, clock: OffsetClock) -> None:
    """``count`` linked participants (from index ``first``) whose dose reminder is due now
    on the test's clock (the processes run on it too)."""
    protocol = load_content().protocol
    now = clock.now().replace(second=0, microsecond=0)
    local = to_local(now, protocol.tz)
    profiles = same_minute_profiles(local.date(), local.time())
    await seed(url, count, profiles, protocol, now, keep="due", first=first, kinds=DOSE_REMINDERS_ONLY)


def _reminders(server: BotAPIServer, first: int, count: int) -> dict[int, int]:
    """Reminders received per participant chat."""
    return {
        CHAT_BASE + i: sum(1 for m in server.messages(CHAT_BASE + i) if _is_reminder(m))
        for i in range(first, first + count)
    }


async def test_two_webhook_processes_share_reminders_survive_a_kill_and_escalate(
    server: BotAPIServer, pg_url: str, tmp_path: Path, figures: Figures
) -> None:
    ports = [free_port(), free_port()]
    forwarder = RoundRobin([f"http://127.0.0.1:{p}/telegram" for p in ports])
    await forwarder.start()
    clock = test_clock()
    bots = [
        _bot(server, pg_url, tmp_path, name, port, forwarder, clock) for name, port in zip("ab", ports, strict=True)
    ]
    for i in range(REMINDERS + KILL_PHASE + 1):
        server.user(CHAT_BASE + i, f"P{i}", language_code="en")
    engine = create_engine(pg_url)
    sessions = create_session_factory(engine)

    async def rows(status: MessageStatus) -> list[ScheduledMessage]:
        async with sessions() as session:
            return list(await session.scalars(select(ScheduledMessage).where(ScheduledMessage.status == status)))

    try:
        # 1. 1,000 reminders due, two processes: each sent exactly once, by both.
        await _seed_due(pg_url, 0, REMINDERS, clock)
        await asyncio.gather(*(bot.start() for bot in bots))
        concurrent_claims = 0

        async def all_sent() -> bool:
            # One process holds at most one claimed batch at a time (its ticks never overlap),
            # so two claim tokens at once means both processes are dispatching.
            nonlocal concurrent_claims
            sending = await rows(MessageStatus.SENDING)
            concurrent_claims = max(concurrent_claims, len({r.claim_token for r in sending}))
            return sum(_reminders(server, 0, REMINDERS).values()) >= REMINDERS and not sending

        await eventually(all_sent, 45, "1,000 reminders")
        received = await settled(lambda: _reminders(server, 0, REMINDERS))
        assert sorted(set(received.values())) == [1], "a reminder was lost or sent twice"
        assert len(await rows(MessageStatus.SENT)) == REMINDERS
        assert concurrent_claims == 2, "the two processes did not share the work"

        # 2. SIGKILL one process mid-dispatch: nothing lost.
        await _seed_due(pg_url, REMINDERS, KILL_PHASE, clock)

        async def some_sent() -> bool:
            return sum(_reminders(server, REMINDERS, KILL_PHASE).values()) >= KILL_PHASE // 4

        await eventually(some_sent, 20, "the second wave to start")
        await bots[0].kill()
        orphans = [r.id for r in await rows(MessageStatus.SENDING) if r.claim_token in _claim_tokens(bots[0])]
        assert orphans, "the killed process held no claimed rows: it was not killed mid-dispatch"
        async with sessions() as session:
            await session.execute(
                update(ScheduledMessage)
                .where(ScheduledMessage.id.in_(orphans))
                .values(claimed_until=clock.now() - timedelta(minutes=1))
            )
            await session.commit()

        async def second_wave_done() -> bool:
            counts = _reminders(server, REMINDERS, KILL_PHASE)
            return all(counts.values()) and not await rows(MessageStatus.SENDING)

        await eventually(second_wave_done, 30, "the survivor to finish the killed process's rows")
        counts = await settled(lambda: _reminders(server, REMINDERS, KILL_PHASE))
        assert min(counts.values()) == 1, "a reminder was lost"
        assert sum(counts.values()) - KILL_PHASE <= 1, "more than the one in-flight reminder was sent twice"
        assert len(await rows(MessageStatus.SENT)) == REMINDERS + KILL_PHASE
        figures.add("scale-out: reminders sent by two webhook processes", REMINDERS + KILL_PHASE)
        figures.add("scale-out: claimed rows taken over from a SIGKILLed process", len(orphans))

        # 3. An URGENT alert raised on one process is escalated by the other.
        await bots[0].start()  # both alive again
        await _urgent_alert_escalated_by_survivor(server, pg_url, bots, forwarder, sessions, clock)
    finally:
        for bot in bots:
            await bot.kill()
        await forwarder.stop()
        await engine.dispose()


def _claim_tokens(bot: WebhookProcess) -> set[str]:
    """Every claim token the process logged (scheduler.outbox.claim logs each claim)."""
    return set(CLAIM_RE.findall(bot.log_path.read_text(errors="replace")))


def _is_reminder(message: SentMessage) -> bool:
    return any(data and data.startswith(REMINDER_BUTTON) for row in message.buttons for _, data in row)


def _is_question(message: SentMessage) -> bool:
    """A questionnaire question (its buttons carry ``q:`` callback data)."""
    return any(data and data.startswith("q:") for row in message.buttons for _, data in row)


async def _urgent_alert_escalated_by_survivor(
    server: BotAPIServer,
    url: str,
    bots: list[WebhookProcess],
    forwarder: RoundRobin,
    sessions: SessionFactory,
    clock: OffsetClock,
) -> None:
    participant = server.user(CHAT_BASE + REMINDERS + KILL_PHASE, "Rahima", language_code="en")
    await _seed_due(url, REMINDERS + KILL_PHASE, 1, clock)  # linked, with a dose reminder due now
    # Let the dose reminder arrive first: it has buttons too, and a reminder landing
    # between /checkin and its first question must not be taken for that question.
    await server.wait_for(participant.id, _is_reminder, timeout=15)
    opened = await participant.send("/checkin")
    question = (await server.wait_for(participant.id, _is_question, since=opened, timeout=15))[-1]
    press = await participant.press(question, question.buttons[0][0][0])  # the first red flag: "Yes"
    await server.wait_for(COORDINATOR_CHAT, "URGENT", since=press, timeout=15)

    async def answered() -> bool:  # the webhook answers after the commit and the alert's send
        return press.update_id in forwarder.handled_by

    await eventually(answered, 15, "the webhook's answer to the press")
    raised_by = forwarder.handled_by[press.update_id]
    await bots[raised_by].kill()
    async with sessions() as session:
        alert = await session.scalar(select(Alert).where(Alert.level == AlertLevel.URGENT))
        assert alert is not None and alert.escalated_at is None
        alert.aware_at = alert.aware_at - timedelta(minutes=31)  # as if nobody acknowledged for 31 minutes
        await session.commit()
    await server.wait_for(ESCALATION_CHAT, "URGENT", timeout=15)
    # Counted once no more arrives for a few heartbeats, not at the first match.
    escalations = await settled(lambda: {"urgent": len(server.messages(ESCALATION_CHAT))})
    assert escalations == {"urgent": 1}
    escalated = server.messages(ESCALATION_CHAT)
    assert participant.first_name not in escalated[0].content  # the study id, never a name
    async with sessions() as session:
        again = await session.get(Alert, alert.id)
        assert again is not None and again.escalated_at is not None
