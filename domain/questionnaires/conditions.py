"""Conditions on answers: the one small language used by branching and triage.

The same `Condition` drives an item's `show_if`, a red flag's `when`, a
seriousness tag's `when` and a grade rule's `when`, so the study team learns
one notation and the engine evaluates it in one place.

YAML forms (exactly one operator per condition)::

    {item: fever, equals: true}
    {item: nausea, in: [severe, very_severe]}
    {item: fever_temp, greater_or_equal: 38}
    {item: fever_temp, answered: true}
    {any_of: [{...}, {...}]}   {all_of: [...]}   {not: {...}}

`item` may be left out in an item's own triggers (`when`): it then means the
item itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = bool | int | float | str
Answer = bool | int | float | str | None

LEAF_OPERATORS = (
    "equals",
    "not_equals",
    "in_",
    "greater_than",
    "greater_or_equal",
    "less_than",
    "less_or_equal",
    "answered",
)
COMPOSITE_OPERATORS = ("any_of", "all_of", "not_")
COMPARISONS = ("greater_than", "greater_or_equal", "less_than", "less_or_equal")


def _yaml_name(operator: str) -> str:
    return operator.rstrip("_")


class Condition(BaseModel):
    """One test on earlier answers (or a combination of tests)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    item: str | None = None
    equals: Scalar | None = None
    not_equals: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    greater_than: float | None = None
    greater_or_equal: float | None = None
    less_than: float | None = None
    less_or_equal: float | None = None
    answered: bool | None = None
    any_of: list[Condition] | None = None
    all_of: list[Condition] | None = None
    not_: Condition | None = Field(default=None, alias="not")

    @model_validator(mode="after")
    def _exactly_one_operator(self) -> Condition:
        used = [op for op in (*LEAF_OPERATORS, *COMPOSITE_OPERATORS) if getattr(self, op) is not None]
        if len(used) != 1:
            names = ", ".join(_yaml_name(op) for op in (*LEAF_OPERATORS, *COMPOSITE_OPERATORS))
            found = ", ".join(_yaml_name(op) for op in used) or "none"
            raise ValueError(f"a condition needs exactly one of {names} (found: {found})")
        if used[0] in COMPOSITE_OPERATORS and self.item is not None:
            raise ValueError(f"'item' does not go with '{_yaml_name(used[0])}'")
        if self.any_of is not None and not self.any_of:
            raise ValueError("any_of needs at least one condition")
        if self.all_of is not None and not self.all_of:
            raise ValueError("all_of needs at least one condition")
        if self.in_ is not None and not self.in_:
            raise ValueError("'in' needs at least one value")
        return self

    @property
    def operator(self) -> str:
        """The operator in use, spelt as in YAML (`in`, `not`, `equals`...)."""
        for op in (*LEAF_OPERATORS, *COMPOSITE_OPERATORS):
            if getattr(self, op) is not None:
                return _yaml_name(op)
        raise AssertionError("validated condition without operator")  # pragma: no cover

    @property
    def operand(self) -> Any:
        """The value the operator compares with (for leaf conditions)."""
        for op in LEAF_OPERATORS:
            value = getattr(self, op)
            if value is not None:
                return value
        return None

    def children(self) -> list[Condition]:
        """Sub-conditions of a composite condition (empty for a leaf)."""
        if self.any_of is not None:
            return list(self.any_of)
        if self.all_of is not None:
            return list(self.all_of)
        if self.not_ is not None:
            return [self.not_]
        return []

    def leaves(self) -> list[Condition]:
        """Every leaf test, so validation can check each referenced item."""
        kids = self.children()
        if not kids:
            return [self]
        return [leaf for kid in kids for leaf in kid.leaves()]

    def referenced_items(self, self_id: str | None = None) -> set[str]:
        """Item ids this condition reads (`self_id` stands in for a missing `item`)."""
        out: set[str] = set()
        for leaf in self.leaves():
            ref = leaf.item if leaf.item is not None else self_id
            if ref is not None:
                out.add(ref)
        return out

    def evaluate(self, answers: Mapping[str, Answer], self_id: str | None = None) -> bool:
        """True when the answers satisfy the condition; never raises.

        A missing (or skipped) answer satisfies no leaf test except
        `answered: false`; wrap a test in `not` to mean "anything but".
        """
        if self.any_of is not None:
            return any(c.evaluate(answers, self_id) for c in self.any_of)
        if self.all_of is not None:
            return all(c.evaluate(answers, self_id) for c in self.all_of)
        if self.not_ is not None:
            return not self.not_.evaluate(answers, self_id)
        key = self.item if self.item is not None else self_id
        value = answers.get(key) if key is not None else None
        if self.answered is not None:
            return (value is not None) is self.answered
        if value is None:
            return False
        if self.equals is not None:
            return same_value(value, self.equals)
        if self.not_equals is not None:
            return not same_value(value, self.not_equals)
        if self.in_ is not None:
            return any(same_value(value, target) for target in self.in_)
        return _compare(self, value)


def is_number(value: object) -> bool:
    """True for int/float answers (bool is not a number here)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def same_value(a: object, b: object) -> bool:
    """Equality that keeps yes/no apart from 1/0 (Python says True == 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if is_number(a) and is_number(b):
        return float(a) == float(b)  # type: ignore[arg-type]
    return type(a) is type(b) and a == b


def _compare(cond: Condition, value: object) -> bool:
    if not is_number(value):
        return False
    v = float(value)  # type: ignore[arg-type]
    if cond.greater_than is not None:
        return v > cond.greater_than
    if cond.greater_or_equal is not None:
        return v >= cond.greater_or_equal
    if cond.less_than is not None:
        return v < cond.less_than
    if cond.less_or_equal is not None:
        return v <= cond.less_or_equal
    return False  # pragma: no cover
