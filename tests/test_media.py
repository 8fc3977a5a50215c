"""Photos and voice notes in reports, end to end on SQLite and PostgreSQL through the
real bot over HTTP: a file sent during /report (or right after it) is downloaded
with getFile, stored once with its SHA-256, acknowledged in the participant's
language and forwarded to the coordinator chat as a reply to the report's alert
with the study id (never a name); albums, limits, failed downloads and forwards
(retried with the alert deliveries' back-off), the "Report a problem with this
photo" button outside a report, and the export's media manifest and files."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pyreadstat
import pytest

from cli.admin import run
from devtools.botapi_server import BotAPIServer, SentMessage, SimUser
from devtools.harness import ADMIN_ID, COORDINATOR_CHAT, BotHarness
from domain import media as domain_media
from export.archive import zip_export
from models import AlertDelivery, AuditEntry, MediaStatus, QuestionnaireSession, ReportMedia
from tests.bothelpers import admin_says, eventually, says
from tests.test_findings import answer_until
from tests.test_questionnaire_flow import count, is_question, linked, push_press, rows

ULCER = b"\xff\xd8\xff\xe0finger-ulcer-photo" + bytes(range(256)) * 4
VOICE = b"OggS\x00voice-note-about-the-rash" * 10


def is_file(kind: str) -> Callable[[SentMessage], bool]:
    """A predicate: a file of `kind` the bot sent."""

    def check(message: SentMessage) -> bool:
        return message.document is not None and message.document.kind == kind

    check.__name__ = f"a {kind}"
    return check


async def urgent_report(server: BotAPIServer, user: SimUser) -> SentMessage:
    """/report with an admission: the URGENT alert in the coordinators' chat (the report stays open)."""
    await says(server, user, "/report", is_question)
    await answer_until(server, user, {"ae_what": "fingers", "ser_hospital": "yes"}, "ae_more", default="no")
    (alert,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    return alert


async def test_a_photo_and_a_voice_note_during_report_reach_the_coordinators_as_replies_stored_once(
    bot: BotHarness, server: BotAPIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    user = await linked(server, "BSM-201", "A", 1201, "en")
    alert = await urgent_report(server, user)

    sent = await user.send_photo("Rahima Begum's left hand", content=ULCER)
    (ack,) = await server.wait_for(user.id, "Your photo is added to your report", since=sent)
    assert ack.content.startswith("Thank you")
    (photo,) = await server.wait_for(COORDINATOR_CHAT, is_file("photo"))
    assert photo.document is not None and photo.document.reply_to == alert.message_id
    assert photo.document.content == ULCER
    caption = photo.caption or ""
    assert "BSM-201" in caption and "photo 1 of 1" in caption and "report #" in caption
    assert user.user_dict["first_name"] not in caption  # the study id, never the name
    assert "Rahima" not in caption  # nor the participant's own caption

    sent = await user.send_voice(content=VOICE)
    await server.wait_for(user.id, "Your voice message is added", since=sent)
    (voice,) = await server.wait_for(COORDINATOR_CHAT, is_file("voice"))
    assert voice.document is not None and voice.document.reply_to == alert.message_id
    assert "BSM-201" in (voice.caption or "")

    again = await user.send_photo(content=ULCER)  # the same picture twice: kept once
    await server.wait_for(user.id, "Your photo is added", since=again)
    await bot.tick()
    files = await rows(bot, ReportMedia)
    assert [(m.kind, m.status) for m in sorted(files, key=lambda m: m.id)] == [
        ("photo", MediaStatus.STORED),
        ("voice", MediaStatus.STORED),
        ("photo", MediaStatus.DUPLICATE),
    ]
    stored = {m.kind: m for m in files if m.status is MediaStatus.STORED}
    assert stored["photo"].sha256 == hashlib.sha256(ULCER).hexdigest() and stored["photo"].size == len(ULCER)
    assert stored["voice"].sha256 == hashlib.sha256(VOICE).hexdigest() and stored["voice"].mime_type == "audio/ogg"
    assert all(m.received_by == "participant:BSM-201" for m in files)
    assert len([m for m in server.messages(COORDINATOR_CHAT) if m.document is not None]) == 2
    assert await count(bot, AuditEntry, AuditEntry.action == "media.store") == 2
    # ours and PTB's lines (httpx is capped at WARNING by the real logging set-up: its lines carry the token)
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert "media 1 downloaded" in logged and "Rahima" not in logged and "finger-ulcer" not in logged
    assert "file_" not in logged.replace("file_id", "")  # no file names (paths) either

    result = await bot.export(tmp_path / "export", with_files=True)
    with (result.directory / "media.csv").open(encoding="utf-8-sig", newline="") as handle:
        manifest = list(csv.DictReader(handle))
    assert [(r["study_id"], r["kind"], r["sha256"], r["size_bytes"]) for r in manifest] == [
        ("BSM-201", "photo", hashlib.sha256(ULCER).hexdigest(), str(len(ULCER))),
        ("BSM-201", "voice", hashlib.sha256(VOICE).hexdigest(), str(len(VOICE))),
    ]
    (report,) = await rows(bot, QuestionnaireSession)
    assert {r["response_id"] for r in manifest} == {str(report.id)}
    frame, meta = pyreadstat.read_sav(str(result.directory / "media.sav"))
    assert list(frame["sha256"]) == [r["sha256"] for r in manifest]
    assert list(frame["size_bytes"]) == [len(ULCER), len(VOICE)]
    assert meta.variable_value_labels["kind"]["voice"] == "Voice note"
    archive = zip_export(result, tmp_path / "export.zip")
    with zipfile.ZipFile(archive) as opened:
        names = opened.namelist()
        assert {r["file"] for r in manifest} <= set(names)
        assert opened.read(manifest[0]["file"]) == ULCER and opened.read(manifest[1]["file"]) == VOICE


async def test_an_album_is_acknowledged_once_and_every_photo_reaches_the_coordinators(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-202", "B", 1202, "bn")
    alert = await urgent_report(server, user)
    first = await user.send_photo(content=ULCER + b"1", media_group_id="album-1")
    await user.send_photo(content=ULCER + b"2", media_group_id="album-1")
    await user.send_photo(content=ULCER + b"3", media_group_id="album-1")
    photos = await server.wait_for(COORDINATOR_CHAT, is_file("photo"), count=3)
    assert [p.document.reply_to for p in photos if p.document] == [alert.message_id] * 3
    assert [p.content.split(" · ")[1][:10] for p in photos] == ["photo 1 of", "photo 2 of", "photo 3 of"]
    acks = [m for m in server.messages(user.id) if m.seq > first.seq and "ছবি" in m.content]
    assert len(acks) == 1 and "ধন্যবাদ" in acks[0].content  # one thank-you, in Bangla
    assert await count(bot, ReportMedia, ReportMedia.status == MediaStatus.STORED) == 3


async def test_too_many_files_a_file_over_20_mb_and_a_video_are_refused_in_the_participants_language(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-203", "A", 1203, "bn")
    await urgent_report(server, user)
    for n in range(domain_media.MAX_FILES):
        sent = await user.send_photo(content=ULCER + bytes([n]))
        await server.wait_for(user.id, "ছবি", since=sent)
    eleventh = await user.send_photo(content=ULCER + b"eleven")
    (refused,) = await server.wait_for(user.id, "১০", since=eleventh)
    assert "যোগ করা হয়নি" in refused.content
    big = await user.send_voice(content=VOICE, file_size=21 * 1024 * 1024)
    (too_big,) = await server.wait_for(user.id, "২০", since=big)
    assert "মেগাবাইট" in too_big.content
    video = await user.send_video()
    (unsupported,) = await server.wait_for(user.id, "ভয়েস মেসেজ", since=video)
    assert "ছবি" in unsupported.content
    await bot.tick()
    assert await count(bot, ReportMedia) == domain_media.MAX_FILES
    await server.wait_for(COORDINATOR_CHAT, is_file("photo"), count=domain_media.MAX_FILES)


async def test_a_failed_forward_and_a_failed_download_are_retried_with_back_off(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-204", "A", 1204, "en")
    alert = await urgent_report(server, user)

    server.faults.add("download", "500")
    sent = await user.send_photo(content=ULCER)
    await server.wait_for(user.id, "Your photo is added", since=sent)
    await server.wait_for_request("download", count=1)

    async def retry_recorded() -> bool:
        return await count(bot, ReportMedia, ReportMedia.attempts == 1) == 1

    await eventually(retry_recorded, 5, "the failed download recorded for a retry")
    (waiting,) = await rows(bot, ReportMedia)
    assert waiting.status is MediaStatus.PENDING and waiting.attempts == 1 and waiting.sha256 is None
    assert server.media(COORDINATOR_CHAT) == []

    server.faults.add("sendPhoto", "500")
    bot.clock.advance(timedelta(seconds=15))  # the alert deliveries' first back-off
    await bot.tick()
    (stored,) = await rows(bot, ReportMedia)
    assert stored.status is MediaStatus.STORED and stored.sha256 == hashlib.sha256(ULCER).hexdigest()
    (delivery,) = await rows(bot, AlertDelivery, AlertDelivery.purpose == domain_media.purpose(stored.id))
    assert delivery.status.value == "pending" and delivery.attempts == 1 and delivery.last_error
    assert server.media(COORDINATOR_CHAT) == []

    bot.clock.advance(timedelta(seconds=15))
    await bot.tick()
    (photo,) = await server.wait_for(COORDINATOR_CHAT, is_file("photo"))
    assert photo.document is not None and photo.document.reply_to == alert.message_id
    (delivery,) = await rows(bot, AlertDelivery, AlertDelivery.purpose == domain_media.purpose(stored.id))
    assert delivery.status.value == "sent" and delivery.attempts == 2


async def test_a_file_waits_for_its_alerts_own_message_and_then_replies_to_it(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-209", "A", 1209, "en")
    server.faults.add("sendMessage", "500", chat_id=COORDINATOR_CHAT, times=2)  # the alert's own message fails twice
    await says(server, user, "/report", is_question)
    await answer_until(server, user, {"ae_what": "fingers", "ser_hospital": "yes"}, "ae_more", default="no")

    async def alert_failed() -> bool:
        return await count(bot, AlertDelivery, AlertDelivery.attempts == 1) == 1

    await eventually(alert_failed, 5, "the alert's failed first send recorded")
    sent = await user.send_photo(content=ULCER)
    await server.wait_for(user.id, "Your photo is added", since=sent)

    async def file_waits() -> bool:
        deliveries = {d.purpose: d for d in await rows(bot, AlertDelivery)}
        file = next((d for p, d in deliveries.items() if p != "alert"), None)
        return file is not None and file.next_attempt_at == deliveries["alert"].next_attempt_at

    for tick in range(2):  # the file waits for the alert's message, however often that fails
        await eventually(file_waits, 5, "the file put back until its alert's next try")
        own, file = sorted(await rows(bot, AlertDelivery), key=lambda d: d.id)
        assert own.attempts == tick + 1 and file.attempts == 0 and file.status.value == "pending"
        assert server.media(COORDINATOR_CHAT) == [] and not [r for r in server.requests if r.method == "sendPhoto"]
        bot.clock.set(own.next_attempt_at)
        await bot.tick()
    (alert,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    (photo,) = await server.wait_for(COORDINATOR_CHAT, is_file("photo"))
    assert photo.document is not None and photo.document.reply_to == alert.message_id
    own, file = sorted(await rows(bot, AlertDelivery), key=lambda d: d.id)
    assert own.status.value == file.status.value == "sent" and own.attempts == 3 and file.attempts == 1


async def test_a_photo_outside_a_report_offers_one_button_that_starts_report_with_it_attached(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-205", "A", 1205, "en")
    sent = await user.send_photo(content=ULCER)
    (offer,) = await server.wait_for(user.id, "Press the button", since=sent)
    assert offer.button_texts == ["Report a problem with this photo"]
    (held,) = await rows(bot, ReportMedia)
    assert held.status is MediaStatus.HELD and held.session_id is None
    await bot.tick()
    assert server.media(COORDINATOR_CHAT) == [] and not [r for r in server.requests if r.method == "getFile"]

    ((_text, data),) = offer.buttons[0]
    assert data is not None
    pressed = await user.press(offer, "Report a problem with this photo")
    await server.wait_for(user.id, is_question, since=pressed)
    await server.wait_for(user.id, "Your photo is added to your report", since=pressed)
    (report,) = await rows(bot, QuestionnaireSession)
    assert report.instrument_id == "ae_report"
    (photo,) = await server.wait_for(COORDINATOR_CHAT, is_file("photo"))
    (info,) = [m for m in server.messages(COORDINATOR_CHAT) if m.document is None]
    assert "Files attached to report" in info.content and "BSM-205" in info.content
    assert photo.document is not None and photo.document.reply_to == info.message_id
    (attached,) = await rows(bot, ReportMedia)
    assert attached.session_id == report.id and attached.status is MediaStatus.STORED
    assert offer.reply_markup is None  # the button is gone; an old copy of it changes nothing
    again = push_press(server, user, offer, data)

    async def answered() -> bool:
        return server.callback_answer(again) is not None

    await eventually(answered, 5, "the old button answered")
    answer = server.callback_answer(again)
    assert answer is not None and answer.text == "This button is no longer active."
    assert await count(bot, QuestionnaireSession) == 1 and await count(bot, ReportMedia) == 1


async def test_an_album_outside_a_report_gets_one_offer_and_the_button_attaches_all_of_it(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-207", "A", 1207, "en")
    first = await user.send_photo(content=ULCER + b"a", media_group_id="album-2")
    await user.send_photo(content=ULCER + b"b", media_group_id="album-2")
    await server.wait_for(user.id, "Press the button", since=first)
    await says(server, user, "/help", "/report")  # both photos handled by now: a chat's updates go in order
    offers = [m for m in server.messages(user.id) if m.seq > first.seq and "Press the button" in m.content]
    assert len(offers) == 1 and await count(bot, ReportMedia, ReportMedia.status == MediaStatus.HELD) == 2
    pressed = await user.press(offers[0], "Report a problem with this photo")
    await server.wait_for(user.id, "Your photos are added to your report", since=pressed)
    photos = await server.wait_for(COORDINATOR_CHAT, is_file("photo"), count=2)
    assert [p.document.content for p in photos if p.document] == [ULCER + b"a", ULCER + b"b"]


@pytest.mark.logs_errors("refused its download for good")
async def test_a_download_refused_for_good_is_dead_lettered_and_the_admins_told(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-208", "A", 1208, "en")
    await urgent_report(server, user)
    server.faults.add("getFile", "error", code=400, description="Bad Request: file is too big")
    sent = await user.send_photo(content=ULCER)
    await server.wait_for(user.id, "Your photo is added", since=sent)
    (told,) = await server.wait_for(ADMIN_ID, "could not be downloaded")
    assert "File is too big" in told.content and "media #" in told.content
    (dead,) = await rows(bot, ReportMedia)
    assert dead.status is MediaStatus.DEAD and dead.attempts == 1 and dead.sha256 is None
    bot.clock.advance(timedelta(minutes=10))
    await bot.tick()
    assert len([r for r in server.requests if r.method == "getFile"]) == 1  # never retried
    assert await count(bot, AuditEntry, AuditEntry.action == "media.download.dead") == 1
    assert server.media(COORDINATOR_CHAT) == []


async def test_an_audio_file_and_a_picture_sent_as_a_file_are_taken_a_pdf_is_not(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-209", "A", 1209, "en")
    alert = await urgent_report(server, user)
    sent = await user.send_audio(content=VOICE + b"mp3")
    await server.wait_for(user.id, "Your voice message is added", since=sent)
    sent = await user.send_document("hand.jpg", ULCER + b"file", mime_type="image/jpeg")
    await server.wait_for(user.id, "Your photo is added", since=sent)
    sent = await user.send_document("labs.pdf", b"%PDF-1.4 labs")
    await server.wait_for(user.id, "photos, voice messages and audio files only", since=sent)
    audio, picture = await server.wait_for(COORDINATOR_CHAT, lambda m: m.document is not None, count=2)
    assert audio.document is not None and audio.document.kind == "audio" and audio.document.content == VOICE + b"mp3"
    assert picture.document is not None and picture.document.kind == "document"
    assert {audio.document.reply_to, picture.document.reply_to} == {alert.message_id}
    assert sorted(m.mime_type for m in await rows(bot, ReportMedia)) == ["audio/mpeg", "image/jpeg"]


@pytest.mark.parametrize("lang", ["en", "bn"])
async def test_a_voice_note_after_the_report_is_finished_goes_with_it_while_its_alert_is_open(
    bot: BotHarness, server: BotAPIServer, lang: str
) -> None:
    user = await linked(server, f"BSM-21{0 if lang == 'en' else 1}", "A", 1210 + (lang == "bn"), lang)
    alert = await urgent_report(server, user)
    await user.send("/cancel")
    sent = await user.send_voice(content=VOICE)
    await server.wait_for(user.id, "Your voice message" if lang == "en" else "ভয়েস মেসেজ", since=sent)
    (voice,) = await server.wait_for(COORDINATOR_CHAT, is_file("voice"))
    assert voice.document is not None and voice.document.reply_to == alert.message_id


async def test_export_lists_files_and_includes_them_only_with_files_in_telegram_and_the_shell(
    bot: BotHarness, server: BotAPIServer, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await linked(server, "BSM-206", "A", 1206, "en")
    await urgent_report(server, user)
    await user.send_photo(content=ULCER)
    await user.send_voice(content=VOICE)
    await server.wait_for(COORDINATOR_CHAT, lambda m: m.document is not None, count=2)

    plain = await admin_says(server, "/export", lambda m: m.document is not None)
    assert plain.document is not None
    names = zipfile.ZipFile(io.BytesIO(plain.document.content)).namelist()
    assert "media.csv" in names and "media.sav" in names and not [n for n in names if n.startswith("media/")]
    assert "0 errors" in (plain.caption or "")  # the ODM with the media form still validates

    full = await admin_says(server, "/export with-files", lambda m: m.document is not None and m.seq > plain.seq)
    assert full.document is not None and "With 2 photo/voice file(s) under media/" in (full.caption or "")
    opened = zipfile.ZipFile(io.BytesIO(full.document.content))
    files = sorted(n for n in opened.namelist() if n.startswith("media/"))
    assert len(files) == 2 and {hashlib.sha256(opened.read(n)).hexdigest() for n in files} == {
        hashlib.sha256(ULCER).hexdigest(),
        hashlib.sha256(VOICE).hexdigest(),
    }

    monkeypatch.setenv("DATABASE_URL", db_url)
    code, text = await run(["export", "--out", str(tmp_path / "shell"), "--with-files", "--validate"], bot.clock)
    assert code == 0, text
    written = sorted(p for p in (tmp_path / "shell" / "media").rglob("*") if p.is_file())
    assert [p.read_bytes() for p in written] == [ULCER, VOICE]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in written)
    code, text = await run(["export", "--out", str(tmp_path / "bare")], bot.clock)
    assert code == 0 and not (tmp_path / "bare" / "media").exists()
    (entry, *_) = await rows(bot, AuditEntry, AuditEntry.action == "export.run", AuditEntry.actor.like("cli:%"))
    assert entry.after is not None and entry.after.get("with_files") is True
