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

Layout
------
``records`` (what test authors read), ``faults``, ``formatting`` (parse modes and
entities), ``state`` (the server's internal chat state), ``people`` (simulated users and
groups), ``server`` (``BotAPIServer``: lifecycle, HTTP, the Bot API methods), ``cli``
(``python -m devtools.botapi_server``).

Standalone
----------
``python -m devtools.botapi_server --port 8081 [--token T] [--chat=ID[=LABEL] ...]``
(write ``--chat=-1001=coordinators`` with ``=`` for negative ids) prints the base URL
and serves until Ctrl-C, printing the transcript live. Simulated users can then be
driven with curl:
``curl -d user_id=1001 -d 'text=/start' http://127.0.0.1:8081/_sim/send``.
"""

from devtools.botapi_server.faults import Fault, FaultInjector
from devtools.botapi_server.people import SimChat, SimGroup, SimUser
from devtools.botapi_server.records import (
    DEFAULT_TOKEN,
    CallbackAnswer,
    FaultKind,
    QueuedUpdate,
    RequestRecord,
    SentDocument,
    SentMessage,
    TranscriptEntry,
    WebhookDelivery,
    buttons,
)
from devtools.botapi_server.records import Predicate as Predicate
from devtools.botapi_server.server import BotAPIServer

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
