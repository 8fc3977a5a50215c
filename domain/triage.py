"""Safety triage: answers -> level, provisional grades, red flags, seriousness, advice.

Pure and table-driven. The rules are data: red flags, seriousness tags and
grades sit on the instrument items (content/instruments/*.yaml); the level
rules, ICH E2A criteria, advice texts and reason wording sit in
content/triage.yaml. This module only evaluates them, so each rule in
CLINICAL.md can be read, reviewed and tested on its own.

Call it after every answer (not only at the end): a red flag must alert within
seconds even if the participant abandons the check-in.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.digits import to_bengali_digits
from domain.questionnaires.conditions import Answer, Condition
from domain.questionnaires.grading import SymptomGrade, symptom_grades
from domain.questionnaires.loader import read_yaml
from domain.questionnaires.model import AdviceKey, ArmId, Instrument, InstrumentError, Text, YesNoItem
from domain.questionnaires.visibility import effective_answers, item_visible
from scheduler.protocol import Protocol


class Level(StrEnum):
    """How fast someone must look at it."""

    URGENT = "URGENT"
    SAME_DAY = "SAME_DAY"
    ROUTINE = "ROUTINE"


class TriageTableError(ValueError):
    """content/triage.yaml is unusable."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Trigger(_Frozen):
    """One reason a level applies."""

    kind: Literal["red_flag", "seriousness", "grade_at_least", "worsened_by_at_least"]
    value: Annotated[int, Field(ge=1, le=5)] | None = None
    advice: AdviceKey | None = None

    @model_validator(mode="after")
    def _value_where_needed(self) -> Trigger:
        needs_value = self.kind in ("grade_at_least", "worsened_by_at_least")
        if needs_value != (self.value is not None):
            raise ValueError(f"trigger '{self.kind}' {'needs' if needs_value else 'takes no'} value")
        return self


class LevelRule(_Frozen):
    """A level and the triggers that put a result at it."""

    level: Level
    triggers: list[Trigger] = Field(min_length=1)


class Criterion(_Frozen):
    """An ICH E2A seriousness criterion."""

    name: Text
    advice: AdviceKey
    implies_grade: Annotated[int, Field(ge=0, le=5)] | None = None


class Advice(_Frozen):
    """What the participant is told to do, and how soon ("now" or "today")."""

    urgency: Literal["now", "today"]
    priority: int
    text: Text


class CrossCheck(_Frozen):
    """A routine answer that says what a red flag says, and so is that red flag.

    Why: "severe rash" in the symptom list is the methotrexate skin red flag
    even when the participant said No to the red-flag question (CLINICAL.md).
    `wait_for` items still to be asked hold the rule back until they are
    answered or the session ends, so that a fever with a measured 37.5 °C does
    not page anyone in the seconds before the temperature is typed.
    """

    code: str
    arms: list[ArmId] = Field(min_length=1)
    instruments: list[str] = Field(min_length=1)
    item: str
    """The answer the finding is about (`when` leaves without `item` read it)."""
    when: Condition
    wait_for: list[str] = Field(default_factory=list)
    advice: AdviceKey
    reason: Text


class Reasons(_Frozen):
    """Coordinator-facing reason templates (named placeholders)."""

    red_flag: Text
    seriousness: Text
    grade: Text
    worsened: Text


_PLACEHOLDERS = {
    "red_flag": {"code", "reason"},
    "seriousness": {"number", "name"},
    "grade": {"symptom", "answer", "grade"},
    "worsened": {"symptom", "previous", "current"},
}


