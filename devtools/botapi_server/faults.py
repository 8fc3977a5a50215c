"""Failures injected into the next matching Bot API calls."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devtools.botapi_server.records import FaultKind


@dataclass
class Fault:
    """A scheduled failure for the next matching Bot API calls (see :class:`FaultInjector`)."""

    method: str | None
    kind: FaultKind
    times: int = 1
    retry_after: int = 1
    chat_id: int | str | None = None
    delay: float = 10.0
    code: int = 400
    description: str = "Bad Request: injected error"
    until: asyncio.Event | None = None
    fired: int = 0

    def matches(self, method: str, params: Mapping[str, Any]) -> bool:
        """Whether this fault applies to a call of ``method`` with ``params``."""
        if self.times <= 0:
            return False
        if self.method is not None and self.method.lower() != method.lower():
            return False
        return self.chat_id is None or str(params.get("chat_id")) == str(self.chat_id)


class FaultInjector:
    """Failures injected into the next matching calls, consumed in the order added."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self.fired: list[tuple[str, str]] = []

    def add(
        self,
        method: str | None = None,
        kind: FaultKind = "500",
        *,
        times: int = 1,
        retry_after: int = 1,
        chat_id: int | str | None = None,
        delay: float = 10.0,
        code: int = 400,
        description: str = "Bad Request: injected error",
        until: asyncio.Event | None = None,
    ) -> Fault:
        """Make the next ``times`` calls of ``method`` (any method if None) fail with ``kind``.

        Kinds: "500" and "502" (server errors, PTB NetworkError), "429" (flood control,
        PTB RetryAfter(retry_after)), "timeout" (the request is held for ``delay`` s and
        then dropped, or until ``until`` is set if given, so a test can act while a request
        is in flight: give the client a shorter read timeout to get TimedOut), "close"
        (the connection is dropped without an answer: NetworkError), "error" (any Bot
        API error: ``code`` and ``description``). A faulted call changes nothing.
        """
        if kind not in ("500", "502", "429", "timeout", "close", "error"):
            raise ValueError(f"unknown fault kind {kind!r}")
        fault = Fault(method, kind, times, retry_after, chat_id, delay, code, description, until)
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Forget all pending faults."""
        self._faults.clear()

    @property
    def pending(self) -> list[Fault]:
        """Faults that still have calls left to break."""
        return [f for f in self._faults if f.times > 0]

    def __len__(self) -> int:
        return len(self.pending)

    def _take(self, method: str, params: Mapping[str, Any]) -> Fault | None:
        for fault in self._faults:
            if fault.matches(method, params):
                fault.times -= 1
                fault.fired += 1
                self.fired.append((method, fault.kind))
                if fault.times <= 0:
                    self._faults = [f for f in self._faults if f.times > 0]
                return fault
        return None
