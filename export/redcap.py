"""REDCap-ready files (the export's `redcap/` folder): the data dictionary, the
arm, events, instrument-event mapping and repeating instruments of a
longitudinal project, and one records import file per form.

Generated from the same `Dataset` definitions as the CSV, SPSS and ODM files:
one form per dataset, one field per variable (named `<prefix>_<variable>`, as
REDCap names are unique across a project), choices from the same code → label
maps as the SPSS value labels, branching logic from the instruments' `show_if`
conditions where REDCap's logic can say the same thing."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal
from pathlib import Path

from domain.questionnaires.conditions import Condition
from export.spec import Dataset, Variable
from scheduler.protocol import Protocol

RECORD_ID = "study_id"
DICTIONARY_COLUMNS = [
    "Variable / Field Name",
    "Form Name",
    "Section Header",
    "Field Type",
    "Field Label",
    "Choices, Calculations, OR Slider Labels",
    "Field Note",
    "Text Validation Type OR Show Slider Number",
    "Text Validation Min",
    "Text Validation Max",
    "Identifier?",
    "Branching Logic (Show field only if...)",
    "Required Field?",
    "Custom Alignment",
    "Question Number (surveys only)",
    "Matrix Group Name",
    "Matrix Ranking?",
    "Field Annotation",
]
SYSTEM_COLUMNS = ("redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance")
VALIDATION = {
    "date": "date_ymd",
    "datetime": "datetime_seconds_ymd",
    "time": "time",
    "integer": "integer",
    "decimal": "number",
}
ARM = 1
UNSCHEDULED = "Unscheduled"
COMPLETE, INCOMPLETE = "2", "0"


def unique_event_name(event_name: str, arm_num: int) -> str:
    """REDCap's derived unique event name: "Week 4" in arm 1 → `week_4_arm_1`."""
    name = event_name.lower().replace("-", "")
    name = re.sub(r"[^a-z0-9]", "_", name)
    name = re.sub(r"_+", "_", name).strip("_")
    return f"{name}_arm_{arm_num}"


@dataclass(frozen=True)
class Event:
    """One REDCap event: a protocol visit (week, window) or the unscheduled event."""

    week: int | None
    name: str
    label: str
    day_offset: int
    offset_min: int
    offset_max: int

    @property
    def unique_name(self) -> str:
        """The name records refer to (`redcap_event_name`)."""
        return unique_event_name(self.name, ARM)


def events_of(protocol: Protocol) -> list[Event]:
    """The protocol's visits (day offsets and windows from content/protocol.yaml),
    then one event for everything between visits (repeating instruments)."""
    events = [
        Event(
            v.week,
            "Baseline" if v.week == 0 else f"Week {v.week}",
            v.name.en or f"Week {v.week}",
            7 * v.week,
            v.window_days,
            v.window_days,
        )
        for v in protocol.visits
    ]
    span = 7 * protocol.treatment_weeks
    events.append(Event(None, UNSCHEDULED, "Between visits (doses, check-ins, reports, alerts)", 1, 1, span))
    return events


def field_name(dataset: Dataset, variable: Variable) -> str:
    """A variable's REDCap field name: unique across the project."""
    if variable.name == RECORD_ID or not dataset.prefix or variable.name.startswith(f"{dataset.prefix}_"):
        return variable.name
    return f"{dataset.prefix}_{variable.name}"


def _fields(dataset: Dataset) -> list[Variable]:
    return [v for v in dataset.variables if v.name != RECORD_ID]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else format(Decimal(repr(float(value))), "f")


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "'1'" if value else "'0'"
    return f"'{value}'"


def branching(condition: Condition, name_of: Callable[[str], str | None]) -> str | None:
    """REDCap branching logic for an instrument condition, or None where REDCap's
    logic cannot say the same (a missing answer satisfies no test here, as in
    the bot)."""
    if condition.any_of is not None or condition.all_of is not None:
        joiner = " or " if condition.any_of is not None else " and "
        parts = [branching(c, name_of) for c in condition.children()]
        if any(p is None for p in parts):
            return None
        return "(" + joiner.join(str(p) for p in parts) + ")"
    negate = condition.not_ is not None
    leaf = condition.not_ if condition.not_ is not None else condition
    if leaf.children() or leaf.item is None:
        return None
    name = name_of(leaf.item)
    if name is None:
        return None
    field = f"[{name}]"
    if leaf.answered is not None:
        return f"{field} <> ''" if leaf.answered != negate else f"{field} = ''"
    if leaf.equals is not None or leaf.in_ is not None:
        values = [leaf.equals] if leaf.equals is not None else list(leaf.in_ or [])
        if negate:  # "not equal" is also true when unanswered, in the bot and in REDCap
            return " and ".join(f"{field} <> {_literal(v)}" for v in values)
        tests = [f"{field} = {_literal(v)}" for v in values]
        return tests[0] if len(tests) == 1 else "(" + " or ".join(tests) + ")"
    if negate:
        return None
    if leaf.not_equals is not None:
        return f"({field} <> '' and {field} <> {_literal(leaf.not_equals)})"
    for operator, symbol in (
        ("greater_than", ">"),
        ("greater_or_equal", ">="),
        ("less_than", "<"),
        ("less_or_equal", "<="),
    ):
        bound = getattr(leaf, operator)
        if bound is not None:
            return f"({field} <> '' and {field} {symbol} {_number(bound)})"
    return None  # pragma: no cover


