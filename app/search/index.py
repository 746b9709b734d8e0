"""Approximate nearest-neighbour indexes behind one small interface.

``VectorIndex`` is what the search service needs: ``add`` (insert or replace by id),
``remove``, ``search`` (cosine, best first) restricted to an optional set of allowed ids, and
``save`` / ``load``. A deployment that already runs a vector engine implements the same four
methods.

``FaissIndex`` is the default, chosen by measurement (bench/similarity.py, bench/RESULTS.md):
the int8 rows (the stored form) in one numpy array for exact scans of a filter's candidates,
and a faiss IVF over 8-bit codes for broad searches. faiss applies an id selector *inside* the
scan, so a filter never truncates a fixed top-k, it deletes by id, and the IVF builds in
seconds where the HNSW graphs of faiss and usearch took minutes for 1280-d vectors on this
machine (and ``usearch``'s Python API has no filter predicate; ``hnswlib`` has no wheels).
``ExactIndex`` is the brute-force numpy scan with the same interface.
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
SCAN_CHUNK = 512  # candidates converted to float32 at a time in an exact scan


class VectorIndex(Protocol):
    dim: int

    def __len__(self) -> int: ...

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None: ...

    def remove(self, ids: Sequence[str]) -> None: ...

    def search(
        self, query: np.ndarray, k: int, allowed: Collection[str] | None = None
    ) -> list[tuple[str, float]]: ...

    def save(self, path: Path) -> None: ...


def _top(scores: np.ndarray, ids: Sequence[Any], k: int) -> list[tuple[Any, float]]:
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
    """int8 codes of every vector (the stored form: a scale per vector) in one numpy array, plus
    from ``IVF_MIN`` vectors on a faiss IVF over 8-bit scalar-quantised codes (retrained when
    the index has grown 4x since).

    Labels are dense ints (row numbers) mapped to string ids; replacing an id retires its old
    row. A search with a filter that leaves at most ``EXACT_MAX`` candidates, and any search
    before the IVF exists, is an exact scan of just those rows; a broader one walks the IVF with
    an id selector applied inside the scan of the probed lists (more lists the more selective
    it is), so a filter never truncates a fixed top-k.
    """

    def __init__(self, dim: int) -> None:
        import faiss
        import threadpoolctl

        # One query at a time: OpenMP and BLAS threads only add hand-offs (and spin on a busy
        # machine: the exact scan of 400 candidates took 11 ms with OpenBLAS' two threads
        # against 0.6 ms with one); concurrency comes from the API's requests.
        faiss.omp_set_num_threads(1)
        threadpoolctl.threadpool_limits(1, user_api="blas")
        self.dim = dim
        self._faiss: Any = faiss
        self._ivf: Any = None
        self._trained_on = 0
        self._codes = np.zeros((0, dim), np.int8)
        self._scales = np.zeros(0, np.float32)
        self._alive = np.zeros(0, bool)
        self._ids: list[str] = []  # row -> id (retired rows keep their old id)
        self._label: dict[str, int] = {}  # live id -> row
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._label)

    @property
    def kind(self) -> str:
        return "ivf-sq8" if self._ivf is not None else "exact-int8"

    def _grow(self, extra: int) -> None:
        need = len(self._ids) + extra
        if need <= len(self._scales):
            return
        cap = max(need, 2 * len(self._scales), 1024)
        codes = np.zeros((cap, self.dim), np.int8)
        codes[: len(self._ids)] = self._codes[: len(self._ids)]
        scales = np.zeros(cap, np.float32)
        scales[: len(self._ids)] = self._scales[: len(self._ids)]
        alive = np.zeros(cap, bool)
        alive[: len(self._ids)] = self._alive[: len(self._ids)]
        self._codes, self._scales, self._alive = codes, scales, alive

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        if not len(ids):
            return
        v = np.ascontiguousarray(vectors, np.float32)
        peak = np.max(np.abs(v), axis=1)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        codes = np.clip(np.rint(v / scale[:, None]), -127, 127).astype(np.int8)
        with self._lock:
            self._drop(ids)
            self._grow(len(ids))
            base = len(self._ids)
            labels = np.arange(base, base + len(ids), dtype=np.int64)
            self._codes[base : base + len(ids)] = codes
            self._scales[base : base + len(ids)] = scale
            self._alive[base : base + len(ids)] = True
            self._ids.extend(ids)
            self._label.update({ident: base + n for n, ident in enumerate(ids)})
            if self._ivf is not None:
                self._ivf.add_with_ids(v, labels)
            if len(self._label) >= max(IVF_MIN, 4 * self._trained_on):
                self._retrain()

    def remove(self, ids: Sequence[str]) -> None:
        with self._lock:
            self._drop(ids)

    def _drop(self, ids: Sequence[str]) -> None:
        labels = [self._label.pop(i) for i in ids if i in self._label]
        if labels:
            self._alive[labels] = False
            if self._ivf is not None:
                self._ivf.remove_ids(np.array(labels, np.int64))

    def _rows(self, labels: np.ndarray) -> np.ndarray:
        return np.asarray(self._codes[labels].astype(np.float32) * self._scales[labels, None], np.float32)

    def _live(self) -> np.ndarray:
        return np.flatnonzero(self._alive[: len(self._ids)])

    def _retrain(self) -> None:
        faiss: Any = self._faiss
        labels = self._live()
        nlist = int(max(16, min(4096, 4 * np.sqrt(len(labels)))))
        ivf = faiss.IndexIVFScalarQuantizer(
            faiss.IndexFlatIP(self.dim),
            self.dim,
            nlist,
            faiss.ScalarQuantizer.QT_8bit,
            faiss.METRIC_INNER_PRODUCT,
        )
        ivf.cp.min_points_per_centroid = 5  # no warning for a sample of 40 points a list
        sample = np.random.default_rng(0).permutation(labels)[: 40 * nlist]
        ivf.train(self._rows(np.sort(sample)))
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # remove by label
        for k in range(0, len(labels), 20_000):
            chunk = labels[k : k + 20_000]
            ivf.add_with_ids(self._rows(chunk), chunk.astype(np.int64))
        self._ivf = ivf
        self._trained_on = len(labels)

    def search(
        self, query: np.ndarray, k: int, allowed: Collection[str] | None = None
    ) -> list[tuple[str, float]]:
        faiss: Any = self._faiss
        q = np.ascontiguousarray(np.asarray(query, np.float32).reshape(-1))
        with self._lock:
            total = len(self._label)
            if allowed is None:
                if self._ivf is None:
                    return self._exact(q, self._live(), k)
                return self._walk(q, k, None, total, total)
            labels = np.fromiter((self._label[i] for i in allowed if i in self._label), np.int64)
            if len(labels) <= EXACT_MAX or self._ivf is None:
                return self._exact(q, labels, k)
            return self._walk(q, k, faiss.IDSelectorBatch(labels), len(labels), total)

    def _walk(
        self, q: np.ndarray, k: int, selector: Any, candidates: int, total: int
    ) -> list[tuple[str, float]]:
        k = min(k, candidates)
        if k <= 0:
            return []
        nlist = self._ivf.nlist
        share = candidates / max(1, total)
        nprobe = int(min(nlist, max(NPROBE, 2 * k / 10) / max(share, 1e-3) ** 0.5))
        params = self._faiss.SearchParametersIVF(nprobe=nprobe, sel=selector)
        scores, found = self._ivf.search(q.reshape(1, -1), k, params=params)
        return [(self._ids[int(n)], float(s)) for s, n in zip(scores[0], found[0], strict=True) if n >= 0]

    def _exact(self, q: np.ndarray, labels: np.ndarray, k: int) -> list[tuple[str, float]]:
        if len(labels) == 0:
            return []
        # In chunks through one small float32 buffer: converting all candidates at once
        # allocates (and page-faults) ~5 KiB per candidate on every query.
        scores = np.empty(len(labels), np.float32)
        buf = np.empty((min(len(labels), SCAN_CHUNK), self.dim), np.float32)
        for at in range(0, len(labels), SCAN_CHUNK):
            part = labels[at : at + SCAN_CHUNK]
            rows = buf[: len(part)]
            rows[...] = self._codes[part]
            np.matmul(rows, q, out=scores[at : at + len(part)])
        scores *= self._scales[labels]
        best = _top(scores, range(len(labels)), k)
        return [(self._ids[int(labels[n])], score) for n, score in best]

    def save(self, path: Path) -> None:
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            n = len(self._ids)
            tmp = path.with_name(path.name + ".tmp.npz")
            np.savez(
                tmp,
                codes=self._codes[:n],
                scales=self._scales[:n],
                alive=self._alive[:n],
                ids=np.array(self._ids, dtype=object),
                trained_on=np.array(self._trained_on),
            )
            if self._ivf is not None:
                ivf_tmp = path.with_name(path.name + ".ivf.tmp")
                self._faiss.write_index(self._ivf, str(ivf_tmp))
                ivf_tmp.replace(path.with_name(path.name + ".ivf"))
            else:
                path.with_name(path.name + ".ivf").unlink(missing_ok=True)
            tmp.replace(path)

    @classmethod
    def load(cls, path: Path, dim: int) -> FaissIndex:
        out = cls(dim)
        with np.load(path, allow_pickle=True) as data:
            codes, scales, alive = data["codes"], data["scales"], data["alive"]
            ids, trained_on = [str(i) for i in data["ids"]], int(data["trained_on"])
        if codes.shape[1:] != (dim,) or not len(codes) == len(scales) == len(alive) == len(ids):
            raise ValueError(f"index file {path} does not match dimension {dim}")
        out._codes, out._scales, out._alive = np.array(codes), np.array(scales), np.array(alive)
        out._ids = ids
        out._label = {ident: n for n, ident in enumerate(ids) if alive[n]}
        ivf_path = path.with_name(path.name + ".ivf")
        if trained_on and ivf_path.exists():
            out._ivf = out._faiss.read_index(str(ivf_path))
            out._ivf.set_direct_map_type(out._faiss.DirectMap.Hashtable)
            out._trained_on = trained_on
            if out._ivf.ntotal != len(out._label):
                raise ValueError(f"index file {ivf_path} does not match its ids")
        return out
