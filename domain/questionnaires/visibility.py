"""Which items are asked, given the arm, the switches and earlier answers.

Shared by the engine (what to ask next), scoring and triage (which answers
count, and which answers a gate implies, e.g. "no stomach problems" implies
"none" for each of them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from domain.questionnaires.conditions import Answer
from domain.questionnaires.model import Instrument, Item


def instrument_available(instrument: Instrument, arm: str, switches: Iterable[str] = ()) -> bool:
    """Whether this instrument may be started for this arm with these switches."""
    if instrument.applies_to is not None and arm not in instrument.applies_to:
        return False
    return not instrument.switchable or instrument.enabled_by in set(switches)


def item_visible(item: Item, answers: Mapping[str, Answer], arm: str, switches: Iterable[str] = ()) -> bool:
    """Whether the item is asked: its arm, its switch and its show_if all allow it."""
    if item.arms is not None and arm not in item.arms:
        return False
    if item.enabled_by is not None and item.enabled_by not in set(switches):
        return False
    return item.show_if is None or item.show_if.evaluate(answers)


def prune_answers(
    instrument: Instrument, answers: Mapping[str, Answer], arm: str, switches: Iterable[str] = ()
) -> dict[str, Answer]:
    """Drop answers to items that are no longer shown (after an earlier answer changed).

    show_if refers only to earlier items, so one pass in asking order suffices.
    """
    switch_set = set(switches)
    kept: dict[str, Answer] = {}
    for item in instrument.items:
        if item.id in answers and item_visible(item, kept, arm, switch_set):
            kept[item.id] = answers[item.id]
    return kept


def effective_answers(
    instrument: Instrument, answers: Mapping[str, Answer], arm: str, switches: Iterable[str] = ()
) -> dict[str, Answer]:
    """Shown answers plus the values their gates imply (`value_if_hidden`).

    An implied value is used only once every item the show_if reads has been
    answered, so a half-finished check-in does not claim "none" for symptoms
    that were never reached.
    """
    switch_set = set(switches)
    out = prune_answers(instrument, answers, arm, switch_set)
    for item in instrument.items:
        if item.id in out or item.value_if_hidden is None or item.show_if is None:
            continue
        if item.arms is not None and arm not in item.arms:
            continue
        gates = item.show_if.referenced_items()
        if all(out.get(gate) is not None for gate in gates) and not item_visible(item, out, arm, switch_set):
            out[item.id] = item.value_if_hidden
    return out
