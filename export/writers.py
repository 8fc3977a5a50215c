"""File writers: CSV, SPSS .sav and the data dictionary.

Conventions (stated in the dictionary too): dates ISO 8601 (YYYY-MM-DD); times
ISO 8601 in the trial time zone with its offset in CSV (2026-10-25T09:00:00+06:00)
and as local trial time in SPSS (which has no time zones); yes/no as 1/0 with
value labels; Latin digits always; empty = missing."""

from __future__ import annotations

import csv
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any, cast

from export.spec import Dataset, Variable


def format_value(variable: Variable, value: object, tz: tzinfo) -> str:
    """One value as text, the same in CSV and ODM ("" for missing)."""
    if value is None:
        return ""
    if variable.kind == "datetime":
        assert isinstance(value, datetime)
        return value.astimezone(tz).isoformat(timespec="seconds")
    if variable.kind == "date":
        assert isinstance(value, date)
        return value.isoformat()
    if variable.kind == "boolean":
        return "1" if value else "0"
    if variable.kind == "decimal":
        return format(float(value), "g")  # type: ignore[arg-type]
    return str(value)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What makes Excel, LibreOffice and Google Sheets read a cell as a formula (OWASP's
list for CSV injection)."""


def csv_cell(variable: Variable, text: str) -> str:
    """A text cell a spreadsheet would run as a formula (a participant's `=HYPERLINK(…)`)
    gets a leading apostrophe, which spreadsheets show as text. Numbers and dates are
    ours, never a formula, and stay exact (a negative number keeps its minus); the SPSS
    and ODM files carry the value unchanged."""
    if variable.kind == "string" and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def write_csv(dataset: Dataset, directory: Path, tz: tzinfo) -> Path:
    """`<name>.csv`, UTF-8 with a byte-order mark (Excel and SPSS read Bangla right)."""
    path = directory / f"{dataset.name}.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([v.name for v in dataset.variables])
        for row in dataset.rows:
            writer.writerow([csv_cell(v, format_value(v, row.get(v.name), tz)) for v in dataset.variables])
    return path


def write_sav(dataset: Dataset, directory: Path, tz: tzinfo) -> Path:
    """`<name>.sav` with variable labels, value labels and measurement levels."""
    import pandas as pd
    import pyreadstat

    columns: dict[str, list[object]] = {}
    for variable in dataset.variables:
        values: list[object] = []
        for row in dataset.rows:
            value = row.get(variable.name)
            if value is None:
                values.append(None)
            elif variable.kind == "datetime":
                assert isinstance(value, datetime)
                values.append(value.astimezone(tz).replace(tzinfo=None))
            elif variable.kind == "boolean":
                values.append(1 if value else 0)
            else:
                values.append(value)
        columns[variable.name] = values
    frame = pd.DataFrame(columns)
    for variable in dataset.variables:
        if variable.kind == "datetime":
            frame[variable.name] = pd.to_datetime(frame[variable.name])
        elif variable.kind in ("integer", "decimal", "boolean"):
            frame[variable.name] = pd.to_numeric(frame[variable.name])
        elif variable.kind == "string":
            frame[variable.name] = frame[variable.name].astype(object)
    path = directory / f"{dataset.name}.sav"
    value_labels: dict[str, dict[str | float, str]] = {
        v.name: {(k if isinstance(k, str) else float(k)): label for k, label in v.values.items()}
        for v in dataset.variables
        if v.values
    }
    pyreadstat.write_sav(
        frame,
        str(path),
        file_label=dataset.label[:64],
        column_labels={v.name: v.label for v in dataset.variables},
        variable_value_labels=cast(Any, value_labels),  # pyreadstat types keys as numbers; strings work
        variable_measure={v.name: v.spss_measure for v in dataset.variables},
    )
    return path


def allowed_values(variable: Variable) -> str:
    """Allowed values as one readable cell: `A=Baricitinib; B=Methotrexate`."""
    if not variable.values:
        return ""
    return "; ".join(f"{code}={label}" for code, label in variable.values.items())


DICTIONARY_COLUMNS = [
    "dataset",
    "variable",
    "label",
    "type",
    "allowed_values",
    "unit",
    "source",
    "free_text",
    "measure",
]


def write_dictionary(datasets: list[Dataset], directory: Path) -> Path:
    """`data_dictionary.csv`: one row per exported variable, from the same definitions."""
    path = directory / "data_dictionary.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(DICTIONARY_COLUMNS)
        for dataset in datasets:
            for v in dataset.variables:
                writer.writerow(
                    [
                        dataset.name,
                        v.name,
                        v.label,
                        v.kind,
                        allowed_values(v),
                        v.unit or "",
                        v.source,
                        "yes" if v.free_text else "no",
                        v.spss_measure,
                    ]
                )
    return path
