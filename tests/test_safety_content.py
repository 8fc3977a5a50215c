"""What the participant is asked, through the real bot on SQLite and PostgreSQL:
red flags said in other words (each rule, per arm and language), arm A's
pregnancy red flag, criterion 6 as ICH E2A means it, and /report asking its
red flags and seriousness questions first."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from devtools.botapi_server import BotAPIServer, SentMessage, SimUser
from devtools.harness import COORDINATOR_CHAT, BotHarness
from models import AdverseEvent, Alert, AlertLevel
from tests.bothelpers import says
from tests.test_questionnaire_flow import THANKS, is_question, linked, press_value, q_item, rows

BN_PREGNANCY = "আপনি কি এখন গর্ভবতী, বা গর্ভবতী হয়ে থাকতে পারেন?"


async def type_answer(server: BotAPIServer, user: SimUser, text: str) -> SentMessage:
    """The participant types an answer; returns the next question or the closing message."""
    update = await user.send(text)
    found = await server.wait_for(
        user.id, lambda m: is_question(m) or any(t in m.content for t in THANKS), since=update
    )
    return found[0]


async def walk(
    server: BotAPIServer,
    user: SimUser,
    first: SentMessage,
    pressed: Mapping[str, str] | None = None,
    typed: Mapping[str, str] | None = None,
    stop_after: str | None = None,
) -> tuple[SentMessage, list[str]]:
    """Answer question by question (button values in `pressed`, typed text in `typed`,
    else "no" / "none" / skip) until the end or until `stop_after` is answered.
    Returns the last message and the item ids asked."""
    pressed, typed = pressed or {}, typed or {}
    message, asked = first, []
    for _ in range(80):
        item = q_item(message)
        if item is None:
            return message, asked
        asked.append(item)
        values = [data.split(":", 3)[3] for row in message.buttons for _t, data in row if data]
        if item in typed:
            message = await type_answer(server, user, typed[item])
        else:
            value = pressed.get(item) or next((v for v in ("no", "none", "__skip__") if v in values), values[0])
            message = await press_value(server, user, message, value)
        if item == stop_after:
            return message, asked
    raise AssertionError("the questionnaire did not end")


def advice(server: BotAPIServer, user: SimUser) -> list[str]:
    return [m.content for m in server.messages(user.id) if "⚠️" in m.content]


# --- red flags said in other words ------------------------------------------------------------

EMERGENCY = {"en": "Go to the nearest hospital emergency department now", "bn": "এখনই কাছের হাসপাতালের জরুরি বিভাগে"}
HOLD_BARI = {"en": "Call the study doctor now", "bn": "এখনই গবেষণা দলের ডাক্তারকে ফোন করুন"}
STOP_MTX = {"en": "Do not take any more methotrexate", "bn": "আর কোনো মেথোট্রেক্সেট খাবেন না"}

CROSS_CHECKS = [
    # (arm, language, pressed, typed, red-flag code, the advice they must get)
    ("B", "en", {"skin_any": "yes", "rash": "severe"}, {}, "mtx_skin", EMERGENCY),
    ("B", "bn", {"skin_any": "yes"}, {"rash": "খুব বেশি"}, "mtx_skin", EMERGENCY),
    ("A", "en", {"bowel_any": "yes"}, {"belly_pain": "very severe"}, "bari_gi_perforation", EMERGENCY),
    ("A", "bn", {"bowel_any": "yes"}, {"belly_pain": "বেশি"}, "bari_gi_perforation", EMERGENCY),
    ("A", "en", {"fever": "yes", "fever_measured": "no"}, {}, "bari_infection", HOLD_BARI),
    ("A", "bn", {"fever": "yes", "fever_measured": "yes"}, {"fever_temp": "বাদ"}, "bari_infection", HOLD_BARI),
    ("B", "en", {"fever": "yes", "fever_measured": "yes"}, {"fever_temp": "skip"}, "mtx_infection", STOP_MTX),
    ("B", "bn", {"fever": "yes"}, {"fever_measured": "না"}, "mtx_infection", STOP_MTX),
]


@pytest.mark.parametrize(
    ("arm", "lang", "pressed", "typed", "code", "told"),
    CROSS_CHECKS,
    ids=[f"{c[4]}-{c[0]}-{c[1]}" for c in CROSS_CHECKS],
)
async def test_a_routine_answer_that_says_a_red_flag_is_that_red_flag(
    bot: BotHarness,
    server: BotAPIServer,
    arm: str,
    lang: str,
    pressed: dict[str, str],
    typed: dict[str, str],
    code: str,
    told: dict[str, str],
) -> None:
    user = await linked(server, "BSM-101", arm, 1101, lang)
    first = await says(server, user, "/checkin", is_question)
    closing, _ = await walk(server, user, first, pressed, typed)
    assert any(t in closing.content for t in THANKS)
    (alert_msg,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    assert f"Red flag ({code})" in alert_msg.content
    said = advice(server, user)
    assert said and told[lang] in said[0]
    assert "today" not in said[0] and "আজই" not in said[0]  # urgent: never "call us today"
    (alert,) = await rows(bot, Alert)
    assert alert.level is AlertLevel.URGENT and f"flag:{code}" in alert.details["keys"]


NOT_RED_FLAGS = [
    ("A", "en", {"skin_any": "yes", "rash": "severe"}, {}),  # rash is a red flag in arm B only
    ("B", "bn", {"bowel_any": "yes"}, {"belly_pain": "খুব বেশি"}),  # belly pain: arm A only
    ("A", "bn", {"fever": "yes", "fever_measured": "yes"}, {"fever_temp": "৯৯ ফা"}),  # measured below 38 °C
    ("B", "en", {"fever": "yes", "fever_measured": "yes"}, {"fever_temp": "37.4"}),
]


@pytest.mark.parametrize(("arm", "lang", "pressed", "typed"), NOT_RED_FLAGS)
async def test_the_same_answers_where_they_are_no_red_flag_raise_no_urgent_alert(
    bot: BotHarness, server: BotAPIServer, arm: str, lang: str, pressed: dict[str, str], typed: dict[str, str]
) -> None:
    user = await linked(server, "BSM-102", arm, 1102, lang)
    first = await says(server, user, "/checkin", is_question)
    await walk(server, user, first, pressed, typed)
    assert [a.level for a in await rows(bot, Alert) if a.level is AlertLevel.URGENT] == []
    assert not [m for m in server.messages(COORDINATOR_CHAT) if "URGENT" in m.content]


async def test_a_fever_alerts_as_soon_as_the_thermometer_question_says_not_measured(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-103", "A", 1103, "en")
    first = await says(server, user, "/checkin", is_question)
    after_fever, _ = await walk(server, user, first, {"fever": "yes"}, stop_after="fever")
    assert q_item(after_fever) == "fever_measured"
    assert await rows(bot, Alert) == []  # "did you measure it?" may still say 37.5
    await press_value(server, user, after_fever, "no")
    (alert_msg,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    assert "Red flag (bari_infection)" in alert_msg.content and "(not finished)" in alert_msg.content


# --- pregnancy --------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "bn"])
async def test_arm_a_check_in_asks_about_pregnancy_now_and_a_yes_is_urgent(
    bot: BotHarness, server: BotAPIServer, lang: str
) -> None:
    user = await linked(server, "BSM-104", "A", 1104, lang)
    first = await says(server, user, "/checkin", is_question)
    message, asked = await walk(server, user, first, stop_after="rf_bari_belly")
    assert q_item(message) == "rf_bari_pregnancy" and "rf_bari_pregnancy" not in asked
    wording = BN_PREGNANCY if lang == "bn" else "Are you pregnant now, or could you be?"
    assert wording in message.content
    await press_value(server, user, message, "yes")
    (alert_msg,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    assert "Red flag (bari_pregnancy)" in alert_msg.content
    said = advice(server, user)
    assert said and HOLD_BARI[lang] in said[0] and "baricitinib" in said[0].replace("বারিসিটিনিব", "baricitinib")


async def test_arm_b_asks_the_bangla_pregnancy_question_as_clinical_md_writes_it(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-105", "B", 1105, "bn")
    first = await says(server, user, "/checkin", is_question)
    message, _ = await walk(server, user, first, stop_after="rf_mtx_skin")
    assert q_item(message) == "rf_mtx_pregnancy"
    assert BN_PREGNANCY in message.content and "গর্ভবতী হতে পারেন" not in message.content


@pytest.mark.parametrize("lang", ["en", "bn"])
async def test_a_report_about_a_pregnancy_in_arm_a_is_urgent(bot: BotHarness, server: BotAPIServer, lang: str) -> None:
    user = await linked(server, "BSM-106", "A", 1106, lang)
    first = await says(server, user, "/report", is_question)
    message, _ = await walk(server, user, first, {"ae_what": "other"}, stop_after="ser_emergency")
    assert q_item(message) == "ae_pregnancy"
    if lang == "bn":
        assert "আপনার স্ত্রী / স্বামী" in message.content and "সঙ্গী" not in message.content
    await press_value(server, user, message, "yes")
    (alert_msg,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    assert "Red flag (bari_pregnancy)" in alert_msg.content


# --- criterion 6 ---------------------------------------------------------------------------------

CRITERION_6 = {
    "en": "Did a doctor have to treat it urgently to stop it becoming dangerous, even without admission to hospital?",
    "bn": "এটা যেন বিপজ্জনক না হয়ে ওঠে, সেজন্য কি কোনো ডাক্তারকে জরুরি চিকিৎসা দিতে হয়েছে (হাসপাতালে ভর্তি না হলেও)?",
}


@pytest.mark.parametrize(("arm", "lang"), [("A", "en"), ("B", "bn")])
async def test_criterion_6_is_asked_as_urgent_treatment_and_makes_a_serious_event(
    bot: BotHarness, server: BotAPIServer, arm: str, lang: str
) -> None:
    user = await linked(server, "BSM-107", arm, 1107, lang)
    first = await says(server, user, "/report", is_question)
    message, _ = await walk(server, user, first, {"ae_what": "breathing"}, stop_after="ser_disability")
    assert q_item(message) == "ser_emergency" and CRITERION_6[lang] in message.content
    closing, _ = await walk(server, user, message, {"ser_emergency": "yes"})
    assert any(t in closing.content for t in THANKS)
    (alert_msg,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    assert "ICH E2A criterion 6" in alert_msg.content and "treat it urgently" in alert_msg.content
    (event,) = await rows(bot, AdverseEvent)
    assert event.serious and event.important_medical_event and event.source == "participant"


# --- /report: red flags first ------------------------------------------------------------------


@pytest.mark.parametrize(("arm", "lang"), [("A", "bn"), ("B", "en")])
async def test_report_asks_safety_first_so_an_abandoned_report_has_alerted(
    bot: BotHarness, server: BotAPIServer, arm: str, lang: str
) -> None:
    user = await linked(server, "BSM-108", arm, 1108, lang)
    first = await says(server, user, "/report", is_question)
    assert q_item(first) == "ae_what"
    first_flag = "rf_bari_infection" if arm == "A" else "rf_mtx_extra_dose"
    message, asked = await walk(server, user, first, {"ae_what": "other", first_flag: "yes"}, stop_after=first_flag)
    assert asked[:2] == ["ae_what", "ser_hospital"]  # straight after "what is the problem"
    assert not {"ae_what_other", "ae_start", "ae_severity"} & set(asked)  # descriptive questions come later
    (alert_msg,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")  # the participant may stop here: alerted
    assert "Red flag" in alert_msg.content and "(not finished)" in alert_msg.content
    closing, rest = await walk(server, user, message, typed={"ae_what_other": "swollen ankles"})
    assert {"ae_what_other", "ae_start", "ae_severity"} <= set(rest)
    assert rest.index("ae_what_other") > max(i for i, item in enumerate(rest) if item.startswith("rf_"))
    assert any(t in closing.content for t in THANKS)
