"""What participants read, built from parts: the study phone once and tappable, the
site's names from the protocol file, medicine days from the participant's own weekdays."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from bot import reminder_texts
from bot.handlers.questionnaire import advice_message
from bot.i18n import use_locale
from bot.texts import bilingual, not_enrolled, regimen, with_contact
from core.settings import Settings
from core.text import BilingualText as Text
from devtools.harness import TOKEN
from domain.content import load_content
from models import Language, Participant, ParticipantStatus
from scheduler.planner import MessageKind
from scheduler.protocol import Site

DIALLED = "+8801711000000"
CONTENT = load_content()


def participant(arm: str = "B", mtx: int | None = 4, folic: int | None = None) -> Participant:
    now = datetime(2026, 10, 25, 3, tzinfo=UTC)
    return Participant(
        id=1,
        study_id="BSM-001",
        arm=arm,
        baseline_date=date(2026, 10, 25),
        language=Language.BN,
        status=ParticipantStatus.ACTIVE,
        own_weekday=mtx,
        follow_weekday=folic,
        created_at=now,
        updated_at=now,
    )


@pytest.mark.parametrize("typed", ["+880 1711-000000", "+৮৮০ ১৭১১-০০০০০০", "+880 (1711) 000.000", DIALLED])
def test_the_study_phone_is_kept_as_dialled(typed: str) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        telegram_bot_token=TOKEN,
        study_contact_phone=typed,
        coordinator_chat_ids="-1",
        escalation_chat_ids="-2",
    )
    assert settings.study_contact_phone == DIALLED


@pytest.mark.parametrize("lang", ["bn", "en"])
def test_urgent_advice_gives_the_phone_once_in_latin_digits_even_with_two_instructions(lang: str) -> None:
    with use_locale(lang):
        text = advice_message(("stop_mtx_call", "call_now"), "+880 1711-000000", CONTENT.triage)
    assert text.count(DIALLED) == 1
    assert "৮৮০" not in text and "১৭১১" not in text  # never a second copy in Bengali digits
    assert ("ওপরের নম্বরে" if lang == "bn" else "the number above") in text
    # What to do comes first: the first instruction carries the number.
    assert text.index(DIALLED) < text.index("ওপরের নম্বরে" if lang == "bn" else "the number above")


def test_the_phone_line_is_added_only_when_the_text_lacks_the_number() -> None:
    with use_locale("bn"):
        once = with_contact("এখনই ফোন করুন: " + DIALLED, "+880 1711-000000")
        added = with_contact("ধন্যবাদ।", "+880 1711-000000")
    assert once.count(DIALLED) == 1 and added.endswith("গবেষণা দলের ফোন: " + DIALLED)
    assert with_contact("ধন্যবাদ।", "") == "ধন্যবাদ।"


def test_a_bilingual_message_gives_the_number_once_under_both_labels() -> None:
    text = not_enrolled(DIALLED, CONTENT.protocol)
    assert text.count(DIALLED) == 1 and text.endswith(f"গবেষণা দলের ফোন / Study phone: {DIALLED}")
    assert "পিজি হাসপাতাল (বিএসএমএমইউ)" in text and "PG Hospital (BSMMU)" in text  # from content/protocol.yaml
    assert bilingual(lambda: "x") == "x\n\nx"


def test_visit_reminders_name_the_place_from_the_protocol_file() -> None:
    protocol = CONTENT.protocol
    renamed = protocol.model_copy(
        update={
            "site": Site(
                name=Text(en="BMU", bn="বিএমইউ"),
                department=Text(en="Skin clinic", bn="চর্মরোগ বিভাগ"),
                hospital=Text(en="Shahbag hospital", bn="শাহবাগ হাসপাতাল"),
            )
        }
    )
    payload = {"week": 4, "visit_date": "2026-11-22", "offset_days": -1}
    with use_locale("bn"):
        shipped = reminder_texts.visit_text(payload, protocol)
        changed = reminder_texts.visit_text(payload, renamed)
    assert "জায়গা: রিউমাটোলজি (বাতরোগ) বিভাগ, পিজি হাসপাতাল (বিএসএমএমইউ)" in shipped
    assert "৪ সপ্তাহের চেকআপ" in shipped and "আগামীকাল" in shipped
    assert "চর্মরোগ বিভাগ, শাহবাগ হাসপাতাল (বিএমইউ)" in changed and "পিজি" not in changed
    with use_locale("en"):
        assert "at the Skin clinic, Shahbag hospital (BMU)" in reminder_texts.visit_text(payload, renamed)


def test_medicine_days_come_from_the_participants_own_weekdays() -> None:
    # Methotrexate on Friday; the coordinator set folic acid on Monday (not the default Saturday).
    own = participant(mtx=4, folic=0)
    with use_locale("en"):
        text = regimen(own, CONTENT.protocol)
    assert "every Friday" in text and "every Monday" in text and "Saturday" not in text
    with use_locale("bn"):
        assert "প্রতি সোমবার" in regimen(own, CONTENT.protocol) and "শনিবার" not in regimen(own, CONTENT.protocol)
    with use_locale("en"):  # the default rule: the day after methotrexate
        assert "every Saturday" in regimen(participant(mtx=4, folic=None), CONTENT.protocol)


@pytest.mark.parametrize("lang", ["bn", "en"])
def test_the_folic_acid_reminder_names_its_own_day_not_the_day_after_methotrexate(lang: str) -> None:
    protocol = CONTENT.protocol
    payload = {"regimen": "folic_acid", "frequency": "weekly", "weekday": "monday", "date": "2026-11-02"}
    with use_locale(lang):
        text = reminder_texts.dose_text(MessageKind.DOSE_REMINDER.value, payload, protocol, "B")
    if lang == "en":
        assert text.startswith("Today is Monday, your folic acid day.") and "5 mg once a week" in text
        assert "after" not in text
    else:
        assert text.startswith("আজ সোমবার, আপনার ফলিক অ্যাসিড খাওয়ার দিন।") and "৫ মিলিগ্রাম" in text
        assert "পরের দিন" not in text


@pytest.mark.parametrize("lang", ["bn", "en"])
def test_the_methotrexate_reminder_keeps_the_emphasis_and_both_nevers(lang: str) -> None:
    protocol = CONTENT.protocol
    payload = {"regimen": "methotrexate", "weekday": "friday", "dose_amount": 25, "frequency": "weekly"}
    with use_locale(lang):
        text = reminder_texts.dose_text(MessageKind.DOSE_REMINDER.value, payload, protocol, "B")
    if lang == "en":
        assert text.count("Never") + text.count("never") == 2 and "today only" in text
    else:
        assert text.count("কখনো") == 2 and "শুধু আজ" in text and "২৫ মিলিগ্রাম" in text
    with use_locale(lang):
        weekly = regimen(participant(), CONTENT.protocol)
    if lang == "en":
        assert "once a WEEK only" in weekly and weekly.count("ever ") >= 2
    else:
        # The emphasis of "once a WEEK only" (মাত্র, and "not every day"), and both "never"s:
        # not on another day, not a missed dose later (plus folic acid's "never on that day").
        assert "সপ্তাহে মাত্র একবার (প্রতিদিন নয়)" in weekly
        assert "অন্য কোনো দিন কখনো খাবেন না" in weekly and "বাদ পড়া ডোজ পরে কখনো খাবেন না" in weekly
