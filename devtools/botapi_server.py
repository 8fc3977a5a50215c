"""A local, in-process Telegram Bot API server for tests, the demo and the benchmark.

What it is
----------
An aiohttp server that speaks the Bot API over real HTTP, faithfully enough that
python-telegram-bot (PTB) cannot tell it from ``api.telegram.org`` for the methods the
trial bot uses: the same URL form (``/bot<TOKEN>/<method>``), the same parameter
encodings (query string, form-urlencoded with JSON-encoded nested values, multipart,
JSON body), the same ``{"ok": ..., "result" | "error_code", "description",
"parameters"}`` envelope and the same error texts and HTTP codes, so PTB raises the
same exceptions (``BadRequest``, ``Forbidden``, ``RetryAfter``, ``Conflict``,
``TimedOut``, ``NetworkError``, ``EndPointNotFound``) as it would in production.

Behind the API sit *simulated people*: ``server.user(1001)`` is a participant with a
private chat who can ``send`` text and commands, photos, stickers, voice notes and
documents, ``edit`` a message, ``press`` an inline button and block the bot. Their
actions become updates, served by long polling (``getUpdates``) or pushed to a
webhook. Everything the bot does is recorded: messages with edits applied,
documents, callback answers, command menus, every request, and a human-readable
transcript of the whole conversation (``make demo`` prints it).

How tests use it
----------------
::

    async with BotAPIServer() as server:                  # binds 127.0.0.1:<free port>
        app = server.app_builder().build()               # token/base_url/base_file_url set
        ...  # register handlers, start the app with long polling
        alice = server.user(1001, first_name="Alice", language_code="bn")
        await alice.send("/start ABC123")
        [welcome] = await alice.expect("Welcome")         # event-driven, 5 s timeout
        await alice.press(welcome, "English")             # by button text or callback_data
        await server.wait_for(1001, lambda m: m.edits == 1)
        server.faults.add("sendMessage", "429", retry_after=3)  # next send gets RetryAfter(3)
        server.faults.add("download", "500")              # next file download (/file/bot…) fails
        await alice.send_photo(content=b"…", media_group_id="album")  # getFile serves it
        server.media(-1001)     # photos/voice/audio the bot sent there, with caption and reply_to
        print(server.format_transcript())

``server.make_bot()`` gives a plain ``telegram.Bot`` pointed at the server.

Fidelity notes: ``parse_mode`` (HTML, MarkdownV2, Markdown) is parsed like Telegram
does, so stored/returned ``text`` is what the user sees, ``entities`` carry UTF-16
offsets and malformed markup fails with "can't parse entities"; ``editMessageText``
without ``reply_markup`` removes the inline keyboard (as Telegram does); callback
data over 64 bytes fails with ``BUTTON_DATA_INVALID``.

Throughput
----------
Measured on the project's 2-core VM, server and client in one process and one event
loop, every message with HTML parse mode and a two-button inline keyboard:

- through PTB's ``Bot`` (what the tests and the benchmark use): about 200-275
  ``sendMessage``/s (16 concurrent senders; 1 and 64 are slower). PTB + httpx take
  about 90 % of the CPU; installing ``sniffio`` (httpcore retries a failing
  ``import sniffio`` on every request without it) gives about 30 % more.
      ``.venv/bin/python -m devtools.botapi_server --bench 4000 --concurrency 16``
- through a bare aiohttp client: about 1,400-2,100 ``sendMessage``/s, the same as an
  aiohttp hello-world handler on this machine (loopback syscalls are the limit).
      ``.venv/bin/python -m devtools.botapi_server --bench 8000 --client aiohttp``

The hot path does no scans over stored messages: dict look-ups per chat, one list
append per record, and waiters are woken only for the chat they watch.

Standalone
----------
``python -m devtools.botapi_server --port 8081 [--token T] [--chat=ID[=LABEL] ...]``
(write ``--chat=-1001=coordinators`` with ``=`` for negative ids) prints the base URL
and serves until Ctrl-C, printing the transcript live. Simulated users can then be
driven with curl:
``curl -d user_id=1001 -d 'text=/start' http://127.0.0.1:8081/_sim/send``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import mimetypes
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias
from urllib.parse import parse_qsl

from aiohttp import ClientError, ClientSession, ClientTimeout, web
from aiohttp.web_request import FileField

if TYPE_CHECKING:
    from telegram import Bot
    from telegram.ext import ApplicationBuilder

__all__ = [
    "DEFAULT_TOKEN",
    "BotAPIServer",
    "CallbackAnswer",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "QueuedUpdate",
    "RequestRecord",
    "SentDocument",
    "SentMessage",
    "SimChat",
    "SimGroup",
    "SimUser",
    "TranscriptEntry",
    "WebhookDelivery",
    "buttons",
]

JSONDict: TypeAlias = dict[str, Any]
FaultKind: TypeAlias = Literal["500", "502", "429", "timeout", "close", "error"]
Predicate: TypeAlias = "Callable[[SentMessage], bool] | str | re.Pattern[str] | None"
ChatRef: TypeAlias = "int | SimChat"

DEFAULT_TOKEN = "123456789:TEST-token_for-the-local-bot-api"
MAX_TEXT = 4096
MAX_CAPTION = 1024
_DEFAULT_EXCLUDED_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
_POLL_CONFLICT = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
_QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"


class ApiError(Exception):
    """A Bot API error answer: HTTP status, description and optional parameters."""

    def __init__(self, code: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


# --------------------------------------------------------------------------------------
# Records handed to test authors
# --------------------------------------------------------------------------------------


class QueuedUpdate(dict[str, Any]):
    """An update exactly as queued for the bot (a plain dict), with a few conveniences."""

    seq: int = 0

    @property
    def update_id(self) -> int:
        """The update's ``update_id``."""
        return int(self["update_id"])

    @property
    def message(self) -> JSONDict | None:
        """The message carried by the update (for a callback query: the bot's message)."""
        for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
            if key in self:
                return dict(self[key])
        query = self.get("callback_query")
        if query and "message" in query:
            return dict(query["message"])
        return None

    @property
    def message_id(self) -> int | None:
        """The ``message_id`` of :attr:`message`, if any."""
        message = self.message
        return None if message is None else int(message["message_id"])

    @property
    def callback_query_id(self) -> str | None:
        """The callback query id, for updates made by :meth:`SimUser.press`."""
        query = self.get("callback_query")
        return None if query is None else str(query["id"])


