"""Tamper evidence for the audit table.

Rows are appended by `domain.audit.record` in the transaction of the change
they describe. The sealer then links them, in commit order, into a hash chain:
each sealed row stores its chain position (`seq`), the hash of the row before
(`prev_hash`) and its own hash over its content and `prev_hash` (`row_hash`).
Database triggers (migration 0005, SQLite and PostgreSQL) refuse DELETE and
any UPDATE that changes a row's content, so the only update ever allowed is
the sealer filling the three empty chain columns once. `verify` walks the chain
and names the first row whose content or link does not match: an edit made
behind the triggers' back (a superuser, a restored backup) shows up there.

Sealing in commit order, not id order, matters on PostgreSQL: a transaction
holding id 10 can commit after the one holding id 11."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import AuditChainHead, AuditEntry

GENESIS = hashlib.sha256(b"ssc-trial-bot audit chain").hexdigest()
BATCH = 1000


def content_hash(entry: AuditEntry, prev_hash: str) -> str:
    """The hash of one row's content, chained to the row before it."""
    body: list[Any] = [
        entry.id,
        entry.at.isoformat(),
        entry.actor,
        entry.action,
        entry.participant_id,
        entry.before,
        entry.after,
        entry.detail,
        prev_hash,
    ]
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _head(session: AsyncSession) -> AuditChainHead:
    # A no-op UPDATE first: a row lock on PostgreSQL and the write lock on SQLite,
    # so two sealers (two processes) never extend the chain from the same head.
    await session.execute(update(AuditChainHead).where(AuditChainHead.id == 1).values(seq=AuditChainHead.seq))
    head = await session.get(AuditChainHead, 1, populate_existing=True)
    if head is None:
        head = AuditChainHead(id=1, seq=0, row_hash=GENESIS)
        session.add(head)
    return head


async def seal(session: AsyncSession) -> int:
    """Link every committed, unsealed audit row into the chain; returns how many.
    Commits. Safe to run from several processes at once."""
    total = 0
    while True:
        head = await _head(session)
        rows = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.row_hash.is_(None)).order_by(AuditEntry.id).limit(BATCH)
            )
        )
        for entry in rows:
            entry.seq = head.seq + 1
            entry.prev_hash = head.row_hash
            entry.row_hash = content_hash(entry, head.row_hash)
            head.seq, head.row_hash = entry.seq, entry.row_hash
        await session.commit()
        total += len(rows)
        if len(rows) < BATCH:
            return total


@dataclass(frozen=True)
class Verification:
    """What `verify` found."""

    sealed: int
    unsealed: int
    head_seq: int
    head_hash: str
    problems: list[str]

    @property
    def ok(self) -> bool:
        """True when the chain is whole and every row matches its hash."""
        return not self.problems


def parse_published(text: str) -> tuple[int, str]:
    """A published head as printed (`#SEQ HASH` or `SEQ:HASH`) → (seq, hash)."""
    cleaned = text.strip().lstrip("#").replace(" ", ":")
    seq, _, digest = cleaned.partition(":")
    digest = digest.strip(":").lower()
    if not seq.isdecimal() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("a published head is SEQ:HASH (the position and its 64-character hash)")
    return int(seq), digest


def publication(seq: int, digest: str) -> str:
    """A head as it is published (the coordinator chat, every export)."""
    return f"{seq}:{digest}"


async def check_published(session: AsyncSession, seq: int, digest: str) -> list[str]:
    """Problems if the chain no longer holds the published head at its position: a
    chain rewritten from the public genesis hash (triggers dropped, rows deleted, all
    re-sealed by whoever holds the bot's credentials) cannot reproduce it."""
    if seq == 0:
        return [] if digest == GENESIS else ["the published head #0 is not the chain's genesis"]
    found = await session.scalar(select(AuditEntry.row_hash).where(AuditEntry.seq == seq))
    if found is None:
        return [f"the published head #{seq} is not in the chain any more: rows were removed"]
    if found != digest:
        return [f"the row at the published head #{seq} has another hash: the chain was rewritten before it"]
    return []


async def verify(session: AsyncSession, published: tuple[int, str] | None = None) -> Verification:
    """Walk the chain in order and report every break (an edited, removed or
    inserted row) by audit id and chain position; with `published` (a head kept
    outside the database), also whether the chain still holds it."""
    problems: list[str] = [] if published is None else await check_published(session, *published)
    previous, expected_seq, sealed = GENESIS, 1, 0
    result = await session.stream_scalars(
        select(AuditEntry).where(AuditEntry.seq.is_not(None)).order_by(AuditEntry.seq)
    )
    async for entry in result:
        sealed += 1
        if entry.seq != expected_seq:
            problems.append(f"chain position {expected_seq} is missing (next found: {entry.seq}, audit id {entry.id})")
            expected_seq = entry.seq or expected_seq
        if entry.prev_hash != previous:
            problems.append(f"audit id {entry.id} (position {entry.seq}) does not link to the row before it")
        if entry.row_hash != content_hash(entry, entry.prev_hash or ""):
            problems.append(f"audit id {entry.id} (position {entry.seq}) was changed after it was sealed")
        previous = entry.row_hash or ""
        expected_seq += 1
    head = await session.get(AuditChainHead, 1)
    head_seq, head_hash = (head.seq, head.row_hash) if head else (0, GENESIS)
    if head_seq != sealed or head_hash != previous:
        problems.append(f"the chain ends at position {sealed}, but its head says {head_seq}: rows were removed")
    unsealed = len(list(await session.scalars(select(AuditEntry.id).where(AuditEntry.row_hash.is_(None)))))
    return Verification(sealed, unsealed, head_seq, head_hash, problems)
