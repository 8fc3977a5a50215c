"""The beat's jobs: what the bot gives the heartbeat (scheduler.runtime) to run.

The beat only calls them; what each does (send reminders, expire check-ins, send
alerts, seal the audit chain) lives here, above the scheduler."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.alerting import alerts_tick
from bot.audit_publish import publish_tick
from bot.dispatch import dispatch_tick
from bot.handlers.questionnaire import expiry_tick
from bot.team_reports import weekly_overview_tick
from domain.audit_chain import seal
from scheduler import runtime

if TYPE_CHECKING:
    from bot.app import TrialApplication

log = logging.getLogger(__name__)


async def audit_seal_tick(app: TrialApplication) -> None:
    """Link new audit rows into the tamper-evident chain (domain.audit_chain)."""
    async with app.services.sessions() as session:
        sealed = await seal(session)
    if sealed:
        log.debug("audit: %d row(s) sealed", sealed)


TICKS: runtime.Ticks = {
    "dispatch": dispatch_tick,
    "questionnaires": expiry_tick,  # closes check-ins whose week ended and idle reports
    "alerts": alerts_tick,  # after the others: it sends what they raised
    "overview": weekly_overview_tick,  # Sundays from 08:00: the trial at a glance, once
    "audit_seal": audit_seal_tick,  # chains the audit rows every tick wrote
    "audit_publish": publish_tick,  # once a day: the chain's head, outside the database
}
"""Every periodic job, in the order a beat runs them."""


async def run_tick(app: TrialApplication, name: str) -> Exception | None:
    """Run one job now (also called right after a commit that raised an alert); returns
    its failure (logged, and retried on the next beat), or None."""
    return await runtime.run_tick(app, name, TICKS)


async def run_all(app: TrialApplication) -> dict[str, Exception]:
    """One beat: every job in order; returns the failed jobs' errors by name."""
    return await runtime.run_all(app, TICKS)


def build_heartbeat(app: TrialApplication, seconds: float = runtime.HEARTBEAT_SECONDS) -> AsyncIOScheduler:
    """The APScheduler beating this application's jobs every `seconds`."""
    return runtime.build_heartbeat(app, TICKS, seconds)