@dataclass(eq=False)
class SentDocument:
    """A document the bot sent (``sendDocument``): file name, bytes and caption.
    Also a photo (``sendPhoto``): then ``kind`` is "photo" and ``width``/``height``
    are the picture's (read from the PNG or JPEG header); a voice note (``sendVoice``,
    kind "voice") or an audio file (``sendAudio``, kind "audio"). Sent by a file_id the
    bot received, ``content`` is that file's bytes. ``reply_to`` is the message id it
    replied to (``reply_parameters`` or ``reply_to_message_id``), ``media_group_id``
    is set for the items of one ``sendMediaGroup``."""

    chat_id: int
    message_id: int
    filename: str
    content: bytes
    mime_type: str
    caption: str | None
    file_id: str
    kind: str = "document"
    width: int = 0
    height: int = 0
    reply_to: int | None = None
    media_group_id: str | None = None


@dataclass(eq=False)
class SentMessage:
    """A message the bot sent, in its current state (edits applied)."""

    chat_id: int
    message_id: int
    date: int
    text: str | None
    entities: list[JSONDict]
    reply_markup: JSONDict | None
    parse_mode: str | None
    source_text: str | None
    caption: str | None = None
    document: SentDocument | None = None
    edits: int = 0
    edit_date: int | None = None
    deleted: bool = False
    seq: int = 0
    raw: JSONDict = field(default_factory=dict)

    @property
    def buttons(self) -> list[list[tuple[str, str | None]]]:
        """The inline keyboard as rows of ``(text, callback_data)``."""
        return buttons(self)

    @property
    def button_texts(self) -> list[str]:
        """All inline button texts, row by row, flattened."""
        return [text for row in buttons(self) for text, _ in row]

    @property
    def content(self) -> str:
        """Text or caption ("" if none): what a reader sees."""
        return self.text if self.text is not None else (self.caption or "")


@dataclass(frozen=True)
class CallbackAnswer:
    """One ``answerCallbackQuery`` call, tied back to the press that caused it."""

    callback_query_id: str
    chat_id: int | None
    user_id: int | None
    text: str | None
    show_alert: bool
    url: str | None
    cache_time: int
    time: float


@dataclass
class RequestRecord:
    """One HTTP request to the Bot API: canonical method name, decoded params, outcome."""

    method: str
    params: JSONDict
    time: float
    http_method: str
    status: int = 200
    fault: str | None = None


@dataclass(frozen=True)
class TranscriptEntry:
    """One line of the conversation: who did what in which chat, when."""

    time: float
    role: Literal["user", "bot", "server"]
    user_id: int | None
    chat_id: int
    kind: str
    text: str
    buttons: tuple[tuple[str, ...], ...] = ()
    message_id: int | None = None
    actor: str = ""


@dataclass(frozen=True)
class WebhookDelivery:
    """One attempt to POST an update to the webhook."""

    update_id: int
    attempt: int
    status: int | None
    error: str | None
    time: float


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
    ) -> Fault:
        """Make the next ``times`` calls of ``method`` (any method if None) fail with ``kind``.

        Kinds: "500" and "502" (server errors, PTB NetworkError), "429" (flood control,
        PTB RetryAfter(retry_after)), "timeout" (the request is held for ``delay`` s and
        then dropped: give the client a shorter read timeout to get TimedOut), "close"
        (the connection is dropped without an answer: NetworkError), "error" (any Bot
        API error: ``code`` and ``description``). A faulted call changes nothing.
        """
        if kind not in ("500", "502", "429", "timeout", "close", "error"):
            raise ValueError(f"unknown fault kind {kind!r}")
        fault = Fault(method, kind, times, retry_after, chat_id, delay, code, description)
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


