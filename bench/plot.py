"""The benchmark's picture: throughput (fan-out and inbound, against the targets and
PTB's floor) and the dispatcher tick's cost against the number of participants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: a file only

import matplotlib.pyplot as plt


def plot(raw: dict[str, Any], path: Path, *, mode: str) -> None:
    """Write the two-panel PNG from the raw results."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.2), gridspec_kw={"width_ratios": [1.4, 1]})
    labels: list[str] = []
    values: list[float] = []
    short = {"sqlite": "SQLite", "postgresql": "PG"}
    for key in ("fanout", "fanout_concurrent"):
        for kind, r in raw.get(key, {}).items():
            labels.append(f"fan-out\nno limiter\nx{r.get('concurrency', 1)}\n{short.get(kind, kind)}")
            values.append(r["messages_per_s"])
    for kind, r in raw.get("limited", {}).items():
        labels.append(f"fan-out\nlimiter\n\n{short.get(kind, kind)}")
        values.append(r["messages_per_s"])
    for kind, by_concurrency in raw.get("network", {}).get("fanout", {}).items():
        for concurrency, r in sorted(by_concurrency.items(), key=lambda item: int(item[0])):
            labels.append(f"fan-out\n80 ms\nx{concurrency}\n{short.get(kind, kind)}")
            values.append(r["messages_per_s"])
    for kind, r in raw.get("inbound", {}).items():
        labels.append(f"inbound\n\n\n{'PTB floor' if kind == 'floor' else short.get(kind, kind)}")
        values.append(r["updates_per_s"])
    if values:
        bars = left.bar(range(len(values)), values, color="#4c72b0")
        left.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
        left.set_xticks(range(len(values)), labels, fontsize=7)
        left.set_yscale("log")
        left.axhline(1000, color="#c44e52", linestyle="--", linewidth=1, label="fan-out target 1,000/s")
        left.axhline(500, color="#dd8452", linestyle=":", linewidth=1, label="inbound target 500/s")
        left.axhline(30, color="#55a868", linestyle="-.", linewidth=1, label="Telegram limit 30/s")
        left.set_ylabel("messages or updates per second (log)")
        left.legend(fontsize=7, loc="upper left")
    left.set_title("Throughput")
    for kind, results in raw.get("ticks", {}).items():
        xs = [r["participants"] for r in results]
        right.plot(xs, [r["empty_tick_ms"] for r in results], marker="o", label=f"{kind}: nothing due")
        right.plot(
            xs, [r["loaded_tick_ms"] for r in results], marker="s", linestyle="--", label=f"{kind}: a normal minute"
        )
    for kind, results in raw.get("ticks_before_claim_fix", {}).items():
        if kind == "sqlite":  # PostgreSQL's plan did not change
            xs = [r["participants"] for r in results]
            right.plot(
                xs,
                [r["empty_tick_ms"] for r in results],
                marker="x",
                color="grey",
                linestyle=":",
                label="sqlite: nothing due, before the claim fix",
            )
    right.axhline(100, color="#c44e52", linestyle="--", linewidth=1, label="target 100 ms")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("participants planned for 24 weeks (log)")
    right.set_ylabel("dispatch tick (ms, log)")
    right.set_title("Dispatcher tick cost")
    right.legend(fontsize=7)
    fig.suptitle(f"SSc trial bot benchmark ({mode} mode; 2-core VM, local Bot API server)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
