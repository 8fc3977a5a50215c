"""Cross-field checks on an instrument that the pydantic schema cannot express.

Each problem is reported as "item 'x': what is wrong" so the loader can prefix
the file name and the study team can find the line to fix.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel

from domain.questionnaires.conditions import COMPARISONS, Condition, is_number
from domain.questionnaires.model import (
    AltUnit,
    DateItem,
    FreeTextItem,
    HaqDiRule,
    Instrument,
    Item,
    NumberItem,
    ScaleItem,
    SingleChoiceItem,
    Text,
    ValueRule,
    YesNoItem,
)
from domain.questionnaires.parsing import BACK_WORDS, SKIP_WORDS, choice_number, fold


def instrument_problems(instrument: Instrument) -> list[str]:
    """Every cross-field problem in the instrument (empty list: usable)."""
    problems: list[str] = []
    problems += _instrument_level(instrument)
    seen: dict[str, Item] = {}
    for item in instrument.items:
        where = f"item '{item.id}'"
        if item.id in seen:
            problems.append(f"{where}: duplicate item id")
            continue
        problems += [f"{where}: {p}" for p in _item_problems(instrument, item, seen)]
        seen[item.id] = item
    problems += _text_problems(instrument)
    problems += _scoring_problems(instrument)
    return problems


def _instrument_level(instrument: Instrument) -> list[str]:
    out: list[str] = []
    if instrument.switchable and instrument.enabled_by is None:
        out.append("instrument: switchable needs enabled_by (the switch that turns it on)")
    if len(set(instrument.languages)) != len(instrument.languages):
        out.append("instrument: languages repeated")
    if instrument.visit_weeks is not None and any(w < 0 for w in instrument.visit_weeks):
        out.append("instrument: visit_weeks must not be negative")
    return out


def _item_problems(instrument: Instrument, item: Item, earlier: dict[str, Item]) -> list[str]:
    out: list[str] = []
    ids = {other.id for other in instrument.items}
    if item.arms is not None and instrument.applies_to is not None:
        stray = sorted(set(item.arms) - set(instrument.applies_to))
        if stray:
            out.append(f"arms {stray} are not in the instrument's applies_to")
    if item.show_if is not None:
        out += [f"show_if {p}" for p in _condition_problems(item.show_if, earlier, None, item.id, ids)]
    if item.value_if_hidden is not None:
        if item.show_if is None:
            out.append("value_if_hidden needs a show_if")
        elif not _valid_value(item, item.value_if_hidden):
            out.append(f"value_if_hidden {item.value_if_hidden!r} is not a possible answer")
    out += _type_problems(item)
    with_self = {**earlier, item.id: item}
    for rule in item.grade_rules:
        out += [f"grade_rules when {p}" for p in _condition_problems(rule.when, with_self, item, item.id, ids)]
    if item.symptom is not None and not item.grade_rules:
        if not isinstance(item, SingleChoiceItem):
            out.append("symptom needs grade_rules (only single_choice items grade by choice)")
        elif any(choice.grade is None for choice in item.choices):
            out.append("symptom needs a grade on every choice")
    for flag in item.red_flags:
        if flag.when is None and not isinstance(item, YesNoItem):
            out.append(f"red flag '{flag.code}' needs 'when' (only yes_no defaults to yes)")
        if flag.when is not None:
            out += [
                f"red flag '{flag.code}' when {p}"
                for p in _condition_problems(flag.when, with_self, item, item.id, ids)
            ]
        asked_in = item.arms or instrument.applies_to  # None: every arm
        arms = set(flag.arms or []) - set(asked_in) if asked_in is not None else set()
        if arms:
            out.append(f"red flag '{flag.code}' arms {sorted(arms)} never see this item")
    if item.seriousness is not None:
        tag = item.seriousness
        if tag.when is None and not isinstance(item, YesNoItem):
            out.append("seriousness needs 'when' (only yes_no defaults to yes)")
        if tag.when is not None:
            out += [f"seriousness when {p}" for p in _condition_problems(tag.when, with_self, item, item.id, ids)]
    return out


def _type_problems(item: Item) -> list[str]:
    if isinstance(item, SingleChoiceItem):
        return _choice_problems(item)
    if isinstance(item, NumberItem):
        return _number_problems(item)
    if isinstance(item, ScaleItem) and not 0 <= item.min < item.max <= 10:
        return [f"scale range {item.min}..{item.max} must lie within 0..10 with min < max"]
    if isinstance(item, YesNoItem):
        labels = {fold(item.yes_label.get(lang)) for lang in ("en", "bn")}
        if labels & {fold(item.no_label.get(lang)) for lang in ("en", "bn")}:
            return ["yes and no labels must differ"]
    return []


def _choice_problems(item: SingleChoiceItem) -> list[str]:
    out: list[str] = []
    values = [c.value for c in item.choices]
    for value in sorted({v for v in values if values.count(v) > 1}):
        out.append(f"choice value '{value}' is used twice")
    owner: dict[str, str] = {}
    for choice in item.choices:
        keys = {fold(choice.label.get(lang)) for lang in ("en", "bn")}
        keys |= {fold(alias) for alias in choice.aliases}
        for key in sorted(keys):
            if choice_number(key) is not None:
                out.append(f"choice '{choice.value}': '{key}' looks like a choice number")
            if key in SKIP_WORDS | BACK_WORDS:
                out.append(f"choice '{choice.value}': '{key}' is reserved for skip/back")
            if key in owner and owner[key] != choice.value:
                out.append(f"choices '{owner[key]}' and '{choice.value}' share the label '{key}'")
            owner.setdefault(key, choice.value)
    if len(item.choices) > 12:
        out.append("more than 12 choices do not fit as buttons")
    return out


def _number_problems(item: NumberItem) -> list[str]:
    out: list[str] = []
    if not item.min < item.max:
        out.append(f"number range min {item.min} must be below max {item.max}")
    for alt in item.alt_units:
        out += _alt_unit_problems(item, alt)
    return out


def _alt_unit_problems(item: NumberItem, alt: AltUnit) -> list[str]:
    name = alt.unit.get("en")
    out: list[str] = []
    if not alt.min < alt.max:
        out.append(f"alt unit '{name}' range min {alt.min} must be below max {alt.max}")
    if alt.divide_by == 0 or alt.multiply_by == 0:
        out.append(f"alt unit '{name}' conversion must not multiply or divide by 0")
    if alt.infer_from_range and alt.min <= item.max and item.min <= alt.max:
        out.append(f"alt unit '{name}' range overlaps the main range, so a bare number is ambiguous")
    return out


def _valid_value(item: Item, value: object) -> bool:
    if isinstance(item, SingleChoiceItem):
        return isinstance(value, str) and value in item.choice_by_value
    if isinstance(item, YesNoItem):
        return isinstance(value, bool)
    if isinstance(item, ScaleItem | NumberItem):
        return is_number(value) and item.min <= value <= item.max  # type: ignore[operator]
    if isinstance(item, DateItem | FreeTextItem):
        return isinstance(value, str)
    return False  # pragma: no cover


def _condition_problems(
    cond: Condition, known: dict[str, Item], own: Item | None, this_id: str, all_ids: set[str]
) -> list[str]:
    """Problems of a condition that may read `known` items (`own` when 'item' is left out)."""
    out: list[str] = []
    for leaf in cond.leaves():
        ref = leaf.item if leaf.item is not None else (own.id if own is not None else None)
        if ref is None:
            out.append(f"has a '{leaf.operator}' test without 'item'")
            continue
        target = known.get(ref)
        if target is not None:
            out += _operand_problems(leaf, target)
        elif ref == this_id:
            out.append(f"refers to item '{ref}' itself")
        elif ref in all_ids:
            out.append(f"refers to later item '{ref}' (only earlier items may be read)")
        else:
            out.append(f"refers to unknown item '{ref}'")
    return out


def _operand_problems(leaf: Condition, target: Item) -> list[str]:
    op = leaf.operator
    if op == "answered":
        return []
    if op in {c.rstrip("_") for c in COMPARISONS}:
        if isinstance(target, ScaleItem | NumberItem):
            return []
        return [f"compares '{target.id}' with '{op}' but it is not a number item"]
    values = leaf.in_ if leaf.in_ is not None else [leaf.operand]
    return [
        f"compares '{target.id}' with {value!r}, which is not one of its possible answers"
        for value in values
        if not _valid_value(target, value)
    ]


def _iter_texts(node: object, path: str) -> Iterator[tuple[str, Text]]:
    if isinstance(node, Text):
        yield path, node
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _iter_texts(getattr(node, name), f"{path}.{name}" if path else name)
    elif isinstance(node, list | tuple):
        for i, child in enumerate(node):
            yield from _iter_texts(child, f"{path}[{i}]")
    elif isinstance(node, dict):
        for key, child in node.items():
            yield from _iter_texts(child, f"{path}.{key}")


def _text_problems(instrument: Instrument) -> list[str]:
    out: list[str] = []
    for field_name in type(instrument).model_fields:
        if field_name == "items":
            continue
        for path, text in _iter_texts(getattr(instrument, field_name), field_name):
            out += [f"instrument: {p}" for p in _missing_languages(instrument, path, text)]
    for item in instrument.items:
        for path, text in _iter_texts(item, ""):
            out += [f"item '{item.id}': {p}" for p in _missing_languages(instrument, path, text)]
    return out


def _missing_languages(instrument: Instrument, path: str, text: Text) -> list[str]:
    missing = [lang for lang in instrument.languages if not (getattr(text, lang) or "").strip()]
    return [f"{path}.{lang} is missing or empty" for lang in missing]


def _scoring_problems(instrument: Instrument) -> list[str]:
    out: list[str] = []
    ids: set[str] = set()
    for rule in instrument.scoring:
        where = f"scoring '{rule.id}'"
        if rule.id in ids:
            out.append(f"{where}: duplicate scoring id")
        ids.add(rule.id)
        if isinstance(rule, ValueRule):
            target = instrument.item_index.get(rule.item)
            if target is None:
                out.append(f"{where}: refers to unknown item '{rule.item}'")
            elif not isinstance(instrument.items[target], ScaleItem | NumberItem):
                out.append(f"{where}: item '{rule.item}' is not a number or scale item")
        elif isinstance(rule, HaqDiRule):
            out += [f"{where}: {p}" for p in _haq_problems(instrument, rule)]
    return out


def _haq_problems(instrument: Instrument, rule: HaqDiRule) -> list[str]:
    out: list[str] = []
    if rule.min_categories > len(rule.categories):
        out.append(f"min_categories {rule.min_categories} is more than the {len(rule.categories)} categories")
    used: set[str] = set()
    for category in rule.categories:
        for item_id in (*category.items, *category.aids, *category.help):
            index = instrument.item_index.get(item_id)
            if index is None:
                out.append(f"category '{category.id}' refers to unknown item '{item_id}'")
                continue
            item = instrument.items[index]
            if item_id in category.items:
                if item_id in used:
                    out.append(f"item '{item_id}' is in more than one category")
                used.add(item_id)
                if not isinstance(item, SingleChoiceItem) or any(c.score is None for c in item.choices):
                    out.append(f"category '{category.id}': item '{item_id}' needs a score on every choice")
            elif not isinstance(item, YesNoItem):
                out.append(f"category '{category.id}': aid/help item '{item_id}' must be yes_no")
    return out
