"""Records handed to test authors: sent messages and documents, queued updates, requests,
the transcript, and reading inline buttons."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if TYPE_CHECKING:
    from devtools.botapi_server.people import SimChat

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
