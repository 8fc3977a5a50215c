"""The Application's wiring: menus advertise only what exists, errors never stop
the bot, logs carry no secrets or personal data."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import weakref
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from telegram.ext import CommandHandler

from bot.app import build_application
from bot.commands import ADMIN_COMMANDS, PARTICIPANT_COMMANDS
from bot.i18n import _, use_locale
from bot.logs import CAPPED, RedactFilter, setup_logging
from bot.services import build_services
from core.clock import SystemClock
from core.settings import Settings
from devtools.botapi_server import BotAPIServer, QueuedUpdate, SentMessage, SimUser
from devtools.harness import COORDINATOR_CHAT, TOKEN, BotHarness
from models import Language, Participant, ProcessedUpdate, QuestionnaireAnswer
from models.db import claim_new
from tests.bothelpers import enroll, eventually, link, says
from tests.conftest import Figures
from tests.test_questionnaire_flow import callback_text, statements


async def test_every_menu_command_has_a_handler() -> None:
    settings = Settings(
        _env_file=None,
        telegram_bot_token=TOKEN,
        database_url="sqlite+aiosqlite://",
        coordinator_chat_ids=[-1001],
        escalation_chat_ids=[-1002],
        study_contact_phone="+8801711000000",
    )
    services = build_services(settings, SystemClock())
    app = build_application(services)
    handled = {
        command
        for group in app.handlers.values()
        for handler in group
        if isinstance(handler, CommandHandler)
        for command in handler.commands
    }
    menu = {name for name, _ in PARTICIPANT_COMMANDS + ADMIN_COMMANDS}
    assert menu <= handled, f"menu lists commands without a handler: {sorted(menu - handled)}"
    await services.engine.dispose()


@pytest.mark.logs_errors("error while handling update")
async def test_a_failing_handler_rolls_back_apologises_and_the_bot_keeps_serving(
    bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = await enroll(server, "BSM-020 A 2026-10-25 en")
    user = server.user(2001)
    await link(server, user, code, "English")

    from bot.handlers import participant as handlers

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(handlers.participants, "set_language", broken)
    prompt = await says(server, user, "/language", "Which language")
    update = await user.press(prompt, "বাংলা")
    await server.wait_for(2001, "Sorry, something went wrong", since=update)
    monkeypatch.undo()
    # still serving, and the language did not change
    reply = await says(server, user, "/help", "/language")
    assert "Your medicine" in reply.content


def _language_change_meets_a_stored_row(monkeypatch: pytest.MonkeyPatch, bot: BotHarness, update_id: int) -> None:
    """From now on a language change also stores update ``update_id`` (already stored): the
    handler's changes meet that row's unique key at the commit, as rows another process
    stored meanwhile would."""
    from bot.handlers import participant as handlers

    set_language = handlers.participants.set_language

    async def conflicting(session: AsyncSession, *args: object, **kwargs: object) -> None:
        await set_language(session, *args, **kwargs)  # type: ignore[arg-type]
        session.add(ProcessedUpdate(update_id=update_id, processed_at=bot.clock.now(), outcome="ok"))

    monkeypatch.setattr(handlers.participants, "set_language", conflicting)


@pytest.mark.logs_errors("its changes met rows stored meanwhile")
async def test_changes_that_meet_a_unique_key_at_the_commit_roll_back_and_apologise(
    bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler's rows that conflict, at the commit, with rows stored meanwhile (another
    process's, in a deployment of several) fail the update as a raising handler does:
    nothing kept, the update stored as failed, the participant asked, in their language,
    to try again. It used to be taken for the same update stored by another process, and
    dropped without a word."""
    code = await enroll(server, "BSM-021 A 2026-10-25 bn")
    user = server.user(2002)
    await link(server, user, code, "বাংলা")
    earlier = await user.send("/help")
    await server.wait_for(2002, None, since=earlier)

    _language_change_meets_a_stored_row(monkeypatch, bot, earlier.update_id)
    asked = await user.send("/language")
    prompt = (await server.wait_for(2002, lambda m: "English" in m.button_texts, since=asked))[0]
    pressed = await user.press(prompt, "English")
    with use_locale("bn"):
        apology = _(
            "Sorry, something went wrong on our side. Please try again in a minute. Your earlier answers are safe."
        )
    await server.wait_for(2002, apology, since=pressed)
    assert bot.services is not None
    async with bot.services.sessions() as session:
        stored = await session.get(ProcessedUpdate, pressed.update_id)
        participant = await session.scalar(select(Participant).where(Participant.study_id == "BSM-021"))
    assert stored is not None and stored.outcome == "error"
    assert participant is not None and participant.language is Language.BN  # the change was rolled back


