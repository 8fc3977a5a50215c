"""The server: lifecycle, simulated people, reading what the bot did, HTTP, and the Bot API methods."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import mimetypes
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import ClientError, ClientSession, ClientTimeout, web
from aiohttp.web_request import FileField

from devtools.botapi_server.faults import Fault, FaultInjector
from devtools.botapi_server.formatting import _format_text, _u16
from devtools.botapi_server.people import SimGroup, SimUser
from devtools.botapi_server.records import (
    _DEFAULT_EXCLUDED_UPDATES,
    _NOT_MODIFIED,
    _POLL_CONFLICT,
    _QUERY_INVALID,
    _WEBHOOK_CONFLICT,
    DEFAULT_TOKEN,
    MAX_CAPTION,
    MAX_TEXT,
    ApiError,
    CallbackAnswer,
    ChatRef,
    JSONDict,
    Predicate,
    QueuedUpdate,
    RequestRecord,
    SentDocument,
    SentMessage,
    TranscriptEntry,
    WebhookDelivery,
    _bad,
    buttons,
)
from devtools.botapi_server.state import (
    _COMMAND_RE,
    _INT_FIELDS,
    _INT_RE,
    _JSON_FIELDS,
    _SECRET_RE,
    _STRING_FIELDS,
    _ApiHandler,
    _Chat,
    _Pending,
    _scope_key,
    _Signal,
    _StoredFile,
    _Upload,
    _Webhook,
)

if TYPE_CHECKING:
    from telegram import Bot
    from telegram.ext import ApplicationBuilder

# --------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------


class BotAPIServer:
    """A local Telegram Bot API server with simulated users (see the module docstring)."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_username: str = "ssc_trial_test_bot",
        bot_first_name: str = "SSc Trial Bot",
        user_label: str = "participant {id}",
        clock: Callable[[], float] = time.time,
        webhook_retry_delays: Sequence[float] = (0.05, 0.2, 0.5, 1.0),
        webhook_timeout: float = 10.0,
        max_requests_kept: int | None = 100_000,
    ) -> None:
        if ":" not in token or not token.partition(":")[0].isdigit():
            raise ValueError("token must look like '<bot id>:<secret>'")
        self.token = token
        self.host = host
        self.port = port
        self.bot_id = int(token.partition(":")[0])
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.user_label = user_label
        self.webhook_retry_delays = tuple(webhook_retry_delays)
        self.webhook_timeout = webhook_timeout
        self.latency = 0.0
        """Seconds every Bot API call but getUpdates waits before it is carried out: a
        network round trip (the real Bot API is 50-200 ms away). 0: answer at once."""
        self._clock = clock
        self.faults = FaultInjector()
        self.requests: deque[RequestRecord] = deque(maxlen=max_requests_kept)
        self.transcript: list[TranscriptEntry] = []
        self.callback_answers: list[CallbackAnswer] = []
        self.webhook_deliveries: list[WebhookDelivery] = []
        self._chats: dict[int, _Chat] = {}
        self._users: dict[int, SimUser] = {}
        self._groups: dict[int, SimGroup] = {}
        self._pending: deque[_Pending] = deque()
        self._has_forced = False
        self._next_update_id = 1
        self._allowed_updates: frozenset[str] | None = None
        self._seq = 0
        self._poll_generation = 0
        self._polls_waiting = 0
        self._updates_signal = _Signal()
        self._activity_signal = _Signal()
        self._open_queries: dict[str, tuple[int, int]] = {}
        self._query_ids = itertools.count(4_611_686_018_427_387_904)
        self._file_ids = itertools.count(1)
        self._files: dict[str, _StoredFile] = {}
        self._files_by_path: dict[str, _StoredFile] = {}
        self._commands: dict[tuple[str, str], list[JSONDict]] = {}
        self._descriptions: dict[tuple[str, str], str] = {}
        self._webhook: _Webhook | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._http: ClientSession | None = None
        self._listeners: list[Callable[[TranscriptEntry], None]] = []
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None  # created on start (needs a loop)
        self._started_at = clock()
        self._handlers: dict[str, tuple[str, _ApiHandler]] = {}
        self._async_handlers: dict[str, tuple[str, _ApiHandler]] = {}
        self._register_methods()

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self) -> BotAPIServer:
        """Bind ``host:port`` (a free port when 0) and serve on the running loop."""
        if self._runner is not None:
            return self
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_route("*", "/_sim/{action}", self._handle_sim)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or ()
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._runner = runner
        self._started_at = self._clock()
        return self

    async def stop(self) -> None:
        """Stop serving: end long polls and webhook delivery, close all connections."""
        if self._runner is None:
            return
        assert self._closing is not None
        self._closing.set()
        self._updates_signal.fire()
        self._activity_signal.fire()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
            self._webhook_task = None
        runner, self._runner = self._runner, None
        await runner.cleanup()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> BotAPIServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Root URL of the server, e.g. ``http://127.0.0.1:40123``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """PTB ``base_url`` (the token is appended by PTB)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """PTB ``base_file_url``."""
        return f"{self.url}/file/bot"

    @property
    def bot_user(self) -> JSONDict:
        """The bot's ``User`` object (as in messages' ``from``)."""
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    def make_bot(self, **kwargs: Any) -> Bot:
        """A ``telegram.Bot`` pointed at this server (kwargs go to ``telegram.Bot``)."""
        from telegram import Bot

        return Bot(self.token, base_url=self.base_url, base_file_url=self.base_file_url, **kwargs)

    def app_builder(self) -> ApplicationBuilder[Any, Any, Any, Any, Any, Any]:
        """A PTB ``ApplicationBuilder`` with token, base_url and base_file_url set."""
        from telegram.ext import Application

        builder: ApplicationBuilder[Any, Any, Any, Any, Any, Any] = Application.builder()
        return builder.token(self.token).base_url(self.base_url).base_file_url(self.base_file_url)

    # ---- simulated people -------------------------------------------------------------

    def user(
        self,
        user_id: int,
        first_name: str | None = None,
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        label: str | None = None,
    ) -> SimUser:
        """Create (or fetch) a simulated user and register their private chat."""
        existing = self._users.get(user_id)
        if existing is not None:
            if first_name is not None:
                existing.first_name = first_name
            if label is not None:
                self.label(user_id, label)
            return existing
        if user_id <= 0:
            raise ValueError("user ids are positive")
        sim = SimUser(self, user_id, first_name or f"User{user_id}", last_name, username, language_code)
        self._users[user_id] = sim
        state = self._chats.get(user_id)
        if state is None:
            state = _Chat(sim.chat_dict, label or self.user_label.format(id=user_id))
            self._chats[user_id] = state
        else:
            state.chat = sim.chat_dict
            if label is not None:
                state.label = label
        return sim

    def group(
        self,
        chat_id: int,
        title: str | None = None,
        *,
        username: str | None = None,
        label: str | None = None,
    ) -> SimGroup:
        """Create (or fetch) a group (supergroup when the id starts with -100)."""
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        existing = self._groups.get(chat_id)
        if existing is not None:
            return existing
        kind = "supergroup" if chat_id <= -1_000_000_000_000 else "group"
        chat: JSONDict = {"id": chat_id, "type": kind, "title": title or f"Group {chat_id}"}
        if username:
            chat["username"] = username
        self._chats[chat_id] = _Chat(chat, label or title or f"group {chat_id}")
        sim = SimGroup(self, chat_id)
        self._groups[chat_id] = sim
        return sim

    def label(self, chat: ChatRef, label: str) -> None:
        """Give a chat a display label for the transcript (e.g. "coordinator chat")."""
        self._chat(chat).label = label

    def push_update(self, update: Mapping[str, Any]) -> QueuedUpdate:
        """Queue a raw update dict (an ``update_id`` is assigned when missing)."""
        data = dict(update)
        chat_id = self._register_from_update(data)
        entry = TranscriptEntry(
            self._clock(),
            "server",
            None,
            chat_id,
            "raw",
            f"(raw update: {', '.join(k for k in data if k != 'update_id')})",
        )
        return self._queue(data, entry)

    def redeliver(self, update: Mapping[str, Any]) -> QueuedUpdate:
        """Deliver an already delivered update again, same ``update_id`` (duplicate delivery)."""
        if "update_id" not in update:
            raise ValueError("redeliver needs an update with an update_id")
        queued = QueuedUpdate(update)
        chat_id = self._register_from_update(queued)
        self._seq += 1
        queued.seq = self._seq
        self._pending.append(_Pending(queued, forced=True))
        self._has_forced = True
        self._record(
            TranscriptEntry(
                self._clock(), "server", None, chat_id, "redeliver", f"(update {queued.update_id} delivered again)"
            )
        )
        self._updates_signal.fire()
        return queued

    # ---- reading what the bot did -----------------------------------------------------

    def messages(self, chat: ChatRef) -> list[SentMessage]:
        """Messages the bot sent to ``chat``, oldest first, edits applied (deleted ones too)."""
        state = self._chats.get(chat if isinstance(chat, int) else chat.id)
        return list(state.sent) if state else []

    def last_message(self, chat: ChatRef) -> SentMessage:
        """The bot's latest message to ``chat`` (AssertionError if none)."""
        sent = self.messages(chat)
        if not sent:
            raise AssertionError(f"the bot sent nothing to {self._describe_chat(chat)}")
        return sent[-1]

    def documents(self, chat: ChatRef) -> list[SentDocument]:
        """Documents the bot sent to ``chat``."""
        state = self._chats.get(chat if isinstance(chat, int) else chat.id)
        return list(state.documents) if state else []

    def photos(self, chat: ChatRef) -> list[SentDocument]:
        """Photos the bot sent to ``chat`` (``sendPhoto``)."""
        state = self._chats.get(chat if isinstance(chat, int) else chat.id)
        return list(state.photos) if state else []

    def media(self, chat: ChatRef) -> list[SentDocument]:
        """Every file the bot sent to ``chat``, in order: photos, voice notes, audio
        files and documents, singly or in a ``sendMediaGroup`` (each with its
        ``kind``, ``caption``, ``reply_to`` and ``media_group_id``)."""
        state = self._chats.get(chat if isinstance(chat, int) else chat.id)
        return list(state.media) if state else []

    def file_content(self, file_id: str) -> bytes:
        """The bytes behind a file id (what a download of it gives)."""
        return self._files[file_id].content

    def commands(self, scope: Any = None, language_code: str = "") -> list[JSONDict]:
        """The command menu set for ``scope`` (dict, PTB scope or type name) and language."""
        return [dict(c) for c in self._commands.get((_scope_key(scope), language_code), [])]

    @property
    def command_menus(self) -> dict[tuple[str, str], list[JSONDict]]:
        """Every stored command menu keyed by (scope JSON, language_code)."""
        return {k: [dict(c) for c in v] for k, v in self._commands.items()}

    @property
    def pending_updates(self) -> list[QueuedUpdate]:
        """Updates queued and not yet confirmed by the bot."""
        return [p.update for p in self._pending]

    @property
    def webhook_url(self) -> str | None:
        """The webhook URL the bot set, if any."""
        return self._webhook.url if self._webhook else None

    @property
    def active_polls(self) -> int:
        """How many getUpdates long polls are currently waiting."""
        return self._polls_waiting

    def mark(self) -> int:
        """A position in the event stream, for ``wait_for(since=...)``."""
        return self._seq

    def callback_answer(self, query: QueuedUpdate | str) -> CallbackAnswer | None:
        """The answer the bot gave to a press (None if not answered yet)."""
        qid = query if isinstance(query, str) else query.callback_query_id
        return next((a for a in self.callback_answers if a.callback_query_id == qid), None)

    def subscribe(self, listener: Callable[[TranscriptEntry], None]) -> None:
        """Call ``listener`` with each new transcript entry (used by the CLI for live output)."""
        self._listeners.append(listener)

    def clear_history(self, *, messages: bool = False) -> None:
        """Forget recorded requests, transcript, callback answers, webhook deliveries (and messages).

        For long benchmark runs; chats, users, message ids and pending updates are kept.
        """
        self.requests.clear()
        self.transcript.clear()
        self.callback_answers.clear()
        self.webhook_deliveries.clear()
        if messages:
            for state in self._chats.values():
                state.sent.clear()
                state.sent_by_id.clear()
                state.messages.clear()
                state.documents.clear()

    async def wait_for(
        self,
        chat: ChatRef,
        predicate: Predicate = None,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - part of the test-author API
        *,
        since: QueuedUpdate | SentMessage | int | None = None,
    ) -> list[SentMessage]:
        """Wait until the bot has sent ``count`` messages to ``chat`` matching ``predicate``.

        ``predicate``: None (any), a substring of the text/caption, a regex, or a callable
        on :class:`SentMessage`. ``since``: only messages sent or edited after that point
        (an update returned by a user action, a message, or :meth:`mark`). Returns all
        matching messages; raises AssertionError listing what the chat got on timeout.
        """
        state = self._chat(chat)
        matcher = _matcher(predicate)
        mark = since if isinstance(since, int) else (since.seq if since is not None else -1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = [m for m in state.sent if m.seq > mark and matcher(m)]
            if len(found) >= count:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0 or not await state.signal.wait(remaining):
                break
        found = [m for m in state.sent if m.seq > mark and matcher(m)]
        if len(found) >= count:
            return found
        raise AssertionError(self._wait_failure(state, predicate, count, timeout, mark, found))

    async def wait_for_request(
        self,
        method: str,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - part of the test-author API
    ) -> list[RequestRecord]:
        """Wait until ``count`` requests of ``method`` have arrived (since the start)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        key = method.lower()
        while True:
            found = [r for r in self.requests if r.method.lower() == key]
            if len(found) >= count:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0 or not await self._activity_signal.wait(remaining):
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {count} {method} request(s); got {len(found)}"
                )

    async def wait_for_poll(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until a getUpdates long poll is parked, waiting for updates."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._polls_waiting == 0:
            remaining = deadline - loop.time()
            if remaining <= 0 or not await self._activity_signal.wait(remaining):
                raise AssertionError(f"no getUpdates long poll within {timeout} s")

    def format_transcript(self, chat: ChatRef | None = None, *, times: bool = False) -> str:
        """The conversation as readable text (one chat, or all chats interleaved)."""
        chat_id = None if chat is None else (chat if isinstance(chat, int) else chat.id)
        lines = [self.format_entry(e, times=times) for e in self.transcript if chat_id is None or e.chat_id == chat_id]
        return "\n".join(lines)

    def format_entry(self, entry: TranscriptEntry, *, times: bool = False) -> str:
        """One transcript entry as text (with its buttons on indented lines)."""
        state = self._chats.get(entry.chat_id)
        where = state.label if state else f"chat {entry.chat_id}"
        if entry.role == "bot":
            actor = f"bot → {where}"
        elif entry.role == "user":
            user_state = self._chats.get(entry.user_id or 0)
            who = user_state.label if user_state else f"user {entry.user_id}"
            actor = who if entry.chat_id == entry.user_id else f"{who} in {where}"
        else:
            actor = f"server · {where}"
        text = {
            "press": f'⟨presses "{entry.text}"⟩',
            "edit": f"✎ #{entry.message_id} {entry.text}",
            "block": "⟨blocks the bot⟩",
            "unblock": "⟨unblocks the bot⟩",
            "callback_answer": f"⟨answers the button: {entry.text}⟩" if entry.text else "⟨answers the button⟩",
            "delete": f"⟨deletes #{entry.message_id}⟩",
        }.get(entry.kind, entry.text)
        prefix = f"{entry.time - self._started_at:8.3f}s " if times else ""
        head = f"{prefix}[{actor}] "
        pad = " " * len(prefix) + "    "
        body = text.replace("\n", "\n" + " " * len(head))
        out = head + body
        for row in entry.buttons:
            out += "\n" + pad + " ".join(f"[{b}]" for b in row)
        return out

    # ---- internals: chats, updates, transcript -----------------------------------------

    def _now(self) -> int:
        return int(self._clock())

    def _chat(self, chat: ChatRef) -> _Chat:
        chat_id = chat if isinstance(chat, int) else chat.id
        state = self._chats.get(chat_id)
        if state is None:
            raise AssertionError(
                f"chat {chat_id} is not known to the server; create it with "
                f"server.user({chat_id}) or server.group({chat_id})"
            )
        return state

    def _describe_chat(self, chat: ChatRef) -> str:
        chat_id = chat if isinstance(chat, int) else chat.id
        state = self._chats.get(chat_id)
        return f"{state.label} (chat {chat_id})" if state else f"chat {chat_id}"

    def _locate(self, message: Any, default_chat: ChatRef) -> tuple[_Chat, int]:
        if isinstance(message, SentMessage):
            return self._chat(message.chat_id), message.message_id
        if isinstance(message, int):
            return self._chat(default_chat), message
        if isinstance(message, QueuedUpdate):
            inner = message.message
            if inner is None:
                raise AssertionError("that update carries no message")
            message = inner
        if isinstance(message, Mapping):
            return self._chat(int(message["chat"]["id"])), int(message["message_id"])
        if hasattr(message, "message_id") and hasattr(message, "chat_id"):
            return self._chat(int(message.chat_id)), int(message.message_id)
        raise TypeError(f"cannot locate a message from {type(message).__name__}")

    def _register_from_update(self, update: Mapping[str, Any]) -> int:
        message: Any = None
        for key in ("message", "edited_message", "channel_post", "my_chat_member"):
            if key in update:
                message = update[key]
                break
        query = update.get("callback_query")
        if message is None and isinstance(query, Mapping):
            message = query.get("message")
            if "id" in query and isinstance(message, Mapping) and "chat" in message:
                user_id = int(query.get("from", {}).get("id", 0))
                self._open_queries.setdefault(str(query["id"]), (int(message["chat"]["id"]), user_id))
        if not isinstance(message, Mapping) or "chat" not in message:
            return 0
        chat = dict(message["chat"])
        chat_id = int(chat["id"])
        state = self._chats.get(chat_id)
        if state is None:
            label = (
                self.user_label.format(id=chat_id)
                if chat.get("type") == "private"
                else chat.get("title") or f"chat {chat_id}"
            )
            state = _Chat(chat, label)
            self._chats[chat_id] = state
        if "message_id" in message and "date" in message:
            mid = int(message["message_id"])
            state.messages.setdefault(mid, dict(message))
            state.next_id = max(state.next_id, mid + 1)
        return chat_id

    def _queue(self, data: JSONDict, entry: TranscriptEntry) -> QueuedUpdate:
        update = QueuedUpdate(data)
        if "update_id" not in update:
            update["update_id"] = self._next_update_id
            self._next_update_id += 1
        else:
            self._next_update_id = max(self._next_update_id, int(update["update_id"]) + 1)
        # update_id first, as Telegram sends it
        ordered = QueuedUpdate({"update_id": update["update_id"]})
        ordered.update((k, v) for k, v in update.items() if k != "update_id")
        self._record(entry)
        ordered.seq = self._seq
        self._pending.append(_Pending(ordered))
        self._updates_signal.fire()
        return ordered

    def _record(self, entry: TranscriptEntry) -> None:
        self._seq += 1
        self.transcript.append(entry)
        for listener in self._listeners:
            listener(entry)
        state = self._chats.get(entry.chat_id)
        if state is not None:
            state.signal.fire()

    def _new_query_id(self, chat_id: int, user_id: int) -> str:
        query_id = str(next(self._query_ids))
        self._open_queries[query_id] = (chat_id, user_id)
        return query_id

    def _store_file(self, content: bytes, folder: str, ext: str) -> _StoredFile:
        n = next(self._file_ids)
        stored = _StoredFile(
            file_id=f"BQACAgIAAxkBAAI{n:08d}{folder[:3]}",
            file_unique_id=f"AgAD{n:06d}",
            file_path=f"{folder}/file_{n}.{ext or 'bin'}",
            content=content,
        )
        self._files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    def _allowed(self, kind: str) -> bool:
        allowed = self._allowed_updates
        if allowed is None:
            return kind not in _DEFAULT_EXCLUDED_UPDATES
        return kind in allowed

    def _confirm(self, offset: int | None) -> None:
        pending = self._pending
        if offset is None or not pending:
            return
        if offset < 0:
            keep = -offset
            while len(pending) > keep:
                pending.popleft()
            return
        if not self._has_forced:
            while pending and pending[0].update_id < offset:
                pending.popleft()
            return
        self._pending = deque(p for p in pending if not (p.update_id < offset and (not p.forced or p.delivered)))
        self._has_forced = any(p.forced and not p.delivered for p in self._pending)

    def _collect(self, limit: int) -> list[QueuedUpdate]:
        result: list[QueuedUpdate] = []
        for pending in self._pending:
            if not self._allowed(pending.kind):
                continue
            pending.delivered = True
            result.append(pending.update)
            if len(result) >= limit:
                break
        return result

    def _wait_failure(
        self,
        state: _Chat,
        predicate: Predicate,
        count: int,
        timeout: float,
        mark: int,
        found: list[SentMessage],
    ) -> str:
        wanted = "message(s)" if predicate is None else f"message(s) matching {_describe(predicate)}"
        lines = [
            f"timed out after {timeout} s waiting for {count} bot {wanted} in "
            f"{state.label} (chat {state.id}); {len(found)} matched."
        ]
        if state.blocked:
            lines.append("(this user has blocked the bot)")
        considered = [m for m in state.sent if m.seq > mark]
        scope = "" if mark < 0 else f" ({len(considered)} since the mark)"
        lines.append(f"The chat received {len(state.sent)} bot message(s){scope}:")
        for m in state.sent[-20:]:
            flags = []
            if m.edits:
                flags.append(f"edited {m.edits}×")
            if m.deleted:
                flags.append("deleted")
            if m.seq <= mark:
                flags.append("before the mark")
            shown = m.content if m.document is None else f"📎 {m.document.filename} {m.content}"
            keys = " ".join(f"[{t}]" for t in m.button_texts)
            extra = f" ({', '.join(flags)})" if flags else ""
            lines.append(f"  #{m.message_id}{extra}: {shown!r} {keys}".rstrip())
        if not state.sent:
            lines.append("  (nothing)")
        recent = [e for e in self.transcript if e.chat_id == state.id][-12:]
        if recent:
            lines.append("Recent conversation:")
            lines.extend("  " + self.format_entry(e).replace("\n", "\n  ") for e in recent)
        return "\n".join(lines)

    # ---- HTTP ---------------------------------------------------------------------------

    def _register_methods(self) -> None:
        sync: dict[str, _ApiHandler] = {
            "getMe": self._get_me,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "editMessageCaption": self._edit_message_caption,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "sendDocument": self._send_document,
            "sendPhoto": self._send_photo,
            "sendVoice": self._send_file_kind("voice"),
            "sendAudio": self._send_file_kind("audio"),
            "sendMediaGroup": self._send_media_group,
            "sendChatAction": self._send_chat_action,
            "getChat": self._get_chat,
            "leaveChat": self._leave_chat,
            "getFile": self._get_file,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setMyDescription": self._set_description("description"),
            "setMyShortDescription": self._set_description("short_description"),
            "getMyDescription": self._get_description("description"),
            "getMyShortDescription": self._get_description("short_description"),
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "logOut": lambda p, f: True,
            "close": lambda p, f: True,
        }
        self._handlers = {name.lower(): (name, fn) for name, fn in sync.items()}
        self._async_handlers = {"getupdates": ("getUpdates", self._get_updates)}

    @staticmethod
    def _answer(payload: JSONDict, status: int = 200) -> web.Response:
        return web.Response(
            body=json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(),
            status=status,
            content_type="application/json",
        )

    @classmethod
    def _error(cls, error: ApiError) -> web.Response:
        payload: JSONDict = {"ok": False, "error_code": error.code, "description": error.description}
        if error.parameters:
            payload["parameters"] = error.parameters
        return cls._answer(payload, error.code)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return self._error(ApiError(401, "Unauthorized"))
        raw_method = request.match_info["method"]
        key = raw_method.lower()
        spec = self._handlers.get(key) or self._async_handlers.get(key)
        name = spec[0] if spec else raw_method
        try:
            params, files = await self._read_params(request)
        except ApiError as error:
            self.requests.append(RequestRecord(name, {}, self._clock(), request.method, error.code))
            return self._error(error)
        record = RequestRecord(name, params, self._clock(), request.method)
        if files:
            record.params = {
                **params,
                **{k: {"filename": f.filename, "size": len(f.content)} for k, f in files.items()},
            }
        self.requests.append(record)
        self._activity_signal.fire()
        if self.faults._faults:
            fault = self.faults._take(name, params)
            if fault is not None:
                record.fault = fault.kind
                return await self._apply_fault(request, fault, record)
        if spec is None:
            record.status = 404
            return self._error(ApiError(404, "Not Found: method not found"))
        if self.latency and key != "getupdates":
            await asyncio.sleep(self.latency)
        try:
            if key in self._async_handlers:
                result = await spec[1](params, files)
            else:
                result = spec[1](params, files)
        except ApiError as error:
            record.status = error.code
            return self._error(error)
        return self._answer({"ok": True, "result": result})

    async def _apply_fault(self, request: web.Request, fault: Fault, record: RequestRecord) -> web.StreamResponse:
        if fault.kind == "429":
            record.status = 429
            return self._error(
                ApiError(
                    429,
                    f"Too Many Requests: retry after {fault.retry_after}",
                    {"retry_after": fault.retry_after},
                )
            )
        if fault.kind == "500":
            record.status = 500
            return self._error(ApiError(500, "Internal Server Error"))
        if fault.kind == "502":
            record.status = 502
            return web.Response(
                status=502,
                content_type="text/html",
                text="<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0"
                "</center>\r\n</body>\r\n</html>\r\n",
            )
        if fault.kind == "error":
            record.status = fault.code
            return self._error(ApiError(fault.code, fault.description))
        record.status = 0  # no answer: the connection is dropped
        if fault.kind == "timeout":
            assert self._closing is not None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(fault.delay):
                    await (fault.until or self._closing).wait()
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise web.HTTPServiceUnavailable()  # never reaches the client: connection is gone

    async def _read_params(self, request: web.Request) -> tuple[JSONDict, dict[str, _Upload]]:
        params: JSONDict = dict(request.query) if request.query_string else {}
        files: dict[str, _Upload] = {}
        if request.body_exists:
            ctype = request.content_type
            if ctype == "application/x-www-form-urlencoded":
                body = await request.read()
                params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            elif ctype == "application/json":
                body = await request.read()
                try:
                    data = json.loads(body) if body.strip() else {}
                except ValueError as exc:
                    raise _bad("can't parse JSON encoded request parameters") from exc
                if not isinstance(data, dict):
                    raise _bad("can't parse JSON encoded request parameters")
                params.update(data)
            elif ctype.startswith("multipart/"):
                form = await request.post()
                for k, v in form.items():
                    if isinstance(v, FileField):
                        files[k] = _Upload(v.filename, v.content_type, v.file.read())
                    elif isinstance(v, str):
                        params[k] = v
                    else:
                        params[k] = bytes(v).decode("utf-8")
        for k, v in params.items():
            if not isinstance(v, str) or k in _STRING_FIELDS:
                continue
            if k in _JSON_FIELDS or v[:1] in ("{", "["):
                try:
                    params[k] = json.loads(v)
                except ValueError as exc:
                    if k == "reply_markup":
                        raise _bad("can't parse reply keyboard markup JSON object") from exc
                    raise _bad(f"can't parse {k} JSON object") from exc
            elif k in _INT_FIELDS and _INT_RE.fullmatch(v):
                params[k] = int(v)
            elif v in ("true", "false", "True", "False"):
                params[k] = v in ("true", "True")
        return params, files

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return self._error(ApiError(401, "Unauthorized"))
        path = request.match_info["path"]
        record = RequestRecord("download", {"file_path": path}, self._clock(), request.method)
        self.requests.append(record)
        self._activity_signal.fire()
        fault = self.faults._take("download", {}) if self.faults._faults else None
        if fault is not None:  # server.faults.add("download", "500"): the next file download fails
            record.fault = fault.kind
            return await self._apply_fault(request, fault, record)
        stored = self._files_by_path.get(path)
        if stored is None:
            record.status = 404
            return self._error(ApiError(404, "Not Found"))
        return web.Response(body=stored.content, content_type="application/octet-stream")

    async def _handle_sim(self, request: web.Request) -> web.StreamResponse:
        """Tiny control API for the standalone server (curl-friendly)."""
        params, _ = await self._read_params(request)
        action = request.match_info["action"]
        try:
            if action == "transcript":
                return web.Response(text=self.format_transcript(params.get("chat_id")) + "\n")
            if action == "messages":
                chat_id = int(params["chat_id"])
                return self._answer({"ok": True, "result": [m.raw for m in self.messages(chat_id)]})
            user = self.user(
                int(params["user_id"]), params.get("first_name"), language_code=params.get("language_code", "en")
            )
            if action == "send":
                update = await user.send(str(params["text"]))
            elif action == "press":
                message_id = int(params["message_id"])
                update = await user.press(message_id, str(params["button"]))
            else:
                return self._error(ApiError(404, "Not Found: unknown simulator action"))
        except (KeyError, ValueError, AssertionError) as exc:
            return self._error(_bad(f"{type(exc).__name__}: {exc}"))
        return self._answer({"ok": True, "result": update})

    # ---- Bot API methods ----------------------------------------------------------------

    def _get_me(self, p: JSONDict, f: dict[str, _Upload]) -> JSONDict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _target(self, p: JSONDict) -> _Chat:
        chat_id = p.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad("chat_id is empty")
        state: _Chat | None = None
        if isinstance(chat_id, int):
            state = self._chats.get(chat_id)
        elif isinstance(chat_id, str) and chat_id.startswith("@"):
            name = chat_id[1:].lower()
            state = next((c for c in self._chats.values() if (c.username or "").lower() == name), None)
        if state is None:
            raise _bad("chat not found")
        if state.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if state.kicked:
            raise ApiError(403, "Forbidden: bot was kicked from the group chat")
        return state

    def _markup(self, p: JSONDict) -> JSONDict | None:
        markup = p.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
            for row in rows:
                for button in row:
                    if not isinstance(button, dict) or not button.get("text"):
                        raise _bad("can't parse inline keyboard button: Text must be non-empty")
                    data = button.get("callback_data")
                    if data is not None and not 1 <= len(str(data).encode("utf-8")) <= 64:
                        raise _bad("BUTTON_DATA_INVALID")
                    if len(button) == 1:
                        raise _bad(
                            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                        )
        elif not {"keyboard", "remove_keyboard", "force_reply"} & markup.keys():
            raise _bad("can't parse reply keyboard markup JSON object")
        return markup

    def _text(self, p: JSONDict, key: str = "text") -> tuple[str, list[JSONDict]]:
        raw = p.get(key)
        if raw is None:
            raw = ""
        text, entities = _format_text(
            str(raw), p.get("parse_mode"), p.get("entities" if key == "text" else "caption_entities")
        )
        limit = MAX_TEXT if key == "text" else MAX_CAPTION
        if key == "text" and not text:
            raise _bad("message text is empty")
        if _u16(text) > limit:
            raise _bad("message is too long" if key == "text" else "message caption is too long")
        return text, entities

    def _reply_to(self, state: _Chat, p: JSONDict) -> JSONDict | None:
        params = p.get("reply_parameters")
        if isinstance(params, dict):
            mid = params.get("message_id")
            allow = bool(params.get("allow_sending_without_reply"))
        else:
            mid = p.get("reply_to_message_id")
            allow = bool(p.get("allow_sending_without_reply"))
        if mid is None:
            return None
        replied = state.messages.get(int(mid))
        if replied is None:
            if allow:
                return None
            raise _bad("message to be replied not found")
        return {k: v for k, v in replied.items() if k != "reply_to_message"}

    def _new_sent(
        self,
        state: _Chat,
        p: JSONDict,
        text: str | None,
        entities: list[JSONDict],
        markup: JSONDict | None,
        reply: JSONDict | None,
    ) -> SentMessage:
        sent = SentMessage(
            chat_id=state.id,
            message_id=state.take_id(),
            date=self._now(),
            text=text,
            entities=entities,
            reply_markup=markup,
            parse_mode=p.get("parse_mode"),
            source_text=p.get("text"),
        )
        if reply is not None:
            sent.raw["reply_to_message"] = reply
        if p.get("protect_content"):
            sent.raw["has_protected_content"] = True
        return sent

    def _render(self, sent: SentMessage, state: _Chat) -> JSONDict:
        message: JSONDict = {
            "message_id": sent.message_id,
            "from": self.bot_user,
            "chat": state.chat,
            "date": sent.date,
        }
        if sent.edit_date is not None:
            message["edit_date"] = sent.edit_date
        for key in ("reply_to_message", "has_protected_content", "media_group_id"):
            if key in sent.raw:
                message[key] = sent.raw[key]
        if sent.document is not None and sent.document.kind == "photo":
            doc = sent.document
            stored = self._files[doc.file_id]
            message["photo"] = [
                {
                    "file_id": doc.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "width": doc.width,
                    "height": doc.height,
                    "file_size": len(doc.content),
                }
            ]
            if sent.caption:
                message["caption"] = sent.caption
        elif sent.document is not None and sent.document.kind in ("voice", "audio"):
            doc = sent.document
            stored = self._files[doc.file_id]
            message[doc.kind] = {
                "file_id": doc.file_id,
                "file_unique_id": stored.file_unique_id,
                "duration": 1,
                "mime_type": "audio/ogg" if doc.kind == "voice" else doc.mime_type,
                "file_size": len(doc.content),
            }
            if sent.caption:
                message["caption"] = sent.caption
        elif sent.document is not None:
            doc = sent.document
            stored = self._files[doc.file_id]
            message["document"] = {
                "file_id": doc.file_id,
                "file_unique_id": stored.file_unique_id,
                "file_name": doc.filename,
                "mime_type": doc.mime_type,
                "file_size": len(doc.content),
            }
            if sent.caption:
                message["caption"] = sent.caption
                if sent.entities:
                    message["caption_entities"] = sent.entities
        else:
            message["text"] = sent.text
            if sent.entities:
                message["entities"] = sent.entities
        if sent.reply_markup is not None and "inline_keyboard" in sent.reply_markup:
            message["reply_markup"] = sent.reply_markup
        return message

    def _publish(self, sent: SentMessage, state: _Chat, kind: str) -> JSONDict:
        sent.raw = self._render(sent, state)
        entry = TranscriptEntry(
            self._clock(),
            "bot",
            None,
            state.id,
            kind,
            sent.content
            if sent.document is None
            else (f"↩ #{sent.document.reply_to} " if sent.document.reply_to else "")
            + {"photo": "🖼 ", "voice": "🎤 ", "audio": "🎵 "}.get(sent.document.kind, "📎 ")
            + f"{sent.document.filename} ({_size(len(sent.document.content))})"
            + (f" {sent.caption}" if sent.caption else ""),
            tuple(tuple(t for t, _ in row) for row in buttons(sent)),
            sent.message_id,
        )
        self._record(entry)
        sent.seq = self._seq
        return sent.raw

    def _send_message(self, p: JSONDict, f: dict[str, _Upload]) -> JSONDict:
        state = self._target(p)
        text, entities = self._text(p)
        markup = self._markup(p)
        reply = self._reply_to(state, p)
        sent = self._new_sent(state, p, text, entities, markup, reply)
        raw = self._publish(sent, state, "message")
        state.sent.append(sent)
        state.sent_by_id[sent.message_id] = sent
        state.messages[sent.message_id] = raw
        return raw

    def _editable(self, p: JSONDict) -> tuple[_Chat, SentMessage]:
        if p.get("inline_message_id"):
            raise _bad("MESSAGE_ID_INVALID")
        state = self._target(p)
        mid = p.get("message_id")
        if mid is None:
            raise _bad("message identifier is not specified")
        sent = state.sent_by_id.get(int(mid))
        if sent is None or sent.deleted:
            if int(mid) in state.messages:
                raise _bad("message can't be edited")
            raise _bad("message to edit not found")
        return state, sent

    def _apply_edit(self, state: _Chat, sent: SentMessage) -> JSONDict:
        sent.edits += 1
        sent.edit_date = self._now()
        raw = self._publish(sent, state, "edit")
        state.messages[sent.message_id] = raw
        return raw

    def _edit_message_text(self, p: JSONDict, f: dict[str, _Upload]) -> JSONDict:
        state, sent = self._editable(p)
        if sent.document is not None:
            raise _bad("there is no text in the message to edit")
        text, entities = self._text(p)
        markup = self._markup(p)
        if text == sent.text and entities == sent.entities and markup == sent.reply_markup:
            raise _bad(_NOT_MODIFIED[len("Bad Request: ") :])
        sent.text, sent.entities, sent.reply_markup = text, entities, markup
        sent.source_text, sent.parse_mode = p.get("text"), p.get("parse_mode")
        return self._apply_edit(state, sent)

    def _edit_message_caption(self, p: JSONDict, f: dict[str, _Upload]) -> JSONDict:
        state, sent = self._editable(p)
        if sent.document is None:
            raise _bad("there is no caption in the message to edit")
        caption, entities = self._text(p, "caption")
        markup = self._markup(p)
        if (caption or None) == sent.caption and entities == sent.entities and (markup == sent.reply_markup):
            raise _bad(_NOT_MODIFIED[len("Bad Request: ") :])
        sent.caption, sent.entities, sent.reply_markup = caption or None, entities, markup
        sent.document.caption = sent.caption
        return self._apply_edit(state, sent)

    def _edit_message_reply_markup(self, p: JSONDict, f: dict[str, _Upload]) -> JSONDict:
        state, sent = self._editable(p)
        markup = self._markup(p)
        if markup == sent.reply_markup:
            raise _bad(_NOT_MODIFIED[len("Bad Request: ") :])
        sent.reply_markup = markup
        return self._apply_edit(state, sent)

    def _delete_message(self, p: JSONDict, f: dict[str, _Upload]) -> bool:
        state = self._target(p)
        mid = int(p.get("message_id") or 0)
        sent = state.sent_by_id.get(mid)
        if sent is not None and not sent.deleted:
            sent.deleted = True
        elif mid in state.messages and sent is None:
            pass
        else:
            raise _bad("message to delete not found")
        state.messages.pop(mid, None)
        self._record(TranscriptEntry(self._clock(), "bot", None, state.id, "delete", "", message_id=mid))
        return True

    def _answer_callback_query(self, p: JSONDict, f: dict[str, _Upload]) -> bool:
        query_id = str(p.get("callback_query_id", ""))
        opened = self._open_queries.pop(query_id, None)
        if opened is None:
            raise _bad(_QUERY_INVALID[len("Bad Request: ") :])
        chat_id, user_id = opened
        answer = CallbackAnswer(
            callback_query_id=query_id,
            chat_id=chat_id,
            user_id=user_id,
            text=p.get("text"),
            show_alert=bool(p.get("show_alert", False)),
            url=p.get("url"),
            cache_time=int(p.get("cache_time") or 0),
            time=self._clock(),
        )
        self.callback_answers.append(answer)
        shown = (answer.text or "") + (" (alert)" if answer.show_alert and answer.text else "")
        self._record(TranscriptEntry(self._clock(), "bot", None, chat_id, "callback_answer", shown))
        return True

    def _send_document(self, p: JSONDict, f: dict[str, _Upload]) -> JSONDict:
        state = self._target(p)
        ref = p.get("document")
        upload: _Upload | None = None
        if isinstance(ref, str) and ref.startswith("attach://"):
            upload = f.get(ref[len("attach://") :])
        elif "document" in f:
            upload = f["document"]
        if upload is not None:
            if not upload.content:
                raise _bad("file must be non-empty")
            filename = upload.filename or "document"
            mime = (
                upload.content_type
                if upload.content_type and upload.content_type != "application/octet-stream"
                else mimetypes.guess_type(filename)[0] or "application/octet-stream"
            )
            stored = self._store_file(upload.content, "documents", filename.rpartition(".")[2])
            content = upload.content
        elif isinstance(ref, str) and ref in self._files:
            stored = self._files[ref]
            filename = stored.file_path.rpartition("/")[2]
            content = stored.content
            mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        elif isinstance(ref, str) and ref.startswith(("http://", "https://")):
            filename = ref.rstrip("/").rpartition("/")[2] or "file"
            content = b""
            stored = self._store_file(content, "documents", filename.rpartition(".")[2])
            mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        elif ref is None or ref == "":
            raise _bad("there is no document in the request")
        else:
            raise _bad("wrong file identifier/HTTP URL specified")
        caption, entities = self._text(p, "caption")
        markup = self._markup(p)
        reply = self._reply_to(state, p)
        sent = self._new_sent(state, p, None, entities, markup, reply)
        sent.source_text = None
        sent.caption = caption or None
        document = SentDocument(
            chat_id=state.id,
            message_id=sent.message_id,
            filename=filename,
            content=content,
            mime_type=mime,
            caption=sent.caption,
            file_id=stored.file_id,
        )
        sent.document = document
        raw = self._publish(sent, state, "document")
        state.sent.append(sent)
        state.sent_by_id[sent.message_id] = sent
        state.documents.append(document)
        document.reply_to = _reply_id(reply)
        state.media.append(document)
        state.messages[sent.message_id] = raw
        return raw

    def _send_photo(self, p: JSONDict, f: dict[str, _Upload]) -> JSONDict:
        """sendPhoto with an uploaded PNG or JPEG: refused as Telegram does when it is
        empty, over 10 MB, not a picture, or its sides are too long or too lopsided."""
        state = self._target(p)
        ref = p.get("photo")
        if isinstance(ref, str) and ref in self._files:
            return self._send_by_file_id(state, p, "photo", self._files[ref])
        upload = f.get(ref[len("attach://") :]) if isinstance(ref, str) and ref.startswith("attach://") else None
        upload = upload or f.get("photo")
        if upload is None:
            raise _bad("there is no photo in the request")
        if not upload.content:
            raise _bad("file must be non-empty")
        if len(upload.content) > 10 * 1024 * 1024:
            raise _bad("PHOTO_SAVE_FILE_INVALID")
        size = _picture_size(upload.content)
        if size is None:
            raise _bad("IMAGE_PROCESS_FAILED")
        width, height = size
        if width + height > 10000 or max(width, height) > 20 * min(width, height):
            raise _bad("PHOTO_INVALID_DIMENSIONS")
        stored = self._store_file(upload.content, "photos", "png" if upload.content[:4] == b"\x89PNG" else "jpg")
        caption, entities = self._text(p, "caption")
        markup = self._markup(p)
        reply = self._reply_to(state, p)
        sent = self._new_sent(state, p, None, entities, markup, reply)
        sent.source_text = None
        sent.caption = caption or None
        photo = SentDocument(
            chat_id=state.id,
            message_id=sent.message_id,
            filename=upload.filename or "photo",
            content=upload.content,
            mime_type="image/png" if stored.file_path.endswith(".png") else "image/jpeg",
            caption=sent.caption,
            file_id=stored.file_id,
            kind="photo",
            width=width,
            height=height,
        )
        photo.reply_to = _reply_id(reply)
        sent.document = photo
        raw = self._publish(sent, state, "photo")
        state.sent.append(sent)
        state.sent_by_id[sent.message_id] = sent
        state.photos.append(photo)
        state.media.append(photo)
        state.messages[sent.message_id] = raw
        return raw

    def _send_file_kind(self, kind: str) -> _ApiHandler:
        """sendVoice / sendAudio: by a file_id the bot received, or an upload."""

        def handler(p: JSONDict, f: dict[str, _Upload]) -> JSONDict:
            state = self._target(p)
            ref = p.get(kind)
            if isinstance(ref, str) and ref in self._files:
                return self._send_by_file_id(state, p, kind, self._files[ref])
            upload = f.get(ref[len("attach://") :]) if isinstance(ref, str) and ref.startswith("attach://") else None
            upload = upload or f.get(kind)
            if upload is None:
                if ref:
                    raise _bad("wrong file identifier/HTTP URL specified")
                raise _bad(f"there is no {kind} in the request")
            if not upload.content:
                raise _bad("file must be non-empty")
            stored = self._store_file(upload.content, kind, (upload.filename or "").rpartition(".")[2] or "ogg")
            return self._send_by_file_id(state, p, kind, stored)

        return handler

    def _send_by_file_id(
        self, state: _Chat, p: JSONDict, kind: str, stored: _StoredFile, group: str | None = None
    ) -> JSONDict:
        """A photo, voice note, audio file or document sent by a file_id the server knows."""
        caption, entities = self._text(p, "caption")
        markup = self._markup(p)
        reply = self._reply_to(state, p)
        sent = self._new_sent(state, p, None, entities, markup, reply)
        sent.source_text = None
        sent.caption = caption or None
        name = stored.file_path.rpartition("/")[2]
        size = _picture_size(stored.content) if kind == "photo" else None
        item = SentDocument(
            chat_id=state.id,
            message_id=sent.message_id,
            filename=name,
            content=stored.content,
            mime_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
            caption=sent.caption,
            file_id=stored.file_id,
            kind=kind,
            width=size[0] if size else 0,
            height=size[1] if size else 0,
            reply_to=_reply_id(reply),
            media_group_id=group,
        )
        sent.document = item
        if group is not None:
            sent.raw["media_group_id"] = group
        raw = self._publish(sent, state, kind)
        state.sent.append(sent)
        state.sent_by_id[sent.message_id] = sent
        (state.photos if kind == "photo" else state.documents if kind == "document" else []).append(item)
        state.media.append(item)
        state.messages[sent.message_id] = raw
        return raw

    def _send_media_group(self, p: JSONDict, f: dict[str, _Upload]) -> list[JSONDict]:
        """sendMediaGroup: 2-10 photos, audio files or documents (by file_id or upload),
        one message each, sharing a media_group_id; the caption of each item is its own."""
        state = self._target(p)
        media = p.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _bad("wrong number of media items: must include 2-10 items")
        stored_items: list[tuple[str, _StoredFile, JSONDict]] = []
        for item in media:
            if not isinstance(item, dict) or item.get("type") not in ("photo", "audio", "document", "video"):
                raise _bad("can't parse InputMedia: media type is invalid")
            ref = str(item.get("media") or "")
            if ref in self._files:
                stored = self._files[ref]
            elif ref.startswith("attach://") and ref[len("attach://") :] in f:
                upload = f[ref[len("attach://") :]]
                stored = self._store_file(upload.content, "media", (upload.filename or "").rpartition(".")[2])
            else:
                raise _bad("wrong file identifier/HTTP URL specified")
            stored_items.append((str(item["type"]), stored, item))
        self._reply_to(state, p)  # a missing message refuses the whole group
        group = f"{next(self._file_ids):012d}"
        results = []
        for kind, stored, item in stored_items:
            params = {**p, "caption": item.get("caption"), "parse_mode": item.get("parse_mode")}
            params.pop("reply_markup", None)
            results.append(self._send_by_file_id(state, params, kind, stored, group))
        return results

    def _send_chat_action(self, p: JSONDict, f: dict[str, _Upload]) -> bool:
        self._target(p)
        if not p.get("action"):
            raise _bad("wrong parameter action in request")
        return True

    def _get_chat(self, p: JSONDict, f: dict[str, _Upload]) -> JSONDict:
        state = self._target(p)
        return {
            **state.chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
            },
        }

    def _leave_chat(self, p: JSONDict, f: dict[str, _Upload]) -> bool:
        state = self._target(p)
        if state.chat.get("type") == "private":
            raise _bad("chat member status can't be changed in private chats")
        state.kicked = True  # no longer a member: sends there fail with 403 as after a kick
        self._record(TranscriptEntry(self._clock(), "bot", None, state.id, "leave", "(the bot left the chat)"))
        return True

    def _get_file(self, p: JSONDict, f: dict[str, _Upload]) -> JSONDict:
        stored = self._files.get(str(p.get("file_id", "")))
        if stored is None:
            raise _bad("invalid file_id")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.content),
            "file_path": stored.file_path,
        }

    def _set_my_commands(self, p: JSONDict, f: dict[str, _Upload]) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("too many commands specified")
        cleaned: list[JSONDict] = []
        for item in commands:
            if not isinstance(item, dict):
                raise _bad("can't parse BotCommand JSON object")
            command = str(item.get("command", "")).lstrip("/")
            description = str(item.get("description", "")).strip()
            if not _COMMAND_RE.fullmatch(command):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise _bad("command description is empty" if not description else "BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": command, "description": description})
        key = (_scope_key(p.get("scope")), str(p.get("language_code") or ""))
        if cleaned:
            self._commands[key] = cleaned
        else:
            self._commands.pop(key, None)
        return True

    def _get_my_commands(self, p: JSONDict, f: dict[str, _Upload]) -> list[JSONDict]:
        key = (_scope_key(p.get("scope")), str(p.get("language_code") or ""))
        return [dict(c) for c in self._commands.get(key, [])]

    def _delete_my_commands(self, p: JSONDict, f: dict[str, _Upload]) -> bool:
        key = (_scope_key(p.get("scope")), str(p.get("language_code") or ""))
        self._commands.pop(key, None)
        return True

    def _set_description(self, kind: str) -> _ApiHandler:
        def handler(p: JSONDict, f: dict[str, _Upload]) -> bool:
            self._descriptions[(kind, str(p.get("language_code") or ""))] = str(p.get(kind) or "")
            return True

        return handler

    def _get_description(self, kind: str) -> _ApiHandler:
        def handler(p: JSONDict, f: dict[str, _Upload]) -> JSONDict:
            return {kind: self._descriptions.get((kind, str(p.get("language_code") or "")), "")}

        return handler

    async def _get_updates(self, p: JSONDict, f: dict[str, _Upload]) -> list[QueuedUpdate]:
        if self._webhook is not None:
            raise ApiError(409, _WEBHOOK_CONFLICT)
        offset = p.get("offset")
        limit = min(max(int(p.get("limit") or 100), 1), 100)
        timeout = max(float(p.get("timeout") or 0), 0.0)
        allowed = p.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(map(str, allowed)) if allowed else None
        self._poll_generation += 1
        generation = self._poll_generation
        if self._polls_waiting:
            self._updates_signal.fire()  # the older poll sees the new generation: 409
        self._confirm(int(offset) if offset is not None else None)
        result = self._collect(limit)
        if result or timeout <= 0:
            return result
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        closing = self._closing
        self._polls_waiting += 1
        self._activity_signal.fire()
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                await self._updates_signal.wait(remaining)
                if closing is not None and closing.is_set():
                    return []
                if generation != self._poll_generation:
                    raise ApiError(409, _POLL_CONFLICT)
                if self._webhook is not None:
                    raise ApiError(409, _WEBHOOK_CONFLICT)
                result = self._collect(limit)
                if result:
                    return result
        finally:
            self._polls_waiting -= 1

    def _set_webhook(self, p: JSONDict, f: dict[str, _Upload]) -> bool:
        url = str(p.get("url") or "")
        if not url:
            return self._delete_webhook(p, f)
        if not url.startswith(("https://", "http://")):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        secret = p.get("secret_token")
        if secret is not None and not _SECRET_RE.fullmatch(str(secret)):
            raise _bad("secret token contains unallowed characters")
        allowed = p.get("allowed_updates")
        if p.get("drop_pending_updates"):
            self._pending.clear()
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(map(str, allowed)) if allowed else None
        self._webhook = _Webhook(
            url=url,
            secret_token=str(secret) if secret is not None else None,
            max_connections=int(p.get("max_connections") or 40),
            allowed_updates=[str(a) for a in allowed] if isinstance(allowed, list) else None,
        )
        self._updates_signal.fire()
        if self._webhook_task is None or self._webhook_task.done():
            self._webhook_task = asyncio.get_running_loop().create_task(self._deliver_webhooks())
        return True

    def _delete_webhook(self, p: JSONDict, f: dict[str, _Upload]) -> bool:
        self._webhook = None
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            self._webhook_task = None
        if p.get("drop_pending_updates"):
            self._pending.clear()
        return True

    def _get_webhook_info(self, p: JSONDict, f: dict[str, _Upload]) -> JSONDict:
        hook = self._webhook
        info: JSONDict = {
            "url": hook.url if hook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if hook is not None:
            info["max_connections"] = hook.max_connections
            info["ip_address"] = "127.0.0.1"
            if hook.allowed_updates is not None:
                info["allowed_updates"] = hook.allowed_updates
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info

    async def _deliver_webhooks(self) -> None:
        """Push queued updates to the webhook, in order, retrying failures (bounded)."""
        if self._http is None:
            self._http = ClientSession()
        while self._webhook is not None:
            entry = next((p for p in self._pending if self._allowed(p.kind)), None)
            if entry is None:
                # drop updates the bot did not ask for, then wait for more
                while self._pending and not self._allowed(self._pending[0].kind):
                    self._pending.popleft()
                await self._updates_signal.wait(None)
                continue
            await self._post_update(entry)
            with contextlib.suppress(ValueError):
                self._pending.remove(entry)

    async def _post_update(self, entry: _Pending) -> None:
        assert self._http is not None
        body = json.dumps(entry.update, ensure_ascii=False).encode()
        delays = (0.0, *self.webhook_retry_delays)
        for attempt, delay in enumerate(delays, start=1):
            hook = self._webhook
            if hook is None:
                return
            if delay:
                await asyncio.sleep(delay)
            headers = {"Content-Type": "application/json"}
            if hook.secret_token:
                headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret_token
            status: int | None = None
            error: str | None = None
            try:
                async with self._http.post(
                    hook.url,
                    data=body,
                    headers=headers,
                    timeout=ClientTimeout(total=self.webhook_timeout),
                ) as response:
                    status = response.status
                    await response.read()
                    if 200 <= status < 300:
                        self.webhook_deliveries.append(
                            WebhookDelivery(entry.update_id, attempt, status, None, self._clock())
                        )
                        entry.delivered = True
                        return
                    error = f"Wrong response from the webhook: {status} {response.reason}"
            except (ClientError, TimeoutError, OSError) as exc:
                error = f"Connection failed: {type(exc).__name__}: {exc}"
            hook.last_error_date = self._now()
            hook.last_error_message = error
            self.webhook_deliveries.append(WebhookDelivery(entry.update_id, attempt, status, error, self._clock()))
            self._activity_signal.fire()


def _reply_id(reply: JSONDict | None) -> int | None:
    return None if reply is None else int(reply["message_id"])


def _picture_size(content: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's first SOF marker; None if neither."""
    if content[:8] == b"\x89PNG\r\n\x1a\n" and len(content) >= 24:
        return int.from_bytes(content[16:20], "big"), int.from_bytes(content[20:24], "big")
    if content[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(content):
        if content[i] != 0xFF:
            return None
        marker, length = content[i + 1], int.from_bytes(content[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(content[i + 7 : i + 9], "big"), int.from_bytes(content[i + 5 : i + 7], "big")
        i += 2 + length
    return None


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} kB"
    return f"{n / 1024 / 1024:.1f} MB"


def _describe(predicate: Predicate) -> str:
    if isinstance(predicate, re.Pattern):
        return f"/{predicate.pattern}/"
    if isinstance(predicate, str):
        return repr(predicate)
    return getattr(predicate, "__name__", repr(predicate))


def _matcher(predicate: Predicate) -> Callable[[SentMessage], bool]:
    if predicate is None:
        return lambda m: True
    if isinstance(predicate, str):
        needle = predicate
        return lambda m: needle in m.content or (m.document is not None and needle in m.document.filename)
    if isinstance(predicate, re.Pattern):
        pattern = predicate
        return lambda m: pattern.search(m.content) is not None
    return predicate
