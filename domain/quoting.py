"""Words a participant (or a coordinator's Telegram name) typed, made safe to show
inside a message the study team trusts: one line, no control or invisible formatting
characters, cut to a length. Without this a participant could write a line break and
"✅ Acknowledged by Dr …" into an open alert, or turn its text around with bidi marks."""

from __future__ import annotations

import re
import unicodedata

KEEP_FORMAT = frozenset({"\u200c", "\u200d"})
"""Zero-width non-joiner and joiner: Bangla needs them to shape some conjuncts, and
they cannot move or break a line."""

_SPACES = re.compile(r"\s+")


def one_line(text: str, limit: int) -> str:
    """`text` on one line: line breaks and other white space become one space; control
    (Cc), format (Cf: bidi overrides, zero-width spaces…), separator (Zl, Zp), private-use
    and unassigned characters are dropped; at most `limit` characters (… when cut)."""
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char.isspace() or category in ("Zl", "Zp"):
            kept.append(" ")
        elif char in KEEP_FORMAT or category not in ("Cc", "Cf", "Co", "Cn", "Cs"):
            kept.append(char)
    flat = _SPACES.sub(" ", "".join(kept)).strip()
    return flat if len(flat) <= limit else flat[: max(limit - 1, 0)].rstrip() + "…"


def participant_words(text: str, limit: int) -> str:
    """A participant's own words, marked as theirs and set apart in quotation marks
    (theirs are shown as ″ so the quote cannot be closed early)."""
    return "participant wrote: “" + one_line(text, limit).replace("“", "″").replace("”", "″") + "”"


def name_with_actor(display_name: str, actor: str, width: int) -> str:
    """`Name (actor)` in `width` characters: the name is cut, never the actor id that
    says who it was."""
    room = width - len(actor) - 3
    name = one_line(display_name, max(room, 0)) if room > 0 else ""
    return f"{name} ({actor})" if name else actor[:width]
