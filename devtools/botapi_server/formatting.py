"""Text formatting like Telegram does it: HTML, MarkdownV2 and Markdown into plain text and UTF-16 entities."""

from __future__ import annotations

import re
from typing import Any

from devtools.botapi_server.records import ApiError, JSONDict, _bad

# --------------------------------------------------------------------------------------
# Text formatting: parse_mode like Telegram (UTF-16 offsets, same error texts)
# --------------------------------------------------------------------------------------


def _u16(s: str) -> int:
    if s.isascii():
        return len(s)
    return len(s) + sum(1 for ch in s if ord(ch) > 0xFFFF)


def _byte_offset(src: str, index: int) -> int:
    return len(src[:index].encode("utf-8"))


def _entity_error(message: str) -> ApiError:
    return _bad(f"can't parse entities: {message}")


class _Out:
    __slots__ = ("length", "parts")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0

    def add(self, s: str) -> None:
        self.parts.append(s)
        self.length += _u16(s)

    def text(self) -> str:
        return "".join(self.parts)


_HTML_SPECIAL = re.compile(r"[<&]")
_HTML_ENTITY = re.compile(r"&(?:#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6})|(lt|gt|amp|quot));")
_HTML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_TAG_NAME = re.compile(r"[^\s>/]*")
_HTML_ATTR = re.compile(r"([a-zA-Z0-9_-]+)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>\"']+)))?")
_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}


def _html_unescape(value: str) -> str:
    def repl(m: re.Match[str]) -> str:
        return _html_entity_char(m) or m.group(0)

    return _HTML_ENTITY.sub(repl, value)


def _html_entity_char(m: re.Match[str]) -> str | None:
    dec, hexa, named = m.groups()
    if named:
        return _HTML_NAMED[named]
    code = int(dec) if dec else int(hexa, 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code)


def _parse_html(src: str) -> tuple[str, list[JSONDict]]:
    """Telegram's HTML parse mode: tags and entities → plain text and entities."""
    out = _Out()
    entities: list[JSONDict] = []
    stack: list[tuple[str, int, dict[str, str]]] = []
    i, n = 0, len(src)
    while i < n:
        m = _HTML_SPECIAL.search(src, i)
        if m is None:
            out.add(src[i:])
            break
        k = m.start()
        if k > i:
            out.add(src[i:k])
        if src[k] == "&":
            em = _HTML_ENTITY.match(src, k)
            char = _html_entity_char(em) if em else None
            if em is not None and char is not None:
                out.add(char)
                i = em.end()
            else:
                out.add("&")
                i = k + 1
            continue
        if src.startswith("</", k):
            end = src.find(">", k)
            if end < 0:
                raise _entity_error(f"Unclosed end tag at byte offset {_byte_offset(src, k)}")
            name = src[k + 2 : end].strip().lower()
            if not stack:
                raise _entity_error(f"Unexpected end tag at byte offset {_byte_offset(src, k)}")
            tag, start, open_attrs = stack.pop()
            if name != tag:
                raise _entity_error(
                    f'Unmatched end tag at byte offset {_byte_offset(src, k)}, expected "</{tag}>", found "</{name}>"'
                )
            _close_html_entity(tag, start, out.length, open_attrs, stack, entities)
            i = end + 1
            continue
        nm = _HTML_TAG_NAME.match(src, k + 1)
        assert nm is not None
        name = nm.group(0).lower()
        p = nm.end()
        if p >= n:
            raise _entity_error(f"Unclosed start tag at byte offset {_byte_offset(src, k)}")
        if name not in _HTML_TAGS:
            raise _entity_error(f'Unsupported start tag "{name}" at byte offset {_byte_offset(src, k)}')
        attrs: dict[str, str] = {}
        while True:
            while p < n and src[p].isspace():
                p += 1
            if p >= n:
                raise _entity_error(f"Unclosed start tag at byte offset {_byte_offset(src, k)}")
            if src[p] == ">":
                p += 1
                break
            am = _HTML_ATTR.match(src, p)
            if am is None:
                raise _entity_error(f'Empty attribute name in the tag "{name}" at byte offset {_byte_offset(src, p)}')
            value = next((g for g in am.groups()[1:] if g is not None), "")
            attrs[am.group(1).lower()] = _html_unescape(value)
            p = am.end()
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise _entity_error('Tag "span" must have class "tg-spoiler"')
        stack.append((name, out.length, attrs))
        i = p
    if stack:
        raise _entity_error(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return out.text(), entities


def _close_html_entity(
    tag: str,
    start: int,
    end: int,
    attrs: dict[str, str],
    stack: list[tuple[str, int, dict[str, str]]],
    entities: list[JSONDict],
) -> None:
    if tag == "code" and stack and stack[-1][0] == "pre":
        language = attrs.get("class", "")
        if language.startswith("language-"):
            stack[-1][2]["\0language"] = language[len("language-") :]
        return
    if end <= start:
        return
    kind = _HTML_TAGS[tag]
    entity: JSONDict = {"type": kind, "offset": start, "length": end - start}
    if tag == "a":
        href = attrs.get("href", "")
        if not href:
            return
        entity["url"] = href
    elif tag == "pre" and "\0language" in attrs:
        entity["language"] = attrs["\0language"]
    elif tag == "blockquote" and "expandable" in attrs:
        entity["type"] = "expandable_blockquote"
    elif tag == "tg-emoji":
        entity["custom_emoji_id"] = attrs.get("emoji-id", "")
    entities.append(entity)


_MD2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MD2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
    "code": "Code",
    "pre": "Pre",
}