def _choices(variable: Variable) -> str:
    assert variable.values is not None
    for code in variable.values:
        if "," in str(code) or "|" in str(code):
            raise ValueError(f"{variable.name}: code {code!r} cannot be a REDCap choice code")
    return " | ".join(f"{code}, {label.replace('|', '/')}" for code, label in variable.values.items())


def _field_type(variable: Variable) -> str:
    if variable.kind == "boolean":
        return "yesno"
    if variable.values:
        return "dropdown"
    return "notes" if variable.free_text else "text"


def dictionary_rows(datasets: list[Dataset], tz_name: str) -> list[list[str]]:
    """The data dictionary: the record id first, then each form's fields."""
    first = datasets[0]
    rows = [
        [
            RECORD_ID,
            first.name,
            "",
            "text",
            "Study id",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "y",
            "",
            "",
            "",
            "",
            "participants.study_id",
        ]
    ]
    for dataset in datasets:
        names = {v.name: field_name(dataset, v) for v in dataset.variables}
        for variable in _fields(dataset):
            validation = "" if variable.values or variable.kind == "boolean" else VALIDATION.get(variable.kind, "")
            note = variable.unit or (f"Local time ({tz_name})" if variable.kind in ("datetime", "time") else "")
            logic = branching(variable.show_if, names.get) if variable.show_if is not None else None
            low = _number(variable.minimum) if variable.minimum is not None and validation else ""
            high = _number(variable.maximum) if variable.maximum is not None and validation else ""
            rows.append(
                [
                    names[variable.name],
                    dataset.name,
                    "",
                    _field_type(variable),
                    variable.label,
                    _choices(variable) if variable.values and variable.kind != "boolean" else "",
                    note,
                    validation,
                    low,
                    high,
                    "y" if variable.free_text else "",  # typed by a person: may name someone
                    logic or "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    f"source: {variable.source}",
                ]
            )
    return rows


def redcap_value(variable: Variable, value: object, tz: tzinfo) -> str:
    """A value as REDCap imports it: codes, 1/0, YYYY-MM-DD, local YYYY-MM-DD HH:MM:SS."""
    if value is None or value == "":
        return ""
    if variable.kind == "datetime":
        assert isinstance(value, datetime)
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
    if variable.kind == "date":
        assert isinstance(value, date)
        return value.isoformat()
    if variable.kind == "boolean":
        return "1" if value else "0"
    if variable.kind == "decimal":
        return _number(float(value))  # type: ignore[arg-type]
    return str(value)


def event_of(dataset: Dataset, row: dict[str, object], events: list[Event]) -> Event:
    """The event a row belongs to: its fixed event, its visit week, else unscheduled."""
    by_week = {e.week: e for e in events if e.week is not None}
    unscheduled = next(e for e in events if e.week is None)
    if dataset.event is not None:
        return by_week[int(dataset.event.removeprefix("WEEK"))]
    week = row.get(dataset.event_week_var) if dataset.event_week_var else None
    return by_week.get(week, unscheduled) if isinstance(week, int) else unscheduled


def form_events(dataset: Dataset, events: list[Event]) -> list[Event]:
    """Every event where a dataset's form may appear (the form-event mapping)."""
    by_week = {e.week: e for e in events if e.week is not None}
    if dataset.event is not None:
        return [by_week[int(dataset.event.removeprefix("WEEK"))]]
    weeks = [by_week[w] for w in dataset.weeks if w in by_week] if dataset.event_week_var else []
    return [*weeks, next(e for e in events if e.week is None)]


