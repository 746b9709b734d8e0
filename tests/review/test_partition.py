"""The evenness rule on its own: any sequence of assignments, completions and people changes."""

from __future__ import annotations

import random

from app.review import partition


def _check_even(counts: dict[str, int], people: list[str]) -> None:
    values = [counts.get(p, 0) for p in people]
    assert max(values) - min(values) <= 1, counts


def test_choose_keeps_open_counts_within_one_after_any_sequence() -> None:
    rng = random.Random(7)
    for _ in range(200):
        people = [f"r{k}" for k in range(rng.randint(1, 6))]
        counts: dict[str, int] = {}
        for _ in range(rng.randint(0, 60)):
            partition.choose(people, {}, counts)
            _check_even(counts, people)


def test_weighted_choose_keeps_each_share_within_one_of_its_quota() -> None:
    people, weights = ["a", "b", "c"], {"a": 1.0, "b": 3.0, "c": 2.0}
    counts: dict[str, int] = {}
    for total in range(1, 121):
        partition.choose(people, weights, counts)
        for p in people:
            assert abs(counts.get(p, 0) - total * weights[p] / 6.0) <= 1, (total, counts)


def test_consensus_choose_gives_distinct_people() -> None:
    counts: dict[str, int] = {}
    for _ in range(30):
        chosen = partition.choose(["a", "b", "c"], {}, counts, k=2)
        assert len(set(chosen)) == 2
    assert sorted(counts.values()) == [20, 20, 20]


def test_rebalance_after_people_changes_moves_only_unstarted_items_and_restores_evenness() -> None:
    rng = random.Random(11)
    for _ in range(300):
        everyone = [f"r{k}" for k in range(6)]
        before = rng.sample(everyone, rng.randint(1, 4))
        counts: dict[str, int] = {}
        items: dict[str, list[tuple[str, str, bool]]] = {}  # holder -> (id, input, started)
        for n in range(rng.randint(0, 40)):
            holder = partition.choose(before, {}, counts)[0]
            items.setdefault(holder, []).append((f"i{n}", f"in{n}", rng.random() < 0.3))
        after = rng.sample(everyone, rng.randint(1, 5))
        open_counts = {h: len(v) for h, v in items.items()}
        movable = {h: [(i, inp) for i, inp, started in v if not started] for h, v in items.items()}
        moves = partition.rebalance(after, {}, open_counts, movable)
        started = {i for v in items.values() for i, _, s in v if s}
        assert not started.intersection(m.item_id for m in moves)
        holder_of = {i: h for h, v in items.items() for i, _, _ in v}
        for m in moves:
            assert holder_of[m.item_id] == m.from_user and m.to_user in after
            holder_of[m.item_id] = m.to_user
        # every unstarted item is with a current person
        assert all(holder_of[i] in after for v in items.values() for i, _, s in v if not s)
        final = {p: sum(1 for h in holder_of.values() if h == p) for p in after}
        # the spread is at most one unless a person is over because of items they started
        unmovable = {p: sum(1 for v in items.get(p, []) if v[2]) for p in after}
        top = max(final.values())
        assert top - min(final.values()) <= 1 or any(
            final[p] == top and unmovable[p] >= top - 1 for p in after
        ), (
            final,
            unmovable,
        )
