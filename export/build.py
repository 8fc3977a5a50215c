"""Every dataset of the trial record, in dictionary order, from one snapshot.

Here, above both export.datasets (participants, alerts, the shared scope) and
export.followup (visits, doses, questionnaires, adverse events), so that neither
imports the other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncSession

from export import followup
from export.datasets import Scope, alerts, participants
from export.media import media_files
from export.spec import Dataset

Builder = Callable[[AsyncSession, Scope], Awaitable[Dataset]]


def builders(scope: Scope) -> list[Builder]:
    """Every dataset builder, in the order files are listed in the dictionary."""
    per_instrument = [followup.responses(i, scope.protocol) for _, i in sorted(scope.instruments.items())]
    every: list[Builder] = [participants, followup.visits, followup.doses, *per_instrument]  # type: ignore[list-item]
    return [*every, followup.adverse_events, alerts, media_files]


async def build_all(session: AsyncSession, scope: Scope) -> list[Dataset]:
    """Every dataset, from the same snapshot (adherence is derived from the doses:
    with `since`, from every dose of the participants with a dose changed since)."""
    datasets = [await builder(session, scope) for builder in builders(scope)]
    doses = next(d for d in datasets if d.name == "doses")
    every_dose = doses
    if scope.since is not None:
        changed = frozenset(int(str(row["_participant_id"])) for row in doses.rows)
        every_dose = await followup.doses(session, replace(scope, since=None, participant_ids=changed))
    final_week = max(scope.visit_weeks, default=24)
    datasets.insert(datasets.index(doses) + 1, followup.adherence(every_dose, final_week))
    return datasets
