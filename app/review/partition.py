"""Who gets the next piece of work, and which unstarted work moves when the people change.

Pure functions (no I/O), so the evenness rule is tested on its own and the same code runs for
review (EVENLY or WEIGHTED) and for labeling (EVENLY).

Load of a person = their open items (assigned, not done) divided by their weight. The next item
goes to the person whose load *after* taking it is lowest, ties to the earlier one in the
task's list. With equal weights that keeps open counts within one of each other; with weights
it is the D'Hondt rule, so each person's count stays within one of ``total * weight / sum``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Move:
    item_id: str
    from_user: str | None
    to_user: str


def _key(people: Sequence[str], weights: Mapping[str, float], counts: Mapping[str, int], user: str) -> tuple:
    return ((counts.get(user, 0) + 1) / weights.get(user, 1.0), people.index(user))


def choose(
    people: Sequence[str],
    weights: Mapping[str, float],
    counts: dict[str, int],
    k: int = 1,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[str]:
    """``k`` distinct people for one item (k > 1 under consensus); ``counts`` is updated."""
    chosen: list[str] = []
    for _ in range(k):
        candidates = [p for p in people if p not in exclude and p not in chosen]
        if not candidates:
            break
        best = min(candidates, key=lambda p: _key(people, weights, counts, p))
        counts[best] = counts.get(best, 0) + 1
        chosen.append(best)
    return chosen


def rebalance(
    people: Sequence[str],
    weights: Mapping[str, float],
    open_counts: Mapping[str, int],
    movable: Mapping[str | None, Sequence[tuple[str, str]]],
) -> list[Move]:
    """Moves of unstarted items that restore the rule after the people changed.

    ``open_counts``: every person's open items (started ones included, they count but stay);
    ``movable``: per holder, their unstarted items as ``(item_id, input_id)``, newest last.
    Items of holders who are not in ``people`` (removed, or None: nobody) all move; then items
    move from the most to the least loaded person while that lowers the spread. An item never
    moves to a person who already holds another slot of the same input (consensus).
    """
    if not people:
        return []
    counts = {p: open_counts.get(p, 0) for p in people}
    holders: dict[str, set[str]] = {}
    for holder, items in movable.items():
        for _, input_id in items:
            if holder is not None:
                holders.setdefault(input_id, set()).add(holder)
    moves: list[Move] = []

    def give(item_id: str, input_id: str, source: str | None) -> bool:
        taken = holders.get(input_id, set()) - ({source} if source else set())
        target = choose(people, weights, counts, exclude=taken)
        if not target:
            return False
        moves.append(Move(item_id, source, target[0]))
        holders.setdefault(input_id, set()).discard(source or "")
        holders[input_id].add(target[0])
        return True

    for holder, items in movable.items():
        if holder is None or holder not in counts:
            for item_id, input_id in items:
                give(item_id, input_id, holder)
    queues = {p: list(movable.get(p, [])) for p in people}
    while True:
        donor = max(
            (p for p in people if queues[p]),
            key=lambda p: (counts[p] / weights.get(p, 1.0), -people.index(p)),
            default=None,
        )
        if donor is None:
            return moves
        # would the donor's item land somewhere strictly less loaded than the donor is now?
        item_id, input_id = queues[donor][-1]
        taken = holders.get(input_id, set())
        others = [p for p in people if p != donor and p not in taken]
        if not others:
            queues[donor].pop()
            continue
        target = min(others, key=lambda p: _key(people, weights, counts, p))
        after_target = (counts[target] + 1) / weights.get(target, 1.0)
        if after_target >= counts[donor] / weights.get(donor, 1.0):
            queues[donor] = []  # the most loaded donor cannot improve the spread: done with it
            continue
        queues[donor].pop()
        counts[donor] -= 1
        counts[target] += 1
        holders[input_id].discard(donor)
        holders[input_id].add(target)
        moves.append(Move(item_id, donor, target))