class TriageTable(_Frozen):
    """content/triage.yaml."""

    version: str
    levels: list[LevelRule] = Field(min_length=1)
    default_level: Level
    seriousness_criteria: dict[int, Criterion]
    advice: dict[AdviceKey, Advice]
    reasons: Reasons
    cross_checks: list[CrossCheck] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> TriageTable:
        missing = sorted({key for _, key in self._used_advice()} - set(self.advice))
        if missing:
            raise ValueError(f"advice texts missing for {missing}")
        if set(self.seriousness_criteria) != set(range(1, 7)):
            raise ValueError("seriousness_criteria must list criteria 1 to 6")
        priorities = [a.priority for a in self.advice.values()]
        if len(set(priorities)) != len(priorities):
            raise ValueError("advice priorities must be unique")
        for key, advice in self.advice.items():
            for lang in ("en", "bn"):
                if _fields(advice.text.get(lang)) - {"phone"}:
                    raise ValueError(f"advice '{key}'.{lang}: only {{phone}} may be used")
        for where, key in self._urgent_advice():
            if self.advice[key].urgency != "now":
                raise ValueError(f"{where}: urgent finding with advice '{key}' that does not say 'now'")
        for name, allowed in _PLACEHOLDERS.items():
            text: Text = getattr(self.reasons, name)
            for lang in ("en", "bn"):
                if not text.get(lang) or _fields(text.get(lang)) - allowed:
                    raise ValueError(f"reasons.{name}.{lang}: placeholders must be among {sorted(allowed)}")
        return self

    def _used_advice(self) -> list[tuple[str, AdviceKey]]:
        """(where, advice key) of every advice this table itself names, at any level."""
        out = [(f"levels.{r.level.value}.{t.kind}", t.advice) for r in self.levels for t in r.triggers if t.advice]
        return out + self._urgent_advice()

    def _urgent_advice(self) -> list[tuple[str, AdviceKey]]:
        """(where, advice key) of every URGENT finding this table itself defines."""
        out: list[tuple[str, AdviceKey]] = []
        for rule in self.levels:
            if rule.level is Level.URGENT:
                out += [(f"levels.URGENT.{t.kind}", t.advice) for t in rule.triggers if t.advice]
        out += [(f"seriousness_criteria.{n}", c.advice) for n, c in self.seriousness_criteria.items()]
        out += [(f"cross_checks.{c.code}", c.advice) for c in self.cross_checks]
        return out


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def load_triage_table(path: str | Path) -> TriageTable:
    """Load and validate the triage table (refuses a broken file with its name)."""
    file = Path(path)
    try:
        return TriageTable.model_validate(read_yaml(file))
    except ValidationError as exc:
        raise TriageTableError(f"{file.name}: {exc}") from None
    except ValueError as exc:
        raise TriageTableError(str(exc)) from None


def check_double_dose_advice(table: TriageTable, protocol: Protocol) -> None:
    """Refuse a protocol double-dose check whose advice the triage table does not have."""
    for arm_id, arm in protocol.arms.items():
        for reg in arm.regimens:
            check = reg.double_dose_check
            if check is not None and check.advice not in table.advice:
                raise TriageTableError(
                    f"protocol.yaml: arms.{arm_id}.{reg.id}.double_dose_check.advice: "
                    f"no advice '{check.advice}' in triage.yaml"
                )


def check_instrument_advice(table: TriageTable, instruments: Mapping[str, Instrument]) -> None:
    """Refuse a red flag whose advice the triage table does not have.

    Why: the advice keys are the triage table's, not code's; a typo in an instrument
    must stop the start, not leave a participant with a red flag and nothing to do."""
    for instrument in instruments.values():
        for item in instrument.items:
            for flag in item.red_flags:
                if flag.advice not in table.advice:
                    raise TriageTableError(
                        f"instruments: {instrument.id}: item '{item.id}': red flag '{flag.code}': "
                        f"no advice '{flag.advice}' in triage.yaml"
                    )


def check_arms(table: TriageTable, instruments: Mapping[str, Instrument], protocol: Protocol) -> None:
    """Refuse an arm the protocol does not have, in an instrument (`applies_to`, an item's
    or a red flag's `arms`: InstrumentError) or in a cross-check (TriageTableError).

    Why: the arms are the protocol's; an arm misspelt in another file would silently
    never ask a question or never raise a red flag."""
    known = set(protocol.arms)
    listed = ", ".join(protocol.arms)
    for instrument in instruments.values():
        places: list[tuple[str, list[str] | None]] = [("applies_to", instrument.applies_to)]
        for item in instrument.items:
            places.append((f"item '{item.id}': arms", item.arms))
            places += [(f"item '{item.id}': red flag '{f.code}': arms", f.arms) for f in item.red_flags]
        for where, arms in places:
            unknown = sorted(set(arms or ()) - known)
            if unknown:
                raise InstrumentError(
                    f"instruments: {instrument.id}: {where}: no arm '{unknown[0]}' in protocol.yaml (arms: {listed})"
                )
    for check in table.cross_checks:
        unknown = sorted(set(check.arms) - known)
        if unknown:
            raise TriageTableError(
                f"triage.yaml: cross_checks.{check.code}: no arm '{unknown[0]}' in protocol.yaml (arms: {listed})"
            )


