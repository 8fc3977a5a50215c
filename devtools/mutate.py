"""`make mutate`: mutation testing (mutmut 3) of the safety-critical code, one group of
modules at a time, each against the narrow set of test files that covers it.

Every group runs in its own scratch copy of the tree (under MUTATE_DIR, default
/tmp/ssc-mutate), so the work tree is never changed and several groups never share a
``mutants/`` folder. mutmut itself runs, for each mutant, only the tests that reached
the mutated function (it records that in a first full run of the group's tests).

    python -m devtools.mutate                 # every group
    python -m devtools.mutate triage dispatch # some groups
    python -m devtools.mutate --recheck enrollment  # only the last run's survivors, against today's tests
    python -m devtools.mutate --resume enrollment   # go on where an interrupted run stopped
    MUTANTS='domain.reminders.x_still_wanted*' python -m devtools.mutate --resume reminders  # only these
    MUTATE_JOBS=2 python -m devtools.mutate   # worker processes (default 1: the machine is shared)

Prints, per group and in total, killed / survived / timeouts and the score: detected
(killed, or hung the tests until mutmut's time-out) over tested; exits 1 when a
group is under TARGET or a survivor is not listed in tests/mutation/equivalent.md.
PostgreSQL is left out (``-k "not postgres"``): a mutant that only PostgreSQL would
catch is rare (a row lock), and the database runs are the slow half. MUTATE_POSTGRES=1
keeps it, e.g. to recheck a lock's survivors against the PostgreSQL tests:

    MUTATE_POSTGRES=1 RECHECK_TESTS=tests/test_dispatch.py python -m devtools.mutate --recheck outbox"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.90
EQUIVALENT = ROOT / "tests" / "mutation" / "equivalent.md"
# Lines whose mutants say nothing about behaviour: log wording (what logs may carry is
# tested by the redaction tests, not by the words).
NOT_MUTATED = [r"^\s*log\.(debug|info|warning|error|exception)\(", r"^\s*\"[^\"]*\",?\s*$"]


@dataclass(frozen=True)
class Group:
    """Modules mutated together and the test files that must catch their mutants.
    `functions` narrows a module to some of its functions ("bot/app.py::Class.method"):
    a module named there has only those mutated (the rest of it is another promise,
    tested elsewhere); a module not named there is mutated whole."""

    modules: tuple[str, ...]
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()

    def kept(self, module: str) -> set[str] | None:
        """The functions of `module` to mutate, or None for all of them."""
        names = {f.split("::", 1)[1] for f in self.functions if f.split("::", 1)[0] == module}
        return names or None


DISPATCH_TESTS = (
    "tests/test_dispatch.py",
    "tests/test_safety_paths.py",
    "tests/test_reminders.py",
    "tests/test_dispatch_promises.py",
)

GROUPS: dict[str, Group] = {
    "triage": Group(
        ("domain/triage.py",),  # the triage table (content/triage.yaml) is loaded and checked here
        ("tests/test_triage.py", "tests/test_safety_paths.py"),
    ),
    "enrollment": Group(
        ("domain/enrollment.py",),
        ("tests/test_enrollment.py", "tests/test_safety_paths.py", "tests/test_enrollment_codes.py"),
        # the codes: issued, hashed, revoked, redeemed, refused, rate-limited (not the
        # /enroll argument parser nor the audit snapshot's layout)
        tuple(
            f"domain/enrollment.py::{name}"
            for name in (
                "new_code",
                "normalize_code",
                "hash_code",
                "enroll",
                "unlink",
                "revoke_unused_codes",
                "_recent_failures",
                "redeem",
                "_refuse",
            )
        ),
    ),
    "dispatch": Group(
        ("bot/dispatch.py",),
        DISPATCH_TESTS,
        # the dispatcher's re-check at send time and what a failed send does to its row
        # (issue 11: "the dispatcher's re-check and back-off"): _prepare loads a batch's
        # rows still claimed with their participants and chats, _recheck refuses (paused,
        # withdrawn, stale, quiet hours, unknown kind, no chat), _failure picks a refused
        # send's outcome (Forbidden, RetryAfter as a floor, BadRequest, retry later). Not
        # here: the concurrency and group commit (_send_all, _Slots, core.aio.GroupCommit), rendering,
        # and recording a send (_record), each guarded by its own tests.
        ("bot/dispatch.py::_prepare", "bot/dispatch.py::_recheck", "bot/dispatch.py::_failure"),
    ),
    "reminders": Group(
        ("domain/reminders.py",),
        DISPATCH_TESTS,
        # the re-check per kind (still_wanted on the facts load_facts reads for a batch): a
        # dose answered, no dose log, the "no answer" close, a visit recorded or moved, the
        # missed-visit alert, a questionnaire answered. Its own group only to be run in
        # two sittings: with "dispatch" it is the re-check of issue 11. Not here: what a
        # send leaves (after_sends) and the unreachable flag, tested by their own tests.
        ("domain/reminders.py::load_facts", "domain/reminders.py::still_wanted"),
    ),
    "outbox": Group(
        ("scheduler/outbox.py",),
        (*DISPATCH_TESTS, "tests/test_alerts.py"),  # the outbox serves alert deliveries too (queue ALERTS)
        # the one back-off (Queue.backoff: a first delay doubling to a cap; retry_later with
        # RetryAfter as a floor; release, record_failure, give_up: the attempt counted;
        # postpone: none counted) and the claim that makes a send exactly once (claim,
        # claimed, _ours, still_ours, mark_sent, finish), for reminders and alerts alike.
        tuple(
            f"scheduler/outbox.py::{name}"
            for name in (
                "Queue.backoff",
                "claim",
                "release",
                "finish",
                "retry_later",
                "postpone",
                "give_up",
                "claimed",
                "_ours",
                "still_ours",
                "mark_sent",
                "record_failure",
            )
        ),
    ),
    "unit-of-work": Group(
        ("bot/unit_of_work.py", "bot/app.py", "models/db.py"),
        # test_enrollment.py: a re-delivered update applied once, and promptly; test_alerts.py:
        # an alert raised by an update is sent within seconds, not at the next beat;
        # test_audit_chain.py: rows written later keep the audit table's order
        (
            "tests/test_application.py",
            "tests/test_safety_paths.py",
            "tests/test_enrollment.py",
            "tests/test_alerts.py",
            "tests/test_audit_chain.py",
        ),
        # in bot/app.py: one transaction per update (or per group of presses and text),
        # rolled back when a handler failed
        (
            "bot/app.py::TrialApplication._process_once",
            "bot/app.py::TrialApplication._transact_alone",
            "bot/app.py::TrialApplication._run_group",
            "bot/app.py::TrialApplication._run_handlers",
            "bot/app.py::TrialApplication._after_commit",
            "bot/app.py::TrialApplication._finish",
            "bot/app.py::shares_transaction",
            "bot/app.py::TrialApplication._commit",
            "bot/app.py::apologise",
            "bot/app.py::on_error",
            # in models/db.py: the rows a transaction writes at its flush or commit
            "models/db.py::insert_later",
            "models/db.py::write_later_rows",
            "models/db.py::_write_later",
            "models/db.py::_drop_later",
        ),
    ),
    "alerts": Group(
        ("domain/alerts.py", "bot/alerting.py"),
        ("tests/test_alerts.py", "tests/test_escalation.py"),
        # in bot/alerting.py: the "unacknowledged -> escalate" decision (delivery and
        # rendering are tested by their own files)
        ("bot/alerting.py::escalate_due",),
    ),
}

KILLED = {1, 3, 37}
SURVIVED = {0}
TIMEOUT = {36, -24, 24, 152, 255}
RECHECK_TIMEOUT = 900  # seconds for one survivor's re-run


def _databases() -> list[str]:
    """The pytest arguments that choose the databases: SQLite only unless MUTATE_POSTGRES=1."""
    return [] if os.environ.get("MUTATE_POSTGRES") == "1" else ["-k", "not postgres"]


def _config(group: Group) -> str:
    """The [tool.mutmut] table for one group."""
    sources = sorted({module.split("/")[0] for module in group.modules})
    selection = [*group.tests, *_databases()]
    return "\n".join(
        [
            "",
            "[tool.mutmut]",
            f"source_paths = {json.dumps(sources)}",
            f"only_mutate = {json.dumps(list(group.modules))}",
            f"do_not_mutate_patterns = {json.dumps(NOT_MUTATED)}",
            'also_copy = ["content", "models", "migrations", "devtools", "alembic.ini", "locales", "export", '
            '"bench", "domain", "scheduler", "bot", "charts", "core", "cli"]',
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]',
            f"pytest_add_cli_args_test_selection = {json.dumps(selection)}",
            "",
        ]
    )


NO_MUTATE = "# pragma: no mutate block"


def _restrict(source: str, kept: set[str]) -> str:
    """`source` with `# pragma: no mutate block` on every function that is neither in
    `kept` (qualified names: "function", "Class.method") nor inside one that is."""
    import libcst as cst  # the `mutation` extra brings it, with mutmut

    class Restrict(cst.CSTTransformer):
        def __init__(self) -> None:
            self.scope: list[str] = []

        def visit_ClassDef(self, node: cst.ClassDef) -> bool:
            self.scope.append(node.name.value)
            return True

        def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> Any:
            self.scope.pop()
            return updated

        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            self.scope.append(node.name.value)
            return True

        def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> Any:
            name = ".".join(self.scope)
            self.scope.pop()
            inside_kept = any(name.startswith(k + ".") for k in kept)
            if name in kept or inside_kept or any(k.startswith(name + ".") for k in kept):
                return updated
            if not isinstance(updated.body, cst.IndentedBlock):
                return updated
            header = updated.body.header.with_changes(
                whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment(NO_MUTATE)
            )
            return updated.with_changes(body=updated.body.with_changes(header=header))

    return cst.parse_module(source).visit(Restrict()).code


def _scratch(name: str, group: Group) -> Path:
    """A fresh copy of the tracked tree (and the uncommitted changes) with the group's config."""
    base = _scratch_dir(name)
    shutil.rmtree(base, ignore_errors=True)
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            dst = base / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    for module in group.modules:
        kept = group.kept(module)
        if kept is not None:
            path = base / module
            path.write_text(_restrict(path.read_text(), kept))
    pyproject = base / "pyproject.toml"
    text = re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", pyproject.read_text())
    pyproject.write_text(text + _config(group))
    return base


