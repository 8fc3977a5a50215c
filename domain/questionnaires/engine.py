"""The questionnaire engine: pure functions over a JSON-serialisable state.

The bot stores `state.to_dict()` in a DB row after every step and rebuilds it
with `State.from_dict()`, so a half-answered check-in survives a restart and
any bot process can continue it. Nothing here reads a clock, a database or
Telegram; `Context.today` is supplied by the caller.

Flow: `start` -> loop { `current_item` -> show it with `options` ->
`answer` (or `skip` / `back`) } until `is_complete`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from core.digits import to_bengali_digits
from domain.questionnaires.conditions import Answer
from domain.questionnaires.model import (
    DEFAULT_LABELS,
    DateItem,
    Instrument,
    Item,
    ScaleItem,
    SingleChoiceItem,
    YesNoItem,
)
from domain.questionnaires.parsing import (
    ALREADY_COMPLETE,
    BACK_VALUE,
    EXPECTED_BUTTON,
    INSTRUMENT_CHANGED,
    NOT_SKIPPABLE,
    NOTHING_BEFORE,
    SKIP_VALUE,
    STALE_BUTTON,
    AnswerError,
    is_back,
    is_skip,
    parse_answer,
)
from domain.questionnaires.visibility import instrument_available, item_visible, prune_answers

__all__ = [
    "BACK_VALUE",
    "SKIP_VALUE",
    "AnswerError",
    "Context",
    "Option",
    "State",
    "StateError",
    "answer",
    "back",
    "can_go_back",
    "current_item",
    "is_available",
    "is_compatible",
    "is_complete",
    "options",
    "progress",
    "prompt",
    "skip",
    "start",
]

STATE_FORMAT = 1


class StateError(ValueError):
    """A stored state is malformed or belongs to another instrument version."""


@dataclass(frozen=True)
class Context:
    """Who is answering and when: everything the engine may depend on besides answers."""

    arm: str  # one of the protocol's arm ids
    today: date
    language: Literal["en", "bn"] = "en"
    visit_week: int | None = None
    switches: frozenset[str] = frozenset()


@dataclass(frozen=True)
class State:
    """Progress through one instrument.

    `answers` maps item id -> canonical value (None = skipped), in asking order.
    `current` is the item being asked (None once complete).
    """

    instrument_id: str
    version: str
    answers: Mapping[str, Answer] = field(default_factory=dict)
    current: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict for the DB row."""
        return {
            "format": STATE_FORMAT,
            "instrument": self.instrument_id,
            "version": self.version,
            "answers": dict(self.answers),
            "current": self.current,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> State:
        """Rebuild a state from `to_dict()` output (after json.loads); StateError if malformed."""
        try:
            answers = data["answers"]
            ok = (
                data.get("format") == STATE_FORMAT
                and isinstance(data["instrument"], str)
                and isinstance(data["version"], str)
                and isinstance(answers, dict)
                and all(isinstance(k, str) for k in answers)
                and all(v is None or isinstance(v, bool | int | float | str) for v in answers.values())
                and (data["current"] is None or isinstance(data["current"], str))
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise StateError(f"malformed questionnaire state: {exc!r}") from exc
        if not ok:
            raise StateError("malformed questionnaire state")
        return cls(data["instrument"], data["version"], dict(answers), data["current"])


@dataclass(frozen=True)
class Option:
    """One button: the value to put in callback_data and its label."""

    value: str
    label: str


def is_available(instrument: Instrument, context: Context) -> bool:
    """Whether this participant may be given this instrument (arm, switches)."""
    return instrument_available(instrument, context.arm, context.switches)


def is_compatible(instrument: Instrument, state: State) -> bool:
    """Whether a stored state was made with this instrument and version (else restart it)."""
    return state.instrument_id == instrument.id and state.version == instrument.version


def start(instrument: Instrument, context: Context) -> State:
    """A fresh state positioned on the first item shown to this participant.

    Raises ValueError if the instrument is not available (wrong arm, switched off):
    the scheduler should never offer it then.
    """
    if not is_available(instrument, context):
        raise ValueError(f"instrument '{instrument.id}' is not available in this context")
    empty: dict[str, Answer] = {}
    return State(instrument.id, instrument.version, empty, _next_unanswered(instrument, empty, context))


def is_complete(state: State) -> bool:
    """True once every shown item has an answer (or was skipped)."""
    return state.current is None


def current_item(instrument: Instrument, state: State, context: Context) -> Item | None:
    """The item to show now, or None when the questionnaire is complete."""
    _check(instrument, state)
    if state.current is None:
        return None
    if state.current in instrument.item_index:
        item = instrument.item(state.current)
        if item_visible(item, state.answers, context.arm, context.switches):
            return item
    nxt = _next_unanswered(instrument, state.answers, context)
    return instrument.item(nxt) if nxt is not None else None


def answer(
    instrument: Instrument,
    state: State,
    raw: str,
    context: Context,
    *,
    item_id: str | None = None,
) -> State | AnswerError:
    """Record `raw` (a button value or typed text) for the current item.

    Returns the new state, or an AnswerError with the state unchanged. Never
    raises on participant input. Pass `item_id` (from the button's
    callback_data) to refuse a tap on an old message (`stale_button`).
    SKIP_VALUE / BACK_VALUE and typed "skip"/"back" (বাদ / পিছনে) are honoured.
    """
    if not is_compatible(instrument, state):
        return AnswerError(INSTRUMENT_CHANGED, None, {"instrument": instrument.id})
    item = current_item(instrument, state, context)
    if item is None:
        return AnswerError(ALREADY_COMPLETE, None, {})
    if not isinstance(raw, str):  # a photo, sticker or voice note reaches us as no text
        return AnswerError(EXPECTED_BUTTON, item.id, {})
    if item_id is not None and item_id != item.id:
        return AnswerError(STALE_BUTTON, item_id, {"current_item": item.id})
    if is_back(raw):
        return back(instrument, state, context)
    if is_skip(raw):
        return skip(instrument, state, context)
    value = parse_answer(item, raw, context.today)
    if isinstance(value, AnswerError):
        return value
    return _record(instrument, state, item, value, context)


def skip(instrument: Instrument, state: State, context: Context) -> State | AnswerError:
    """Skip the current item if it is optional (stored as None)."""
    if not is_compatible(instrument, state):
        return AnswerError(INSTRUMENT_CHANGED, None, {"instrument": instrument.id})
    item = current_item(instrument, state, context)
    if item is None:
        return AnswerError(ALREADY_COMPLETE, None, {})
    if not item.optional:
        return AnswerError(NOT_SKIPPABLE, item.id, {})
    return _record(instrument, state, item, None, context)


def back(instrument: Instrument, state: State, context: Context) -> State | AnswerError:
    """Go to the previous shown item (its answer is kept until replaced)."""
    if not is_compatible(instrument, state):
        return AnswerError(INSTRUMENT_CHANGED, None, {"instrument": instrument.id})
    previous = _previous_answered(instrument, state, context)
    if previous is None:
        return AnswerError(NOTHING_BEFORE, state.current, {})
    return State(state.instrument_id, state.version, dict(state.answers), previous)


def can_go_back(instrument: Instrument, state: State, context: Context) -> bool:
    """Whether to show a Back button."""
    return is_compatible(instrument, state) and _previous_answered(instrument, state, context) is not None


def options(item: Item, language: str) -> list[Option]:
    """The buttons for an item, in order (typed number N picks the Nth).

    Skip and Back are not included: add them with SKIP_VALUE (if item.optional)
    and BACK_VALUE (if can_go_back) in the bot's own words.
    """
    if isinstance(item, SingleChoiceItem):
        return [Option(c.value, c.label.get(language)) for c in item.choices]
    if isinstance(item, YesNoItem):
        return [
            Option("yes", item.yes_label.get(language)),
            Option("no", item.no_label.get(language)),
        ]
    if isinstance(item, ScaleItem):
        return [Option(str(n), _digits(str(n), language)) for n in range(item.min, item.max + 1)]
    if isinstance(item, DateItem):
        return [
            Option("today", DEFAULT_LABELS["today"].get(language)),
            Option("yesterday", DEFAULT_LABELS["yesterday"].get(language)),
        ]
    return []


def prompt(item: Item, language: str) -> str:
    """The item's message text: section heading, question, help; verbatim from the file."""
    parts = [text.get(language) for text in (item.section, item.text, item.help) if text is not None]
    if isinstance(item, ScaleItem):
        parts.append(_scale_anchors(item, language))
    return "\n\n".join(parts)


def progress(instrument: Instrument, state: State, context: Context) -> tuple[int, int]:
    """(answered, shown so far + still to come) for a "3 of 12" line; the total may change."""
    answers = state.answers
    shown = [i for i in instrument.items if item_visible(i, answers, context.arm, context.switches)]
    done = sum(1 for i in shown if i.id in answers)
    return done, len(shown)


def _scale_anchors(item: ScaleItem, language: str) -> str:
    low = _digits(str(item.min), language)
    high = _digits(str(item.max), language)
    return f"{low} = {item.min_label.get(language)}\n{high} = {item.max_label.get(language)}"


def _digits(text: str, language: str) -> str:
    return to_bengali_digits(text) if language == "bn" else text


def _check(instrument: Instrument, state: State) -> None:
    if not is_compatible(instrument, state):
        raise StateError(
            f"state is for {state.instrument_id} v{state.version}, not {instrument.id} v{instrument.version}"
        )


def _record(instrument: Instrument, state: State, item: Item, value: Answer, context: Context) -> State:
    answers = prune_answers(instrument, {**state.answers, item.id: value}, context.arm, context.switches)
    nxt = _next_unanswered(instrument, answers, context)
    return State(state.instrument_id, state.version, answers, nxt)


def _next_unanswered(instrument: Instrument, answers: Mapping[str, Answer], context: Context) -> str | None:
    for item in instrument.items:
        if item.id not in answers and item_visible(item, answers, context.arm, context.switches):
            return item.id
    return None


def _previous_answered(instrument: Instrument, state: State, context: Context) -> str | None:
    end = instrument.item_index.get(state.current, len(instrument.items)) if state.current else len(instrument.items)
    for item in reversed(instrument.items[:end]):
        if item.id in state.answers and item_visible(item, state.answers, context.arm, context.switches):
            return item.id
    return None
