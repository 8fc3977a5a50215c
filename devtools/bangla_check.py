"""The glossary check (GLOSSARY-bn.md) for one Bangla text: a clock time without
its part of the day, a Latin digit (other than a phone number as dialled and a
study id), a word the glossary replaces. Used by the wording tests and shown in
the review table (`make i18n-review`)."""

from __future__ import annotations

import re
import unicodedata

# The glossary's "not" words (and a few the issue names), with what to write instead.
NOT_WORDS = {
    "স্টাডি টিম": "গবেষণা দল",
    "স্টাডির": "গবেষণা দলের / গবেষণার",
    "স্টাডিতে": "গবেষণায়",
    "ভিজিট": "চেকআপ",
    "গিঁট": "গিরায় ব্যথা (জোড়ায় ব্যথা)",
    "মারাত্মক": "খুব বেশি",
    "সঙ্গী": "আপনার স্ত্রী / স্বামী",
    "সামর্থ্য": "(what the person can do, in plain words)",
    "সাজগোজ": "চুল-মুখের যত্ন",
    "তীব্র": "বেশি / খুব বেশি",
    "বার্তা": "মেসেজ",
    "বড়ি": "ট্যাবলেট",
    "মি.গ্রা.": "মিলিগ্রাম",
    "খিদে কমে": "খাবারে রুচি কমে যাওয়া",
    "পিছনে": "◀ আগের প্রশ্ন",
    "রাখা হলো": "✓ লেখা হয়েছে",
    "°সে": "ডিগ্রি (সেলসিয়াস)",
    "°ফা": "ডিগ্রি (ফারেনহাইট)",
    "একাধিক দিনে": "একের বেশি দিনে",
}
# Words wrong only at the start of a word (তাপমাত্রা is fine), and নির্দেশ but not
# নির্দেশনা ("instructions").
BN_LETTER = "\u0980-\u09ff"
NOT_WORD_STARTS = {
    rf"(?<![{BN_LETTER}])নির্দেশ(?!না)": "নির্দেশ (write কমান্ড)",
    rf"(?<![{BN_LETTER}])মাত্রা": "মাত্রা (write ডোজ)",
}
# The site's names belong in content/protocol.yaml, never in a catalog string.
NOT_IN_CATALOG = ("বিএসএমএমইউ", "BSMMU", "পিজি হাসপাতাল", "PG Hospital")

PARTS = "ভোর|সকাল|দুপুর|বিকাল|সন্ধ্যা|রাত"
CLOCK = re.compile(r"[০-৯0-9]{1,2}:[০-৯0-9]{2}")
TIME_WITH_PART = re.compile(rf"(?:{PARTS}) [০-৯]{{1,2}}:[০-৯]{{2}}")  # as format_time writes it
QUESTION_OF = re.compile(r"প্রশ্ন [০-৯]+ ?/ ?[০-৯]+")
# A phone number as dialled ("+8801711000000"), a study id, and names that carry a
# digit (ICH E2A, in the coordinators' reasons).
ALLOWED_LATIN_NUMBERS = re.compile(r"\+[0-9]{8,15}(?![0-9])|\b[A-Z][A-Z0-9]{1,9}-[0-9]{1,6}\b|ICH E2A")


def problems(text: str) -> list[str]:
    """What in a rendered Bangla text breaks the glossary (empty when nothing)."""
    text = unicodedata.normalize("NFC", text)
    found = []
    without_ids = ALLOWED_LATIN_NUMBERS.sub("", text)
    if re.search(r"[0-9]", without_ids):
        found.append("Latin digit outside the phone number and a study id")
    for match in CLOCK.finditer(text):  # a clock time must follow its part of the day
        if not re.search(rf"(?:{PARTS}) $", text[: match.start()]):
            found.append(f"time without the part of the day: {match.group()}")
    for word, instead in NOT_WORDS.items():
        if unicodedata.normalize("NFC", word) in text:
            found.append(f"'{word}' (write {instead})")
    found += [complaint for pattern, complaint in NOT_WORD_STARTS.items() if re.search(pattern, text)]
    if QUESTION_OF.search(text):
        found.append("'প্রশ্ন ৩ / ১২' (write প্রশ্ন ৩ (মোট ১২টি))")
    return found


def names_the_site(msgstr: str) -> list[str]:
    """Site names spelt out in a catalog string (they belong in content/protocol.yaml)."""
    return [name for name in NOT_IN_CATALOG if name in msgstr]
