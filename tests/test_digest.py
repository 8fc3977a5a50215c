"""bot.digest.split_digest: every item once, in order, in messages Telegram accepts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.digest import DIGEST_LIMIT, TELEGRAM_LIMIT, split_digest

TITLE = "📋 Same-day review, Mon 26 Oct 2026"


def test_nothing_to_list_is_no_message() -> None:
    assert split_digest(TITLE, []) == []


def test_one_short_digest_is_one_message_without_part_numbers() -> None:
    (part,) = split_digest(TITLE, ["• BSM-001 · /ack 3 · nausea"])
    assert part.text == f"{TITLE} · 1 item(s)\n• BSM-001 · /ack 3 · nausea"
    assert part.items == (0,)


def test_the_45_items_that_were_refused_now_fit_in_two_messages() -> None:
    lines = [
        f"• BSM-{i:03d} (arm A) · /ack {i} · Nausea: severe; Mouth sores: moderate · reported Mon 26 Oct 07:{i:02d}"
        for i in range(45)
    ]
    assert len("\n".join(lines)) > TELEGRAM_LIMIT
    parts = split_digest(TITLE, lines)
    assert [p.text.splitlines()[0] for p in parts] == [f"{TITLE} · 45 item(s) · part {k} of 2" for k in (1, 2)]
    assert [i for p in parts for i in p.items] == list(range(45))


def test_a_line_longer_than_a_message_is_cut_not_lost() -> None:
    (part,) = split_digest(TITLE, ["• BSM-001 · /ack 1 · " + "x" * 10_000])
    assert len(part.text) <= DIGEST_LIMIT and part.text.endswith("…") and "/ack 1" in part.text


def test_a_limit_without_room_is_refused() -> None:
    with pytest.raises(ValueError):
        split_digest(TITLE, ["x"], limit=len(TITLE) + 10)


@given(
    st.lists(st.text(alphabet=st.characters(blacklist_characters="\n"), min_size=1, max_size=600), max_size=120),
    st.integers(min_value=200, max_value=DIGEST_LIMIT),
)
def test_every_item_once_in_order_and_every_message_under_the_limit(lines: list[str], limit: int) -> None:
    parts = split_digest(TITLE, lines, limit)
    assert [i for p in parts for i in p.items] == list(range(len(lines)))
    for number, part in enumerate(parts, start=1):
        assert len(part.text) <= limit
        body = part.text.split("\n")[1:]
        assert len(body) == len(part.items)
        for shown, index in zip(body, part.items, strict=True):
            assert shown == lines[index] or (shown.endswith("…") and lines[index].startswith(shown[:-1]))
        if len(parts) > 1:
            assert part.text.split("\n")[0].endswith(f"part {number} of {len(parts)}")
