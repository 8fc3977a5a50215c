"""Splitting the 08:00 same-day digest into messages Telegram accepts.

One message holds at most 4,096 characters; a digest of 45 items was 4,627 and was
refused for good. Pure: the items' lines in, the messages and which items each one
carries out, so that an item counts as listed only with the message that shows it."""

from __future__ import annotations

from dataclasses import dataclass

TELEGRAM_LIMIT = 4096
DIGEST_LIMIT = 4000
"""Room left under Telegram's limit for the alert footer and safety."""


@dataclass(frozen=True)
class DigestPart:
    """One message of the digest and the positions (in the input) of the items it lists."""

    text: str
    items: tuple[int, ...]


def split_digest(title: str, lines: list[str], limit: int = DIGEST_LIMIT) -> list[DigestPart]:
    """The title (with the item count and, when there is more than one, `part k of n`)
    and the item lines, in order, in as few messages of at most `limit` characters as
    they fit in; a single line longer than a message is cut with "…" (it still names
    its study id and /ack first). No lines: no messages."""
    if not lines:
        return []
    heading_room = len(title) + len(f" · {len(lines)} item(s) · part {len(lines)} of {len(lines)}") + 1
    room = limit - heading_room
    if room < 20:
        raise ValueError("the limit leaves no room for the items")
    groups: list[list[int]] = []
    size = 0
    for index, line in enumerate(lines):
        length = min(len(line), room) + 1
        if not groups or size + length > room:
            groups.append([])
            size = 0
        groups[-1].append(index)
        size += length
    parts = []
    for number, group in enumerate(groups, start=1):
        heading = f"{title} · {len(lines)} item(s)" + (f" · part {number} of {len(groups)}" if len(groups) > 1 else "")
        body = [_cut(lines[i], room) for i in group]
        parts.append(DigestPart("\n".join([heading, *body]), tuple(group)))
    return parts


def _cut(line: str, room: int) -> str:
    return line if len(line) <= room else line[: room - 1] + "…"
