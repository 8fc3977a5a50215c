"""What an exported variable and dataset are. The CSV header, the SPSS labels
and measurement levels, the data dictionary and the ODM item definitions are
all generated from these, so they cannot disagree."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from domain.questionnaires.conditions import Condition

Kind = Literal["string", "integer", "decimal", "date", "datetime", "time", "boolean"]
Measure = Literal["nominal", "ordinal", "scale"]

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
YES_NO: Mapping[Any, str] = {0: "No", 1: "Yes"}
YES_NO_BN: Mapping[Any, str] = {0: "না", 1: "হ্যাঁ"}


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
    label_bn: str | None = None  # the Bangla wording (instrument items): ODM questions
    minimum: float | None = None  # allowed range (REDCap validation min/max)
    maximum: float | None = None
    show_if: Condition | None = None  # asked only when (instrument branching): REDCap branching logic

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"variable name {self.name!r} is not SPSS-safe")
        if self.kind == "boolean" and self.values is None:
            object.__setattr__(self, "values", YES_NO)
            if self.values_bn is None:
                object.__setattr__(self, "values_bn", YES_NO_BN)

    @property
    def spss_measure(self) -> Measure:
        """SPSS measurement level: explicit, else from the type."""
        if self.measure is not None:
            return self.measure
        if self.values is not None or self.kind in ("string", "boolean", "time"):
            return "nominal"
        return "scale"


@dataclass
class Dataset:
    """One exported table: rows of plain values keyed by variable name.

    For ODM and REDCap, each row becomes one form in a study event: `event` names
    a fixed event (e.g. "WEEK0"), or `event_week_var` names the variable holding
    the visit week (one of `weeks`: → WEEK4 …), else the row goes to the
    repeating UNSCHEDULED event. `repeat_key_var` names the row's own key when a
    participant may have several rows in one event (a repeating form; REDCap
    instance numbers). `prefix` starts the dataset's REDCap field names (REDCap
    names are unique across the project); `complete` says whether a row is
    finished (REDCap `<form>_complete`: 2, else 0). Rows may carry
    `_recorded_at` (aware datetime) and `_recorded_by` (a role: participant,
    admin, system …) for the audit records; keys starting with `_` are never
    written to CSV or SPSS."""

    name: str
    label: str
    variables: list[Variable]
    rows: list[dict[str, object]] = field(default_factory=list)
    event: str | None = None
    event_week_var: str | None = None
    repeat_key_var: str | None = None
    weeks: tuple[int, ...] = ()
    prefix: str = ""
    complete: Callable[[dict[str, object]], bool] | None = None

    def __post_init__(self) -> None:
        names = [v.name for v in self.variables]
        if len(names) != len(set(names)):
            raise ValueError(f"dataset {self.name}: duplicate variable names")
        if self.prefix and not NAME_RE.match(self.prefix):
            raise ValueError(f"dataset {self.name}: prefix {self.prefix!r} is not a valid name")


Source = TypeVar("Source")


@dataclass(frozen=True)
class Column(Generic[Source]):
    """A variable and where its value comes from: one definition per exported
    column, so adding a database column to the export is one `Column`."""

    variable: Variable
    get: Callable[[Source], object]


def row_of(columns: list[Column[Source]], source: Source) -> dict[str, object]:
    """One dataset row from a source record, column by column."""
    return {c.variable.name: c.get(source) for c in columns}
