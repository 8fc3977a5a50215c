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
    """Group commit with an answer for each item: `call` queues its item and waits while
    ``lanes`` runs are in progress; then, unless a run in another lane took its item
    meanwhile, it takes the items queued (at most ``most``, in the order they came; the
    rest wait for a run after) and hands them to ``run`` together, which returns one
    result for each. `call` returns its own item's result, or raises what ``run`` raised.

    A caller cancelled before its item was taken takes the item out (nothing runs for a
    caller that is gone); a run goes on when the caller that started it is cancelled (a
    shutdown), so that the other items of its group get their results."""

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R]]], most: int | None = None, lanes: int = 1) -> None:
        self._run = run
        self._most = most
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._lanes = asyncio.Semaphore(lanes)  # wakes its waiters first come, first served

    @property
    def waiting(self) -> int:
        """Items queued and not yet taken by a run."""
        return len(self._pending)

    async def call(self, item: T) -> R:
        """Run `item` (with whatever else is waiting); return its result once run."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        entry = (item, done)
        self._pending.append(entry)
        try:
            async with self._lanes:
                if any(pending is entry for pending in self._pending):  # not taken by another lane's run
                    most = len(self._pending) if self._most is None else self._most
                    group, self._pending = self._pending[:most], self._pending[most:]
                    await asyncio.shield(asyncio.ensure_future(self._settle(group)))
        except asyncio.CancelledError:
            self._pending = [pending for pending in self._pending if pending is not entry]
            raise
        return await asyncio.shield(done)

    async def _settle(self, group: list[tuple[T, asyncio.Future[R]]]) -> None:
        """Run one group and give each of its items its result, or the run's error."""
        try:
            results = await self._run([item for item, _ in group])
        except Exception as exc:
            _fail(group, exc)
        except BaseException:  # cancelled (the event loop closing): nobody may wait for ever
            _fail(group, RuntimeError("the group's run was cancelled"))
            raise
        else:
            for (_, future), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)


def _fail(group: list[tuple[T, asyncio.Future[R]]], error: BaseException) -> None:
    for _, future in group:
        if not future.done():
            future.set_exception(error)


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
