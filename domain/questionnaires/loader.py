"""Read `content/instruments/*.yaml` into validated `Instrument` objects.

Anything wrong stops loading with an `InstrumentError` whose message starts
with the file name and the item, e.g.
``weekly_checkin.yaml: item 'fever_temp': show_if refers to unknown item 'fevr'``,
so a bad edit to the content is caught at start-up (and in CI), never halfway
through a participant's check-in.

Two conveniences for authors, both resolved here before validation:

* ``- include: _red_flags.yaml`` in an item list pulls in the items of a
  fragment file (files starting with ``_`` are fragments, not instruments), so
  the red-flag wording the study team approves lives in one place;
* ``choice_set: severity`` on an item copies the instrument's named choice list.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from domain.questionnaires.model import Instrument, InstrumentError
from domain.questionnaires.validation import instrument_problems


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (YAML silently keeps the last)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key '{key}' appears twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> Any:
    """Parse one YAML file, naming the file in any error."""
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.load(handle, Loader=_UniqueKeyLoader)
    except OSError as exc:
        raise InstrumentError(f"{path.name}: cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise InstrumentError(f"{path.name}: not valid YAML: {exc}") from exc


def load_instruments(directory: str | Path) -> dict[str, Instrument]:
    """Load and validate every instrument file in `directory`, keyed by instrument id.

    Why: the bot, the scheduler and the tests all need the same validated
    content; one call at start-up refuses any broken file before use.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise InstrumentError(f"{folder}: not a directory of instruments")
    instruments: dict[str, Instrument] = {}
    origin: dict[str, str] = {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        instrument = load_instrument_file(path)
        if instrument.id in instruments:
            other = origin[instrument.id]
            raise InstrumentError(f"{path.name}: instrument id '{instrument.id}' is already used by {other}")
        instruments[instrument.id] = instrument
        origin[instrument.id] = path.name
    return instruments


def load_instrument_file(path: str | Path) -> Instrument:
    """Load and validate one instrument file."""
    file = Path(path)
    raw = read_yaml(file)
    if not isinstance(raw, dict):
        raise InstrumentError(f"{file.name}: the file must be a mapping with id, version, items...")
    raw, sources = _expand(file, raw)
    try:
        instrument = Instrument.model_validate(raw)
    except ValidationError as exc:
        raise InstrumentError(_format_validation_error(file.name, raw, sources, exc)) from None
    problems = instrument_problems(instrument)
    if problems:
        lines = [f"{file.name}: {_with_source(p, sources)}" for p in problems]
        raise InstrumentError("\n".join(lines))
    return instrument


def _expand(file: Path, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Resolve includes and choice sets; return the raw dict and item id -> fragment name."""
    raw = dict(raw)
    items = raw.get("items")
    sources: dict[str, str] = {}
    if not isinstance(items, list):
        return raw, sources
    expanded: list[Any] = []
    for position, entry in enumerate(items, start=1):
        if isinstance(entry, dict) and set(entry) == {"include"}:
            fragment = _read_fragment(file, entry["include"], position)
            for item in fragment:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    sources[item["id"]] = str(entry["include"])
            expanded.extend(fragment)
        else:
            expanded.append(entry)
    sets = raw.get("choice_sets") or {}
    for item in expanded:
        if isinstance(item, dict) and "choice_set" in item:
            name = item.pop("choice_set")
            label = item.get("id", "?")
            if "choices" in item:
                raise InstrumentError(f"{file.name}: item '{label}': has both choice_set and choices")
            if not isinstance(sets, dict) or name not in sets:
                raise InstrumentError(f"{file.name}: item '{label}': unknown choice_set '{name}'")
            item["choices"] = copy.deepcopy(sets[name])
    raw["items"] = expanded
    return raw, sources


def _read_fragment(file: Path, name: object, position: int) -> list[Any]:
    where = f"{file.name}: items entry {position}"
    if not isinstance(name, str) or "/" in name or "\\" in name or not name.startswith("_"):
        raise InstrumentError(f"{where}: include must name a '_fragment.yaml' file in the same folder")
    path = file.parent / name
    if not path.is_file():
        raise InstrumentError(f"{where}: included file '{name}' not found")
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise InstrumentError(f"{where}: included file '{name}' must be a mapping with an 'items' list")
    return copy.deepcopy(data["items"])


def _with_source(problem: str, sources: dict[str, str]) -> str:
    for item_id, fragment in sources.items():
        prefix = f"item '{item_id}':"
        if problem.startswith(prefix):
            return f"item '{item_id}' (from {fragment}):{problem[len(prefix) :]}"
    return problem


def _format_validation_error(file_name: str, raw: dict[str, Any], sources: dict[str, str], exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = "instrument"
        if len(loc) >= 2 and loc[0] in ("items", "scoring") and isinstance(loc[1], int):
            entries = raw.get(str(loc[0])) or []
            entry = entries[loc[1]] if loc[1] < len(entries) else None
            ident = entry.get("id") if isinstance(entry, dict) else None
            kind = "item" if loc[0] == "items" else "scoring"
            where = f"{kind} '{ident}'" if ident is not None else f"{kind} #{loc[1] + 1}"
            if isinstance(ident, str) and ident in sources:
                where += f" (from {sources[ident]})"
            tag = entry.get("type" if kind == "item" else "kind") if isinstance(entry, dict) else None
            loc = loc[2:]
            if loc and loc[0] == tag:
                loc = loc[1:]
        field = ".".join(str(part) for part in loc)
        message = error["msg"]
        lines.append(f"{file_name}: {where}: {field + ': ' if field else ''}{message}")
    return "\n".join(lines)
