"""core.aio.GroupCall: items that arrive while a run is in progress go together in the
next run, at most ``most`` of them, with ``lanes`` runs at once, each item getting its
own result (or its run's error); no run is empty, and a caller that leaves never leaves
another waiting."""

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

    group: GroupCall[int, str] = GroupCall(run, most=1, lanes=2)
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


async def test_no_run_is_empty_and_every_item_runs_once() -> None:
    """Many callers, two lanes, runs that take a while: every item is run exactly once,
    in the order the items came, and no run is handed nothing (a caller whose item a run
    in the other lane took does not start a run of its own)."""
    runs: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        runs.append(list(items))
        await asyncio.sleep(0.001)
        return items

    group: GroupCall[int, int] = GroupCall(run, most=3, lanes=2)
    results = await asyncio.gather(*(group.call(i) for i in range(20)))
    assert results == list(range(20))
    assert all(runs) and sorted(item for items in runs for item in items) == list(range(20))
    assert [item for items in runs for item in items] == list(range(20))
    assert len(runs) < 20 and max(len(items) for items in runs) <= 3


async def test_a_caller_that_leaves_takes_its_waiting_item_and_holds_up_nobody() -> None:
    """A caller cancelled before its item was taken takes the item out (it never runs for
    a caller that is gone); one cancelled while its item runs leaves the run alone, and
    the others of its group get their results."""
    runs: list[list[int]] = []
    gates = {1: asyncio.Event(), 2: asyncio.Event()}

    async def run(items: list[int]) -> list[int]:
        runs.append(list(items))
        await gates[items[0]].wait()
        return items

    group: GroupCall[int, int] = GroupCall(run)
    first = asyncio.create_task(group.call(1))
    for _ in range(3):
        await asyncio.sleep(0)
    gone, stays = asyncio.create_task(group.call(9)), asyncio.create_task(group.call(2))
    for _ in range(3):
        await asyncio.sleep(0)
    gone.cancel()  # still waiting: 9 is taken out
    later = asyncio.create_task(group.call(3))
    for _ in range(3):
        await asyncio.sleep(0)
    gates[1].set()
    assert await first == 1
    for _ in range(3):
        await asyncio.sleep(0)
    assert runs == [[1], [2, 3]]
    stays.cancel()  # 2's caller leaves while 2 and 3 run: 3 still gets its result
    gates[2].set()
    assert await asyncio.wait_for(later, 2) == 3
    assert gone.cancelled() and stays.cancelled()
