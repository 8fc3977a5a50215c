"""A local, in-process Telegram Bot API server for tests, the demo and the benchmark.

The command line: serve until Ctrl-C, or measure throughput (``--bench``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence

from aiohttp import ClientSession

from devtools.botapi_server.records import DEFAULT_TOKEN
from devtools.botapi_server.server import BotAPIServer

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
