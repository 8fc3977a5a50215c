"""Instrument definitions: the typed shape of `content/instruments/*.yaml`.

An instrument is data the study team can read: items with their full
participant-facing text in English and Bangla, branching, triage metadata
(red flags, seriousness tags, provisional grades) and scoring rules. The engine
never composes or rewords text, so a licensed instrument (PRO-CTCAE, say) can be
loaded later with its wording verbatim.

Loading and cross-item validation live in `loader.py` / `validation.py`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.text import Text
from domain.questionnaires.conditions import Answer, Condition, Scalar

__all__ = [
    "DEFAULT_LABELS",
    "AdviceKey",
    "AltUnit",
    "Answer",
    "ArmId",
    "Choice",
    "Condition",
    "DateItem",
    "FreeTextItem",
    "GradeRule",
    "HaqCategory",
    "HaqDiRule",
    "Instrument",
    "InstrumentError",
    "Item",
    "Language",
    "NumberItem",
    "RedFlag",
    "Scalar",
    "ScaleItem",
    "ScoringRule",
    "SeriousnessTag",
    "SingleChoiceItem",
    "Symptom",
    "SymptomGradesRule",
    "Text",
    "Validated",
    "ValueRule",
    "YesNoItem",
]

Language = Literal["en", "bn"]

ID_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
"""Item ids and codes: short ASCII, so `item_id:value` fits Telegram's 64-byte callback_data."""

ArmId = Annotated[str, Field(min_length=1, max_length=16)]
"""An arm of the protocol (a key of `arms` in content/protocol.yaml). Which arms exist is
the protocol's fact, not the instrument's: `domain.content.load_content` refuses an arm the
protocol does not have (`check_instrument_arms`)."""
AdviceKey = Annotated[str, Field(pattern=ID_PATTERN)]
"""What the participant is told to do: a key of `advice` in content/triage.yaml. Which keys
exist is the triage table's fact: the table refuses its own unknown keys, and
`load_content` an instrument's (`domain.triage.check_instrument_advice`)."""
VALUE_PATTERN = r"^[a-z0-9][a-z0-9_]{0,19}$"
"""Choice values: what the bot puts in callback_data."""

Id = Annotated[str, Field(pattern=ID_PATTERN)]
Grade = Annotated[int, Field(ge=0, le=5)]


class InstrumentError(ValueError):
    """An instrument file is unusable; the message names the file and the item."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DEFAULT_LABELS: dict[str, Text] = {
    "yes": Text(en="Yes", bn="হ্যাঁ"),
    "no": Text(en="No", bn="না"),
    "today": Text(en="Today", bn="আজ"),
    "yesterday": Text(en="Yesterday", bn="গতকাল"),
}
"""Button labels the engine offers when an item does not set its own."""


class Choice(_Frozen):
    """One answer option of a single_choice item."""

    value: Annotated[str, Field(pattern=VALUE_PATTERN)]
    label: Text
    aliases: list[str] = Field(default_factory=list)
    """Extra words a participant may type for this choice (any language)."""
    grade: Grade | None = None
    """Provisional CTCAE-like grade this answer stands for (triage)."""
    score: float | None = None
    """Numeric score for scoring rules (HAQ-DI 0-3)."""


class Symptom(_Frozen):
    """Marks an item as grading a symptom: the code keys the per-symptom grades."""

    code: Id
    name: Text


class GradeRule(_Frozen):
    """Provisional grade for a non-choice item (a temperature band, a yes)."""

    when: Condition
    grade: Grade


class RedFlag(_Frozen):
    """An answer that must raise an urgent alert, and what the participant must do."""

    code: Id
    advice: AdviceKey
    reason: Text
    """Plain reason for the coordinator (what was reported and why it matters)."""
    arms: list[ArmId] | None = None
    """Only these arms (None: the arms the item is asked in)."""
    when: Condition | None = None
    """Trigger on this item's answer; default for yes_no: answered yes."""


class SeriousnessTag(_Frozen):
    """An answer that meets an ICH E2A seriousness criterion (1-6)."""

    criterion: Annotated[int, Field(ge=1, le=6)]
    when: Condition | None = None


class _ItemBase(_Frozen):
    id: Id
    text: Text
    section: Text | None = None
    """Heading shown above the text (e.g. HAQ 'DRESSING & GROOMING - Are you able to:')."""
    help: Text | None = None
    code: str | None = None
    """External item code for exports (e.g. an official instrument's item number)."""
    optional: bool = False
    show_if: Condition | None = None
    arms: list[ArmId] | None = None
    enabled_by: Id | None = None
    value_if_hidden: Scalar | None = None
    """Answer implied when show_if is false because its gate was answered (e.g. 'none')."""
    symptom: Symptom | None = None
    grade_rules: list[GradeRule] = Field(default_factory=list)
    red_flags: list[RedFlag] = Field(default_factory=list)
    seriousness: SeriousnessTag | None = None


