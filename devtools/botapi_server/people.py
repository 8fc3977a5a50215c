"""Simulated people: a private chat of a user, a group, and what they can do."""

from __future__ import annotations

import mimetypes
from typing import TYPE_CHECKING, Any

from devtools.botapi_server.formatting import _command_entities
from devtools.botapi_server.records import (
    ChatRef,
    JSONDict,
    Predicate,
    QueuedUpdate,
    SentDocument,
    SentMessage,
    TranscriptEntry,
    buttons,
)
from devtools.botapi_server.state import _Chat

if TYPE_CHECKING:
    from devtools.botapi_server.server import BotAPIServer

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