@pytest.mark.logs_errors("its changes met rows stored meanwhile")
async def test_an_update_stored_elsewhere_while_its_conflict_is_rolled_back_sends_nothing(
    bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race behind the conflict above: between the rollback and the commit of the
    update stored as failed, another process stores the same update. Theirs stands, and
    ours sends nothing, not even the apology (they answered the participant)."""
    from sqlalchemy import event, insert
    from sqlalchemy.orm import Session

    code = await enroll(server, "BSM-022 A 2026-10-25 en")
    user = server.user(2003)
    await link(server, user, code, "English")
    earlier = await user.send("/help")
    await server.wait_for(2003, "/language", since=earlier)

    assert bot.services is not None
    engine = bot.services.engine.sync_engine
    stored_elsewhere: list[int] = []

    def another_process_stores_it(session: Session) -> None:
        for row in list(session.new):
            if isinstance(row, ProcessedUpdate) and row.outcome == "error" and not stored_elsewhere:
                with engine.connect() as other:  # its own connection and transaction
                    values = {"update_id": row.update_id, "processed_at": row.processed_at, "outcome": "ok"}
                    other.execute(insert(ProcessedUpdate).values(values))
                    other.commit()
                stored_elsewhere.append(row.update_id)

    _language_change_meets_a_stored_row(monkeypatch, bot, earlier.update_id)
    event.listen(Session, "before_commit", another_process_stores_it)
    try:
        prompt = await says(server, user, "/language", "Which language")
        pressed = await user.press(prompt, "বাংলা")
        await eventually(lambda: _true(bool(stored_elsewhere)), 10, "the other process to store the update")
    finally:
        event.remove(Session, "before_commit", another_process_stores_it)
    monkeypatch.undo()
    reply = await says(server, user, "/help", "/language")  # the chat's updates go in order: the press is done
    assert "Your medicine" in reply.content  # still English: ours was rolled back
    assert stored_elsewhere == [pressed.update_id]
    assert not [m for m in server.messages(2003) if m.seq > pressed.seq and "Sorry" in m.content]
    async with bot.services.sessions() as session:
        stored = await session.get(ProcessedUpdate, pressed.update_id)
    assert stored is not None and stored.outcome == "ok"  # theirs


async def _true(value: bool) -> bool:
    return value


@pytest.fixture
def production_logging() -> Iterator[io.StringIO]:
    """The bot's own logging set-up (as `python -m bot` does) at DEBUG, captured."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in CAPPED})
    stream = io.StringIO()
    setup_logging([TOKEN], level=logging.DEBUG, stream=stream)
    yield stream
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


async def test_logs_carry_no_token_and_no_personal_data(
    production_logging: io.StringIO, bot: BotHarness, server: BotAPIServer
) -> None:
    code = await enroll(server, "BSM-021 B 2026-10-25 bn fri")
    user = server.user(2002, "Nasrin", last_name="Akter", language_code="bn")
    await link(server, user, code)
    await says(server, user, "my free text answer about my rash", "বুঝতে পারিনি")
    text = production_logging.getvalue()
    assert "serving with long polling" in text  # the bot did log through this handler
    assert TOKEN.split(":", 1)[1] not in text
    for personal in ("Nasrin", "Akter", "free text answer", code):
        assert personal not in text


async def _type_at(server: BotAPIServer, user: SimUser, item: str, text: str) -> SentMessage:
    """Answer with "no" (or the first choice) up to the free-text question ``item``, type
    ``text`` there; returns the bot's next question or closing message."""
    from tests.test_questionnaire_flow import THANKS, is_question, latest_question, press_value, q_item

    message = latest_question(server, user)
    while q_item(message) != item:
        assert is_question(message), message.content
        values = [data.split(":", 3)[3] for row in message.buttons for _t, data in row if data]
        value = "no" if "no" in values else ("other" if item == "ae_what_other" and "other" in values else values[0])
        message = await press_value(server, user, message, value)
    update = await user.send(text)
    found = await server.wait_for(
        user.id, lambda m: is_question(m) or any(t in m.content for t in THANKS), since=update
    )
    return found[0]


async def test_logs_carry_no_questionnaire_or_report_free_text(
    production_logging: io.StringIO, bot: BotHarness, server: BotAPIServer
) -> None:
    """The free text of a check-in ("anything else") and of a problem report (what the
    problem is, what else the doctor should know) is stored, and never logged."""
    from tests.test_questionnaire_flow import is_question, linked

    private = ("my husband hit me last week", "I stopped the tablets in secret", "bleeding since Friday night")
    user = await linked(server, "BSM-022", "A", 2003, "en")
    await says(server, user, "/checkin", is_question)
    closing = await _type_at(server, user, "anything_else", private[0])
    assert "Thank you" in closing.content
    await says(server, user, "/report", is_question)
    await _type_at(server, user, "ae_what_other", private[1])
    closing = await _type_at(server, user, "ae_more", private[2])  # the report's last question
    assert "Thank you" in closing.content
    assert bot.services is not None
    async with bot.services.sessions() as session:
        stored = set(await session.scalars(select(QuestionnaireAnswer.value)))
    assert set(private) <= stored  # the answers did reach the bot, and were kept
    text = production_logging.getvalue()
    assert "serving with long polling" in text  # the bot did log through this handler
    for phrase in private:
        assert phrase not in text


def test_the_redaction_filter_masks_a_secret_anywhere_in_a_record() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactFilter(["s3cret"]))
    logger = logging.getLogger("test.redact")
    logger.addHandler(handler)
    logger.warning("calling %s/getMe", "https://api/bots3cret")
    logger.removeHandler(handler)
    assert "s3cret" not in stream.getvalue() and "https://api/bot***/getMe" in stream.getvalue()


