"""The README's benchmark table is generated from bench/results.json (issue 18), and
the ratios to PTB's floors are computed per database from the same run's raw figures."""

from __future__ import annotations

import json

from bench.report import BEGIN, END, README, RESULTS, ratios, readme_section, rewrite


def test_readme_table_is_what_the_script_writes_from_the_committed_results() -> None:
    result = json.loads(RESULTS.read_text(encoding="utf-8"))
    readme = README.read_text(encoding="utf-8")
    assert rewrite(readme, result) == readme, "run `make bench-readme` after the benchmark"
    assert readme.count(BEGIN) == 1 and readme.count(END) == 1


def test_the_committed_results_carry_ratios_and_latency_per_database() -> None:
    result = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert set(result["ratios"]) == {"fanout_vs_send_floor", "fanout_free_rate_vs_send_floor", "inbound_vs_floor"}
    assert result["ratios"]["fanout_vs_send_floor"], "no fan-out ratio"
    assert result["ratios"]["inbound_vs_floor"], "no inbound ratio"
    for kind, latency in result["latency_ms"].items():
        assert kind in result["ratios"]["inbound_vs_floor"]
        assert latency["bot_p99"] > 0 and latency["floor_p99"] > 0


def test_ratios_divide_each_database_by_the_floor_of_the_same_run() -> None:
    """The fan-out's ratio is the paid-broadcast setting's (the one for fan-outs faster than
    Telegram's free 30 a second); the default's is reported beside it."""
    raw = {
        "send_floor": {"messages_per_s": 400.0},
        "fanout_paid": {"sqlite": {"messages_per_s": 100.0}, "postgresql": {"messages_per_s": 300.0}},
        "fanout": {"sqlite": {"messages_per_s": 40.0}},
        "inbound": {
            "floor": {"updates_per_s": 900.0, "p99_ms": 100.0},
            "sqlite": {"k": 100, "updates_per_s": 300.0, "p99_ms": 250.0},
        },
    }
    found = ratios(raw)
    assert found["ratios"]["fanout_vs_send_floor"] == {"sqlite": 0.25, "postgresql": 0.75}
    assert found["ratios"]["fanout_free_rate_vs_send_floor"] == {"sqlite": 0.1}
    assert found["ratios"]["inbound_vs_floor"] == {"sqlite": 0.333}
    assert found["latency_ms"]["sqlite"] == {"burst": 100, "bot_p99": 250.0, "floor_p99": 100.0, "bot_vs_floor": 2.5}


def test_rewrite_replaces_only_the_generated_section() -> None:
    result = {
        "mode": "quick",
        "generated_at": "2026-12-06T08:00:00+00:00",
        "seconds": 12.0,
        "machine": {"cpus": 2, "python": "3.11"},
        "sizes": {"fanout": 3},
        "figures": [{"figure": "f", "value": 1, "target": "-", "met": None, "command": "c"}],
    }
    before = f"intro\n{BEGIN}\nold table\n{END}\noutro\n"
    after = rewrite(before, result)
    assert after.startswith("intro\n") and after.endswith("\noutro\n")
    assert "old table" not in after and "| f | 1 | - |  | `c` |" in after
    assert after == f"intro\n{readme_section(result)}\noutro\n"
