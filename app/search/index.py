"""Approximate nearest-neighbour indexes behind one small interface.

``VectorIndex`` is what the search service needs: ``add`` (insert or replace by id),
``remove``, ``search`` (cosine, best first) restricted to an optional set of allowed ids, and
``save`` / ``load``. A deployment that already runs a vector engine implements the same four
methods.

``FaissIndex`` (faiss-cpu) is the default, chosen by measurement (bench/similarity.py,
bench/RESULTS.md): faiss applies an id selector *inside* the scan, so a filter never truncates
a fixed top-k, it deletes by id, and an IVF over 8-bit codes builds in seconds where the HNSW
graphs of faiss and usearch took minutes for 1280-d vectors on this machine (and ``usearch``'s
Python API has no filter predicate; ``hnswlib`` has no wheels). ``ExactIndex`` is the
brute-force numpy scan with the same interface (the benchmark's reference).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

EXACT_MAX = 4096  # allowed ids up to this many: an exact scan of them beats a filtered walk
IVF_MIN = 20_000  # below this many vectors an exact scan is fast enough and needs no training
NPROBE = 64


class VectorIndex(Protocol):
    dim: int

    def __len__(self) -> int: ...

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None: ...

    def remove(self, ids: Sequence[str]) -> None: ...

    def search(
        self, query: np.ndarray, k: int, allowed: Collection[str] | None = None
    ) -> list[tuple[str, float]]: ...

    def save(self, path: Path) -> None: ...


def _top(scores: np.ndarray, ids: Sequence[str], k: int) -> list[tuple[str, float]]:
    if len(scores) == 0 or k <= 0:
        return []
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.argsort(-scores[part], kind="stable")]
    return [(ids[i], float(scores[i])) for i in order]


class ExactIndex:
    """Brute force over float16 rows: exact, O(n) per query."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._rows = np.zeros((0, dim), np.float16)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        with self._lock:
            self.remove_locked([i for i in ids if i in self._pos])
            base = len(self._ids)
            self._ids.extend(ids)
            self._pos.update({ident: base + n for n, ident in enumerate(ids)})
            self._rows = np.concatenate([self._rows, np.asarray(vectors, np.float16)])

    def remove(self, ids: Sequence[str]) -> None:
        with self._lock:
            self.remove_locked(ids)

    def remove_locked(self, ids: Sequence[str]) -> None:
        gone = {self._pos[i] for i in ids if i in self._pos}
        if not gone:
            return
        keep = [n for n in range(len(self._ids)) if n not in gone]
        self._ids = [self._ids[n] for n in keep]
        self._rows = self._rows[keep]
        self._pos = {ident: n for n, ident in enumerate(self._ids)}

    def search(
        self, query: np.ndarray, k: int, allowed: Collection[str] | None = None
    ) -> list[tuple[str, float]]:
        q = np.asarray(query, np.float32)
        if allowed is None:
            return _top(self._rows.astype(np.float32) @ q, self._ids, k)
        rows = [self._pos[i] for i in allowed if i in self._pos]
        ids = [self._ids[n] for n in rows]
        return _top(self._rows[rows].astype(np.float32) @ q, ids, k)

    def save(self, path: Path) -> None:
        np.savez(path.with_suffix(".npz"), ids=np.array(self._ids, dtype=object), rows=self._rows)