async def test_a_reply_hit_by_bot_api_errors_is_retried_until_it_arrives(
    bot: BotHarness, server: BotAPIServer, figures: Figures
) -> None:
    code = await enroll(server, "BSM-022 A 2026-10-25 en")
    user = server.user(2003)
    await link(server, user, code, "English")
    for kind in ("500", "502", "close", "timeout"):
        server.faults.add(method="sendMessage", kind=kind, times=1, chat_id=2003, delay=0.2)
        reply = await says(server, user, "/help", "/language")
        assert "Your medicine" in reply.content, kind
    assert not server.faults.pending
    figures.add("Bot API faults injected into replies (500, 502, closed, timed out)", 4)


# --- Updates of different chats are handled concurrently, each chat's in order --------


async def test_a_participant_on_a_slow_connection_does_not_hold_up_the_others(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """Two people write at the same moment (one batch of getUpdates); the reply to the
    first hangs for 3 s (then the connection drops and it is sent again). The second is
    answered meanwhile: updates of different chats do not wait for each other."""
    slow = server.user(5101, "Slow", language_code="en")
    quick = server.user(5102, "Quick", language_code="en")
    server.faults.add("sendMessage", "timeout", chat_id=slow.id, delay=3.0)
    first = await slow.send("/help")
    second = await quick.send("/help")  # no await in between that yields: one batch
    await server.wait_for(quick.id, lambda m: True, since=second, timeout=2.0)
    assert not server.messages(slow.id), "the slow reply should still be hanging"
    await server.wait_for(slow.id, lambda m: True, since=first, timeout=15)  # sent again after the drop


async def test_one_chats_updates_are_handled_in_the_order_they_were_sent(bot: BotHarness, server: BotAPIServer) -> None:
    """Five /enroll commands sent at once by the admin, with another chat's update in
    the same batch: the admin's are applied and answered in order."""
    from devtools.harness import ADMIN_ID

    admin = server.user(ADMIN_ID, "Admin", language_code="en", label="admin")
    other = server.user(5103, "Other", language_code="en")
    sent = []
    for i in range(5):
        sent.append(await admin.send(f"/enroll BSM-{410 + i} A 2026-10-25 en"))
        if i == 2:
            await other.send("/help")
    replies = await server.wait_for(ADMIN_ID, "One-time code", since=sent[0], count=5, timeout=30)
    order = [next(f"BSM-{410 + i}" for i in range(5) if f"BSM-{410 + i}" in r.content) for r in replies]
    assert order == [f"BSM-{410 + i}" for i in range(5)]


def _answers(server: BotAPIServer, press: QueuedUpdate) -> int:
    """answerCallbackQuery calls for one press, refused ones included."""
    query_id = press.callback_query_id
    return sum(
        1
        for r in server.requests
        if r.method == "answerCallbackQuery" and str(r.params.get("callback_query_id")) == str(query_id)
    )


async def test_every_press_is_answered_exactly_once_by_its_handler_or_after_the_commit(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """The spinner on a participant's phone stops once: a handler that answers the press
    is not answered again, and a press no handler answers (here, from a group the bot
    does not serve, which the gate leaves) is answered by the unit of work after its
    commit. A message, which has no press, gets no answer (and no failed one)."""
    code = await enroll(server, "BSM-030 A 2026-10-25 en")
    user = server.user(2030, language_code="en")
    await link(server, user, code, "English")
    prompt = await says(server, user, "/language", "Which language")
    button = prompt.buttons[0][0][1]
    handled = await user.press(prompt, "English")
    await says(server, user, "/help", "/language")  # in order: the press is done
    assert _answers(server, handled) == 1
    answer = server.callback_answer(handled)
    assert answer is not None and answer.text == "Saved"

    group = server.group(-5_030, title="Not a team chat")
    stranger = server.user(66_000_030, "S", language_code="en")
    query_id = server._new_query_id(group.id, stranger.id)
    forged = server.push_update(
        {
            "callback_query": {
                "id": query_id,
                "from": stranger.user_dict,
                "message": {**prompt.raw, "chat": {"id": group.id, "type": "group", "title": "Not a team chat"}},
                "chat_instance": "1",
                "data": button,
            }
        }
    )

    async def answered() -> bool:
        return server.callback_answer(forged) is not None

    await eventually(answered, 5, "the unit of work to answer the unhandled press")
    await says(server, user, "/help", "/language")
    assert _answers(server, forged) == 1 and not group.bot_is_member

    # A participant's button pressed in the team's chat belongs to no participant there.
    member = server.user(66_000_031, "C", language_code="en")
    in_team_chat = server.push_update(
        {
            "callback_query": {
                "id": server._new_query_id(COORDINATOR_CHAT, member.id),
                "from": member.user_dict,
                "message": {**prompt.raw, "chat": {"id": COORDINATOR_CHAT, "type": "supergroup", "title": "C"}},
                "chat_instance": "2",
                "data": button,
            }
        }
    )
    assert "no longer active" in await callback_text(server, in_team_chat)
    assert _answers(server, in_team_chat) == 1 and server.messages(COORDINATOR_CHAT) == []
    assert not any(r.method == "answerCallbackQuery" and r.status != 200 for r in server.requests)


async def test_replies_go_in_the_participants_language_or_else_the_phones(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """A linked participant is answered in the language they chose, whatever their
    phone's; someone not linked (here, editing a message: the one reply to a stranger
    that is not in both languages), in their phone's: Bangla for "bn", else English."""
    code = await enroll(server, "BSM-031 A 2026-10-25 en")
    chose_english = server.user(2031, language_code="bn")
    await link(server, chose_english, code, "English")
    sent = await chose_english.send("hello")
    await chose_english.edit(sent, "hello again")
    await server.wait_for(2031, "Edits are not read. Please send your message again.")
    for user_id, phone, expected in [
        (2032, "en", "Edits are not read. Please send your message again."),
        (2033, "bn", "এডিট করা মেসেজ পড়া হয় না। দয়া করে মেসেজটি আবার পাঠান।"),
        (2034, None, "Edits are not read. Please send your message again."),
    ]:
        stranger = server.user(user_id, language_code=phone)
        await stranger.edit(await stranger.send("hello"), "hello again")
        await server.wait_for(user_id, expected)


async def test_an_update_without_a_chat_is_stored_as_handled_and_changes_nothing(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """The bot asks Telegram for every update type; one without a chat (an inline query:
    the bot offers none) is recorded as processed, so it is confirmed and not delivered
    again, and nobody is answered."""
    stranger = server.user(66_000_032, "Q", language_code="en")
    pushed = server.push_update(
        {"inline_query": {"id": "77", "from": stranger.user_dict, "query": "dose", "offset": ""}}
    )

    async def processed() -> bool:
        assert bot.services is not None
        async with bot.services.sessions() as session:
            return await session.get(ProcessedUpdate, pushed.update_id) is not None

    await eventually(processed, 5, "the inline query recorded as processed")
    assert server.messages(stranger.id) == []


async def test_an_update_without_a_sender_is_stored_as_handled_and_changes_nothing(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """A channel's post has a chat but no sender: it is recorded as processed (confirmed,
    not delivered again) and nothing is sent."""
    channel = {"id": -100_777, "type": "channel", "title": "Some channel"}
    pushed = server.push_update({"channel_post": {"message_id": 1, "date": 0, "chat": channel, "text": "hello"}})

    async def processed() -> bool:
        assert bot.services is not None
        async with bot.services.sessions() as session:
            return await session.get(ProcessedUpdate, pushed.update_id) is not None

    await eventually(processed, 5, "the channel post recorded as processed")
    assert not any(r.method == "sendMessage" and r.params.get("chat_id") == -100_777 for r in server.requests)


async def test_an_ordinary_update_is_one_pass_and_runs_no_alert_tick(
    bot: BotHarness, server: BotAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An update that raised no alert costs its own transaction only: no alert tick after
    it (that runs within seconds only when the update raised one), and no second pass
    over its update id once it is stored."""
    caplog.set_level(logging.INFO, logger="bot.app")
    code = await enroll(server, "BSM-033 A 2026-10-25 en")
    user = server.user(2035, language_code="en")
    await link(server, user, code, "English")
    with statements(bot) as seen:
        first = await says(server, user, "/help", "/language")
        await says(server, user, "/help", "/language")  # in order: the first is done, whatever follows it
    assert not [s for s, _p in seen if "alert_deliveries" in s], "an alert tick ran"
    assert not [r for r in caplog.records if "already processed" in r.getMessage()]
    assert first.content


LOCK_WAITS = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"


async def test_an_update_id_is_claimed_once_and_freed_by_a_rollback(bot: BotHarness, server: BotAPIServer) -> None:
    """The unit of work's first statement stores the update id (`claim_new`): a second claim
    of the same id fails once the first is committed, and a claim rolled back (a handler
    failed, the database went away) leaves the id free for the next attempt. On PostgreSQL
    a claim made while another transaction holds the same id waits for that transaction,
    then finds the id taken if it committed and free if it rolled back: two processes
    never both handle one update."""
    assert bot.services is not None
    sessions = bot.services.sessions

    def row(update_id: int) -> dict[str, object]:
        return {"update_id": update_id, "processed_at": bot.clock.now(), "outcome": "ok"}

    async def claim(update_id: int, commit: bool) -> bool:
        async with sessions() as session:
            claimed = await claim_new(session, ProcessedUpdate, row(update_id), ("update_id",))
            await (session.commit() if commit else session.rollback())
            return claimed

    assert await claim(9_000_001, commit=False)
    assert await claim(9_000_001, commit=True)  # the rollback left it free
    assert not await claim(9_000_001, commit=True)
    if not bot.database_url.startswith("postgresql"):
        return  # SQLite: one writer at a time (Services.one_writer), nothing to wait for
    for first_commits in (True, False):
        update_id = 9_000_002 + first_commits
        async with sessions() as first:
            assert await claim_new(first, ProcessedUpdate, row(update_id), ("update_id",))
            second = asyncio.create_task(claim(update_id, commit=True))

            async def waiting() -> bool:
                async with sessions() as probe:
                    found = await probe.scalar(text(LOCK_WAITS))
                return bool(found)

            await eventually(waiting, 10, "the second claim to wait for the first transaction")
            assert not second.done()
            await (first.commit() if first_commits else first.rollback())
        assert await second is not first_commits


async def test_a_burst_of_updates_opens_each_database_connection_once(bot: BotHarness, server: BotAPIServer) -> None:
    """40 people write at the same moment: the updates in progress (16 at once) and the
    ticks use connections the pool keeps, each opened once. With SQLAlchemy's default
    pool of 5 every update beyond the fifth opened a PostgreSQL connection and closed it
    again (connecting was 8 % of the CPU of a burst of answers)."""
    from sqlalchemy import event

    from bot.app import CONCURRENT_UPDATES
    from models.db import POOL_SIZE

    assert bot.services is not None
    if not bot.database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite's pool is its one file")
    assert POOL_SIZE >= CONCURRENT_UPDATES + 3  # the transactions, the message ids, the dispatcher, the alerts
    opened: list[object] = []
    engine = bot.services.engine.sync_engine
    event.listen(engine, "connect", lambda connection, record: opened.append(connection))
    users = [server.user(6200 + i, f"P{i}", language_code="en") for i in range(40)]
    sent = [await user.send("/help") for user in users]
    for user, update in zip(users, sent, strict=True):
        await server.wait_for(user.id, lambda m: True, since=update, timeout=10)
    assert opened, "the burst used no new connection at all: nothing measured"
    assert len(opened) <= CONCURRENT_UPDATES + 1  # one each, kept (the default pool: 21 to 24 here)


async def test_replies_on_their_way_do_not_hold_up_other_chats_updates(bot: BotHarness, server: BotAPIServer) -> None:
    """Telegram slow to answer (every reply held here): the updates of more chats than
    CONCURRENT_UPDATES are all handled and committed while the replies wait. The slots
    bound the transactions, not the round trips after them: holding a slot through an
    answer's two replies capped a burst at 16 answers per two round trips (82 answers/s
    at 80 ms in the benchmark)."""
    from bot.app import CONCURRENT_REPLIES, CONCURRENT_UPDATES

    assert bot.services is not None
    users = [server.user(6400 + i, f"P{i}", language_code="en") for i in range(CONCURRENT_UPDATES + 8)]
    assert len(users) <= CONCURRENT_REPLIES
    release = asyncio.Event()
    server.faults.add("sendMessage", "timeout", times=len(users), until=release)  # then dropped: sent again
    sent = [await user.send("/help") for user in users]
    ids = [update.update_id for update in sent]

    async def all_stored() -> bool:
        assert bot.services is not None
        async with bot.services.sessions() as session:
            stored = await session.scalars(select(ProcessedUpdate.update_id).where(ProcessedUpdate.update_id.in_(ids)))
            return len(stored.all()) == len(ids)

    try:
        await eventually(all_stored, 10, f"{len(ids)} updates stored while their replies are held")
        assert not any(server.messages(user.id) for user in users)
    finally:
        release.set()
    for user, update in zip(users, sent, strict=True):
        await server.wait_for(user.id, None, since=update, timeout=10)


class _Node:
    """An object that can point at itself: a reference cycle only the collector frees."""

    self: _Node | None = None


async def test_a_bot_served_as_in_production_collects_then_freezes_what_starting_made(
    server: BotAPIServer, db_url: str
) -> None:
    """`python -m bot` serves with the heap settled (`bot.runner.settle_heap`): the
    garbage collector's passes no longer walk what starting made (15 % of a burst of
    answers), what starting left as garbage is collected first, and the bot serves as
    before. The suite's own bots do not freeze (`BotHarness.freeze_heap`)."""
    assert gc.get_freeze_count() == 0
    harness = BotHarness(server, db_url, freeze_heap=True)
    gc.disable()  # from here only settle_heap's own collection may free the cycle
    try:
        garbage = _Node()
        garbage.self = garbage
        left_behind = weakref.ref(garbage)
        del garbage
        try:
            await harness.start()
            gc.enable()
            assert left_behind() is None
            assert gc.get_freeze_count() > 10_000  # modules, content, mappers, handlers
            code = await enroll(server, "BSM-031 A 2026-10-25 en")
            user = server.user(2031, "Rahima", language_code="en")
            await link(server, user, code, "English")
            await says(server, user, "/help", "/language")
        finally:
            gc.enable()
            await harness.stop()
    finally:
        gc.unfreeze()  # the next test in this worker starts unfrozen


def test_the_bot_api_client_reads_json_as_ptb_does_and_never_logs_an_error_page(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Telegram's answers are read with orjson (PTB's hook for another JSON library): the
    same result as PTB's reading, bad UTF-8 replaced as PTB replaces it, and what is not
    JSON (a proxy's error page, which may quote what was sent) raises TelegramError as
    PTB's does, logged by its size only."""
    from telegram.error import TelegramError
    from telegram.request import BaseRequest

    from bot.http import AiohttpRequest

    answer = '{"ok":true,"result":[{"update_id":7,"message":{"text":"জ্বর ১০২°F","chat":{"id":-100}}}]}'.encode()
    assert AiohttpRequest.parse_json_payload(answer) == BaseRequest.parse_json_payload(answer)
    broken = b'{"ok":true,"result":"caf\xe9"}'
    assert AiohttpRequest.parse_json_payload(broken) == BaseRequest.parse_json_payload(broken)
    page = b"<html>502 Bad Gateway: chat_id=2003&text=my secret answer</html>"
    with caplog.at_level(logging.WARNING), pytest.raises(TelegramError, match="Invalid server response"):
        AiohttpRequest.parse_json_payload(page)
    assert "secret" not in caplog.text and f"{len(page)} bytes" in caplog.text


# ---------------------------------------------------------------- updates sharing a transaction


async def _presses_arriving_together(
    bot: BotHarness, server: BotAPIServer, first_id: int, count: int = 12
) -> tuple[list[SimUser], list[QueuedUpdate], list[tuple[str, str]]]:
    """``count`` participants with the check-in's first question open press "No" at once:
    the presses are queued without a pause between them (`SimUser.press` does not wait),
    so the bot's next poll fetches them together and they share one transaction. Returns
    the users, their presses and the statements run meanwhile."""
    from tests.test_questionnaire_flow import button_for, is_question, linked, shown_are_stored

    users = [await linked(server, f"BSM-{first_id + i}", "A", first_id + i, "en") for i in range(count)]
    firsts = [await says(server, user, "/checkin", "Question 1") for user in users]
    assert all(is_question(first) for first in firsts)
    with statements(bot) as seen:
        presses = [await user.press(first, button_for(first, "no")) for user, first in zip(users, firsts, strict=True)]
        shown = []
        for user, press, first in zip(users, presses, firsts, strict=True):
            replies = await server.wait_for(
                user.id, lambda m: m.content.startswith(("Question", "Sorry")), since=press, timeout=10
            )
            reply = replies[-1]
            shown.append(reply.message_id if is_question(reply) else first.message_id)
        await shown_are_stored(bot, shown)  # the questions' ids written (group commit) before the statements stop
    return users, presses, list(seen)


async def _stored(bot: BotHarness, presses: list[QueuedUpdate]) -> dict[int, str]:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        rows = await session.scalars(
            select(ProcessedUpdate).where(ProcessedUpdate.update_id.in_([p.update_id for p in presses]))
        )
        return {row.update_id: row.outcome for row in rows}


async def _answers_per_participant(bot: BotHarness, study_ids: list[str]) -> dict[str, int]:
    from models import QuestionnaireSession

    assert bot.services is not None
    async with bot.services.sessions() as session:
        rows = await session.execute(
            select(Participant.study_id, QuestionnaireAnswer.id)
            .join(QuestionnaireSession, QuestionnaireSession.participant_id == Participant.id)
            .join(QuestionnaireAnswer, QuestionnaireAnswer.session_id == QuestionnaireSession.id)
            .where(Participant.study_id.in_(study_ids))
        )
        counts = dict.fromkeys(study_ids, 0)
        for study_id, _answer in rows:
            counts[study_id] += 1
        return counts


def _claims(seen: list[tuple[str, str]]) -> list[str]:
    return [statement for statement, _p in seen if statement.startswith("INSERT INTO processed_updates")]


async def test_presses_arriving_together_share_a_transaction_and_each_is_answered_once(
    bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Presses of different chats that arrive while the transactions before them run are
    handled in one transaction (their ids claimed in one statement): each press is stored
    once, its answer once, and its chat gets its next question once."""
    await _pressed_together(bot, server, 7100, last_fails=False)


@pytest.mark.logs_errors("error while handling update")
async def test_a_handler_failing_in_a_group_fails_alone_and_the_others_are_answered(
    bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One press of a group raises in its handler: the group is rolled back and each of its
    updates goes again alone, so that the failure stays that press's (stored as failed,
    the participant asked to try again) and every other press is answered once."""
    from domain import questionnaire_sessions

    answer = questionnaire_sessions.answer
    failing = "BSM-7211"  # the last to press

    async def broken_for_one(db: AsyncSession, participant: Participant, *args: object, **kwargs: object) -> object:
        if participant.study_id == failing:
            raise RuntimeError("boom")
        return await answer(db, participant, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(questionnaire_sessions, "answer", broken_for_one)
    await _pressed_together(bot, server, 7200, last_fails=True)


async def _pressed_together(bot: BotHarness, server: BotAPIServer, first_id: int, *, last_fails: bool) -> None:
    """Presses arriving together (`_presses_arriving_together`) shared a transaction; each
    is stored once and answered once: its answer stored once, its chat's next question
    sent once, and nothing of a rolled-back group (no apology, no question twice). With
    ``last_fails``: the last press is stored as failed, its participant has no answer
    stored, one apology and no next question."""
    from tests.test_questionnaire_flow import is_question, q_item

    users, presses, seen = await _presses_arriving_together(bot, server, first_id)
    claims = _claims(seen)
    assert any(claim.count("), (") >= 1 for claim in claims), claims  # a group's one claim of several ids
    if not last_fails:  # a group's answers, their audit rows and their sessions' new states: a statement each
        for written in ("INSERT INTO processed_updates", "INSERT INTO questionnaire_answers", "INSERT INTO audit_log"):
            assert len([s for s, _p in seen if s.startswith(written)]) < len(presses), (written, seen)
        updates = [s for s, _p in seen if s.startswith("UPDATE questionnaire_sessions SET state")]
        assert 0 < len(updates) < len(presses), updates
    study_ids = [f"BSM-{first_id + i}" for i in range(len(users))]
    outcomes = {press.update_id: "ok" for press in presses}
    answers = dict.fromkeys(study_ids, 1)
    answered = users
    if last_fails:
        outcomes[presses[-1].update_id], answers[study_ids[-1]], answered = "error", 0, users[:-1]
        apologies = [m for m in server.messages(users[-1].id) if "Sorry, something went wrong" in m.content]
        assert len(apologies) == 1
        assert not [m for m in server.messages(users[-1].id) if q_item(m) == "rf_bari_shingles"]
    assert await _stored(bot, presses) == outcomes
    assert await _answers_per_participant(bot, study_ids) == answers
    for user, press in zip(answered, presses, strict=False):
        assert not [m for m in server.messages(user.id) if "Sorry" in m.content]
        asked = await server.wait_for(user.id, is_question, since=press)
        assert [q_item(question) for question in asked] == ["rf_bari_shingles"]


@pytest.mark.parametrize(
    "refused",
    [
        pytest.param(False, id="a-unique-key", marks=pytest.mark.logs_errors("its changes met rows stored meanwhile")),
        pytest.param(True, id="a-value", marks=pytest.mark.logs_errors("the database refused its changes")),
    ],
)
async def test_a_group_whose_commit_fails_goes_again_alone(
    bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch, refused: bool
) -> None:
    """The last press of a group leaves a row that the database refuses at the commit:
    one that meets a unique key (as rows another process stored meanwhile would), or an
    answer held to the commit (`insert_later`) with a value it cannot take. The group's
    commit fails, each of its updates goes again alone, and only that press fails
    (stored as failed, apologised for, not delivered again and again); every other
    press is answered once."""
    from sqlalchemy import func

    from domain import questionnaire_sessions
    from models.db import insert_later

    answer = questionnaire_sessions.answer
    failing = "BSM-7311" if not refused else "BSM-7411"

    async def conflicting_for_one(
        db: AsyncSession, participant: Participant, *args: object, **kwargs: object
    ) -> object:
        outcome = await answer(db, participant, *args, **kwargs)  # type: ignore[arg-type]
        if participant.study_id == failing and refused:
            row = {"session_id": 1, "item_id": "x", "value": object(), "answered_at": bot.clock.now()}
            insert_later(db, questionnaire_sessions._INSERT_ANSWER, {**row, "instrument_version": "1"})
        elif participant.study_id == failing:
            stored = await db.scalar(select(func.min(ProcessedUpdate.update_id)))
            db.add(ProcessedUpdate(update_id=stored, processed_at=bot.clock.now(), outcome="ok"))
        return outcome

    monkeypatch.setattr(questionnaire_sessions, "answer", conflicting_for_one)
    await _pressed_together(bot, server, 7400 if refused else 7300, last_fails=True)


@pytest.mark.parametrize(
    ("update", "shares"),
    [
        (
            {
                "callback_query": {
                    "id": "1",
                    "from": {"id": 5, "is_bot": False, "first_name": "P"},
                    "chat_instance": "c",
                    "data": "q:1:item:no",
                }
            },
            True,
        ),
        ({"message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}, "text": "38.5"}}, True),
        ({"message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}, "text": "/export"}}, False),
        ({"message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}, "photo": []}}, False),
        ({"edited_message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}, "text": "no"}}, False),
        (
            {
                "my_chat_member": {
                    "chat": {"id": -5, "type": "group"},
                    "from": {"id": 5, "is_bot": False, "first_name": "P"},
                    "date": 0,
                    "old_chat_member": {"status": "left", "user": {"id": 9, "is_bot": True, "first_name": "B"}},
                    "new_chat_member": {"status": "member", "user": {"id": 9, "is_bot": True, "first_name": "B"}},
                }
            },
            False,
        ),
    ],
    ids=["press", "text", "command", "photo", "edit", "membership"],
)
def test_presses_and_plain_text_share_a_transaction_the_rest_go_alone(update: dict[str, object], shares: bool) -> None:
    """A command (an /export, a chart: seconds), a file and anything else goes alone: it
    would hold up the replies of every update in its group."""
    from telegram import Update

    from bot.app import shares_transaction

    parsed = Update.de_json({"update_id": 1, **update}, None)
    assert parsed is not None and shares_transaction(parsed) is shares


async def test_several_update_ids_are_claimed_in_one_statement(bot: BotHarness, server: BotAPIServer) -> None:
    """`claim_many` (a group's claim): the ids that went in, not those already there."""
    from models.db import claim_many

    assert bot.services is not None

    def rows(*ids: int) -> list[dict[str, object]]:
        return [{"update_id": i, "processed_at": bot.clock.now(), "outcome": "ok"} for i in ids]

    async with bot.services.sessions() as session:
        assert await claim_many(session, ProcessedUpdate, rows(9_100_001, 9_100_002), "update_id") == {
            9_100_001,
            9_100_002,
        }
        await session.commit()
    with statements(bot) as seen:
        async with bot.services.sessions() as session:
            assert await claim_many(session, ProcessedUpdate, rows(9_100_002, 9_100_003, 9_100_004), "update_id") == {
                9_100_003,
                9_100_004,
            }
            await session.commit()
    assert len([s for s, _p in seen if s.startswith("INSERT INTO processed_updates")]) == 1
    async with bot.services.sessions() as session:
        assert await claim_many(session, ProcessedUpdate, [], "update_id") == set()


async def test_rows_written_later_go_in_together_before_the_orms_and_a_rollback_drops_them(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """`insert_later` (an answer's audit row, its answer row): the rows a transaction holds
    go in at its commit, all of one statement in one; before the ORM's flush writes a row
    added after them (so ids keep the order); at once with `write_later_rows`; a
    rollback drops them (a failed handler's answer is not stored when the session goes
    on to store the failure), and so does a session closed without a commit; a savepoint
    cannot hold them."""
    from sqlalchemy import insert

    from models import AuditEntry
    from models.db import insert_later, write_later_rows

    assert bot.services is not None
    held = insert(AuditEntry)

    def row(action: str) -> dict[str, object]:
        return {"at": bot.clock.now(), "actor": "test", "action": action}

    async def stored() -> list[str]:
        async with bot.services.sessions() as session:  # type: ignore[union-attr]
            found = await session.scalars(
                select(AuditEntry.action).where(AuditEntry.action.like("later.%")).order_by(AuditEntry.id)
            )
            return list(found)

    with statements(bot) as seen:
        async with bot.services.sessions() as session:
            for action in ("later.1", "later.2", "later.3"):
                insert_later(session, held, row(action))
            session.add(AuditEntry(**row("later.4")))  # the ORM's, added after them
            await session.commit()
    assert await stored() == ["later.1", "later.2", "later.3", "later.4"]
    assert len([s for s, _p in seen if s.startswith("INSERT INTO audit_log")]) == 2  # the held three in one

    async with bot.services.sessions() as session:
        insert_later(session, held, row("later.dropped"))
        await session.rollback()
        session.add(AuditEntry(**row("later.5")))  # the session goes on, as after a failed handler
        await session.commit()
    assert await stored() == ["later.1", "later.2", "later.3", "later.4", "later.5"]

    async with bot.services.sessions() as session:
        insert_later(session, held, row("later.closed"))  # the session closed without a commit
    async with bot.services.sessions() as session:
        await session.begin_nested()
        with pytest.raises(RuntimeError, match="savepoint"):
            insert_later(session, held, row("later.savepoint"))
        await session.rollback()
    async with bot.services.sessions() as session:
        insert_later(session, held, row("later.6"))
        await write_later_rows(session)
        seen_inside = await session.scalar(select(AuditEntry.action).where(AuditEntry.action == "later.6"))
        assert seen_inside == "later.6"
        await session.commit()
    assert await stored() == ["later.1", "later.2", "later.3", "later.4", "later.5", "later.6"]
