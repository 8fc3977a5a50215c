"""`make demo`: the whole journey, without a token.

Runs the real bot (the same Application `python -m bot` runs) against the
local Bot API test server on a fresh SQLite database, with a scripted admin,
participant and coordinator, and prints the conversation as a transcript.
Each capability adds its scene to SCENES."""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from devtools.botapi_server import BotAPIServer, Predicate, SentMessage, SimUser
from devtools.databases import SqliteTemplate
from devtools.harness import ADMIN_ID, COORDINATOR_CHAT, ESCALATION_CHAT, TOKEN, BotHarness

PARTICIPANT_ID = 5001


@dataclass
class Demo:
    """The cast and the running bot."""

    server: BotAPIServer
    bot: BotHarness
    admin: SimUser
    participant: SimUser
    code: str = ""
    export_dir: Path | None = None
    export_notes: list[str] | None = None
    picture_notes: list[str] | None = None

    async def admin_says(self, text: str, expect: Predicate = None) -> SentMessage:
        update = await self.admin.send(text)
        return (await self.server.wait_for(ADMIN_ID, expect, since=update, timeout=30))[0]

    async def participant_says(self, text: str, expect: str | None = None) -> SentMessage:
        update = await self.participant.send(text)
        return (await self.server.wait_for(PARTICIPANT_ID, expect, since=update))[0]

    async def participant_presses(self, message: SentMessage, button: str, expect: str | None = None) -> SentMessage:
        update = await self.participant.press(message, button)
        return (await self.server.wait_for(PARTICIPANT_ID, expect, since=update))[0]


Scene = Callable[[Demo], Awaitable[None]]


async def enrollment(demo: Demo) -> None:
    """The admin enrolls BSM-001 (arm B); the participant links and chooses Bangla."""
    reply = await demo.admin_says("/enroll BSM-001 B 2026-10-25 bn fri", "One-time code")
    match = re.search(r"One-time code: ([A-Z0-9]+)", reply.content)
    assert match
    demo.code = match.group(1)
    prompt = await demo.participant_says(f"/start {demo.code}", "Which language")
    await demo.participant_presses(prompt, "বাংলা", "BSM-001")
    await demo.participant_says("/help", "/language")


async def bad_input(demo: Demo) -> None:
    """A sticker, a reused code and a stranger trying an admin command."""
    await demo.participant.send_sticker()
    await demo.server.wait_for(PARTICIPANT_ID, "স্টিকার")
    stranger = demo.server.user(5002, "Stranger", language_code="en", label="stranger")
    update = await stranger.send(f"/start {demo.code}")
    await demo.server.wait_for(5002, "already been used", since=update)
    update = await stranger.send("/participants")
    await demo.server.wait_for(5002, since=update)


async def admin_overview(demo: Demo) -> None:
    """The admin lists participants."""
    await demo.admin_says("/participants", "participant(s)")


