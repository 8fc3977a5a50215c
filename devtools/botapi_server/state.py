"""The server's internal state: chats, pending webhook deliveries, uploads, stored files, and parameter coercion."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from devtools.botapi_server.records import JSONDict, QueuedUpdate, SentDocument, SentMessage, _bad

# --------------------------------------------------------------------------------------
# Internal state
# --------------------------------------------------------------------------------------


class _Signal:
    """Wake every waiter when something changed; free when nobody waits."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def fire(self) -> None:
        event = self._event
        if event is not None:
            self._event = None
            event.set()

    async def wait(self, timeout: float | None) -> bool:  # noqa: ASYNC109 - a deadline, not a cancel scope
        if self._event is None:
            self._event = asyncio.Event()
        event = self._event
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return False
        return True


class _Chat:
    __slots__ = (
        "blocked",
        "chat",
        "documents",
        "id",
        "kicked",
        "label",
        "media",
        "messages",
        "next_id",
        "photos",
        "sent",
        "sent_by_id",
        "signal",
        "username",
    )

    def __init__(self, chat: JSONDict, label: str) -> None:
        self.id: int = int(chat["id"])
        self.chat = chat
        self.label = label
        self.username: str | None = chat.get("username")
        self.blocked = False
        self.kicked = False
        self.next_id = 1
        self.messages: dict[int, JSONDict] = {}
        self.sent: list[SentMessage] = []
        self.sent_by_id: dict[int, SentMessage] = {}
        self.documents: list[SentDocument] = []
        self.photos: list[SentDocument] = []
        self.media: list[SentDocument] = []  # every photo, voice, audio or document sent, in order
        self.signal = _Signal()

    def take_id(self) -> int:
        mid = self.next_id
        self.next_id += 1
        return mid


@dataclass
class _Pending:
    update: QueuedUpdate
    forced: bool = False
    delivered: bool = False

    @property
    def update_id(self) -> int:
        return self.update.update_id

    @property
    def kind(self) -> str:
        return next((k for k in self.update if k != "update_id"), "")


@dataclass
class _Upload:
    filename: str
    content_type: str
    content: bytes


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    content: bytes


@dataclass
class _Webhook:
    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: list[str] | None
    last_error_date: int | None = None
    last_error_message: str | None = None


# Parameter decoding: which form fields hold JSON, integers and plain strings.
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "commands",
        "scope",
        "allowed_updates",
        "reply_parameters",
        "link_preview_options",
        "entities",
        "caption_entities",
        "media",
        "results",
        "menu_button",
        "rights",
        "reaction",
        "message_ids",
    }
)
_INT_FIELDS = frozenset(
    {
        "chat_id",
        "message_id",
        "offset",
        "limit",
        "timeout",
        "reply_to_message_id",
        "message_thread_id",
        "cache_time",
        "max_connections",
        "from_chat_id",
        "user_id",
    }
)
_STRING_FIELDS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "url",
        "secret_token",
        "callback_query_id",
        "language_code",
        "inline_message_id",
        "description",
        "short_description",
        "name",
        "title",
        "ip_address",
        "file_id",
        "action",
        "business_connection_id",
        "message_effect_id",
        "document",
        "photo",
        "voice",
        "audio",
        "sticker",
        "thumbnail",
        "media_group_id",
    }
)
_INT_RE = re.compile(r"-?\d{1,20}")
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")

_ApiHandler: TypeAlias = "Callable[[JSONDict, dict[str, _Upload]], Any]"


def _scope_key(scope: Any) -> str:
    if scope is None:
        scope = {"type": "default"}
    elif isinstance(scope, str):
        scope = {"type": scope}
    elif hasattr(scope, "to_dict"):
        scope = scope.to_dict()
    if not isinstance(scope, Mapping) or "type" not in scope:
        raise _bad("can't parse BotCommandScope JSON object")
    return json.dumps(dict(scope), sort_keys=True, separators=(",", ":"))
