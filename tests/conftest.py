"""Fixtures: a real database per test on SQLite and on PostgreSQL, the local
Bot API test server, and the real bot serving through it with a manual clock.

Every test that takes `db_url` (directly or through `bot`) runs twice, once per
backend. PostgreSQL tests skip when the server is down, except with CI=true,
where they fail: CI must prove both."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.clock import ManualClock
from devtools import databases
from devtools.botapi_server import BotAPIServer
from devtools.harness import (
    ADMIN_ID,
    COORDINATOR_CHAT,
    DEFAULT_START,
    ESCALATION_CHAT,
    TOKEN,
    BotHarness,
)

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> databases.SqliteTemplate:
    return databases.SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[databases.PostgresTemplate]:
    if not databases.postgres_available():
        message = f"PostgreSQL not reachable at {databases.POSTGRES_URL}"
        if IN_CI:
            pytest.fail(message + " (CI=true: the PostgreSQL half must run)")
        pytest.skip(message)
    template = databases.PostgresTemplate()
    yield template
    template.close()


@pytest.fixture
async def pg_url(postgres_template: databases.PostgresTemplate) -> AsyncIterator[str]:
    """A freshly migrated PostgreSQL database, for the tests about PostgreSQL alone."""
    url = await postgres_template.clone()
    try:
        yield url
    finally:
        await postgres_template.drop(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A freshly migrated database, on each backend in turn."""
    if request.param == "sqlite":
        template: databases.SqliteTemplate = request.getfixturevalue("sqlite_template")
        yield template.clone(tmp_path)
        return
    pg: databases.PostgresTemplate = request.getfixturevalue("postgres_template")
    url = await pg.clone()
    try:
        yield url
    finally:
        await pg.drop(url)


@pytest.fixture
async def server() -> AsyncIterator[BotAPIServer]:
    """The local Bot API test server, with the study team's chats registered."""
    srv = BotAPIServer(token=TOKEN)
    await srv.start()
    srv.user(ADMIN_ID, first_name="Admin", language_code="en")
    srv.group(COORDINATOR_CHAT, title="Coordinators")
    srv.group(ESCALATION_CHAT, title="Escalation")
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(DEFAULT_START)


@pytest.fixture
async def bot(server: BotAPIServer, db_url: str, clock: ManualClock) -> AsyncIterator[BotHarness]:
    """The real bot, serving through the test server, on a fresh database."""
    harness = BotHarness(server, db_url, clock)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


# ---------------------------------------------------------------- destructive tests last


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``destructive`` (they restart the shared PostgreSQL server) run last,
    after everything else has finished, so nothing else is running while they do."""
    items.sort(key=lambda item: item.get_closest_marker("destructive") is not None)  # stable: order kept


# ---------------------------------------------------------------- reliability figures

_FIGURES: dict[str, int] = {}


class Figures:
    """What a test injected and survived (faults, kills, bad inputs, refusals),
    summed over the run and printed at its end, for the README's table."""

    def add(self, figure: str, count: int = 1) -> None:
        _FIGURES[figure] = _FIGURES.get(figure, 0) + count


@pytest.fixture
def figures() -> Figures:
    return Figures()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker: hand this worker's figures to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["figures"] = dict(_FIGURES)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent when the suite runs in one process
def pytest_testnodedown(node: Any, error: object) -> None:
    """On the controller: add up what each worker injected and survived."""
    for figure, count in getattr(node, "workeroutput", {}).get("figures", {}).items():
        _FIGURES[figure] = _FIGURES.get(figure, 0) + count


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures (injected and survived, nothing lost)")
    width = max(len(name) for name in _FIGURES)
    for name, count in sorted(_FIGURES.items()):
        terminalreporter.write_line(f"{name:<{width}}  {count:>6}")


# ---------------------------------------------------------------- undeclared ERROR logs


class _ErrorRecords(logging.Handler):
    """Keeps every ERROR (and worse) record logged during one test."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def expected_errors(request: pytest.FixtureRequest) -> list[str]:
    """The ERROR logs a fault-injection test causes on purpose, each as a piece of its
    message: declared with ``@pytest.mark.logs_errors("piece", ...)`` or appended here."""
    marker = request.node.get_closest_marker("logs_errors")
    return [str(piece) for piece in marker.args] if marker else []


@pytest.fixture(autouse=True)
def fail_on_undeclared_errors(expected_errors: list[str]) -> Iterator[None]:
    """A test whose run logs an ERROR it did not declare fails: a crashed tick or handler
    must not pass as "nothing happened"."""
    catcher = _ErrorRecords()
    root = logging.getLogger()
    root.addHandler(catcher)
    try:
        yield
    finally:
        root.removeHandler(catcher)
    undeclared = [
        f"{record.name}: {record.getMessage().splitlines()[0]}"
        for record in catcher.records
        if not any(piece in record.getMessage() for piece in expected_errors)
    ]
    if undeclared:
        pytest.fail("ERROR logged that the test did not declare (mark it logs_errors):\n" + "\n".join(undeclared))