def check_cross_checks(table: TriageTable, instruments: Mapping[str, Instrument]) -> None:
    """Refuse a cross-check that reads an item its instruments do not have.

    Why: a typo in content/triage.yaml must stop the start, not crash the
    triage of a participant's answer (or, worse, never fire).
    """
    for check in table.cross_checks:
        for instrument_id in check.instruments:
            instrument = instruments.get(instrument_id)
            if instrument is None:
                raise TriageTableError(f"triage.yaml: cross_checks.{check.code}: no instrument '{instrument_id}'")
            known = {item.id for item in instrument.items}
            needed = {check.item, *check.when.referenced_items(check.item), *check.wait_for}
            missing = sorted(needed - known)
            if missing:
                raise TriageTableError(
                    f"triage.yaml: cross_checks.{check.code}: no item '{missing[0]}' in {instrument_id}"
                )


@dataclass(frozen=True)
class RedFlagHit:
    """A red flag answered: which, from which item, why, and what the participant must do."""

    code: str
    item_id: str
    reason: Text
    advice: AdviceKey


@dataclass(frozen=True)
class SeriousnessHit:
    """An ICH E2A seriousness criterion met."""

    criterion: int
    name: Text
    item_id: str


@dataclass(frozen=True)
class Worsening:
    """A symptom graded higher than in the previous check-in."""

    symptom: str
    name: Text
    previous: int
    current: int


