"""Provisional CTCAE-like grades from answers, driven by the instrument data.

A single_choice symptom item grades by its chosen choice's `grade`; other
items (a yes, a temperature band) by their `grade_rules` (the highest rule
that holds; 0 when answered and none holds). Several items may grade one
symptom (fever yes/no and the highest temperature): the highest wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.digits import to_bengali_digits
from domain.questionnaires.conditions import Answer
from domain.questionnaires.model import (
    Instrument,
    Item,
    NumberItem,
    SingleChoiceItem,
    Text,
    YesNoItem,
)


@dataclass(frozen=True)
class SymptomGrade:
    """One symptom's provisional grade and the answer it came from."""

    code: str
    name: Text
    grade: int
    item_id: str
    answer: Answer
    answer_label: Text


def item_grade(item: Item, value: Answer, answers: Mapping[str, Answer]) -> int | None:
    """The provisional grade an answer to a symptom item stands for (None: not graded)."""
    if item.symptom is None or value is None:
        return None
    if isinstance(item, SingleChoiceItem) and not item.grade_rules:
        choice = item.choice_by_value.get(str(value))
        return choice.grade if choice is not None else None
    context = {**answers, item.id: value}
    grades = [rule.grade for rule in item.grade_rules if rule.when.evaluate(context, item.id)]
    return max(grades, default=0)


def answer_label(item: Item, value: Answer) -> Text:
    """The answer in words (choice label, Yes/No, number with unit) for reasons and summaries."""
    if isinstance(item, SingleChoiceItem):
        choice = item.choice_by_value.get(str(value))
        if choice is not None:
            return choice.label
    if isinstance(item, YesNoItem) and isinstance(value, bool):
        return item.yes_label if value else item.no_label
    if value is None:
        return Text(en="(skipped)", bn="(বাদ দেওয়া)")
    if isinstance(item, NumberItem) and isinstance(value, int | float):
        number = f"{value:.{item.decimals}f}"
        unit_en = f" {item.unit.get('en')}" if item.unit else ""
        unit_bn = f" {item.unit.get('bn')}" if item.unit else ""
        return Text(en=number + unit_en, bn=to_bengali_digits(number) + unit_bn)
    return Text(en=str(value), bn=to_bengali_digits(str(value)))


def symptom_grades(instrument: Instrument, answers: Mapping[str, Answer]) -> dict[str, SymptomGrade]:
    """Grade per symptom code from effective answers (see visibility.effective_answers)."""
    out: dict[str, SymptomGrade] = {}
    for item in instrument.items:
        if item.symptom is None or item.id not in answers:
            continue
        value = answers[item.id]
        grade = item_grade(item, value, answers)
        if grade is None:
            continue
        code = item.symptom.code
        if code not in out or grade > out[code].grade:
            out[code] = SymptomGrade(code, item.symptom.name, grade, item.id, value, answer_label(item, value))
    return out