def buttons(message: SentMessage | Mapping[str, Any] | Any) -> list[list[tuple[str, str | None]]]:
    """Inline keyboard rows as ``(text, callback_data)`` for a SentMessage, dict or PTB Message."""
    if isinstance(message, SentMessage):
        markup: Any = message.reply_markup
    elif isinstance(message, Mapping):
        markup = message.get("reply_markup", message if "inline_keyboard" in message else None)
    elif hasattr(message, "to_dict"):
        markup = message.to_dict().get("reply_markup")
    else:
        raise TypeError(f"cannot read buttons from {type(message).__name__}")
    if not isinstance(markup, Mapping) or "inline_keyboard" not in markup:
        return []
    return [[(str(b.get("text", "")), b.get("callback_data")) for b in row] for row in markup["inline_keyboard"]]


# --------------------------------------------------------------------------------------
# Text formatting: parse_mode like Telegram (UTF-16 offsets, same error texts)
# --------------------------------------------------------------------------------------


def _u16(s: str) -> int:
    if s.isascii():
        return len(s)
    return len(s) + sum(1 for ch in s if ord(ch) > 0xFFFF)


def _byte_offset(src: str, index: int) -> int:
    return len(src[:index].encode("utf-8"))


def _entity_error(message: str) -> ApiError:
    return _bad(f"can't parse entities: {message}")


class _Out:
    __slots__ = ("length", "parts")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0

    def add(self, s: str) -> None:
        self.parts.append(s)
        self.length += _u16(s)

    def text(self) -> str:
        return "".join(self.parts)


_HTML_SPECIAL = re.compile(r"[<&]")
_HTML_ENTITY = re.compile(r"&(?:#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6})|(lt|gt|amp|quot));")
_HTML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_TAG_NAME = re.compile(r"[^\s>/]*")
_HTML_ATTR = re.compile(r"([a-zA-Z0-9_-]+)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>\"']+)))?")
_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}


def _html_unescape(value: str) -> str:
    def repl(m: re.Match[str]) -> str:
        return _html_entity_char(m) or m.group(0)

    return _HTML_ENTITY.sub(repl, value)


def _html_entity_char(m: re.Match[str]) -> str | None:
    dec, hexa, named = m.groups()
    if named:
        return _HTML_NAMED[named]
    code = int(dec) if dec else int(hexa, 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code)


def _parse_html(src: str) -> tuple[str, list[JSONDict]]:
    """Telegram's HTML parse mode: tags and entities → plain text and entities."""
    out = _Out()
    entities: list[JSONDict] = []
    stack: list[tuple[str, int, dict[str, str]]] = []
    i, n = 0, len(src)
    while i < n:
        m = _HTML_SPECIAL.search(src, i)
        if m is None:
            out.add(src[i:])
            break
        k = m.start()
        if k > i:
            out.add(src[i:k])
        if src[k] == "&":
            em = _HTML_ENTITY.match(src, k)
            char = _html_entity_char(em) if em else None
            if em is not None and char is not None:
                out.add(char)
                i = em.end()
            else:
                out.add("&")
                i = k + 1
            continue
        if src.startswith("</", k):
            end = src.find(">", k)
            if end < 0:
                raise _entity_error(f"Unclosed end tag at byte offset {_byte_offset(src, k)}")
            name = src[k + 2 : end].strip().lower()
            if not stack:
                raise _entity_error(f"Unexpected end tag at byte offset {_byte_offset(src, k)}")
            tag, start, open_attrs = stack.pop()
            if name != tag:
                raise _entity_error(
                    f'Unmatched end tag at byte offset {_byte_offset(src, k)}, expected "</{tag}>", found "</{name}>"'
                )
            _close_html_entity(tag, start, out.length, open_attrs, stack, entities)
            i = end + 1
            continue
        nm = _HTML_TAG_NAME.match(src, k + 1)
        assert nm is not None
        name = nm.group(0).lower()
        p = nm.end()
        if p >= n:
            raise _entity_error(f"Unclosed start tag at byte offset {_byte_offset(src, k)}")
        if name not in _HTML_TAGS:
            raise _entity_error(f'Unsupported start tag "{name}" at byte offset {_byte_offset(src, k)}')
        attrs: dict[str, str] = {}
        while True:
            while p < n and src[p].isspace():
                p += 1
            if p >= n:
                raise _entity_error(f"Unclosed start tag at byte offset {_byte_offset(src, k)}")
            if src[p] == ">":
                p += 1
                break
            am = _HTML_ATTR.match(src, p)
            if am is None:
                raise _entity_error(f'Empty attribute name in the tag "{name}" at byte offset {_byte_offset(src, p)}')
            value = next((g for g in am.groups()[1:] if g is not None), "")
            attrs[am.group(1).lower()] = _html_unescape(value)
            p = am.end()
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise _entity_error('Tag "span" must have class "tg-spoiler"')
        stack.append((name, out.length, attrs))
        i = p
    if stack:
        raise _entity_error(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return out.text(), entities


def _close_html_entity(
    tag: str,
    start: int,
    end: int,
    attrs: dict[str, str],
    stack: list[tuple[str, int, dict[str, str]]],
    entities: list[JSONDict],
) -> None:
    if tag == "code" and stack and stack[-1][0] == "pre":
        language = attrs.get("class", "")
        if language.startswith("language-"):
            stack[-1][2]["\0language"] = language[len("language-") :]
        return
    if end <= start:
        return
    kind = _HTML_TAGS[tag]
    entity: JSONDict = {"type": kind, "offset": start, "length": end - start}
    if tag == "a":
        href = attrs.get("href", "")
        if not href:
            return
        entity["url"] = href
    elif tag == "pre" and "\0language" in attrs:
        entity["language"] = attrs["\0language"]
    elif tag == "blockquote" and "expandable" in attrs:
        entity["type"] = "expandable_blockquote"
    elif tag == "tg-emoji":
        entity["custom_emoji_id"] = attrs.get("emoji-id", "")
    entities.append(entity)


_MD2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MD2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
    "code": "Code",
    "pre": "Pre",
}


