"""What an exported variable and dataset are. The CSV header, the SPSS labels
and measurement levels, the data dictionary and the ODM item definitions are
all generated from these, so they cannot disagree."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["string", "integer", "decimal", "date", "datetime", "boolean"]
Measure = Literal["nominal", "ordinal", "scale"]

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
YES_NO: Mapping[Any, str] = {0: "No", 1: "Yes"}


@dataclass(frozen=True)
class Variable:
    """One column: its SPSS-safe name, label, type, allowed values and origin."""

    name: str
    label: str
    kind: Kind
    source: str
    values: Mapping[Any, str] | None = None  # code (str or int) → English label
    values_bn: Mapping[Any, str] | None = None  # code → Bangla label (ODM code lists)
    unit: str | None = None
    free_text: bool = False  # typed by a person: trial data, but read with care
    measure: Measure | None = None

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"variable name {self.name!r} is not SPSS-safe")
        if self.kind == "boolean" and self.values is None:
            object.__setattr__(self, "values", YES_NO)

    @property
    def spss_measure(self) -> Measure:
        """SPSS measurement level: explicit, else from the type."""
        if self.measure is not None:
            return self.measure
        if self.values is not None or self.kind in ("string", "boolean"):
            return "nominal"
        return "scale"


@dataclass
class Dataset:
    """One exported table: rows of plain values keyed by variable name.

    For ODM, each row becomes one form in a study event: `event` names a fixed
    event (e.g. "WEEK0"), or `event_week_var` names the variable holding the
    visit week (→ WEEK4 …), else the row goes to the repeating UNSCHEDULED event
    keyed by `repeat_key_var`. Rows may carry `_recorded_at` (aware datetime) and
    `_recorded_by` (a role: participant, admin, system …) for the audit records;
    keys starting with `_` are never written to CSV or SPSS."""

    name: str
    label: str
    variables: list[Variable]
    rows: list[dict[str, object]] = field(default_factory=list)
    event: str | None = None
    event_week_var: str | None = None
    repeat_key_var: str | None = None

    def __post_init__(self) -> None:
        names = [v.name for v in self.variables]
        if len(names) != len(set(names)):
            raise ValueError(f"dataset {self.name}: duplicate variable names")
