"""Group members kept one by one, the part both backends share (SQLite `sqlite/members.py`, MongoDB
`mongo/members.py`): a 100,000-member attribution list changes by one member without storing or
indexing the other 99,999 again (port.MemberRows).

A Group version is stored as its head (the Group without `member`) plus member records, each valid from
version `since` up to (not including) `until` (None while current), ordered by `ordinal`. Reads
assemble the body; a member's index entries carry `rep` -(ordinal * REP_SPAN) and below (composites), so
they are deleted on their own; the head's are the ordinary ones (rep >= 0).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

INSERT_BATCH = 2000  # members written per statement batch (bounds the rows built at once)
REP_SPAN = 64  # index rows of member n: rep -(n * 64) for plain values, -(n * 64 + k + 1) for composite k


def split(group: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """The Group without `member`, and its members."""
    members = group.get("member")
    head = {key: value for key, value in group.items() if key != "member"}
    return head, list(members) if isinstance(members, list) else []


def assemble(head: bytes, members: Sequence[bytes]) -> bytes:
    """The Group's JSON: its head with `member` appended (none: the head as it is)."""
    if not members:
        return head
    parts = [head[:-1], b',"member":[']
    for member in members:
        parts += (member, b",")
    parts[-1] = b"]}"
    return b"".join(parts)


def entity_of(member: Any) -> str:
    reference = member.get("entity") if isinstance(member, dict) else None
    text = reference.get("reference") if isinstance(reference, dict) else None
    return text if isinstance(text, str) else ""


def rep_range(ordinal: int) -> tuple[int, int]:
    """The (low, high) `rep` of member `ordinal`'s index entries."""
    return -ordinal * REP_SPAN - (REP_SPAN - 1), -ordinal * REP_SPAN


def plan_whole(old: Sequence[tuple[int, bytes]], bodies: Sequence[bytes]) -> tuple[list[int], list[tuple[int, int]]]:
    """For a whole write: which current members (ordinal, JSON, in order) to close, and which of the new
    member JSONs `bodies` to add as (ordinal, position in bodies). Members that stay (same JSON, same
    relative order) keep their records; new ones go after the last one kept, and a kept one that would
    follow a new one is rewritten too."""
    waiting: dict[bytes, deque[int]] = defaultdict(deque)
    for position, (_, body) in enumerate(old):
        waiting[body].append(position)
    kept: list[int | None] = []
    last = -1
    for body in bodies:
        queue = waiting.get(body)
        while queue and queue[0] <= last:
            queue.popleft()
        if queue:
            last = queue.popleft()
            kept.append(last)
        else:
            kept.append(None)
    first_new = next((n for n, position in enumerate(kept) if position is None), len(kept))
    kept = kept[:first_new] + [None] * (len(kept) - first_new)
    staying = {position for position in kept if position is not None}
    closed = [old[position][0] for position in range(len(old)) if position not in staying]
    next_ordinal = (old[max(staying)][0] + 1) if staying else 1
    added = []
    for number, position in enumerate(kept):
        if position is None:
            added.append((next_ordinal, number))
            next_ordinal += 1
    return closed, added