def _results(base: Path, group: Group) -> dict[str, int]:
    """Exit code of each mutant's test run, from mutmut's .meta files."""
    codes: dict[str, int] = {}
    for module in group.modules:
        meta = base / "mutants" / f"{module}.meta"
        if meta.exists():
            data = json.loads(meta.read_text())
            codes.update({k: v for k, v in data.get("exit_code_by_key", {}).items() if v is not None})
    return codes


def _listed_equivalent() -> set[str]:
    """Mutant names listed in tests/mutation/equivalent.md (first column of its tables)."""
    if not EQUIVALENT.exists():
        return set()
    return set(re.findall(r"^\|\s*`([\w.]+__mutmut_\d+)`", EQUIVALENT.read_text(), flags=re.MULTILINE))


def _score(base: Path, group: Group) -> tuple[int, int, int, list[str]]:
    """(killed, survived, timeouts, survivors) from a scratch copy's mutmut results."""
    codes = _results(base, group)
    killed = sum(1 for c in codes.values() if c in KILLED)
    survivors = sorted(k for k, c in codes.items() if c in SURVIVED)
    timeouts = sum(1 for c in codes.values() if c in TIMEOUT)
    return killed, len(survivors), timeouts, survivors


def _scratch_dir(name: str) -> Path:
    return Path(os.environ.get("MUTATE_DIR", "/tmp/ssc-mutate")) / name


