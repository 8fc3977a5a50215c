"""Small asyncio helpers shared by the bot and the scheduler (here, at the bottom, so both may use them)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