def _parse_markdown_v2(src: str) -> tuple[str, list[JSONDict]]:
    """Telegram's MarkdownV2 parse mode, including its reserved-character errors."""
    out = _Out()
    entities: list[JSONDict] = []
    stack: list[tuple[str, int, int, JSONDict]] = []  # kind, utf16 start, src index, extra
    quote_start: int | None = None
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "\\" and i + 1 < n and 0 < ord(src[i + 1]) <= 126:
            out.add(src[i + 1])
            i += 2
            continue
        top = stack[-1] if stack else None
        if top is not None and top[0] in ("code", "pre"):
            end_mark = "```" if top[0] == "pre" else "`"
            if src.startswith(end_mark, i):
                stack.pop()
                if out.length > top[1]:
                    entity: JSONDict = {"type": top[0], "offset": top[1]}
                    entity["length"] = out.length - top[1]
                    entity.update(top[3])
                    entities.append(entity)
                i += len(end_mark)
            else:
                out.add(c)
                i += 1
            continue
        if c == "\n":
            if quote_start is not None and not src.startswith(">", i + 1):
                if out.length > quote_start:
                    entities.append({"type": "blockquote", "offset": quote_start, "length": out.length - quote_start})
                quote_start = None
            out.add(c)
            i += 1
            continue
        if c == ">" and (i == 0 or src[i - 1] == "\n"):
            if quote_start is None:
                quote_start = out.length
            i += 1
            continue
        if c not in _MD2_RESERVED:
            out.add(c)
            i += 1
            continue
        if top is not None:
            kind = top[0]
            width = 0
            closes_one = (
                (kind == "bold" and c == "*")
                or (kind == "strikethrough" and c == "~")
                or (kind == "italic" and c == "_" and not src.startswith("__", i))
                or (kind in ("text_link", "custom_emoji") and c == "]")
            )
            closes_two = (kind == "underline" and src.startswith("__", i)) or (
                kind == "spoiler" and src.startswith("||", i)
            )
            width = 1 if closes_one else 2 if closes_two else 0
            if width:
                stack.pop()
                i += width
                extra: JSONDict = {}
                if kind in ("text_link", "custom_emoji"):
                    if not src.startswith("(", i):
                        if kind == "custom_emoji":
                            raise _entity_error("Custom emoji entity must contain a tg://emoji URL")
                        continue
                    url_parts: list[str] = []
                    j = i + 1
                    while j < n and src[j] != ")":
                        if src[j] == "\\" and j + 1 < n:
                            j += 1
                        url_parts.append(src[j])
                        j += 1
                    if j >= n:
                        raise _entity_error(f"Can't find end of a URL at byte offset {_byte_offset(src, i)}")
                    url = "".join(url_parts)
                    i = j + 1
                    if kind == "text_link":
                        extra["url"] = url
                    else:
                        extra["custom_emoji_id"] = url.rpartition("id=")[2]
                if out.length > top[1]:
                    entity = {"type": kind, "offset": top[1], "length": out.length - top[1]}
                    entity.update(extra)
                    entities.append(entity)
                continue
        start_index = i
        extra = {}
        if c == "*":
            kind, i = "bold", i + 1
        elif c == "_":
            kind, i = ("underline", i + 2) if src.startswith("__", i) else ("italic", i + 1)
        elif c == "~":
            kind, i = "strikethrough", i + 1
        elif c == "|" and src.startswith("||", i):
            kind, i = "spoiler", i + 2
        elif c == "[":
            kind, i = "text_link", i + 1
        elif c == "!" and src.startswith("![", i):
            kind, i = "custom_emoji", i + 2
        elif c == "`" and src.startswith("```", i):
            kind, i = "pre", i + 3
            newline = src.find("\n", i)
            language = src[i:newline] if newline >= 0 else ""
            if newline >= 0 and language and not any(ch.isspace() for ch in language) and ("`" not in language):
                extra["language"] = language
                i = newline + 1
            elif src.startswith("\n", i):
                i += 1
        elif c == "`":
            kind, i = "code", i + 1
        else:
            raise _entity_error(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
        stack.append((kind, out.length, start_index, extra))
    if quote_start is not None and out.length > quote_start:
        entities.append({"type": "blockquote", "offset": quote_start, "length": out.length - quote_start})
    if stack:
        kind, _, index, _ = stack[-1]
        raise _entity_error(f"Can't find end of {_MD2_NAMES[kind]} entity at byte offset {_byte_offset(src, index)}")
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return out.text(), entities


def _parse_markdown(src: str) -> tuple[str, list[JSONDict]]:
    """Telegram's legacy Markdown parse mode (no nesting)."""
    out = _Out()
    entities: list[JSONDict] = []
    kinds = {"*": "bold", "_": "italic", "`": "code"}
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "\\" and i + 1 < n and src[i + 1] in "_*`[":
            out.add(src[i + 1])
            i += 2
            continue
        if c not in "_*`[":
            out.add(c)
            i += 1
            continue
        not_closed = _entity_error(f"Can't find end of the entity starting at byte offset {_byte_offset(src, i)}")
        start = out.length
        if src.startswith("```", i):
            end = src.find("```", i + 3)
            if end < 0:
                raise not_closed
            body = src[i + 3 : end]
            entity: JSONDict = {"type": "pre"}
            first, sep, rest = body.partition("\n")
            if sep and first and not any(ch.isspace() for ch in first):
                entity["language"], body = first, rest
            out.add(body)
            i = end + 3
        elif c == "[":
            end = src.find("]", i + 1)
            if end < 0 or not src.startswith("(", end + 1) or src.find(")", end + 2) < 0:
                raise not_closed
            close = src.find(")", end + 2)
            out.add(src[i + 1 : end])
            entity = {"type": "text_link", "url": src[end + 2 : close]}
            i = close + 1
        else:
            end = src.find(c, i + 1)
            if end < 0:
                raise not_closed
            out.add(src[i + 1 : end])
            entity = {"type": kinds[c]}
            i = end + 1
        if out.length > start:
            entity.update(offset=start, length=out.length - start)
            entities.append(entity)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return out.text(), entities


def _format_text(text: str, parse_mode: str | None, entities: Any) -> tuple[str, list[JSONDict]]:
    """Apply parse_mode (or explicit entities) and trim like Telegram does."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        plain, ents = _parse_html(text)
    elif mode == "markdownv2":
        plain, ents = _parse_markdown_v2(text)
    elif mode == "markdown":
        plain, ents = _parse_markdown(text)
    elif mode:
        raise _bad(f"unsupported parse_mode {parse_mode}")
    else:
        plain = text
        ents = [dict(e) for e in entities] if isinstance(entities, list) else []
    stripped = plain.strip()
    if stripped != plain and stripped:
        shift = _u16(plain[: len(plain) - len(plain.lstrip())])
        limit = _u16(stripped)
        trimmed: list[JSONDict] = []
        for e in ents:
            start = max(0, int(e["offset"]) - shift)
            end = min(limit, int(e["offset"]) + int(e["length"]) - shift)
            if end > start:
                trimmed.append({**e, "offset": start, "length": end - start})
        ents = trimmed
    elif not stripped:
        ents = []
    return stripped, ents


def _command_entities(text: str) -> list[JSONDict]:
    """The ``bot_command`` entity Telegram adds to a message starting with /command."""
    if not text.startswith("/"):
        return []
    command = re.match(r"/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,64})?", text)
    if command is None:
        return []
    return [{"type": "bot_command", "offset": 0, "length": _u16(command.group(0))}]


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


# --------------------------------------------------------------------------------------
# Simulated people
# --------------------------------------------------------------------------------------


class SimChat:
    """A chat the server knows (private chat of a user, or a group)."""

    def __init__(self, server: BotAPIServer, chat_id: int) -> None:
        self.server = server
        self.id = chat_id

    @property
    def chat_id(self) -> int:
        """The chat id (same as :attr:`id`)."""
        return self.id

    @property
    def label(self) -> str:
        """Display label in the transcript."""
        return self.server._chat(self.id).label

    def messages(self) -> list[SentMessage]:
        """Messages the bot sent to this chat (edits applied)."""
        return self.server.messages(self.id)

    def last_message(self) -> SentMessage:
        """The bot's latest message in this chat."""
        return self.server.last_message(self.id)

    def documents(self) -> list[SentDocument]:
        """Documents the bot sent to this chat."""
        return self.server.documents(self.id)

    async def wait_for(
        self,
        predicate: Predicate = None,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - part of the test-author API
    ) -> list[SentMessage]:
        """Wait until the bot has sent ``count`` matching messages to this chat."""
        return await self.server.wait_for(self.id, predicate, count, timeout)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.label!r}>"