async def red_flag_checkin(demo: Demo) -> None:
    """Issue 3: BSM-001 (arm B, Bangla) reports a methotrexate double dose in the
    check-in; the advice comes at once, the coordinators get the alert, one of
    them acknowledges it, and every copy shows who took it."""
    server = demo.server
    first = await demo.participant_says("/checkin", "মেথোট্রেক্সেট")
    update = await demo.participant.press(first, "হ্যাঁ")
    await server.wait_for(PARTICIPANT_ID, "প্রশ্ন", since=update)
    (alert,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    coordinator = server.user(5100, "Dr Nasreen", language_code="en", label="coordinator")
    press = await coordinator.press(alert, "✅ Acknowledge", chat=COORDINATOR_CHAT)
    await server.wait_for(COORDINATOR_CHAT, "Acknowledged by", since=press)
    await demo.participant_says("/cancel", "বন্ধ")


async def late_yes(demo: Demo) -> None:
    """Issue 10: BSM-001 taps "No" on the first red flag by mistake; the answered question keeps
    its buttons (✓ on the choice), and a later "Yes" is a correction: advice at once, and an alert."""
    server = demo.server
    first = await demo.participant_says("/checkin", "মেথোট্রেক্সেট")
    update = await demo.participant.press(first, "না")
    await server.wait_for(PARTICIPANT_ID, "প্রশ্ন", since=update)
    update = await demo.participant.press(first, "হ্যাঁ")
    await server.wait_for(PARTICIPANT_ID, "হ্যাঁ", since=update)
    await server.wait_for(COORDINATOR_CHAT, lambda m: "URGENT" in m.content and "BSM-001" in m.content, 2)
    await demo.participant_says("/cancel", "বন্ধ")


async def dose_reminder(demo: Demo) -> None:
    """Issue 4: the clock moves to Friday 30 October 09:00 (BSM-001's methotrexate day); one
    scheduler tick sends the dose reminder, and the participant answers with the Taken button."""
    bot = demo.bot
    bot.clock.set(datetime(2026, 10, 30, 3, 0, tzinfo=UTC))  # 09:00 in Dhaka
    before = len(demo.server.messages(PARTICIPANT_ID))
    await bot.tick()
    reminder = demo.server.messages(PARTICIPANT_ID)[before:][-1]
    await demo.participant_presses(reminder, "✅ খেয়েছি", "ধন্যবাদ")
    await demo.participant_says("/schedule", "সকাল ৯:০০")


async def times_as_people_say_them(demo: Demo) -> None:
    """Issue 13: times in Bangla say the part of the day. A bare "৯:৩০" is asked back
    (morning or night?) with two buttons; "রাত ৯:৩০" is understood as typed; /schedule
    then shows "রাত ৯:৩০"; /help gives the study phone once, tappable."""
    asked = await demo.participant_says("/settime ৯:৩০", "কোন সময়টি")
    await demo.participant_presses(asked, "রাত ৯:৩০", "হয়ে গেছে")
    await demo.participant_says("/settime সকাল ৮টা", "সকাল ৮:০০")
    await demo.participant_says("/settime রাত ৯:৩০", "রাত ৯:৩০")
    await demo.participant_says("/schedule", "রাত ৯:৩০")
    await demo.participant_says("/help", "+880")


async def staff_recorded_admission(demo: Demo) -> None:
    """Issue 10: BSM-001's daughter phones the clinic: her mother was admitted. The
    admin records it with /sae; the coordinators get the urgent serious-event alert
    with the 24-hour sponsor deadline, and one of them acknowledges it."""
    server = demo.server
    await demo.admin_says(
        "/sae BSM-001 hospitalisation 2026-10-29 daughter phoned: admitted with pneumonia", "recorded"
    )
    (alert,) = await server.wait_for(COORDINATOR_CHAT, "recorded by the study team")
    coordinator = server.user(5100, "Dr Nasreen", language_code="en", label="coordinator")
    press = await coordinator.press(alert, "✅ Acknowledge", chat=COORDINATOR_CHAT)
    await server.wait_for(
        COORDINATOR_CHAT,
        lambda m: "recorded by the study team" in m.content and "Acknowledged" in m.content,
        since=press,
    )


async def visit_date_agreed(demo: Demo) -> None:
    """Issue 14: BSM-001 cannot come on Sunday 22 November (week 4). The coordinator phones
    her and they agree Tuesday the 24th, inside the window: the admin types it, the visit's
    reminders move to it, and at the next heartbeat the participant is told in Bangla. A
    week-12 date outside its window needs the admin's confirm button and is recorded as a
    protocol deviation."""
    await demo.admin_says("/visit BSM-001 4 on 2026-11-24", "agreed for")
    before = len(demo.server.messages(PARTICIPANT_ID))
    await demo.bot.tick()
    told = demo.server.messages(PARTICIPANT_ID)[before:]
    assert any("২৪ নভেম্বর" in m.content for m in told), [m.content for m in told]
    await demo.participant_says("/schedule", "ঠিক করা তারিখ")
    question = await demo.admin_says("/visit BSM-001 12 on 2027-01-31", "outside")
    update = await demo.admin.press(question, "Confirm: record a deviation")
    await demo.server.wait_for(ADMIN_ID, "protocol deviation", since=update)
    await demo.admin_says("/status BSM-001", "Agreed date")


async def finger_ulcer_photo(demo: Demo) -> None:
    """Issue 14: during /report BSM-001 sends a photo of a finger ulcer; it is downloaded,
    stored with its SHA-256, acknowledged in Bangla, and reaches the coordinators as a
    reply to the report's alert, with the study id in the caption (never a name)."""
    server = demo.server
    first = await demo.participant_says("/report", "সমস্যাটা কী")
    update = await demo.participant.press(first, "আঙুলের সমস্যা (ঘা, রং বদলানো)")
    await server.wait_for(PARTICIPANT_ID, "প্রশ্ন", since=update)
    update = await demo.participant.send_photo(content=b"\xff\xd8\xff\xe0finger-ulcer" + bytes(range(256)) * 8)
    await server.wait_for(PARTICIPANT_ID, "ছবিটি", since=update)
    (photo,) = await server.wait_for(
        COORDINATOR_CHAT, lambda m: m.document is not None and m.document.kind == "photo" and "BSM-001" in m.content
    )
    assert photo.document is not None and photo.document.reply_to is not None  # a reply to the alert
    await demo.participant_says("/cancel", "বন্ধ")


def _question_item(message: SentMessage) -> str | None:
    """The item a question message asks (from its answer buttons), None for other messages."""
    data = [d for row in message.buttons for _t, d in row if d and d.startswith("q:")]
    return data[0].split(":")[2] if data else None


async def week4_questionnaires(demo: Demo) -> None:
    """Issue 14: the admin switches the Raynaud's diary on for BSM-001 only; the clock moves to
    the week-4 visit (Tuesday 24 November, 10:00, the date agreed above); the invitations come, and the participant
    answers the patient global and the HAQ-DI by typing Bengali digits (a cane and help with
    gripping lift those categories to 2: index 1.25). Both responses belong to the week-4 visit,
    in the export below and on the /summary page."""
    server, bot = demo.server, demo.bot
    await demo.admin_says("/raynaud BSM-001 on", "BSM-001")
    bot.clock.set(datetime(2026, 11, 24, 4, 0, tzinfo=UTC))  # 10:00 in Dhaka, the agreed day
    for _ in range(5):
        await bot.tick()
    invitations = {
        d.removeprefix("qstart:"): m
        for m in server.messages(PARTICIPANT_ID)
        for row in m.buttons
        for _t, d in row
        if d and d.startswith("qstart:")
    }
    await demo.participant_presses(invitations["patient_global"], "qstart:patient_global", "প্রশ্ন ১ (মোট")
    await demo.participant_says("৭", "ধন্যবাদ")
    message = await demo.participant_presses(invitations["haq_di"], "qstart:haq_di", "প্রশ্ন ১ (মোট")
    yes = {"aids_1_any", "aid_cane", "help_2_any", "help_grip"}

    def next_one(m: SentMessage) -> bool:  # the next question or the thanks (not an edit of an old one)
        return _question_item(m) is not None or "ধন্যবাদ" in m.content

    while (item := _question_item(message)) is not None:
        if item.startswith("aid_other"):  # "other aid (write it)": skipped with its button
            skip = next(d for row in message.buttons for _t, d in row if d and d.endswith(":__skip__"))
            update = await demo.participant.press(message, skip)
        else:
            update = await demo.participant.send("২" if item.startswith("haq_") else ("হ্যাঁ" if item in yes else "না"))
        message = (await server.wait_for(PARTICIPANT_ID, next_one, since=update))[0]
    assert "ধন্যবাদ" in message.content, message.content


async def trial_record_export(demo: Demo) -> None:
    """The data manager's view: the admin asks for /export and gets one zip; the
    same files, with the REDCap folder, are written to demo-output/ for a look,
    and the ODM file is checked against the official CDISC ODM 1.3.2 schema."""
    await demo.admin_says("/export", lambda m: m.document is not None)
    target = Path("demo-output") / "trial-record"
    result = await demo.bot.export(target, validate=True)
    demo.export_dir = result.directory.resolve()
    assert result.validation is not None
    redcap = sorted(p.name for p in (result.directory / "redcap").iterdir())
    demo.export_notes = [
        f"  {result.validation.summary()}",
        *(f"    {error}" for error in result.validation.errors[:10]),
        f"  REDCap folder {demo.export_dir / 'redcap'}: {', '.join(redcap)}",
        "  (load order in its README.md)",
    ]


async def hardening(demo: Demo) -> None:
    """Issue 17: an admin's /participants typed in the coordinator chat is refused there
    (trial data only in a private chat); a stranger adds the bot to a group and it
    leaves without a word; an edited message is not handled again."""
    server = demo.server
    update = await server.group(COORDINATOR_CHAT).send(demo.admin, "/participants")
    await server.wait_for(COORDINATOR_CHAT, "only in your private chat", since=update)
    stranger = server.user(66_000_001, "Stranger", language_code="en", label="stranger")
    group = server.group(-5_001, title="Anything goes", label="a stranger's group")
    await group.send(stranger, "/participants")
    await server.wait_for_request("leaveChat")
    hello = await demo.participant.send("/help")
    await server.wait_for(PARTICIPANT_ID, since=hello)
    edited = await demo.participant.edit(hello, "/stop")
    await server.wait_for(PARTICIPANT_ID, "এডিট", since=edited)


async def pictures(demo: Demo) -> None:
    """Issue 15: the clinician's one-page summary of BSM-001 and the trial at a glance,
    each as a photo and a PDF; the pictures are also written to demo-output/ (the
    README's examples in docs/ are these)."""
    server = demo.server
    await demo.admin_says("/summary BSM-001", lambda m: m.document is not None and m.document.kind == "photo")
    await server.wait_for(ADMIN_ID, lambda m: m.document is not None and m.document.filename.endswith(".pdf"))
    await demo.admin_says("/overview", lambda m: m.document is not None and m.document.kind == "photo")
    await server.wait_for(
        ADMIN_ID,
        lambda m: (
            m.document is not None
            and m.document.filename.startswith("overview")
            and m.document.filename.endswith(".pdf")
        ),
    )
    photos = server.photos(ADMIN_ID)
    pages = {"summary-example.png": photos[-2].content, "overview-example.png": photos[-1].content}

    def write() -> list[str]:
        target = Path("demo-output")
        target.mkdir(exist_ok=True)
        for name, content in pages.items():
            (target / name).write_bytes(content)
        return [f"  {target.resolve() / name}" for name in pages]

    demo.picture_notes = await asyncio.to_thread(write)


SCENES: list[Scene] = [
    enrollment,
    bad_input,
    admin_overview,
    red_flag_checkin,
    late_yes,
    dose_reminder,
    times_as_people_say_them,
    staff_recorded_admission,
    visit_date_agreed,
    finger_ulcer_photo,
    week4_questionnaires,
    trial_record_export,
    hardening,
    pictures,
]


async def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ssc-demo-") as tmp:
        directory = Path(tmp)
        url = SqliteTemplate(directory).clone(directory)
        async with BotAPIServer(token=TOKEN) as server:
            admin = server.user(ADMIN_ID, "Admin", language_code="en", label="admin")
            participant = server.user(PARTICIPANT_ID, "Participant", language_code="bn", label="participant BSM-001")
            server.group(COORDINATOR_CHAT, title="Coordinators", label="coordinator chat")
            server.group(ESCALATION_CHAT, title="Escalation", label="escalation chat")
            async with BotHarness(server, url) as bot:
                demo = Demo(server, bot, admin, participant)
                for scene in SCENES:
                    await scene(demo)
            print("SSc trial follow-up bot: demo against the local Bot API test server\n")
            print(server.format_transcript())
            if demo.export_dir is not None:
                print(
                    "\nTrial-record export (CSV, SPSS .sav, data dictionary, CDISC ODM, REDCap) "
                    f"written to {demo.export_dir}"
                )
                print("\n".join(demo.export_notes or []))
            if demo.picture_notes:
                print("\nThe study team's pictures (/summary, /overview) written to:")
                print("\n".join(demo.picture_notes))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