def run_group(name: str, group: Group, jobs: int, resume: bool = False) -> tuple[int, int, int, list[str]]:
    """Run mutmut over one group; returns (killed, survived, timeouts, survivors).
    ``resume``: go on with the mutants an earlier, interrupted run left untested (same
    scratch copy, same code and tests; mutmut keeps each result in its mutants/ folder)."""
    base = _scratch_dir(name)
    if not (resume and (base / "mutants").is_dir()):
        base = _scratch(name, group)
    mutmut = Path(sys.executable).parent / "mutmut"
    env = {**os.environ, "PYTHONPATH": str(base)}
    # MUTANTS (mutmut's names, * and ? allowed, spaces between): only these, tested again
    # even when they have a result (e.g. a group's most important function first).
    only = os.environ.get("MUTANTS", "").split()
    subprocess.run([str(mutmut), "run", "--max-children", str(jobs), *only], cwd=base, env=env, check=False)
    return _score(base, group)


def recheck_group(name: str, group: Group, jobs: int) -> tuple[int, int, int, list[str]]:
    """Run only the survivors of the group's last run again, against the work tree's
    tests as they are now (after writing tests for them), and record the new outcome in
    mutmut's results. The mutated code is the last run's: run the group again after
    changing the modules themselves."""
    base = _scratch_dir(name)
    mutants = base / "mutants"
    if not mutants.is_dir():
        raise SystemExit(f"no earlier run of {name} in {base}: run `make mutate GROUPS={name}` first")
    for tree in (base / "tests", mutants / "tests"):
        shutil.rmtree(tree, ignore_errors=True)
        shutil.copytree(ROOT / "tests", tree, ignore=shutil.ignore_patterns("__pycache__"))
    # A survivor already passed every test of the group; RECHECK_TESTS (file names, spaces
    # between) runs only the new ones, which is much faster.
    tests = os.environ.get("RECHECK_TESTS", "").split() or list(group.tests)
    for module in group.modules:
        meta_path = mutants / f"{module}.meta"
        if not meta_path.exists():
            continue
        meta = json.loads(meta_path.read_text())
        codes = meta.get("exit_code_by_key", {})
        for mutant in sorted(k for k, c in codes.items() if c in SURVIVED):
            env = {**os.environ, "PYTHONPATH": str(mutants), "MUTANT_UNDER_TEST": mutant}
            command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
            try:
                run = subprocess.run(
                    [*command, *tests, *_databases()],
                    cwd=mutants,
                    env=env,
                    capture_output=True,
                    check=False,
                    timeout=RECHECK_TIMEOUT,
                )
                if run.returncode not in (0, 1):  # the run broke (usage, collection): it says nothing of the mutant
                    print(f"{mutant}: the tests did not run (pytest exit {run.returncode}); result kept", flush=True)
                    continue
                codes[mutant] = run.returncode
            except subprocess.TimeoutExpired:
                codes[mutant] = 36  # mutmut's code for a time-out: the mutant hung the tests
            print(f"{mutant}: {'survived' if codes[mutant] in SURVIVED else 'killed'}", flush=True)
        meta_path.write_text(json.dumps(meta))
    return _score(base, group)