class SimUser(SimChat):
    """A simulated Telegram user with a private chat with the bot."""

    def __init__(
        self,
        server: BotAPIServer,
        user_id: int,
        first_name: str,
        last_name: str | None,
        username: str | None,
        language_code: str | None,
    ) -> None:
        super().__init__(server, user_id)
        self.first_name = first_name
        self.last_name = last_name
        self.username = username
        self.language_code = language_code
        self.last_action: int = 0

    @property
    def user_dict(self) -> JSONDict:
        """The Telegram ``User`` object for this person."""
        user: JSONDict = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            user["last_name"] = self.last_name
        if self.username:
            user["username"] = self.username
        if self.language_code:
            user["language_code"] = self.language_code
        return user

    @property
    def chat_dict(self) -> JSONDict:
        """The Telegram ``Chat`` object of the private chat."""
        chat: JSONDict = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.last_name:
            chat["last_name"] = self.last_name
        if self.username:
            chat["username"] = self.username
        return chat

    @property
    def blocked(self) -> bool:
        """Whether this user has blocked the bot."""
        return self.server._chat(self.id).blocked

    def _where(self, chat: ChatRef | None) -> _Chat:
        return self.server._chat(self.id if chat is None else chat)

    async def send(self, text: str, *, chat: ChatRef | None = None, reply_to: Any = None) -> QueuedUpdate:
        """Send a text message (``/command args`` gets its ``bot_command`` entity)."""
        extra: JSONDict = {"text": text}
        entities = _command_entities(text)
        if entities:
            extra["entities"] = entities
        return self._message(chat, extra, "message", text, reply_to=reply_to)

    async def send_photo(
        self,
        caption: str | None = None,
        *,
        chat: ChatRef | None = None,
        content: bytes = b"\xff\xd8\xff\xe0fake-jpeg",
        media_group_id: str | None = None,
        file_size: int | None = None,
    ) -> QueuedUpdate:
        """Send a photo (two sizes, as Telegram does); the bot can fetch either with
        getFile and download it. ``media_group_id`` makes it one photo of an album (send
        each with the same id, as Telegram delivers an album); ``file_size`` overrides
        the size announced for the large one (a file over the Bot API's 20 MB limit)."""
        small = self.server._store_file(content[:64], "photos", "jpg")
        large = self.server._store_file(content, "photos", "jpg")
        extra: JSONDict = {
            "photo": [
                {
                    "file_id": small.file_id,
                    "file_unique_id": small.file_unique_id,
                    "width": 90,
                    "height": 67,
                    "file_size": len(small.content),
                },
                {
                    "file_id": large.file_id,
                    "file_unique_id": large.file_unique_id,
                    "width": 1280,
                    "height": 960,
                    "file_size": len(large.content) if file_size is None else file_size,
                },
            ]
        }
        if caption:
            extra["caption"] = caption
        if media_group_id:
            extra["media_group_id"] = media_group_id
        return self._message(chat, extra, "photo", f"(photo) {caption or ''}".strip())

    async def send_sticker(self, emoji: str = "👍", *, chat: ChatRef | None = None) -> QueuedUpdate:
        """Send a sticker."""
        stored = self.server._store_file(b"RIFF-fake-webp", "stickers", "webp")
        extra = {
            "sticker": {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
                "emoji": emoji,
                "file_size": len(stored.content),
            }
        }
        return self._message(chat, extra, "sticker", f"(sticker {emoji})")

    async def send_voice(
        self,
        duration: int = 3,
        *,
        chat: ChatRef | None = None,
        content: bytes = b"OggS-fake-voice",
        file_size: int | None = None,
    ) -> QueuedUpdate:
        """Send a voice note (``file_size`` overrides the size announced)."""
        stored = self.server._store_file(content, "voice", "oga")
        extra = {
            "voice": {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "duration": duration,
                "mime_type": "audio/ogg",
                "file_size": len(content) if file_size is None else file_size,
            }
        }
        return self._message(chat, extra, "voice", f"(voice {duration}s)")

    async def send_audio(
        self,
        duration: int = 30,
        *,
        chat: ChatRef | None = None,
        content: bytes = b"ID3-fake-mp3",
        mime_type: str = "audio/mpeg",
        file_name: str = "recording.mp3",
    ) -> QueuedUpdate:
        """Send an audio file (a recording from the phone's recorder app, say)."""
        stored = self.server._store_file(content, "music", file_name.rpartition(".")[2])
        extra = {
            "audio": {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "duration": duration,
                "file_name": file_name,
                "mime_type": mime_type,
                "file_size": len(content),
            }
        }
        return self._message(chat, extra, "audio", f"(audio {duration}s)")

    async def send_video(self, *, chat: ChatRef | None = None, content: bytes = b"fake-mp4") -> QueuedUpdate:
        """Send a video (a kind of file the trial bot does not take)."""
        stored = self.server._store_file(content, "videos", "mp4")
        extra = {
            "video": {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "width": 640,
                "height": 480,
                "duration": 5,
                "mime_type": "video/mp4",
                "file_size": len(content),
            }
        }
        return self._message(chat, extra, "video", "(video)")

    async def send_document(
        self,
        filename: str = "document.pdf",
        content: bytes = b"%PDF-1.4 fake",
        *,
        mime_type: str | None = None,
        caption: str | None = None,
        chat: ChatRef | None = None,
    ) -> QueuedUpdate:
        """Send a file; the bot can fetch it with getFile and download it."""
        stored = self.server._store_file(content, "documents", filename.rpartition(".")[2])
        mime = mime_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        extra: JSONDict = {
            "document": {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "file_name": filename,
                "mime_type": mime,
                "file_size": len(content),
            }
        }
        if caption:
            extra["caption"] = caption
        return self._message(chat, extra, "document", f"(document {filename}) {caption or ''}".strip())

    async def edit(self, message: Any, new_text: str) -> QueuedUpdate:
        """Edit one of this user's earlier messages (an ``edited_message`` update)."""
        state, mid = self.server._locate(message, self.id)
        original = state.messages.get(mid)
        if original is None or original.get("from", {}).get("id") != self.id:
            raise AssertionError(f"user {self.id} has no message #{mid} in chat {state.id}")
        edited = {**original, "text": new_text, "edit_date": self.server._now()}
        edited.pop("entities", None)
        entities = _command_entities(new_text)
        if entities:
            edited["entities"] = entities
        state.messages[mid] = edited
        update = self.server._queue(
            {"edited_message": edited},
            TranscriptEntry(self.server._clock(), "user", self.id, state.id, "edit", new_text, message_id=mid),
        )
        self.last_action = update.seq
        return update

    async def press(self, message: Any, button: str, *, chat: ChatRef | None = None) -> QueuedUpdate:
        """Press an inline button (by text or callback_data) under a bot message.

        Queues a ``callback_query`` update whose ``message`` is the bot's message as it
        is now; the query id is ``update.callback_query_id`` (see ``server.callback_answers``).
        """
        state, mid = self.server._locate(message, self.id if chat is None else chat)
        sent = state.sent_by_id.get(mid)
        if sent is None or sent.deleted:
            raise AssertionError(f"the bot has no message #{mid} in chat {state.id} to press")
        rows = buttons(sent)
        flat = [b for row in rows for b in row]
        chosen = next((b for b in flat if b[0] == button), None) or next((b for b in flat if b[1] == button), None)
        if chosen is None:
            listing = ", ".join(f"{t!r}→{d!r}" for t, d in flat) or "no inline keyboard"
            raise AssertionError(f"message #{mid} in chat {state.id} has no button {button!r} ({listing})")
        if chosen[1] is None:
            raise AssertionError(f"button {chosen[0]!r} has no callback_data (a URL button?)")
        query_id = self.server._new_query_id(state.id, self.id)
        query = {
            "id": query_id,
            "from": self.user_dict,
            "message": sent.raw,
            "chat_instance": str((state.id * 2654435761) % 2**62),
            "data": chosen[1],
        }
        update = self.server._queue(
            {"callback_query": query},
            TranscriptEntry(self.server._clock(), "user", self.id, state.id, "press", chosen[0], message_id=mid),
        )
        self.last_action = update.seq
        return update

    def block_bot(self, notify: bool = True) -> QueuedUpdate | None:
        """Block the bot: further sends fail with 403; Telegram sends a my_chat_member update."""
        return self._set_blocked(True, notify)

    def unblock_bot(self, notify: bool = True) -> QueuedUpdate | None:
        """Unblock (restart) the bot."""
        return self._set_blocked(False, notify)

    async def expect(
        self,
        predicate: Predicate = None,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - part of the test-author API
    ) -> list[SentMessage]:
        """Wait for bot messages sent (or edited) here since this user's last action."""
        return await self.server.wait_for(self.id, predicate, count, timeout, since=self.last_action)

    def _set_blocked(self, blocked: bool, notify: bool) -> QueuedUpdate | None:
        state = self.server._chat(self.id)
        if state.blocked == blocked:
            return None
        state.blocked = blocked
        entry = TranscriptEntry(self.server._clock(), "user", self.id, self.id, "block" if blocked else "unblock", "")
        if not notify:
            self.server._record(entry)
            return None
        old, new = ("member", "kicked") if blocked else ("kicked", "member")
        bot = self.server.bot_user
        member_update = {
            "chat": self.chat_dict,
            "from": self.user_dict,
            "date": self.server._now(),
            "old_chat_member": {"user": bot, "status": old},
            "new_chat_member": {"user": bot, "status": new}
            if new == "member"
            else {"user": bot, "status": new, "until_date": 0},
        }
        update = self.server._queue({"my_chat_member": member_update}, entry)
        self.last_action = update.seq
        return update

    def _message(
        self,
        chat: ChatRef | None,
        extra: JSONDict,
        kind: str,
        shown: str,
        *,
        reply_to: Any = None,
    ) -> QueuedUpdate:
        state = self._where(chat)
        mid = state.take_id()
        message: JSONDict = {
            "message_id": mid,
            "from": self.user_dict,
            "chat": state.chat,
            "date": self.server._now(),
            **extra,
        }
        if reply_to is not None:
            _, reply_id = self.server._locate(reply_to, state.id)
            replied = state.messages.get(reply_id)
            if replied is not None:
                message["reply_to_message"] = {k: v for k, v in replied.items() if k != "reply_to_message"}
        state.messages[mid] = message
        update = self.server._queue(
            {"message": message},
            TranscriptEntry(self.server._clock(), "user", self.id, state.id, kind, shown, message_id=mid),
        )
        self.last_action = update.seq
        return update


