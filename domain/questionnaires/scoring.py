"""Scores from answers, driven by each instrument's `scoring` rules.

Pure functions: the bot stores the returned JSON next to the answers, and the
export reads it; HAQ-DI and the patient global feed ACR-CRISS.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.questionnaires.conditions import Answer, is_number
from domain.questionnaires.grading import symptom_grades
from domain.questionnaires.model import (
    HaqDiRule,
    Instrument,
    SingleChoiceItem,
    SymptomGradesRule,
    ValueRule,
)
from domain.questionnaires.visibility import effective_answers


@dataclass(frozen=True)
class HaqDiResult:
    """HAQ-DI category scores (0-3, None if no item answered) and the index."""

    index: float | None
    categories: dict[str, float | None]
    answered_categories: int
    lifted_by_aids_or_help: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "index": self.index,
            "categories": dict(self.categories),
            "answered_categories": self.answered_categories,
            "lifted_by_aids_or_help": list(self.lifted_by_aids_or_help),
        }


@dataclass(frozen=True)
class SymptomSummary:
    """Check-in summary: grade per symptom, the maximum, and the symptoms present."""

    grades: dict[str, int]
    max_grade: int | None
    present: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "grades": dict(self.grades),
            "max_grade": self.max_grade,
            "present": list(self.present),
        }


def haq_di(rule: HaqDiRule, instrument: Instrument, answers: Mapping[str, Answer]) -> HaqDiResult:
    """Stanford HAQ-DI scoring.

    Category score = highest item score answered in the category; raised to at
    least `aid_floor` (2) when an aid/device or help from another person is used
    for it; None when no item of the category was answered. Index = mean of the
    answered category scores, only when at least `min_categories` (6) are answered.
    """
    categories: dict[str, float | None] = {}
    lifted: list[str] = []
    for category in rule.categories:
        scores = [_choice_score(instrument, item_id, answers.get(item_id)) for item_id in category.items]
        answered = [s for s in scores if s is not None]
        if not answered:
            categories[category.id] = None
            continue
        score = max(answered)
        assisted = any(answers.get(a) is True for a in (*category.aids, *category.help))
        if assisted and score < rule.aid_floor:
            score = rule.aid_floor
            lifted.append(category.id)
        categories[category.id] = score
    present = [s for s in categories.values() if s is not None]
    index = sum(present) / len(present) if len(present) >= rule.min_categories else None
    return HaqDiResult(index, categories, len(present), lifted)


def _choice_score(instrument: Instrument, item_id: str, value: Answer) -> float | None:
    item = instrument.item(item_id)
    if value is None or not isinstance(item, SingleChoiceItem):
        return None
    choice = item.choice_by_value.get(str(value))
    return choice.score if choice is not None else None


def symptom_summary(instrument: Instrument, answers: Mapping[str, Answer]) -> SymptomSummary:
    """Per-symptom provisional grades (gated-out symptoms count as 0) and the maximum."""
    grades = {code: g.grade for code, g in symptom_grades(instrument, answers).items()}
    present = [code for code, grade in grades.items() if grade > 0]
    return SymptomSummary(grades, max(grades.values(), default=None), present)


def value_score(rule: ValueRule, answers: Mapping[str, Answer]) -> float | int | None:
    """The answer to one numeric item (patient global, Raynaud's Condition Score)."""
    value = answers.get(rule.item)
    return value if is_number(value) else None  # type: ignore[return-value]


def compute_scores(
    instrument: Instrument,
    answers: Mapping[str, Answer],
    arm: str,
    switches: Iterable[str] = (),
) -> dict[str, Any]:
    """Every scoring rule of the instrument, keyed by rule id, as JSON-ready values.

    Why: one call for the bot to store scores with a completed questionnaire.
    """
    effective = effective_answers(instrument, answers, arm, switches)
    out: dict[str, Any] = {}
    for rule in instrument.scoring:
        if isinstance(rule, ValueRule):
            out[rule.id] = value_score(rule, effective)
        elif isinstance(rule, HaqDiRule):
            out[rule.id] = haq_di(rule, instrument, effective).to_dict()
        elif isinstance(rule, SymptomGradesRule):
            out[rule.id] = symptom_summary(instrument, effective).to_dict()
    return out
