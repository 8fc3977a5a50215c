"""Reading the protocol file: YAML without surprises, every problem with its place and line."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from scheduler.protocol.checks import _semantic_problems
from scheduler.protocol.model import Protocol, ProtocolError

# --------------------------------------------------------------------------- YAML loading


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 surprises.

    Dates stay strings (so pydantic reports ``2026-02-30`` with its place instead of PyYAML
    crashing), ``22:00`` is not the base-60 number 1320, ``010`` is not octal 8.
    """


_DROPPED_TAGS = {
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9][0-9_]*)$"),
    list("-+0123456789."),
)


def _duplicate_keys(node: yaml.Node) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    stack: list[yaml.Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in current.value:
                name = str(key.value)
                if name in seen:
                    problems.append(
                        (
                            f"line {key.start_mark.line + 1}",
                            f"duplicate key {name!r} (first at line {seen[name]})",
                        )
                    )
                else:
                    seen[name] = key.start_mark.line + 1
                stack.append(value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return problems


def _line_of(root: yaml.Node | None, loc: Iterable[str | int]) -> int | None:
    if root is None:
        return None
    node: yaml.Node = root
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if str(key.value) == str(part):
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _place(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _describe(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    given = err.get("input")
    got = "" if isinstance(given, (dict, list)) else f", got {given!r}"
    if kind == "missing":
        return "required, but missing"
    if kind == "extra_forbidden":
        return "unknown field (check the spelling)"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign, key = {
            "greater_than_equal": (">=", "ge"),
            "greater_than": (">", "gt"),
            "less_than_equal": ("<=", "le"),
            "less_than": ("<", "lt"),
        }[kind]
        return f"must be {sign} {ctx.get(key)}{got}"
    if kind.startswith("date"):
        return f"must be a date written YYYY-MM-DD{got}"
    if kind.startswith("int"):
        return f"must be a whole number{got}"
    if kind.startswith("float"):
        return f"must be a number{got}"
    if kind.startswith("bool"):
        return f"must be true or false{got}"
    if kind == "string_type":
        return f"must be text{got}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind in ("too_short",):
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping of names to values{got}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list{got}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}{got}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    message = str(err["msg"])
    return message.replace("Input should be", "must be", 1) + got


def protocol_from_mapping(
    data: object,
    source: str = "protocol",
    known_instruments: Collection[str] | None = None,
    *,
    _root: yaml.Node | None = None,
) -> Protocol:
    """Validate already-parsed protocol data (a dict); for tests and other file formats.

    Raises :class:`ProtocolError` listing every problem with its place.
    """
    if not isinstance(data, dict):
        raise ProtocolError(source, [("(top level)", "must be a mapping of settings")])
    try:
        proto = Protocol.model_validate(data)
    except ValidationError as exc:
        problems: list[tuple[str, str]] = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_of(_root, loc)
            suffix = f" (line {line})" if line is not None else ""
            problems.append((_place(loc), _describe(err) + suffix))
        raise ProtocolError(source, problems) from None
    semantic = _semantic_problems(proto, known_instruments)
    if semantic:
        out: list[tuple[str, str]] = []
        for loc, message in semantic:
            line = _line_of(_root, loc)
            out.append((_place(loc), message + (f" (line {line})" if line is not None else "")))
        raise ProtocolError(source, out)
    return proto


def load_protocol(path: str | Path, known_instruments: Collection[str] | None = None) -> Protocol:
    """Read and validate the protocol file; the only way the bot gets its schedule rules.

    ``known_instruments``: the questionnaire ids that exist (instrument files); when given,
    any other id in the protocol is refused. Every problem raises :class:`ProtocolError`
    with the file name, the place and the line.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(source, [("", f"cannot read the file: {exc}")]) from None
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise ProtocolError(source, [("", "the file is empty")])
        duplicates = _duplicate_keys(root)
        if duplicates:
            raise ProtocolError(source, duplicates)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ProtocolError(source, [(where, f"not valid YAML: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise ProtocolError(source, [("", f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    return protocol_from_mapping(data, source, known_instruments, _root=root)
