"""The bot's HTTP client to the Bot API: PTB's request interface over aiohttp's client.

Why not PTB's own (httpx): with several calls in flight (the dispatcher's slots, the
updates of several chats) httpx's connection pool looks at every pooled connection on
each request it starts or ends, and for an idle one asks the socket whether the server
closed it (httpcore's ``_assign_requests_to_connections``). Profiled on the benchmark's
fan-out with 16 slots, the HTTP client was 41 % of the process's CPU, most of it that
scan; aiohttp (already the webhook server's) keeps idle connections in a queue per host
and takes one off it. Everything else is PTB's: the parameters it encodes, the status
and body it parses, its errors (a time-out is ``TimedOut``, any other failure of the
connection ``NetworkError``), its rate limiter above this.

Also kept from `bot.app`'s old client: the moving average of a ``sendMessage``'s round
trip (``round_trip_s``), which `bot.dispatch.auto_slots` sizes the slots to.
"""

from __future__ import annotations

import json
import logging
import time
from typing import cast

import aiohttp
import orjson
from aiolimiter import AsyncLimiter
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import JSONDict, ODVInput
from telegram.constants import FloodLimit
from telegram.error import NetworkError, TelegramError, TimedOut
from telegram.ext import AIORateLimiter
from telegram.request import BaseRequest, RequestData

DEFAULT_TIMEOUT_S = 5.0  # PTB's defaults for connect, read and write
MEDIA_WRITE_TIMEOUT_S = 20.0  # PTB's for an upload
POOL_TIMEOUT_S = 1.0  # PTB's: how long a request may wait for a free connection
_JSON = {"Content-Type": "application/json"}
log = logging.getLogger(__name__)


class AiohttpRequest(BaseRequest):
    """One aiohttp session with a pool of ``connection_pool_size`` connections."""

    round_trip_s: float = 0.0

    def __init__(self, connection_pool_size: int = 256) -> None:
        self._pool_size = connection_pool_size
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float:
        return DEFAULT_TIMEOUT_S

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=self._pool_size)
            self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": self.USER_AGENT})

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data else None
        body: aiohttp.FormData | bytes | None = None
        headers: dict[str, str] | None = None
        if request_data is not None and not files:
            # A JSON body, one of the Bot API's four ways of passing parameters, encoded
            # with orjson from PTB's `parameters` (PTB's advice for another JSON library).
            # PTB's own client sends a form: each nested value (a keyboard) JSON-encoded
            # by the standard library, then the whole percent-encoded in pure Python:
            # about 1 % of a burst of answers here, and 4 % for the benchmark's Bot API
            # server (in the same process) to decode.
            parameters = request_data.parameters
            if parameters:
                body, headers = orjson.dumps(parameters), _JSON
        if files:
            form = aiohttp.FormData()
            for name, value in (request_data.json_parameters if request_data else {}).items():
                form.add_field(name, value)
            for name, upload in files.items():
                filename, content, mimetype = upload if isinstance(upload, tuple) else (None, upload, None)
                form.add_field(name, content, filename=filename, content_type=mimetype)
            body = form
        pool = _seconds(pool_timeout, POOL_TIMEOUT_S)
        connect = _seconds(connect_timeout, DEFAULT_TIMEOUT_S)
        write = _seconds(write_timeout, MEDIA_WRITE_TIMEOUT_S if files else DEFAULT_TIMEOUT_S)
        read = _seconds(read_timeout, DEFAULT_TIMEOUT_S)
        parts = (pool, connect, write, read)
        timeout = aiohttp.ClientTimeout(
            # aiohttp has no write time-out of its own: the whole request is bounded by
            # the sum of waiting for a connection, connecting, sending and reading
            total=None if None in parts else sum(p for p in parts if p is not None),
            connect=None if pool is None or connect is None else pool + connect,
            sock_connect=connect,
            sock_read=read,
        )
        started = time.perf_counter()
        try:
            async with session.request(method, url, data=body, headers=headers, timeout=timeout) as response:
                status, content = response.status, await response.read()
        except TimeoutError as error:  # aiohttp's ServerTimeoutError is one too
            raise TimedOut from error
        except aiohttp.ClientError as error:
            raise NetworkError(f"aiohttp.{type(error).__name__}: {error}") from error
        if url.endswith("/sendMessage"):
            took = time.perf_counter() - started
            self.round_trip_s = took if self.round_trip_s == 0 else 0.8 * self.round_trip_s + 0.2 * took
        return status, content

    @staticmethod
    def parse_json_payload(payload: bytes) -> JSONDict:
        """Telegram's answer, read with orjson (PTB's own hook for another JSON library).
        While updates are in progress every long poll brings them all back, up to a
        hundred at a time: the standard library's reading of them was most of what
        fetching cost in a burst of answers. What is not JSON (a proxy's error page)
        raises TelegramError as PTB's does, without the page in the log: it may quote
        what was sent."""
        try:
            return cast(JSONDict, orjson.loads(payload))
        except orjson.JSONDecodeError:
            pass
        try:
            return cast(JSONDict, json.loads(payload.decode("utf-8", "replace")))  # PTB's: bad UTF-8 replaced
        except ValueError as error:
            log.warning("the Bot API answered with %d bytes that are not JSON", len(payload))
            raise TelegramError("Invalid server response") from error


def _seconds(value: ODVInput[float], default: float) -> float | None:
    if isinstance(value, DefaultValue):
        return default
    return value  # None: no limit


class SendRateLimiter(AIORateLimiter):
    """PTB's rate limiter with TELEGRAM_SEND_RATE applied: ordinary messages (replies,
    alerts, and reminders at the free rate) at most ``min(rate, 30)`` a second, Telegram's
    free limit; messages sent as paid broadcasts (``allow_paid_broadcast``, which PTB
    throttles apart, at Telegram's 1,000 a second) at most ``rate`` a second. Groups'
    limits and the handling of RetryAfter are PTB's."""

    __slots__ = ()

    def __init__(self, rate: int, max_retries: int) -> None:
        free = int(FloodLimit.MESSAGES_PER_SECOND)
        super().__init__(overall_max_rate=min(rate, free), max_retries=max_retries)
        self._apb_limiter = AsyncLimiter(max_rate=min(rate, int(FloodLimit.PAID_MESSAGES_PER_SECOND)), time_period=1)