class FaissIndex:
    """faiss: an exact inner-product index while small, an IVF over 8-bit scalar-quantised
    codes from ``IVF_MIN`` vectors on (retrained when the index has grown 4x since).

    Labels are increasing ints mapped to string ids; replacing an id removes its old label.
    A filter is an id selector applied inside the scan of the probed lists, with more lists
    probed the more selective it is; a filter that leaves at most ``EXACT_MAX`` candidates is
    answered exactly from their reconstructed vectors.
    """

    def __init__(self, dim: int) -> None:
        import faiss

        # One query at a time: OpenMP threads only add hand-offs (and spin on a busy machine);
        # concurrency comes from the API's requests.
        faiss.omp_set_num_threads(1)
        self.dim = dim
        self._faiss: Any = faiss
        self._index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._ivf: Any = None
        self._trained_on = 0
        self._ids: dict[int, str] = {}
        self._label: dict[str, int] = {}
        self._next = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._label)

    @property
    def kind(self) -> str:
        return "ivf-sq8" if self._ivf is not None else "flat"

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        if not len(ids):
            return
        v = np.ascontiguousarray(vectors, np.float32)
        with self._lock:
            self._drop(ids)
            labels = np.arange(self._next, self._next + len(ids), dtype=np.int64)
            self._next += len(ids)
            self._index.add_with_ids(v, labels)
            for label, ident in zip(labels.tolist(), ids, strict=True):
                self._ids[label] = ident
                self._label[ident] = label
            if len(self._label) >= max(IVF_MIN, 4 * self._trained_on):
                self._retrain()

    def remove(self, ids: Sequence[str]) -> None:
        with self._lock:
            self._drop(ids)

    def _drop(self, ids: Sequence[str]) -> None:
        labels = [self._label.pop(i) for i in ids if i in self._label]
        if labels:
            for label in labels:
                del self._ids[label]
            self._index.remove_ids(np.array(labels, np.int64))

    def _all(self) -> tuple[np.ndarray, np.ndarray]:
        labels = np.fromiter(self._ids, np.int64, len(self._ids))
        rows = self._index.reconstruct_batch(labels) if len(labels) else np.zeros((0, self.dim), np.float32)
        return labels, np.asarray(rows, np.float32)

    def _retrain(self) -> None:
        faiss: Any = self._faiss
        labels, rows = self._all()
        nlist = int(max(16, min(4096, 4 * np.sqrt(len(labels)))))
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFScalarQuantizer(
            quantizer, self.dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        ivf.cp.min_points_per_centroid = 5  # no warning for a sample of 40 points a list
        sample = rows[np.random.default_rng(0).permutation(len(rows))[: 40 * nlist]]
        ivf.train(sample)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # remove and reconstruct by label
        ivf.add_with_ids(rows, labels)
        self._ivf = ivf
        self._index = ivf
        self._trained_on = len(labels)

    def search(
        self, query: np.ndarray, k: int, allowed: Collection[str] | None = None
    ) -> list[tuple[str, float]]:
        faiss: Any = self._faiss
        q = np.ascontiguousarray(np.asarray(query, np.float32).reshape(1, -1))
        with self._lock:
            total = len(self._label)
            selector = None
            candidates = total
            if allowed is not None:
                labels = np.fromiter((self._label[i] for i in allowed if i in self._label), np.int64)
                candidates = len(labels)
                if candidates <= EXACT_MAX or self._ivf is None:
                    return self._exact(q, labels, k)
                selector = faiss.IDSelectorBatch(labels)
            k = min(k, candidates)
            if k <= 0:
                return []
            if self._ivf is None:
                scores, found = self._index.search(q, k)
            else:
                nlist = self._index.nlist
                share = candidates / max(1, total)
                nprobe = int(min(nlist, max(NPROBE, 2 * k / 10) / max(share, 1e-3) ** 0.5))
                params = faiss.SearchParametersIVF(nprobe=nprobe, sel=selector)
                scores, found = self._index.search(q, k, params=params)
            return [(self._ids[int(n)], float(s)) for s, n in zip(scores[0], found[0], strict=True) if n >= 0]

    def _exact(self, q: np.ndarray, labels: np.ndarray, k: int) -> list[tuple[str, float]]:
        """Every allowed vector compared (all lists probed; the selector skips the others
        before any distance is computed)."""
        k = min(k, len(labels))
        if k <= 0:
            return []
        faiss: Any = self._faiss
        selector = faiss.IDSelectorBatch(labels)
        if self._ivf is not None:
            params = faiss.SearchParametersIVF(nprobe=self._index.nlist, sel=selector)
        else:
            params = faiss.SearchParameters(sel=selector)
        scores, found = self._index.search(q.reshape(1, -1), k, params=params)
        return [(self._ids[int(n)], float(s)) for s, n in zip(scores[0], found[0], strict=True) if n >= 0]

    def save(self, path: Path) -> None:
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            self._faiss.write_index(self._index, str(tmp))
            meta = np.array([list(self._ids.values()), [str(x) for x in self._ids]], dtype=object)
            meta_tmp = path.with_name(path.name + ".ids.tmp.npy")
            np.save(meta_tmp, meta, allow_pickle=True)
            extra = f"{self._next} {self._trained_on}"
            path.with_name(path.name + ".meta").write_text(extra)
            tmp.replace(path)
            meta_tmp.replace(path.with_name(path.name + ".ids.npy"))

    @classmethod
    def load(cls, path: Path, dim: int) -> FaissIndex:
        out = cls(dim)
        faiss: Any = out._faiss
        index: Any = faiss.read_index(str(path))
        meta = np.load(path.with_name(path.name + ".ids.npy"), allow_pickle=True)
        nxt, trained = (int(x) for x in path.with_name(path.name + ".meta").read_text().split())
        out._ids = {int(label): str(ident) for ident, label in zip(meta[0], meta[1], strict=True)}
        out._label = {ident: label for label, ident in out._ids.items()}
        out._next, out._trained_on = nxt, trained
        if index.d != dim or index.ntotal != len(out._ids):
            raise ValueError(f"index file {path} does not match its ids")
        if trained:
            out._ivf = index
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
        out._index = index
        return out
