"""core.aio.GroupCall: items that arrive while a run is in progress go together in the
next run, at most ``most`` of them, with ``lanes`` runs at once, each item getting its
own result (or its run's error)."""

from __future__ import annotations

import asyncio

import pytest

from core.aio import GroupCall


async def test_items_that_arrive_meanwhile_run_together_in_order_each_with_its_result() -> None:
    runs: list[list[int]] = []
    gate = asyncio.Event()

    async def run(items: list[int]) -> list[int]:
        runs.append(list(items))
        if items == [1]:
            await gate.wait()
        return [item * 10 for item in items]

    group: GroupCall[int, int] = GroupCall(run, most=3)
    first = asyncio.create_task(group.call(1))
    await asyncio.sleep(0)
    later = [asyncio.create_task(group.call(i)) for i in (2, 3, 4, 5, 6)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert group.waiting == 5
    gate.set()
    assert await first == 10
    assert await asyncio.gather(*later) == [20, 30, 40, 50, 60]
    assert runs == [[1], [2, 3, 4], [5, 6]]  # at most three a run, in the order they came
    assert group.waiting == 0


async def test_lanes_run_at_once_and_a_runs_error_reaches_only_its_items() -> None:
    running: list[int] = []
    most_at_once = 0
    gates = {i: asyncio.Event() for i in range(1, 4)}

    async def run(items: list[int]) -> list[str]:
        nonlocal most_at_once
        running.append(items[0])
        most_at_once = max(most_at_once, len(running))
        await gates[items[0]].wait() if items[0] in gates else None
        running.remove(items[0])
        if 2 in items:
            raise ValueError("database away")
        return ["ok"] * len(items)

    group: GroupCall[int, str] = GroupCall(run, lanes=2)
    one, two = asyncio.create_task(group.call(1)), asyncio.create_task(group.call(2))
    await asyncio.sleep(0)
    three = asyncio.create_task(group.call(3))
    for _ in range(3):
        await asyncio.sleep(0)
    assert sorted(running) == [1, 2] and group.waiting == 1  # two lanes busy, the third waits
    gates[2].set()
    with pytest.raises(ValueError, match="database away"):
        await two
    gates[3].set()
    assert await three == "ok"  # the lane 2 freed took it
    gates[1].set()
    assert await one == "ok"
    assert most_at_once == 2
