"""The trial protocol as a validated data file (``content/protocol.yaml``).

Why a file: the study team reviews arms, doses, visit windows, reminder times and holidays
as data, and another trial can reuse the bot by writing its own file. Nothing trial-specific
lives in code. Why so strict: a typo in a weekday or a window would silently mis-schedule
real participants, so every mistake stops the bot at start with one :class:`ProtocolError`
naming the file, the place (``visits[2].window_days``) and the line.

Conventions in the file: dates ``YYYY-MM-DD``; local wall-clock times ``"HH:MM"`` (quoted or
not: YAML 1.1's base-60 reading of ``22:00`` is switched off); durations ``"3h"``, ``"90m"``,
``"1d"``, ``"1h30m"``; weekdays ``friday`` or ``fri``. All local times are in ``timezone``.
"""

from core.text import BilingualText
from scheduler.protocol.loader import load_protocol, protocol_from_mapping
from scheduler.protocol.model import (
    Arm,
    Checkin,
    ClinicHours,
    Condition,
    Derived,
    DoseRules,
    DoubleDoseCheck,
    Holiday,
    Protocol,
    ProtocolError,
    QuestionnaireRule,
    Regimen,
    Site,
    StaleLimit,
    Staleness,
    Visit,
    VisitReminders,
    VisitWindowCheck,
    WeekdayRule,
    max_stale_days,
    parse_duration,
    parse_local_time,
)

__all__ = [
    "Arm",
    "BilingualText",
    "Checkin",
    "ClinicHours",
    "Condition",
    "Derived",
    "DoseRules",
    "DoubleDoseCheck",
    "Holiday",
    "Protocol",
    "ProtocolError",
    "QuestionnaireRule",
    "Regimen",
    "Site",
    "StaleLimit",
    "Staleness",
    "Visit",
    "VisitReminders",
    "VisitWindowCheck",
    "WeekdayRule",
    "load_protocol",
    "max_stale_days",
    "parse_duration",
    "parse_local_time",
    "protocol_from_mapping",
]
