"""Small asyncio helpers shared by the bot and the scheduler (here, at the bottom, so both may use them)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


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


class GroupCommit(Generic[T]):
    """Group commit: `add` waits for the write in progress, then whoever writes next takes
    every item that arrived meanwhile and hands them to `write` together (one transaction
    for all of them). `add` returns once its own item is written, or raises what the
    write raised. Items are written in the order they were added."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]]) -> None:
        self._write = write
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._lock = asyncio.Lock()

    async def add(self, item: T) -> None:
        """Write `item` (with whatever else is waiting); return once it is written."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        async with self._lock:
            if not done.done():
                group, self._pending = self._pending, []
                try:
                    await self._write([pending for pending, _ in group])
                except Exception as exc:
                    for _, future in group:
                        future.set_exception(exc)
                except BaseException:  # cancelled while writing: the others must not wait forever
                    for _, future in group:
                        if future is not done:
                            future.set_exception(RuntimeError("the group's write was cancelled"))
                    raise
                else:
                    for _, future in group:
                        future.set_result(None)
        await done
