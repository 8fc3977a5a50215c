"""`make i18n-review`: every participant-facing string, English beside Bangla,
for the study team to review a wording change in one table.

Two sources: the gettext catalog (locales/bn and the English msgids) and every
{en, bn} text in content/*.yaml and content/instruments/*.yaml (questions,
answer labels, advice, visit and drug names, the site's names). Writes a CSV
(opens in Excel / LibreOffice) and, with --html, the same table as one HTML page;
a last column gives what the glossary check (devtools/bangla_check.py) finds.
The glossary check (tests/test_bangla_wording.py) reads the same rows.
"""

from __future__ import annotations

import argparse
import csv
import html
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from babel.messages.pofile import read_po

from devtools.bangla_check import names_the_site, problems

ROOT = Path(__file__).resolve().parent.parent
CONTENT = ROOT / "content"
BN_CATALOG = ROOT / "locales" / "bn" / "LC_MESSAGES" / "messages.po"


@dataclass(frozen=True)
class Row:
    """One string: where it lives, its key there, the English and the Bangla."""

    source: str
    key: str
    en: str
    bn: str


def catalog_rows(path: Path = BN_CATALOG) -> list[Row]:
    """Every catalog message; a plural message gives one row per form."""
    with path.open("rb") as handle:
        catalog = read_po(handle, locale="bn")
    rows: list[Row] = []
    for message in catalog:
        if not message.id:
            continue
        ids = [str(i) for i in message.id] if isinstance(message.id, list | tuple) else [str(message.id)]
        raw = message.string
        strings = [str(s) for s in raw] if isinstance(raw, list | tuple) else [str(raw or "")]
        if len(ids) == 1:
            rows.append(Row("catalog", ids[0], ids[0], strings[0]))
            continue
        for index, english in enumerate(ids):
            rows.append(Row("catalog", f"{ids[0]} [plural {index}]", english, strings[min(index, len(strings) - 1)]))
    return rows


def content_files() -> list[Path]:
    """The protocol, triage and instrument files, in a stable order."""
    return sorted(CONTENT.glob("*.yaml")) + sorted((CONTENT / "instruments").glob("*.yaml"))


def _walk(node: Any, path: str) -> Iterator[tuple[str, str, str]]:
    """(path, en, bn) for every mapping that holds both an en and a bn text."""
    if isinstance(node, dict):
        if isinstance(node.get("en"), str) and isinstance(node.get("bn"), str):
            yield path, node["en"], node["bn"]
        for key, value in node.items():
            if key not in ("en", "bn"):
                yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            label = value.get("id") or value.get("value") or value.get("code") if isinstance(value, dict) else None
            yield from _walk(value, f"{path}[{label if label is not None else index}]")


def content_rows() -> list[Row]:
    """Every {en, bn} text in the content files (YAML anchors are listed where they are used)."""
    rows: list[Row] = []
    for path in content_files():
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        source = str(path.relative_to(ROOT))
        rows.extend(Row(source, key, en, bn) for key, en, bn in _walk(data, ""))
    return rows


def all_rows() -> list[Row]:
    """Catalog first, then the content files."""
    return catalog_rows() + content_rows()


def check(row: Row) -> str:
    """The glossary check's findings for a row's Bangla ("" when it passes)."""
    found = problems(row.bn)
    if row.source == "catalog":
        found += [f"names the site '{name}' (use {{site}} / {{hospital}})" for name in names_the_site(row.bn)]
    return "; ".join(found)


def write_csv(rows: list[Row], out: Path) -> None:
    """UTF-8 with a byte-order mark, so that Excel shows the Bangla."""
    with out.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "key", "English", "Bangla", "glossary check"])
        writer.writerows([row.source, row.key, row.en, row.bn, check(row)] for row in rows)


def write_html(rows: list[Row], out: Path) -> None:
    """One page, one table, English and Bangla side by side."""
    cells = "\n".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td lang=bn>{}</td><td>{}</td></tr>".format(
            *(html.escape(v) for v in (row.source, row.key, row.en, row.bn, check(row)))
        )
        for row in rows
    )
    out.write_text(
        "<!doctype html><meta charset=utf-8><title>Participant texts: English and Bangla</title>"
        "<style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px;vertical-align:top}"
        "td:nth-child(2){font-size:80%;color:#555}</style>"
        f"<h1>Participant texts: English and Bangla ({len(rows)})</h1>"
        "<p>Bangla follows GLOSSARY-bn.md. Check that each Bangla text says the same as the English.</p>"
        "<table><tr><th>source</th><th>key</th><th>English</th><th>Bangla</th><th>glossary check</th></tr>\n"
        f"{cells}\n</table>\n",
        encoding="utf-8",
    )


def main(argv: list[str] | None = None) -> int:
    """Write the review table(s) and say how many strings they hold."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("i18n-review.csv"))
    parser.add_argument("--html", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = all_rows()
    write_csv(rows, args.out)
    if args.html is not None:
        write_html(rows, args.html)
    catalog = sum(1 for row in rows if row.source == "catalog")
    print(f"{len(rows)} strings ({catalog} catalog, {len(rows) - catalog} content) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
