"""Every participant-facing string is in the catalog, and has its Bangla."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import date, time
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot.i18n import (
    _,
    format_date,
    format_number,
    format_time,
    localize_digits,
    use_locale,
    weekday_name,
)
from core.digits import to_ascii_digits

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ROOT / "locales"
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


def catalog(lang: str):  # type: ignore[no-untyped-def]
    with (LOCALES / lang / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle, locale=lang)


def template_ids() -> set[str]:
    with (LOCALES / "messages.pot").open("rb") as handle:
        return {m.id for m in read_po(handle) if m.id}


def test_the_template_holds_every_string_marked_in_the_code(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            str(LOCALES / "babel.cfg"),
            "-k",
            "N_",
            "-k",
            "_",
            "--no-location",
            "--omit-header",
            "-o",
            str(fresh),
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    with fresh.open("rb") as handle:
        extracted = {m.id for m in read_po(handle) if m.id}
    missing = extracted - template_ids()
    assert not missing, f"run `make i18n`: strings not in locales/messages.pot: {sorted(missing)}"


@pytest.mark.parametrize("lang", ["bn", "en"])
def test_each_catalog_has_every_template_string(lang: str) -> None:
    ids = {m.id for m in catalog(lang) if m.id}
    assert template_ids() <= ids, f"run `make i18n`: {sorted(template_ids() - ids)}"


def test_every_message_has_a_bangla_translation_that_is_not_fuzzy() -> None:
    problems = [m.id for m in catalog("bn") if m.id and (not all(forms(m.string)) or m.fuzzy)]
    assert not problems, f"untranslated or fuzzy in locales/bn: {problems}"


def forms(value: str | tuple[str, ...]) -> tuple[str, ...]:
    """A message's id or string as a tuple (plural messages have several forms)."""
    return value if isinstance(value, tuple) else (value,)


def test_bangla_keeps_every_placeholder() -> None:
    for m in catalog("bn"):
        if m.id and m.string:
            wanted = set(PLACEHOLDER.findall(forms(m.id)[-1]))
            for text in forms(m.string):
                assert wanted == set(PLACEHOLDER.findall(text)), m.id


def test_bangla_text_is_actually_bangla() -> None:
    for m in catalog("bn"):
        if m.id and m.id != "বাংলা / English":
            for text in forms(m.string):
                assert re.search("[\u0980-\u09ff]", text), f"no Bangla letters in the translation of {m.id!r}"


@pytest.mark.parametrize("lang", ["bn", "en"])
def test_catalogs_say_their_language_and_plural_rule(lang: str) -> None:
    cat = catalog(lang)
    assert str(cat.locale) == lang and cat.plural_forms == "nplurals=2; plural=(n != 1);"
    raw = (LOCALES / lang / "LC_MESSAGES" / "messages.po").read_text(encoding="utf-8")
    assert f'"Language: {lang}\\n"' in raw and '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"' in raw


def test_translation_follows_the_current_locale() -> None:
    with use_locale("bn"):
        assert _("Your medicine:") == "আপনার ওষুধ:"
    with use_locale("en"):
        assert _("Your medicine:") == "Your medicine:"


def test_dates_in_bangla_have_bengali_names_and_digits() -> None:
    assert format_date(date(2026, 10, 25), "long", "bn") == "রবিবার, ২৫ অক্টোবর ২০২৬"
    assert format_date(date(2026, 10, 25), "long", "en") == "Sunday, 25 October 2026"
    assert format_time(time(21, 5), "bn") == "রাত ৯:০৫" and format_time(time(21, 5), "en") == "9:05 pm"
    assert weekday_name(4, "bn") == "শুক্রবার" and weekday_name(4, "en") == "Friday"
    assert format_number(25, "bn") == "২৫" and format_number(37.5, "en") == "37.5"


def test_digits_both_ways() -> None:
    assert localize_digits("09:30 2026", "bn") == "০৯:৩০ ২০২৬"
    assert to_ascii_digits("০৯:৩০ ২০২৬") == "09:30 2026"