class SimGroup(SimChat):
    """A simulated group or supergroup the bot is a member of."""

    async def send(self, user: SimUser, text: str) -> QueuedUpdate:
        """``user`` writes ``text`` in this group."""
        return await user.send(text, chat=self)

    def remove_bot(self) -> None:
        """Kick the bot: sends here fail with 403 "bot was kicked from the group chat"."""
        self.server._chat(self.id).kicked = True

    def add_bot(self) -> None:
        """Re-add the bot after :meth:`remove_bot`."""
        self.server._chat(self.id).kicked = False

    @property
    def bot_is_member(self) -> bool:
        """False once the bot was kicked or left (``leaveChat``)."""
        return not self.server._chat(self.id).kicked


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
                    await self._closing.wait()
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


# --------------------------------------------------------------------------------------
# Standalone use and the throughput measurement
# --------------------------------------------------------------------------------------


async def _bench(server: BotAPIServer, total: int, concurrency: int) -> float:
    """Push ``total`` sendMessage calls through PTB's Bot; returns messages per second."""
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup
    from telegram.request import HTTPXRequest

    chat_ids = [server.user(10_000 + i).id for i in range(concurrency)]
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Taken", callback_data="dose:taken"),
                InlineKeyboardButton("Later", callback_data="dose:later"),
            ]
        ]
    )
    bot = server.make_bot(request=HTTPXRequest(connection_pool_size=concurrency))
    per_worker = total // concurrency
    async with bot:

        async def worker(chat_id: int) -> None:
            for i in range(per_worker):
                await bot.send_message(
                    chat_id,
                    f"<b>Dose reminder</b> {i}: please take your tablet",
                    parse_mode="HTML",
                    reply_markup=keyboard,
                )

        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in chat_ids))
        elapsed = time.perf_counter() - started
    sent = sum(len(server.messages(c)) for c in chat_ids)
    assert sent == per_worker * concurrency, sent
    return sent / elapsed