class SingleChoiceItem(_ItemBase):
    """Pick one of a few buttons."""

    type: Literal["single_choice"]
    choices: list[Choice] = Field(min_length=2)

    @cached_property
    def choice_by_value(self) -> dict[str, Choice]:
        """Choices keyed by their stored value."""
        return {c.value: c for c in self.choices}


class YesNoItem(_ItemBase):
    """Yes or no; stored as true/false."""

    type: Literal["yes_no"]
    yes_label: Text = DEFAULT_LABELS["yes"]
    no_label: Text = DEFAULT_LABELS["no"]


class ScaleItem(_ItemBase):
    """A whole number 0-10 with labelled ends."""

    type: Literal["scale_0_10"]
    min_label: Text
    max_label: Text
    min: int = 0
    max: int = 10


class AltUnit(_Frozen):
    """Another unit a number may be typed in, converted to the item's unit.

    canonical = (typed + add_before) * multiply_by / divide_by
    """

    unit: Text
    aliases: list[str] = Field(default_factory=list)
    min: float
    max: float
    add_before: float = 0
    multiply_by: float = 1
    divide_by: float = 1
    infer_from_range: bool = False
    """A bare number in this range (and outside the main range) is read in this unit."""


class NumberItem(_ItemBase):
    """A measured number (temperature...) with a plausible range."""

    type: Literal["number"]
    min: float
    max: float
    unit: Text | None = None
    unit_aliases: list[str] = Field(default_factory=list)
    decimals: Annotated[int, Field(ge=0, le=4)] = 0
    alt_units: list[AltUnit] = Field(default_factory=list)


class DateItem(_ItemBase):
    """A calendar date: buttons Today / Yesterday or a typed date."""

    type: Literal["date"]
    allow_future: bool = False
    max_past_days: Annotated[int, Field(ge=1)] | None = None


class FreeTextItem(_ItemBase):
    """Free text, trimmed, up to max_length characters."""

    type: Literal["free_text"]
    max_length: Annotated[int, Field(ge=1, le=4096)] = 1000


Item = Annotated[
    SingleChoiceItem | YesNoItem | ScaleItem | NumberItem | DateItem | FreeTextItem,
    Field(discriminator="type"),
]


class ValueRule(_Frozen):
    """Score = the answer to one item (patient global, RCS)."""

    id: Id
    kind: Literal["value"]
    item: Id


class SymptomGradesRule(_Frozen):
    """Per-symptom provisional grades, the maximum, and which symptoms are present."""

    id: Id
    kind: Literal["symptom_grades"]


class HaqCategory(_Frozen):
    """A HAQ-DI category: its items, and the aids/help items that lift it."""

    id: Id
    label: Text
    items: list[Id] = Field(min_length=1)
    aids: list[Id] = Field(default_factory=list)
    help: list[Id] = Field(default_factory=list)


class HaqDiRule(_Frozen):
    """Stanford HAQ-DI: category = max item; aids/help floor; index = mean of categories."""

    id: Id
    kind: Literal["haq_di"]
    categories: list[HaqCategory] = Field(min_length=1)
    min_categories: Annotated[int, Field(ge=1)] = 6
    aid_floor: float = 2


ScoringRule = Annotated[ValueRule | SymptomGradesRule | HaqDiRule, Field(discriminator="kind")]


def _all_languages() -> list[Language]:
    return ["en", "bn"]


class Validated(_Frozen):
    """Whether each language version is a validated one."""

    en: bool
    bn: bool


class Instrument(_Frozen):
    """A questionnaire as loaded from one YAML file."""

    id: Id
    version: Annotated[str, Field(min_length=1, max_length=20)]
    title: Text
    instructions: Text | None = None
    recall: Text | None = None
    applies_to: list[ArmId] | None = Field(default=None, min_length=1)
    """The arms it is for (None: every arm of the protocol)."""
    languages: list[Language] = Field(default_factory=lambda: _all_languages(), min_length=1)
    validated: Validated
    validation_note: str | None = None
    source: str | None = None
    licence: str | None = None
    visit_weeks: list[int] | None = None
    switchable: bool = False
    enabled_by: Id | None = None
    """A switchable instrument runs only when this switch is in the context's switches."""
    choice_sets: dict[str, list[Choice]] = Field(default_factory=dict)
    items: list[Item] = Field(min_length=1)
    scoring: list[ScoringRule] = Field(default_factory=list)

    @cached_property
    def item_index(self) -> dict[str, int]:
        """Position of each item id in the asking order."""
        return {item.id: i for i, item in enumerate(self.items)}

    def item(self, item_id: str) -> Item:
        """The item with this id (KeyError if there is none)."""
        return self.items[self.item_index[item_id]]
