"""Turning a fresh plan into row changes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from scheduler.planner.model import PlanDiff, PlannedMessage

# --------------------------------------------------------------------------- re-planning


def replan_diff(
    existing: Mapping[str, datetime],
    new_plan: Iterable[PlannedMessage],
    *,
    keep_from: datetime | None = None,
) -> PlanDiff:
    """Turn a fresh plan into row changes: add new keys, cancel vanished ones, move changed.

    ``existing``: key → due_at of the participant's stored rows that are still *pending*
    (not sent, skipped or cancelled). A key missing from the new plan is cancelled; a key
    whose due time changed is moved (update due_at, stale_after and payload from the new
    message). ``keep_from``: when the plan was made with a horizon, pass ``now + horizon``
    so rows due beyond it are left alone. Output order is deterministic.
    """
    to_add: list[PlannedMessage] = []
    to_move: list[PlannedMessage] = []
    seen: set[str] = set()
    for message in new_plan:
        if message.key in seen:
            raise ValueError(f"duplicate key in plan: {message.key}")
        seen.add(message.key)
        old = existing.get(message.key)
        if old is None:
            to_add.append(message)
        elif old != message.due_at:
            to_move.append(message)
    to_cancel = sorted(
        key for key, due in existing.items() if key not in seen and (keep_from is None or due < keep_from)
    )
    return PlanDiff(tuple(to_add), tuple(to_cancel), tuple(to_move))