async def _bench_raw(server: BotAPIServer, total: int, concurrency: int) -> float:
    """The same load from a lean aiohttp client (what the server itself can take)."""
    from aiohttp import TCPConnector

    chat_ids = [server.user(20_000 + i).id for i in range(concurrency)]
    keyboard = json.dumps(
        {
            "inline_keyboard": [
                [
                    {"text": "Taken", "callback_data": "dose:taken"},
                    {"text": "Later", "callback_data": "dose:later"},
                ]
            ]
        }
    )
    url = f"{server.base_url}{server.token}/sendMessage"
    per_worker = total // concurrency
    async with ClientSession(connector=TCPConnector(limit=concurrency)) as http:

        async def worker(chat_id: int) -> None:
            for i in range(per_worker):
                form = {
                    "chat_id": str(chat_id),
                    "parse_mode": "HTML",
                    "reply_markup": keyboard,
                    "text": f"<b>Dose reminder</b> {i}: please take your tablet",
                }
                async with http.post(url, data=form) as response:
                    assert response.status == 200, await response.text()
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in chat_ids))
        elapsed = time.perf_counter() - started
    return per_worker * concurrency / elapsed


def _iter_chat_args(values: Iterable[str]) -> Iterator[tuple[int, str | None]]:
    for value in values:
        chat, _, label = value.partition("=")
        yield int(chat), label or None