def record_rows(dataset: Dataset, events: list[Event], tz: tzinfo) -> tuple[list[str], list[list[str]]]:
    """The records import of one form: header and rows. Repeating forms take the
    bot's own record number as the instance (stable, so a later `--since` export
    updates the same instance); a non-numeric key counts 1, 2, … per record."""
    fields = _fields(dataset)
    header = [RECORD_ID, *SYSTEM_COLUMNS, *(field_name(dataset, v) for v in fields), f"{dataset.name}_complete"]
    out: list[list[str]] = []
    counters: dict[tuple[str, str], int] = {}
    for row in dataset.rows:
        if not row.get(RECORD_ID):
            continue  # an alert about no participant (e.g. a system alert): no REDCap record
        event = event_of(dataset, row, events)
        instrument, instance = "", ""
        if dataset.repeat_key_var is not None:
            instrument = dataset.name
            key = row.get(dataset.repeat_key_var)
            if isinstance(key, int) and not isinstance(key, bool):
                instance = str(key)
            else:
                slot = (str(row[RECORD_ID]), event.unique_name)
                counters[slot] = counters.get(slot, 0) + 1
                instance = str(counters[slot])
        done = dataset.complete is None or dataset.complete(row)
        out.append(
            [
                str(row[RECORD_ID]),
                event.unique_name,
                instrument,
                instance,
                *(redcap_value(v, row.get(v.name), tz) for v in fields),
                COMPLETE if done else INCOMPLETE,
            ]
        )
    return header, out


def _write(path: Path, header: list[str], rows: Iterable[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


README = """# REDCap-ready files

Generated by the SSc trial follow-up bot's export, from the same variable
definitions as the CSV, SPSS and ODM files. Load them into a new REDCap project
in this order:

1. Project setup: create the project, enable *longitudinal data collection*
   and *repeatable instruments*.
2. `data_dictionary.csv`: Designer → Data Dictionary → upload. One form per
   exported dataset; the record id is `study_id`.
3. `arms.csv` (Define My Events → Arms → upload). Both randomised arms follow
   the same visit schedule, so the project has one REDCap arm; the randomised
   arm is the field `arm` of the participants form.
4. `events.csv` (Define My Events → upload): baseline and the visit weeks with
   their day offsets and windows from the protocol, and `Unscheduled`, where
   doses, check-ins, reports, adverse events and alerts repeat.
5. `instrument_event_mapping.csv` (Designate Instruments for My Events →
   upload; it replaces the whole mapping).
6. `repeating_instruments.csv` (Repeating instruments and events → upload).
7. The records: `records_participants.csv` first, then every other
   `records_<form>.csv` (Data Import Tool, CSV, records in rows, dates Y-M-D).
   Repeating instances are the bot's own record numbers (dose, response,
   adverse event, alert numbers), so importing a later `--since` export updates
   the same instances. `<form>_complete` is 2 (complete) for finished records
   and 0 (incomplete) for questionnaires in progress, cancelled or put aside,
   planned visits and doses not yet answered.

Times are local trial time ({tz}) as `YYYY-MM-DD HH:MM:SS`. Free-text fields
are marked `Identifier? = y` (a person typed them; they may name someone), so
REDCap's de-identified exports leave them out. The dictionary is English only:
the Bangla wording of questions and choices is in the ODM file
(`xml:lang="bn"`), for REDCap's Multi-Language Management.
"""


def write_redcap(datasets: list[Dataset], directory: Path, protocol: Protocol, tz: tzinfo) -> list[Path]:
    """Every file of the `redcap/` folder."""
    folder = directory / "redcap"
    folder.mkdir(parents=True, exist_ok=True)
    events = events_of(protocol)
    tz_name = str(tz)
    files = [
        _write(folder / "data_dictionary.csv", DICTIONARY_COLUMNS, dictionary_rows(datasets, tz_name)),
        _write(folder / "arms.csv", ["arm_num", "name"], [[str(ARM), "Follow-up (both randomised arms)"]]),
        _write(
            folder / "events.csv",
            [
                "event_name",
                "arm_num",
                "day_offset",
                "offset_min",
                "offset_max",
                "unique_event_name",
                "custom_event_label",
            ],
            [
                [e.name, str(ARM), str(e.day_offset), str(e.offset_min), str(e.offset_max), e.unique_name, e.label]
                for e in events
            ],
        ),
        _write(
            folder / "instrument_event_mapping.csv",
            ["arm_num", "unique_event_name", "form"],
            [[str(ARM), e.unique_name, d.name] for e in events for d in datasets if e in form_events(d, events)],
        ),
        _write(
            folder / "repeating_instruments.csv",
            ["event_name", "form_name", "custom_form_label"],
            [
                [
                    e.unique_name,
                    d.name,
                    f"[{field_name(d, next(v for v in d.variables if v.name == d.repeat_key_var))}]",
                ]
                for e in events
                for d in datasets
                if d.repeat_key_var is not None and e in form_events(d, events)
            ],
        ),
    ]
    for dataset in datasets:
        header, rows = record_rows(dataset, events, tz)
        files.append(_write(folder / f"records_{dataset.name}.csv", header, rows))
    readme = folder / "README.md"
    readme.write_text(README.format(tz=tz_name), encoding="utf-8")
    files.append(readme)
    return files