def _parse_markdown_v2(src: str) -> tuple[str, list[JSONDict]]:
    """Telegram's MarkdownV2 parse mode, including its reserved-character errors."""
    out = _Out()
    entities: list[JSONDict] = []
    stack: list[tuple[str, int, int, JSONDict]] = []  # kind, utf16 start, src index, extra
    quote_start: int | None = None
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "\\" and i + 1 < n and 0 < ord(src[i + 1]) <= 126:
            out.add(src[i + 1])
            i += 2
            continue
        top = stack[-1] if stack else None
        if top is not None and top[0] in ("code", "pre"):
            end_mark = "```" if top[0] == "pre" else "`"
            if src.startswith(end_mark, i):
                stack.pop()
                if out.length > top[1]:
                    entity: JSONDict = {"type": top[0], "offset": top[1]}
                    entity["length"] = out.length - top[1]
                    entity.update(top[3])
                    entities.append(entity)
                i += len(end_mark)
            else:
                out.add(c)
                i += 1
            continue
        if c == "\n":
            if quote_start is not None and not src.startswith(">", i + 1):
                if out.length > quote_start:
                    entities.append({"type": "blockquote", "offset": quote_start, "length": out.length - quote_start})
                quote_start = None
            out.add(c)
            i += 1
            continue
        if c == ">" and (i == 0 or src[i - 1] == "\n"):
            if quote_start is None:
                quote_start = out.length
            i += 1
            continue
        if c not in _MD2_RESERVED:
            out.add(c)
            i += 1
            continue
        if top is not None:
            kind = top[0]
            width = 0
            closes_one = (
                (kind == "bold" and c == "*")
                or (kind == "strikethrough" and c == "~")
                or (kind == "italic" and c == "_" and not src.startswith("__", i))
                or (kind in ("text_link", "custom_emoji") and c == "]")
            )
            closes_two = (kind == "underline" and src.startswith("__", i)) or (
                kind == "spoiler" and src.startswith("||", i)
            )
            width = 1 if closes_one else 2 if closes_two else 0
            if width:
                stack.pop()
                i += width
                extra: JSONDict = {}
                if kind in ("text_link", "custom_emoji"):
                    if not src.startswith("(", i):
                        if kind == "custom_emoji":
                            raise _entity_error("Custom emoji entity must contain a tg://emoji URL")
                        continue
                    url_parts: list[str] = []
                    j = i + 1
                    while j < n and src[j] != ")":
                        if src[j] == "\\" and j + 1 < n:
                            j += 1
                        url_parts.append(src[j])
                        j += 1
                    if j >= n:
                        raise _entity_error(f"Can't find end of a URL at byte offset {_byte_offset(src, i)}")
                    url = "".join(url_parts)
                    i = j + 1
                    if kind == "text_link":
                        extra["url"] = url
                    else:
                        extra["custom_emoji_id"] = url.rpartition("id=")[2]
                if out.length > top[1]:
                    entity = {"type": kind, "offset": top[1], "length": out.length - top[1]}
                    entity.update(extra)
                    entities.append(entity)
                continue
        start_index = i
        extra = {}
        if c == "*":
            kind, i = "bold", i + 1
        elif c == "_":
            kind, i = ("underline", i + 2) if src.startswith("__", i) else ("italic", i + 1)
        elif c == "~":
            kind, i = "strikethrough", i + 1
        elif c == "|" and src.startswith("||", i):
            kind, i = "spoiler", i + 2
        elif c == "[":
            kind, i = "text_link", i + 1
        elif c == "!" and src.startswith("![", i):
            kind, i = "custom_emoji", i + 2
        elif c == "`" and src.startswith("```", i):
            kind, i = "pre", i + 3
            newline = src.find("\n", i)
            language = src[i:newline] if newline >= 0 else ""
            if newline >= 0 and language and not any(ch.isspace() for ch in language) and ("`" not in language):
                extra["language"] = language
                i = newline + 1
            elif src.startswith("\n", i):
                i += 1
        elif c == "`":
            kind, i = "code", i + 1
        else:
            raise _entity_error(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
        stack.append((kind, out.length, start_index, extra))
    if quote_start is not None and out.length > quote_start:
        entities.append({"type": "blockquote", "offset": quote_start, "length": out.length - quote_start})
    if stack:
        kind, _, index, _ = stack[-1]
        raise _entity_error(f"Can't find end of {_MD2_NAMES[kind]} entity at byte offset {_byte_offset(src, index)}")
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return out.text(), entities


def _parse_markdown(src: str) -> tuple[str, list[JSONDict]]:
    """Telegram's legacy Markdown parse mode (no nesting)."""
    out = _Out()
    entities: list[JSONDict] = []
    kinds = {"*": "bold", "_": "italic", "`": "code"}
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "\\" and i + 1 < n and src[i + 1] in "_*`[":
            out.add(src[i + 1])
            i += 2
            continue
        if c not in "_*`[":
            out.add(c)
            i += 1
            continue
        not_closed = _entity_error(f"Can't find end of the entity starting at byte offset {_byte_offset(src, i)}")
        start = out.length
        if src.startswith("```", i):
            end = src.find("```", i + 3)
            if end < 0:
                raise not_closed
            body = src[i + 3 : end]
            entity: JSONDict = {"type": "pre"}
            first, sep, rest = body.partition("\n")
            if sep and first and not any(ch.isspace() for ch in first):
                entity["language"], body = first, rest
            out.add(body)
            i = end + 3
        elif c == "[":
            end = src.find("]", i + 1)
            if end < 0 or not src.startswith("(", end + 1) or src.find(")", end + 2) < 0:
                raise not_closed
            close = src.find(")", end + 2)
            out.add(src[i + 1 : end])
            entity = {"type": "text_link", "url": src[end + 2 : close]}
            i = close + 1
        else:
            end = src.find(c, i + 1)
            if end < 0:
                raise not_closed
            out.add(src[i + 1 : end])
            entity = {"type": kinds[c]}
            i = end + 1
        if out.length > start:
            entity.update(offset=start, length=out.length - start)
            entities.append(entity)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return out.text(), entities


def _format_text(text: str, parse_mode: str | None, entities: Any) -> tuple[str, list[JSONDict]]:
    """Apply parse_mode (or explicit entities) and trim like Telegram does."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        plain, ents = _parse_html(text)
    elif mode == "markdownv2":
        plain, ents = _parse_markdown_v2(text)
    elif mode == "markdown":
        plain, ents = _parse_markdown(text)
    elif mode:
        raise _bad(f"unsupported parse_mode {parse_mode}")
    else:
        plain = text
        ents = [dict(e) for e in entities] if isinstance(entities, list) else []
    stripped = plain.strip()
    if stripped != plain and stripped:
        shift = _u16(plain[: len(plain) - len(plain.lstrip())])
        limit = _u16(stripped)
        trimmed: list[JSONDict] = []
        for e in ents:
            start = max(0, int(e["offset"]) - shift)
            end = min(limit, int(e["offset"]) + int(e["length"]) - shift)
            if end > start:
                trimmed.append({**e, "offset": start, "length": end - start})
        ents = trimmed
    elif not stripped:
        ents = []
    return stripped, ents


def _command_entities(text: str) -> list[JSONDict]:
    """The ``bot_command`` entity Telegram adds to a message starting with /command."""
    if not text.startswith("/"):
        return []
    command = re.match(r"/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,64})?", text)
    if command is None:
        return []
    return [{"type": "bot_command", "offset": 0, "length": _u16(command.group(0))}]
