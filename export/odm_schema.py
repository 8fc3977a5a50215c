"""Validation of an ODM file against the official CDISC ODM 1.3.2 schema set,
kept in export/schemas/odm-1.3.2/ (CDISC's files as published, with their
notices), so that a fresh clone validates offline. lxml (libxml2) reports every
error it finds, not only the first."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA = Path(__file__).resolve().parent / "schemas" / "odm-1.3.2" / "ODM1-3-2.xsd"


@dataclass(frozen=True)
class Validation:
    """The outcome of one check: the errors (line: message), empty when valid."""

    path: Path
    errors: list[str]

    @property
    def valid(self) -> bool:
        """True when the schema found nothing to refuse."""
        return not self.errors

    def summary(self) -> str:
        """One line for a person (the CLI, /export, the demo)."""
        if self.valid:
            return f"ODM valid against CDISC ODM 1.3.2 ({SCHEMA.name}): 0 errors"
        return f"ODM NOT valid against CDISC ODM 1.3.2: {len(self.errors)} error(s); first: {self.errors[0]}"


@cache
def _schema() -> Any:
    """The compiled schema (compiled once per process: about 0.1 s)."""
    from lxml import etree

    # No network: every import and include resolves to the files beside ODM1-3-2.xsd.
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(SCHEMA), parser))


def validate_odm(path: Path) -> Validation:
    """Every schema error in the ODM file at `path` (none: valid)."""
    from lxml import etree

    parser = etree.XMLParser(no_network=True, resolve_entities=False, huge_tree=True)
    try:
        document = etree.parse(str(path), parser)
    except etree.XMLSyntaxError as error:
        return Validation(path, [f"not well-formed XML: {error}"])
    schema = _schema()
    schema.validate(document)
    return Validation(path, [f"line {e.line}: {e.message}" for e in schema.error_log])