@dataclass(frozen=True)
class TriageResult:
    """Everything the alert, the participant's reply and the record need.

    `grades` is what to pass as `previous_grades` next week.
    """

    level: Level
    grade: int
    grades: dict[str, int]
    red_flags: tuple[RedFlagHit, ...] = ()
    seriousness: tuple[SeriousnessHit, ...] = ()
    worsened: tuple[Worsening, ...] = ()
    advice: tuple[AdviceKey, ...] = ()
    reasons: tuple[Text, ...] = ()
    symptom_details: dict[str, SymptomGrade] = field(default_factory=dict, compare=False)

    @property
    def serious(self) -> bool:
        """True when any ICH E2A criterion is met (24-hour sponsor report clock)."""
        return bool(self.seriousness)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for the alert row and the audit table)."""
        return {
            "level": self.level.value,
            "grade": self.grade,
            "grades": dict(self.grades),
            "red_flags": [
                {"code": h.code, "item_id": h.item_id, "reason": _td(h.reason), "advice": h.advice}
                for h in self.red_flags
            ],
            "seriousness": [
                {"criterion": s.criterion, "name": _td(s.name), "item_id": s.item_id} for s in self.seriousness
            ],
            "worsened": [{"symptom": w.symptom, "previous": w.previous, "current": w.current} for w in self.worsened],
            "advice": list(self.advice),
            "reasons": [_td(r) for r in self.reasons],
        }


def _td(text: Text) -> dict[str, str]:
    return {"en": text.get("en"), "bn": text.get("bn")}


def _fill(template: Text, values: Mapping[str, Text | int | str]) -> Text:
    """Fill a two-language template; Text values pick their language, numbers go Bengali in bn."""
    out: dict[str, str] = {}
    for lang in ("en", "bn"):
        args: dict[str, str] = {}
        for key, value in values.items():
            if isinstance(value, Text):
                args[key] = value.get(lang)
            elif isinstance(value, int) and lang == "bn":
                args[key] = to_bengali_digits(str(value))
            else:
                args[key] = str(value)
        out[lang] = template.get(lang).format_map(args)
    return Text(**out)


def triage(
    instrument: Instrument,
    answers: Mapping[str, Answer],
    arm: str,
    previous_grades: Mapping[str, int] | None = None,
    *,
    switches: Iterable[str] = (),
    table: TriageTable,
    final: bool = True,
) -> TriageResult:
    """Triage one (possibly partial) set of answers for a participant in `arm`.

    Why: every answer that meets a CLINICAL.md rule must become an alert with a
    level, reasons and the participant's advice, the same way every time.
    `previous_grades` is last check-in's `TriageResult.grades` (None: no
    previous check-in, so no worsening rule). `final` is False while the
    questionnaire is still being answered (cross-checks then wait for their
    `wait_for` items).
    """
    switch_set = set(switches)
    effective = effective_answers(instrument, answers, arm, switch_set)
    flags = _red_flags(instrument, effective, arm, switch_set)
    flags += _cross_checks(table, instrument, effective, arm, switch_set, final, {f.code for f in flags})
    serious = _seriousness(instrument, effective, arm, switch_set, table)
    details = symptom_grades(instrument, effective)
    grades = {code: g.grade for code, g in details.items()}
    implied = [(hit, table.seriousness_criteria[hit.criterion].implies_grade) for hit in serious]
    overall = max([*grades.values(), *(g for _, g in implied if g is not None)], default=0)
    worsened = _worsened(details, previous_grades)

    reasons: list[Text] = []
    level: Level | None = None
    advice: list[AdviceKey] = []
    for rule in table.levels:
        fired = False
        rule_advice: list[AdviceKey] = []
        for trigger in rule.triggers:
            trigger_reasons, trigger_advice = _evaluate(trigger, table, flags, serious, details, implied, worsened)
            reasons += trigger_reasons
            if trigger_reasons:
                fired = True
                rule_advice += trigger_advice
        if fired and level is None:
            level = rule.level
            advice = rule_advice
    ordered = sorted(set(advice), key=lambda key: table.advice[key].priority)
    return TriageResult(
        level=level or table.default_level,
        grade=overall,
        grades=grades,
        red_flags=tuple(flags),
        seriousness=tuple(serious),
        worsened=tuple(worsened),
        advice=tuple(ordered),
        reasons=tuple(dict.fromkeys(reasons)),
        symptom_details=details,
    )


def _evaluate(
    trigger: Trigger,
    table: TriageTable,
    flags: list[RedFlagHit],
    serious: list[SeriousnessHit],
    details: Mapping[str, SymptomGrade],
    implied: list[tuple[SeriousnessHit, int | None]],
    worsened: list[Worsening],
) -> tuple[list[Text], list[AdviceKey]]:
    """Reasons and advice keys of one trigger (no reasons: it did not fire)."""
    templates = table.reasons
    if trigger.kind == "red_flag":
        reasons = [_fill(templates.red_flag, {"code": f.code, "reason": f.reason}) for f in flags]
        return reasons, [f.advice for f in flags]
    if trigger.kind == "seriousness":
        reasons = [_fill(templates.seriousness, {"number": s.criterion, "name": s.name}) for s in serious]
        return reasons, [table.seriousness_criteria[s.criterion].advice for s in serious]
    threshold = trigger.value or 0
    extra: list[AdviceKey] = [trigger.advice] if trigger.advice else []
    if trigger.kind == "grade_at_least":
        reasons = [
            _fill(templates.grade, {"symptom": g.name, "answer": g.answer_label, "grade": g.grade})
            for g in details.values()
            if g.grade >= threshold
        ]
        reasons += [
            _fill(templates.grade, {"symptom": hit.name, "answer": _YES, "grade": grade})
            for hit, grade in implied
            if grade is not None and grade >= threshold
        ]
        return reasons, extra
    reasons = [
        _fill(templates.worsened, {"symptom": w.name, "previous": w.previous, "current": w.current})
        for w in worsened
        if w.current - w.previous >= threshold
    ]
    return reasons, extra


_YES = Text(en="yes", bn="হ্যাঁ")


def _red_flags(instrument: Instrument, answers: Mapping[str, Answer], arm: str, switches: set[str]) -> list[RedFlagHit]:
    hits: list[RedFlagHit] = []
    for item in instrument.items:
        if item.id not in answers or not item.red_flags:
            continue
        if not item_visible(item, answers, arm, switches):
            continue
        for flag in item.red_flags:
            if flag.arms is not None and arm not in flag.arms:
                continue
            if _triggered(item, flag.when, answers):
                hits.append(RedFlagHit(flag.code, item.id, flag.reason, flag.advice))
    return hits


def _cross_checks(
    table: TriageTable,
    instrument: Instrument,
    answers: Mapping[str, Answer],
    arm: str,
    switches: set[str],
    final: bool,
    already: set[str],
) -> list[RedFlagHit]:
    """Red flags said in other words (content/triage.yaml `cross_checks`)."""
    hits: list[RedFlagHit] = []
    for check in table.cross_checks:
        if instrument.id not in check.instruments or arm not in check.arms:
            continue
        if check.code in already:  # the red-flag question itself said it: one flag, not two
            continue
        if not final and any(_pending(instrument, item_id, answers, arm, switches) for item_id in check.wait_for):
            continue
        if check.when.evaluate(answers, check.item):
            hits.append(RedFlagHit(check.code, check.item, check.reason, check.advice))
    return hits


def _pending(instrument: Instrument, item_id: str, answers: Mapping[str, Answer], arm: str, switches: set[str]) -> bool:
    """An item that will still be asked (shown, not yet answered or skipped)."""
    item = instrument.item(item_id)
    return item_id not in answers and item_visible(item, answers, arm, switches)


def _seriousness(
    instrument: Instrument,
    answers: Mapping[str, Answer],
    arm: str,
    switches: set[str],
    table: TriageTable,
) -> list[SeriousnessHit]:
    hits: dict[int, SeriousnessHit] = {}
    for item in instrument.items:
        tag = item.seriousness
        if tag is None or item.id not in answers or not item_visible(item, answers, arm, switches):
            continue
        if _triggered(item, tag.when, answers) and tag.criterion not in hits:
            name = table.seriousness_criteria[tag.criterion].name
            hits[tag.criterion] = SeriousnessHit(tag.criterion, name, item.id)
    return [hits[number] for number in sorted(hits)]


def _triggered(item: Any, when: Any, answers: Mapping[str, Answer]) -> bool:
    if when is None:
        return isinstance(item, YesNoItem) and answers.get(item.id) is True
    return bool(when.evaluate(answers, item.id))


def _worsened(details: Mapping[str, SymptomGrade], previous: Mapping[str, int] | None) -> list[Worsening]:
    if previous is None:
        return []
    out = []
    for code, now in details.items():
        before = previous.get(code)
        if isinstance(before, int) and now.grade > before:
            out.append(Worsening(code, now.name, before, now.grade))
    return out


def advice_text(key: str, language: str, phone: str, table: TriageTable) -> str:
    """The participant's instruction for an advice key, with the study phone filled in."""
    entry = table.advice[key]
    # Latin digits in every language: Telegram links only a number as dialled,
    # and the same number must not appear in two scripts (GLOSSARY-bn.md).
    return entry.text.get(language).format_map({"phone": phone})


def double_dose(previous_confirmed_at: datetime | None, this_confirmed_at: datetime, within: timedelta) -> bool:
    """True when two confirmed doses of a regimen are less than ``within`` apart (its
    ``double_dose_check`` in the protocol file: 6 days for weekly methotrexate).

    Why: weekly methotrexate taken daily is a known fatal medication error; every
    confirmed dose of a regimen with a double-dose check is tested and raises an URGENT
    alert (and the check's advice) when this returns True. Both datetimes must be aware
    (or both naive); order does not matter.
    """
    if previous_confirmed_at is None:
        return False
    if (previous_confirmed_at.tzinfo is None) != (this_confirmed_at.tzinfo is None):
        raise ValueError("double_dose needs both datetimes aware (or both naive)")
    return abs(this_confirmed_at - previous_confirmed_at) < within
