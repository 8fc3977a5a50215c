"""The study team's files as one object: the protocol, the instruments and the
triage table, loaded once from CONTENT_DIR and handed to whoever needs them (the
bot through Services, the shell CLI, the tests), never loaded behind anyone's back.
So a participant's first plan and every later re-plan come from the same files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from domain.questionnaires import Instrument, load_instruments
from domain.triage import (
    TriageTable,
    check_arms,
    check_cross_checks,
    check_double_dose_advice,
    check_instrument_advice,
    load_triage_table,
)
from scheduler.protocol import Protocol, load_protocol

CONTENT_DIR = Path(__file__).resolve().parent.parent / "content"
"""The shipped content, used when CONTENT_DIR is not set."""


@dataclass(frozen=True)
class Content:
    """Everything trial-specific that is data, not code."""

    protocol: Protocol
    instruments: dict[str, Instrument]
    triage: TriageTable


def load_content(content_dir: Path | None = None) -> Content:
    """The study team's files: instruments, then the protocol and the triage table
    checked against them (and the instruments' and the table's arms and advice keys
    against the protocol's arms and the table's advice). A mistake raises InstrumentError, ProtocolError or
    TriageTableError naming file and place, so a broken file stops the start
    instead of a questionnaire at 2 a.m."""
    root = content_dir or CONTENT_DIR
    instruments = load_instruments(root / "instruments")
    protocol = load_protocol(root / "protocol.yaml", known_instruments=set(instruments))
    table = load_triage_table(root / "triage.yaml")
    check_cross_checks(table, instruments)
    check_instrument_advice(table, instruments)
    check_double_dose_advice(table, protocol)
    check_arms(table, instruments, protocol)
    return Content(protocol, instruments, table)