def main(argv: list[str]) -> int:
    recheck = "--recheck" in argv
    resume = "--resume" in argv
    names = [a for a in argv if a not in ("--recheck", "--resume")] or list(GROUPS)
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        print(f"unknown group(s) {unknown}; groups: {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    jobs = int(os.environ.get("MUTATE_JOBS", "1"))
    equivalent = _listed_equivalent()
    lines, failed = [], False
    total_killed = total_tested = 0
    for name in names:
        if recheck:
            killed, survived, timeouts, survivors = recheck_group(name, GROUPS[name], jobs)
        else:
            killed, survived, timeouts, survivors = run_group(name, GROUPS[name], jobs, resume)
        tested = killed + survived + timeouts
        score = (killed + timeouts) / tested if tested else 0.0
        unexplained = [s for s in survivors if s not in equivalent]
        failed |= score < TARGET or bool(unexplained)
        total_killed += killed + timeouts
        total_tested += tested
        lines.append(
            f"{name:<13} {', '.join(GROUPS[name].modules):<40} killed {killed:>4}  survived {survived:>3}"
            f"  timeout {timeouts:>2}  score {score:6.1%}  not in equivalent.md: {len(unexplained)}"
        )
        for survivor in unexplained:
            lines.append(f"    survived: {survivor}")
    half = "SQLite and PostgreSQL" if not _databases() else "SQLite half"
    print(f"\nmutation score (mutmut, {half} of the listed tests)")
    print("\n".join(lines))
    if total_tested:
        print(f"{'all':<13} {'':<40} score {total_killed / total_tested:6.1%} ({total_killed}/{total_tested})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
