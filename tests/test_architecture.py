"""The rule "who may import whom", read from the source with `ast`.

`bot/` and `cli/` (the two front ends) may import anything below them; `export/`
reads `domain/`, `scheduler/` and `models/`; `domain/` may import `scheduler/` and
`models/`; `scheduler/` only `models/`; everything may import `core/`, which imports
nothing of ours. So: no module under domain/, scheduler/, models/, export/ or core/
imports bot/ (not even for types), no two top-level packages import each other, and
core/ imports none of them."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("bot", "charts", "cli", "core", "devtools", "domain", "export", "migrations", "models", "scheduler")
BELOW_THE_BOT = ("charts", "core", "domain", "export", "models", "scheduler")


def imports_of(source: str, module: str) -> Iterator[str]:
    """Every module named by an import in `source` (anywhere: top level, inside a
    function, under `if TYPE_CHECKING:`), relative imports resolved against `module`."""
    package = module.split(".")[:-1]  # a package's __init__ counts as inside it
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            yield name
            yield from (f"{name}.{alias.name}" for alias in node.names)


def top(name: str) -> str:
    """The top-level package of a dotted module name."""
    return name.split(".")[0]


def module_imports(root: Path = ROOT) -> dict[str, set[str]]:
    """For each of our modules (dotted name), the top-level packages of ours it imports."""
    found: dict[str, set[str]] = {}
    for package in OURS:
        for path in sorted((root / package).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            imported = {top(n) for n in imports_of(path.read_text(encoding="utf-8"), module)}
            found[module] = {p for p in imported if p in OURS and p != top(module)}
    return found


def violations(found: dict[str, set[str]]) -> list[str]:
    """Every import that breaks the rule, as a readable line."""
    problems = []
    for module, packages in sorted(found.items()):
        here = top(module)
        if here in BELOW_THE_BOT and "bot" in packages:
            problems.append(f"{module} imports bot/ (Telegram): the bot calls down, never the reverse")
        if here == "core" and packages:
            problems.append(f"{module} imports {sorted(packages)}: core/ is the bottom, it imports nothing of ours")
    edges: dict[tuple[str, str], str] = {}
    for module, packages in sorted(found.items()):
        for package in packages:
            edges.setdefault((top(module), package), module)
    for (a, b), module in sorted(edges.items()):
        if a < b and (b, a) in edges:
            problems.append(f"{a}/ and {b}/ import each other ({module} → {b}, {edges[(b, a)]} → {a})")
    return problems


def test_every_import_points_down() -> None:
    assert violations(module_imports()) == []


def test_the_rule_reads_every_package() -> None:
    found = module_imports()
    assert {top(m) for m in found} == {p for p in OURS if (ROOT / p).is_dir()}
    assert found["bot.app"] >= {"domain", "models"}  # the reader sees real imports


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for name, source in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    for package in OURS:
        (tmp_path / package).mkdir(exist_ok=True)
    return module_imports(tmp_path)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(  # domain/ reaching up into the bot for a helper (domain/parsing.py → bot.i18n)
            {"domain/parsing.py": "from bot.i18n import to_ascii_digits\n"},
            "domain.parsing imports bot/",
            id="domain-imports-bot",
        ),
        pytest.param(  # only for a type: still an arrow up (scheduler/dispatch.py → bot.app)
            {
                "scheduler/dispatch.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from bot.app import TrialApplication
                """
            },
            "scheduler.dispatch imports bot/",
            id="type-checking-import",
        ),
        pytest.param(  # inside a function (scheduler/runtime.py's lazy `from bot.alerting import …`)
            {"scheduler/runtime.py": "def ticks():\n    from bot.alerting import alerts_tick\n"},
            "scheduler.runtime imports bot/",
            id="lazy-import",
        ),
        pytest.param(  # scheduler/store.py → bot.config for the settings
            {"scheduler/store.py": "import bot.config\n"},
            "scheduler.store imports bot/",
            id="plain-import",
        ),
        pytest.param(  # export reaching the bot
            {"export/run.py": "from bot import texts\n"},
            "export.run imports bot/",
            id="export-imports-bot",
        ),
        pytest.param(  # a circle between two packages below the bot (domain ↔ scheduler)
            {
                "domain/enrollment.py": "from scheduler.store import replan\n",
                "scheduler/dispatch.py": "from domain.alerts import raise_alert\n",
            },
            "domain/ and scheduler/ import each other",
            id="two-packages-circle",
        ),
        pytest.param(  # core importing upwards
            {"core/settings.py": "from models.db import create_engine\n"},
            "core.settings imports ['models']",
            id="core-imports-ours",
        ),
    ],
)
def test_the_rule_catches_todays_back_arrows(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    problems = violations(_tree(tmp_path, files))
    assert any(expected in p for p in problems), problems


def test_relative_imports_are_resolved() -> None:
    assert "bot.i18n" in set(imports_of("from ..i18n import gettext\n", "bot.handlers.common"))


def test_imports_within_one_package_and_downwards_are_allowed(tmp_path: Path) -> None:
    found = _tree(
        tmp_path,
        {
            "bot/app.py": "from domain import audit\nfrom scheduler import runtime\nfrom core import settings\n",
            "domain/audit.py": "from models import AuditEntry\nfrom domain.errors import DomainError\n",
            "scheduler/runtime.py": "from core.aio import PerLoop\n",
            "core/settings.py": "import pydantic\nfrom core.digits import to_ascii_digits\n",
        },
    )
    assert violations(found) == []
