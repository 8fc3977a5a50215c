"""Tests for the local Bot API server, driven by the real python-telegram-bot over HTTP."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import warnings
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    ReplyParameters,
    Update,
)
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from devtools.botapi_server import BotAPIServer, buttons

LANGUAGES = InlineKeyboardMarkup(
    [[InlineKeyboardButton("বাংলা", callback_data="lang:bn"), InlineKeyboardButton("English", callback_data="lang:en")]]
)


@pytest.fixture
async def server() -> AsyncIterator[BotAPIServer]:
    async with BotAPIServer() as srv:
        yield srv


@pytest.fixture
async def bot(server: BotAPIServer) -> AsyncIterator[Bot]:
    async with server.make_bot() as b:
        yield b


# ---- basic methods --------------------------------------------------------------------


async def test_get_me_describes_the_bot_from_the_token(server: BotAPIServer, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == int(server.token.split(":")[0])
    assert me.is_bot and me.username == "ssc_trial_test_bot"
    assert me.can_join_groups is True


async def test_send_message_returns_a_full_message_and_is_recorded(server: BotAPIServer, bot: Bot) -> None:
    server.user(1001)
    group = server.group(-1001234567890, title="Coordinators")
    first = await bot.send_message(1001, "<b>Hello</b> & welcome", parse_mode="HTML", reply_markup=LANGUAGES)
    second = await bot.send_message(1001, "again")
    in_group = await bot.send_message(group.id, "alert")

    assert (first.message_id, second.message_id, in_group.message_id) == (1, 2, 1)
    assert first.text == "Hello & welcome"
    assert first.entities[0].type == "bold" and first.entities[0].length == 5
    assert first.from_user is not None and first.from_user.id == server.bot_id
    assert first.chat.type == "private" and in_group.chat.type == "supergroup"
    assert first.reply_markup == LANGUAGES
    stored = server.last_message(1001)
    assert stored.text == "again" and server.messages(1001)[0].button_texts == ["বাংলা", "English"]
    assert buttons(server.messages(1001)[0]) == [[("বাংলা", "lang:bn"), ("English", "lang:en")]]
    assert server.messages(1001)[0].source_text == "<b>Hello</b> & welcome"


async def test_edit_message_text_applies_the_edit_and_drops_the_keyboard(server: BotAPIServer, bot: Bot) -> None:
    server.user(1001)
    sent = await bot.send_message(1001, "Choose", reply_markup=LANGUAGES)
    edited = await bot.edit_message_text("Chosen: English", 1001, sent.message_id)
    assert isinstance(edited, type(sent)) and edited.edit_date is not None
    stored = server.last_message(1001)
    assert (stored.text, stored.edits, stored.reply_markup) == ("Chosen: English", 1, None)

    await bot.edit_message_reply_markup(1001, sent.message_id, reply_markup=LANGUAGES)
    assert server.last_message(1001).edits == 2
    assert server.last_message(1001).button_texts == ["বাংলা", "English"]


async def test_edit_with_identical_content_is_not_modified(server: BotAPIServer, bot: Bot) -> None:
    server.user(1001)
    sent = await bot.send_message(1001, "Same", reply_markup=LANGUAGES)
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("Same", 1001, sent.message_id, reply_markup=LANGUAGES)
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_reply_markup(1001, sent.message_id, reply_markup=LANGUAGES)
    assert server.last_message(1001).edits == 0


async def test_editing_an_unknown_message_is_not_found(server: BotAPIServer, bot: Bot) -> None:
    server.user(1001)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", 1001, 99)


@pytest.mark.parametrize(
    ("text", "error"),
    [("", "Message text is empty"), ("   \n ", "Message text is empty"), ("x" * 4097, "Message is too long")],
)
async def test_empty_and_too_long_text_are_rejected(server: BotAPIServer, bot: Bot, text: str, error: str) -> None:
    server.user(1001)
    with pytest.raises(BadRequest, match=error):
        await bot.send_message(1001, text)
    assert server.messages(1001) == []
    await bot.send_message(1001, "y" * 4096)  # the limit itself is fine
    assert len(server.last_message(1001).content) == 4096


async def test_malformed_markup_and_oversized_callback_data_are_rejected(server: BotAPIServer, bot: Bot) -> None:
    server.user(1001)
    with pytest.raises(BadRequest, match="Can't parse entities: unsupported start tag"):
        await bot.send_message(1001, "dose < 5 mg <x>", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)character '\.' is reserved"):
        await bot.send_message(1001, "*Dose* taken.", parse_mode="MarkdownV2")
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="d" * 65)]])
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(1001, "x", reply_markup=too_long)
    ok = await bot.send_message(1001, r"*Dose* taken\. 5 &lt; 6", parse_mode="MarkdownV2")
    assert ok.text == "Dose taken. 5 &lt; 6" and ok.entities[0].type == "bold"
    assert len(server.messages(1001)) == 1


async def test_unknown_chat_is_not_found(server: BotAPIServer, bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(4242, "hello?")
    user = server.user(4242)
    await user.send("hi")  # once the user wrote (or was registered), the chat exists
    assert (await bot.send_message(4242, "hello!")).chat.id == 4242


async def test_blocked_user_raises_forbidden_and_nothing_is_recorded(server: BotAPIServer, bot: Bot) -> None:
    user = server.user(1001)
    notice = user.block_bot()
    assert notice is not None and notice["my_chat_member"]["new_chat_member"]["status"] == "kicked"
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(1001, "reminder")
    assert server.messages(1001) == []
    user.unblock_bot()
    await bot.send_message(1001, "reminder")
    assert server.last_message(1001).text == "reminder"


async def test_unknown_method_is_a_clean_404(server: BotAPIServer, bot: Bot) -> None:
    with pytest.raises(EndPointNotFound, match="fooBar"):
        await bot.do_api_request("fooBar")
    assert server.requests[-1].method == "fooBar" and server.requests[-1].status == 404
    async with aiohttp.ClientSession() as http, http.get(f"{server.base_url}{server.token}/fooBar") as response:
        assert response.status == 404
        assert await response.json() == {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
    assert (await bot.get_me()).id == server.bot_id  # still serving


async def test_wrong_token_is_unauthorized(server: BotAPIServer) -> None:
    with pytest.raises(InvalidToken):
        async with Bot("999:wrong", base_url=server.base_url):
            pass


async def test_parameters_arrive_as_query_json_or_form(server: BotAPIServer) -> None:
    server.user(1001)
    markup = json.dumps({"inline_keyboard": [[{"text": "OK", "callback_data": "ok"}]]})
    api = f"{server.base_url}{server.token}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api}/SENDMESSAGE", params={"chat_id": "1001", "text": "[q]"}) as r:
            assert (await r.json())["result"]["text"] == "[q]"
        payload = {"chat_id": 1001, "text": "j", "reply_markup": markup}
        async with http.post(f"{api}/sendMessage", json=payload) as r:
            assert (await r.json())["result"]["reply_markup"]["inline_keyboard"][0][0]["text"] == "OK"
        async with http.post(f"{api}/sendMessage", data={"chat_id": "1001", "text": "f"}) as r:
            assert (await r.json())["ok"] is True
    assert [m.text for m in server.messages(1001)] == ["[q]", "j", "f"]
    assert server.requests[0].method == "sendMessage" and server.requests[0].http_method == "GET"


# ---- updates ----------------------------------------------------------------------------


async def test_long_poll_returns_promptly_when_an_update_arrives(server: BotAPIServer, bot: Bot) -> None:
    user = server.user(1001)
    loop = asyncio.get_running_loop()
    started = loop.time()
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await server.wait_for_poll()
    queued = await user.send("hello")
    updates = await poll
    assert loop.time() - started < 2
    assert [u.update_id for u in updates] == [queued.update_id]
    assert updates[0].message is not None and updates[0].message.text == "hello"


async def test_long_poll_returns_nothing_after_its_timeout(bot: Bot) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await bot.get_updates(timeout=1) == ()
    assert 0.9 <= loop.time() - started < 3


async def test_offset_confirms_and_forgets_earlier_updates(server: BotAPIServer, bot: Bot) -> None:
    user = server.user(1001)
    first, second, third = [await user.send(t) for t in ("a", "b", "c")]
    assert [u.update_id for u in await bot.get_updates()] == [first.update_id, second.update_id, third.update_id]
    assert [u.update_id for u in await bot.get_updates(limit=1)] == [first.update_id]
    assert [u.update_id for u in await bot.get_updates(offset=third.update_id)] == [third.update_id]
    assert await bot.get_updates(offset=third.update_id + 1) == ()
    assert server.pending_updates == []


async def test_duplicate_delivery_serves_the_same_update_again(server: BotAPIServer, bot: Bot) -> None:
    user = server.user(1001)
    queued = await user.send("/checkin")
    [update] = await bot.get_updates()
    assert await bot.get_updates(offset=update.update_id + 1) == ()
    server.redeliver(queued)
    [again] = await bot.get_updates(offset=update.update_id + 1)
    assert again.update_id == update.update_id and again.message == update.message


async def test_two_concurrent_long_polls_conflict(server: BotAPIServer, bot: Bot) -> None:
    older = asyncio.create_task(bot.get_updates(timeout=10))
    await server.wait_for_poll()
    async with server.make_bot() as second_instance:
        assert await second_instance.get_updates(timeout=0) == ()
    with pytest.raises(Conflict, match="terminated by other getUpdates request"):
        await older


async def test_webhook_receives_updates_with_the_secret_header_and_retries(server: BotAPIServer, bot: Bot) -> None:
    server.webhook_retry_delays = (0.01, 0.01)
    received: list[tuple[str | None, dict[str, Any]]] = []
    arrived = asyncio.Event()
    statuses = iter([500, 200, 200])

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json()))
        arrived.set()
        return web.Response(status=next(statuses))

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        assert await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cret")
        with pytest.raises(Conflict, match="webhook is active"):
            await bot.get_updates()
        queued = await server.user(1001).send("via webhook")
        while len(server.webhook_deliveries) < 2:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 5)
        assert [d.status for d in server.webhook_deliveries] == [500, 200]
        assert received[-1] == ("s3cret", dict(queued))
        info = await bot.get_webhook_info()
        assert info.url.endswith("/hook") and info.pending_update_count == 0
        assert info.last_error_message is not None and "500" in info.last_error_message
        assert await bot.delete_webhook()
        later = await server.user(1001).send("via polling")
        assert [u.update_id for u in await bot.get_updates()] == [later.update_id]
    finally:
        await runner.cleanup()


# ---- files and commands -----------------------------------------------------------------


async def test_send_document_round_trip(server: BotAPIServer, bot: Bot) -> None:
    server.group(-1001, title="Data manager")
    content = b"study_id,week\nBSM-001,4\n"
    message = await bot.send_document(-1001, content, filename="export.csv", caption="<b>Export</b>", parse_mode="HTML")
    assert message.document is not None and message.document.file_name == "export.csv"
    assert message.caption == "Export"
    [document] = server.documents(-1001)
    assert (document.filename, document.content, document.caption) == ("export.csv", content, "Export")
    assert document.mime_type == "text/csv"
    file = await bot.get_file(message.document.file_id)
    assert bytes(await file.download_as_bytearray()) == content

    user = server.user(1001)
    upload = await user.send_document("labs.pdf", b"%PDF-1.4 labs")
    assert upload.message is not None
    user_file = await bot.get_file(upload.message["document"]["file_id"])
    assert bytes(await user_file.download_as_bytearray()) == b"%PDF-1.4 labs"


async def test_a_users_photo_and_voice_are_served_and_sent_on_by_file_id_as_replies(
    server: BotAPIServer, bot: Bot
) -> None:
    server.group(-1001, title="Coordinators")
    alert = await bot.send_message(-1001, "URGENT · BSM-001")
    user = server.user(1001)
    photo = await user.send_photo(content=b"\xff\xd8photo-bytes", media_group_id="g1")
    voice = await user.send_voice(content=b"OggS-voice-bytes")
    assert photo.message is not None and voice.message is not None
    assert photo.message["media_group_id"] == "g1"
    photo_id = photo.message["photo"][-1]["file_id"]
    voice_id = voice.message["voice"]["file_id"]
    file = await bot.get_file(photo_id)
    assert bytes(await file.download_as_bytearray()) == b"\xff\xd8photo-bytes"

    reply = ReplyParameters(alert.message_id)
    sent_photo = await bot.send_photo(-1001, photo_id, caption="BSM-001 photo", reply_parameters=reply)
    sent_voice = await bot.send_voice(-1001, voice_id, caption="BSM-001 voice", reply_parameters=reply)
    assert sent_photo.reply_to_message is not None and sent_photo.reply_to_message.message_id == alert.message_id
    assert sent_voice.voice is not None and sent_voice.caption == "BSM-001 voice"
    group = await bot.send_media_group(-1001, [InputMediaPhoto(photo_id), InputMediaPhoto(photo_id, caption="2")])
    assert len(group) == 2 and group[0].media_group_id == group[1].media_group_id is not None
    kinds = [(m.kind, m.caption, m.reply_to, m.content) for m in server.media(-1001)]
    assert kinds[:2] == [
        ("photo", "BSM-001 photo", alert.message_id, b"\xff\xd8photo-bytes"),
        ("voice", "BSM-001 voice", alert.message_id, b"OggS-voice-bytes"),
    ]
    assert [k[0] for k in kinds[2:]] == ["photo", "photo"] and server.media(-1001)[3].media_group_id is not None
    with pytest.raises(BadRequest, match=r"(?i)wrong file identifier"):
        await bot.send_voice(-1001, "no-such-file")


async def test_a_download_fault_fails_the_next_download_only(server: BotAPIServer, bot: Bot) -> None:
    user = server.user(1001)
    update = await user.send_voice(content=b"OggS-voice")
    assert update.message is not None
    file = await bot.get_file(update.message["voice"]["file_id"])
    server.faults.add("download", "500")
    with pytest.raises(NetworkError):
        await file.download_as_bytearray()
    assert bytes(await file.download_as_bytearray()) == b"OggS-voice"
    assert [(r.method, r.fault) for r in server.requests if r.method == "download"] == [
        ("download", "500"),
        ("download", None),
    ]


async def test_commands_are_stored_per_scope_and_language(server: BotAPIServer, bot: Bot) -> None:
    participant = [BotCommand("checkin", "Symptom check-in"), BotCommand("help", "Help")]
    admin = [BotCommand("status", "Participant status")]
    await bot.set_my_commands(participant, scope=BotCommandScopeAllPrivateChats())
    await bot.set_my_commands([BotCommand("help", "সাহায্য")], scope=BotCommandScopeAllPrivateChats(), language_code="bn")
    await bot.set_my_commands(admin, scope=BotCommandScopeChat(42))

    assert [c["command"] for c in server.commands("all_private_chats")] == ["checkin", "help"]
    assert server.commands("all_private_chats", "bn") == [{"command": "help", "description": "সাহায্য"}]
    assert server.commands({"type": "chat", "chat_id": 42}) == [
        {"command": "status", "description": "Participant status"}
    ]
    assert server.commands() == []
    assert await bot.get_my_commands(scope=BotCommandScopeChat(42)) == tuple(admin)
    await bot.delete_my_commands(scope=BotCommandScopeChat(42))
    assert server.commands({"type": "chat", "chat_id": 42}) == []
    with pytest.raises(BadRequest, match="Bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Bad-Command", "x")])


# ---- faults -------------------------------------------------------------------------------


@pytest.mark.logs_errors("Can not load invalid JSON data")  # PTB on the injected 502 page
@pytest.mark.parametrize(
    ("kind", "expected"),
    [("500", NetworkError), ("502", NetworkError), ("close", NetworkError), ("timeout", TimedOut)],
)
async def test_faults_surface_as_ptb_errors_and_record_nothing(
    server: BotAPIServer, bot: Bot, kind: Any, expected: type[Exception]
) -> None:
    server.user(1001)
    server.faults.add("sendMessage", kind, delay=5)
    with pytest.raises(expected):
        await bot.send_message(1001, "dose reminder", read_timeout=0.3)
    assert server.messages(1001) == []
    assert server.requests[-1].fault == kind and not server.faults.pending
    await bot.send_message(1001, "dose reminder")  # the fault was consumed
    assert [m.text for m in server.messages(1001)] == ["dose reminder"]


async def test_flood_fault_raises_retry_after_with_the_given_delay(server: BotAPIServer, bot: Bot) -> None:
    server.user(1001)
    server.user(1002)
    server.faults.add("sendMessage", "429", retry_after=7, chat_id=1002, times=2)
    await bot.send_message(1001, "other chat is unaffected")
    for _ in range(2):
        with pytest.raises(RetryAfter) as caught, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await bot.send_message(1002, "x")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            delay = caught.value.retry_after
        seconds = delay.total_seconds() if isinstance(delay, dtm.timedelta) else delay
        assert seconds == 7
    assert server.messages(1002) == [] and len(server.messages(1001)) == 1
    assert server.faults.fired == [("sendMessage", "429"), ("sendMessage", "429")]


# ---- test-author helpers -------------------------------------------------------------------


async def test_wait_for_timeout_lists_what_the_chat_received(server: BotAPIServer, bot: Bot) -> None:
    user = server.user(1001)
    server.label(1001, "participant BSM-001")
    await user.send("/start")
    await bot.send_message(1001, "Choose a language", reply_markup=LANGUAGES)
    with pytest.raises(AssertionError) as caught:
        await server.wait_for(1001, "Welcome", timeout=0.2)
    report = str(caught.value)
    assert "'Welcome'" in report and "participant BSM-001" in report
    assert "Choose a language" in report and "[বাংলা] [English]" in report
    assert "[participant BSM-001] /start" in report


async def test_wait_for_wakes_on_the_bots_message(server: BotAPIServer, bot: Bot) -> None:
    user = server.user(1001)
    mark = await user.send("/help")
    waiting = asyncio.create_task(user.expect("study phone"))
    await bot.send_message(1001, "Call the study phone: 01700")
    [reply] = await waiting
    assert reply.text == "Call the study phone: 01700"
    assert await server.wait_for(1001, since=mark) == [reply]
    assert await server.wait_for(1001, lambda m: m.edits == 0, count=1) == [reply]


async def test_transcript_reads_like_a_conversation(server: BotAPIServer, bot: Bot) -> None:
    user = server.user(1001)
    server.group(-100777, title="Coordinators", label="coordinator chat")
    await user.send("/start ABC")
    welcome = await bot.send_message(1001, "Welcome! Choose:", reply_markup=LANGUAGES)
    pressed = await user.press(welcome, "English")
    assert pressed.callback_query_id is not None
    await bot.answer_callback_query(pressed.callback_query_id, "Saved")
    await bot.send_message(-100777, "New participant linked")
    assert server.format_transcript().splitlines() == [
        "[participant 1001] /start ABC",
        "[bot → participant 1001] Welcome! Choose:",
        "    [বাংলা] [English]",
        '[participant 1001] ⟨presses "English"⟩',
        "[bot → participant 1001] ⟨answers the button: Saved⟩",
        "[bot → coordinator chat] New participant linked",
    ]
    assert server.callback_answer(pressed) is not None
    assert server.format_transcript(-100777) == "[bot → coordinator chat] New participant linked"


async def test_user_actions_become_the_updates_telegram_would_send(server: BotAPIServer, bot: Bot) -> None:
    user = server.user(1001, "Rahima", language_code="bn")
    group = server.group(-1001234567890, title="Coordinators")
    command = await user.send("/start@ssc_trial_test_bot CODE42")
    edited = await user.edit(command, "/start CODE43")
    photo = await user.send_photo("my hands")
    in_group = await group.send(user, "hello group")
    raw = server.push_update(
        {
            "message": {
                "message_id": 7,
                "date": 0,
                "text": "from a stranger",
                "chat": {"id": 5005, "type": "private", "first_name": "S"},
                "from": {"id": 5005, "is_bot": False, "first_name": "S"},
            }
        }
    )

    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == [q.update_id for q in (command, edited, photo, in_group, raw)]
    first = updates[0].message
    assert first is not None and first.entities[0].type == "bot_command"
    assert first.entities[0].length == len("/start@ssc_trial_test_bot")
    assert first.from_user is not None and first.from_user.language_code == "bn"
    assert updates[1].edited_message is not None
    assert updates[1].edited_message.text == "/start CODE43"
    assert updates[2].message is not None and updates[2].message.caption == "my hands"
    assert len(updates[2].message.photo) == 2
    assert updates[3].message is not None and updates[3].message.chat.type == "supergroup"
    assert (await bot.send_message(5005, "hi")).chat.id == 5005  # the stranger's chat now exists

    sent = await bot.send_message(1001, "Pick", reply_markup=LANGUAGES)
    press = await user.press(sent.message_id, "lang:en")  # by callback_data and message id
    [update] = await bot.get_updates(offset=updates[-1].update_id + 1)
    assert update.callback_query is not None and update.callback_query.data == "lang:en"
    assert update.callback_query.id == press.callback_query_id
    with pytest.raises(AssertionError, match="no button 'Deutsch'"):
        await user.press(sent, "Deutsch")


async def test_parse_modes_give_plain_text_and_utf16_entities(server: BotAPIServer, bot: Bot) -> None:
    server.user(1001)
    html = await bot.send_message(1001, '🎉 <b>ডোজ</b> <a href="https://example.org">link</a>', parse_mode="HTML")
    assert html.text == "🎉 ডোজ link"
    assert [(e.type, e.offset, e.length) for e in html.entities] == [("bold", 3, 3), ("text_link", 7, 4)]
    md = await bot.send_message(1001, r"_Dose_ at 08:00\. \(weekly\)", parse_mode="MarkdownV2")
    assert md.text == "Dose at 08:00. (weekly)" and md.entities[0].type == "italic"
    assert server.last_message(1001).source_text == r"_Dose_ at 08:00\. \(weekly\)"


# ---- a real Application over long polling ---------------------------------------------------


async def test_application_echoes_and_handles_a_button_press(server: BotAPIServer) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(f"code={','.join(context.args or [])}", reply_markup=LANGUAGES)

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None and update.effective_message.text
        await update.effective_message.reply_text(f"echo: {update.effective_message.text}")

    async def choose(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("Saved")
        await query.edit_message_text(f"Language: {query.data}")

    app = server.app_builder().build()
    app.add_handler(CommandHandler("start", start))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    app.add_handler(CallbackQueryHandler(choose))
    user = server.user(1001, "Rahima", language_code="bn")

    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0, timeout=1)
    try:
        await user.send("/start BSM001")
        [menu] = await user.expect("code=BSM001")
        assert menu.button_texts == ["বাংলা", "English"]

        await user.send("hello")
        [echoed] = await user.expect()
        assert echoed.text == "echo: hello"

        press = await user.press(menu, "lang:bn")
        [changed] = await user.expect()
        assert changed.message_id == menu.message_id and changed.text == "Language: lang:bn"
        answer = server.callback_answer(press)
        assert answer is not None and answer.text == "Saved"
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
    assert server.pending_updates == []  # the final getUpdates confirmed everything
