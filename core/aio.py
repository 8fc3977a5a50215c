"""Small asyncio helpers shared by the bot and the scheduler (here, at the bottom, so both may use them)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class PerLoop(Generic[T]):
    """One asyncio primitive (a Lock, a Semaphore) for the running event loop, made on
    first use there. Such a primitive belongs to the loop it was first used on, and one
    process may run several loops one after another (the tests, the benchmark)."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._made: tuple[T, asyncio.AbstractEventLoop] | None = None

    def get(self) -> T:
        """The primitive of the running loop."""
        loop = asyncio.get_running_loop()
        if self._made is None or self._made[1] is not loop:
            self._made = (self._factory(), loop)
        return self._made[0]


class GroupCall(Generic[T, R]):
    """Group commit with an answer for each item: `call` waits while ``lanes`` runs are in
    progress, then whoever runs next takes the items that arrived meanwhile (at most
    ``most``, in the order they came; the rest wait for a run after) and hands them to
    ``run`` together, which returns one result for each. `call` returns its own item's
    result, or raises what ``run`` raised."""

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R]]], most: int | None = None, lanes: int = 1) -> None:
        self._run = run
        self._most = most
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._lock = asyncio.Semaphore(lanes)  # wakes its waiters first come, first served

    @property
    def waiting(self) -> int:
        """Items waiting for a run to take them."""
        return len(self._pending)

    async def call(self, item: T) -> R:
        """Run `item` (with whatever else is waiting); return its result once run."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        async with self._lock:
            if not done.done():
                most = len(self._pending) if self._most is None else self._most
                group, self._pending = self._pending[:most], self._pending[most:]
                try:
                    results = await self._run([pending for pending, _ in group])
                except Exception as exc:
                    for _, future in group:
                        future.set_exception(exc)
                except BaseException:  # cancelled while running: the others must not wait forever
                    for _, future in group:
                        if future is not done:
                            future.set_exception(RuntimeError("the group's run was cancelled"))
                    raise
                else:
                    for (_, future), result in zip(group, results, strict=True):
                        future.set_result(result)
        return await done


class GroupCommit(GroupCall[T, None]):
    """Group commit: `add` waits for the write in progress, then whoever writes next takes
    every item that arrived meanwhile and hands them to `write` together (one transaction
    for all of them). `add` returns once its own item is written, or raises what the
    write raised. Items are written in the order they were added."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]]) -> None:
        async def run(items: list[T]) -> list[None]:
            await write(items)
            return [None] * len(items)

        super().__init__(run)

    async def add(self, item: T) -> None:
        """Write `item` (with whatever else is waiting); return once it is written."""
        await self.call(item)
