"""The index interface: exact while small, IVF once large, filters inside the search, removals,
persistence; and the per-process registry kept current from MongoDB (two registries stand
for two API replicas)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.search import codec, index, store
from app.search.index import ExactIndex, FaissIndex
from app.search.models import RefKind
from app.search.registry import Registry
from app.settings import Settings

DIM = 64


def clustered(n: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, DIM)).astype(np.float32)
    labels = rng.integers(0, 20, n)
    vectors = codec.normalise(centres[labels] + 0.4 * rng.standard_normal((n, DIM)).astype(np.float32))
    return [f"id{k}" for k in range(n)], vectors, labels


def test_int8_storage_keeps_cosine_similarities() -> None:
    _, v, _ = clustered(50)
    rows = [codec.encode(x) for x in v]
    back = codec.decode_many(rows, DIM)
    assert rows[0][0].__len__() == DIM  # one byte a dimension
    assert np.max(np.abs(back @ back.T - v @ v.T)) < 0.01


@pytest.mark.parametrize("n", [500, 3000])
def test_faiss_index_agrees_with_an_exact_scan_with_and_without_a_filter(
    n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index, "IVF_MIN", 1000)
    monkeypatch.setattr(index, "EXACT_MAX", 200)
    ids, v, labels = clustered(n)
    ann, exact = FaissIndex(DIM), ExactIndex(DIM)
    ann.add(ids, v)
    exact.add(ids, v)
    assert ann.kind == ("ivf-sq8" if n >= 1000 else "exact-int8")
    allowed = {i for i, c in zip(ids, labels, strict=True) if c in (1, 2, 3)}  # 15%: a walk, not a scan
    few = set(sorted(allowed)[:50])  # exact over the few
    recall = []
    for q in v[:20]:
        for subset in (None, allowed, few):
            got = ann.search(q, 10, subset)
            want = exact.search(q, 10, subset)
            if subset is not None:
                assert {i for i, _ in got} <= subset
            recall.append(len({i for i, _ in got} & {i for i, _ in want}) / len(want))
    assert np.mean(recall) >= 0.9


def test_removed_and_replaced_vectors_leave_the_results() -> None:
    ids, v, _ = clustered(100)
    ann = FaissIndex(DIM)
    ann.add(ids, v)
    assert ann.search(v[7], 1)[0][0] == "id7"
    ann.remove(["id7"])
    assert "id7" not in [i for i, _ in ann.search(v[7], 10)]
    ann.add(["id8"], v[9:10])  # id8 now holds id9's vector
    top = [i for i, _ in ann.search(v[9], 2)]
    assert set(top) == {"id8", "id9"} and len(ann) == 99


def test_an_index_saves_and_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index, "IVF_MIN", 1000)
    for n in (100, 2000):
        ids, v, _ = clustered(n)
        ann = FaissIndex(DIM)
        ann.add(ids, v)
        ann.remove(["id3"])
        path = tmp_path / f"{n}.faiss"
        ann.save(path)
        back = FaissIndex.load(path, DIM)
        assert back.kind == ann.kind and len(back) == n - 1
        assert back.search(v[5], 3) == ann.search(v[5], 3)
        back.add(["new"], v[5:6])
        assert {i for i, _ in back.search(v[5], 2)} == {"new", "id5"}


async def vectors(app_id: str, ids: list[str], v: np.ndarray, model: str = "m@1") -> None:
    await store.put(
        [
            store.Vector(app_id, model, RefKind.ANNOTATION, i, "in", "src", x)
            for i, x in zip(ids, v, strict=True)
        ]
    )


async def test_replicas_catch_up_from_mongodb_and_a_restart_loads_then_catches_up(
    asgi_app: object, settings: Settings, tmp_path: Path
) -> None:
    ids, v, _ = clustered(300)
    await vectors("app-r", ids[:200], v[:200])
    await vectors("app-other", ids, v)  # another app's vectors are another index
    await vectors("app-r", ids[200:], v[200:], model="other@1")  # and so are another model's
    one, two = Registry(tmp_path / "one"), Registry(tmp_path / "two")
    a = await one.get("app-r", "m@1", RefKind.ANNOTATION, DIM)
    b = await two.get("app-r", "m@1", RefKind.ANNOTATION, DIM)
    assert len(a.index) == len(b.index) == 200
    # replica one's process wrote nothing itself: writes from anywhere reach both
    await vectors("app-r", ids[200:250], v[200:250])
    await store.tombstone(RefKind.ANNOTATION, ["id0", "id1"])
    a = await one.get("app-r", "m@1", RefKind.ANNOTATION, DIM)
    b = await two.get("app-r", "m@1", RefKind.ANNOTATION, DIM)
    assert len(a.index) == len(b.index) == 248
    assert "id0" not in [i for i, _ in b.index.search(v[0], 5)]
    # persisted by a rebuild; a new process loads the file and catches up past it
    assert await one.rebuild("app-r", "m@1", RefKind.ANNOTATION, DIM) == 248
    await vectors("app-r", ids[250:260], v[250:260])
    restarted = Registry(tmp_path / "one")
    c = await restarted.get("app-r", "m@1", RefKind.ANNOTATION, DIM)
    assert len(c.index) == 258
    assert c.index.search(v[255], 1)[0][0] == "id255"
