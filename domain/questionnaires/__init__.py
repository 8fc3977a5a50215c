"""Questionnaires: instruments as data, a pure engine, scoring.

Modules:
    model       pydantic models of an instrument file
    conditions  the show_if / when condition language
    loader      load_instruments(directory) with file-and-item error messages
    validation  cross-field checks used by the loader
    parsing     typed or tapped answers -> canonical values / AnswerError
    visibility  which items are asked (arm, switches, show_if); implied answers
    engine      start / current_item / answer / skip / back over a JSON state
    grading     provisional CTCAE-like grades from answers
    scoring     HAQ-DI, patient global, RCS, check-in summary
"""

from domain.questionnaires.engine import (
    BACK_VALUE,
    SKIP_VALUE,
    AnswerError,
    Context,
    Option,
    State,
    StateError,
    answer,
    back,
    can_go_back,
    current_item,
    is_available,
    is_compatible,
    is_complete,
    options,
    progress,
    prompt,
    skip,
    start,
)
from domain.questionnaires.loader import load_instrument_file, load_instruments
from domain.questionnaires.model import Instrument, InstrumentError, Item, Text
from domain.questionnaires.scoring import compute_scores
from domain.questionnaires.visibility import effective_answers

__all__ = [
    "BACK_VALUE",
    "SKIP_VALUE",
    "AnswerError",
    "Context",
    "Instrument",
    "InstrumentError",
    "Item",
    "Option",
    "State",
    "StateError",
    "Text",
    "answer",
    "back",
    "can_go_back",
    "compute_scores",
    "current_item",
    "effective_answers",
    "is_available",
    "is_compatible",
    "is_complete",
    "load_instrument_file",
    "load_instruments",
    "options",
    "progress",
    "prompt",
    "skip",
    "start",
]