async def _main(args: argparse.Namespace) -> None:
    server = BotAPIServer(args.token, host=args.host, port=args.port)
    async with server:
        if args.bench:
            bench = _bench if args.client == "ptb" else _bench_raw
            rate = await bench(server, args.bench, args.concurrency)
            client = "PTB Bot" if args.client == "ptb" else "a bare aiohttp client"
            print(f"{args.bench} sendMessage via {client}, concurrency {args.concurrency}: {rate:,.0f} messages/s")
            return
        for chat_id, label in _iter_chat_args(args.chat):
            if chat_id > 0:
                server.user(chat_id, label=label)
            else:
                server.group(chat_id, title=label, label=label)
        if not args.quiet:
            server.subscribe(lambda e: print(server.format_entry(e, times=True), flush=True))
        print(f"Bot API test server on {server.url}")
        print(f"  base_url      {server.base_url}")
        print(f"  base_file_url {server.base_file_url}")
        print(f"  token         {server.token}")
        print(f"  a user writes: curl -d user_id=1001 -d 'text=/start' {server.url}/_sim/send")
        print(f"  transcript:    curl {server.url}/_sim/transcript", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: serve until Ctrl-C, or measure throughput (--bench)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else "")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument(
        "--chat",
        action="append",
        default=[],
        metavar="ID[=LABEL]",
        help="register a chat the bot may write to (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not print the transcript")
    parser.add_argument(
        "--bench", type=int, default=0, metavar="N", help="send N messages through PTB's Bot and print the rate"
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--client",
        choices=("ptb", "aiohttp"),
        default="ptb",
        help="who sends in --bench: PTB's Bot (default) or a bare aiohttp client",
    )
    args = parser.parse_args(argv)
    if args.bench:
        args.port = 0
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    if not args.bench:
        print("stopped", file=sys.stderr)


if __name__ == "__main__":
    main()
