"""Similarity search: the faiss index (app/search/index.py) side by side with a brute-force
numpy scan of the same vectors, in one run.

Prints, per data set (random and clustered synthetic vectors of the real dimension, 1280) and
size (10k, 100k): build time, query latency p50/p99 unfiltered and with a concept filter
(narrow: 1 of 50 concepts; broad: 10 of 50), recall@10 against the exact scan, and the memory
the index takes (RSS growth while it is built, per 100k vectors). Then the time to embed 1,000
real crops (scikit-image samples) with the built-in classifier's pooled features, and a
calibration figure (a fixed numpy matmul) to compare runs on a busy shared machine.

Filtered latency includes turning the allowed ids (strings) into index labels, as a search
does; reading those ids from MongoDB is not included (it depends on the engine).

    python bench/similarity.py [--sizes 10000,100000] [--queries 200] [--crops 1000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np
import psutil

from app.search import codec
from app.search.index import FaissIndex

DIM = 1280
CONCEPTS = 50


def calibrate() -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 512)).astype(np.float32)
    times = []
    for _ in range(20):
        t = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def dataset(kind: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectors, a concept per vector, and queries (near existing vectors)."""
    if kind == "random":
        v = rng.standard_normal((n, DIM), dtype=np.float32)
        concept = rng.integers(0, CONCEPTS, n)
    else:
        # 500 clusters (objects that look alike), each mostly of one concept
        centres = rng.standard_normal((500, DIM), dtype=np.float32)
        cluster = rng.integers(0, 500, n)
        v = centres[cluster] + 0.8 * rng.standard_normal((n, DIM), dtype=np.float32)
        concept = np.where(rng.random(n) < 0.8, cluster % CONCEPTS, rng.integers(0, CONCEPTS, n))
    v = codec.normalise(v)
    picks = rng.integers(0, n, 400)
    queries = codec.normalise(v[picks] + 0.02 * rng.standard_normal((400, DIM), dtype=np.float32))
    return v, concept, queries


def exact(v: np.ndarray, q: np.ndarray, k: int, mask: np.ndarray | None) -> np.ndarray:
    scores = v @ q
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def pct(values: list[float]) -> str:
    ms = np.array(values) * 1e3
    return f"p50 {np.percentile(ms, 50):7.2f} ms  p99 {np.percentile(ms, 99):7.2f} ms"


def run_set(kind: str, n: int, queries: int, rng: np.random.Generator) -> None:
    v, concept, qs = dataset(kind, n, rng)
    ids = [f"a{k}" for k in range(n)]
    proc = psutil.Process()
    gc.collect()
    rss = proc.memory_info().rss
    t = time.perf_counter()
    index = FaissIndex(DIM)
    for k in range(0, n, 10_000):
        index.add(ids[k : k + 10_000], v[k : k + 10_000])
    build = time.perf_counter() - t
    grown = proc.memory_info().rss - rss
    print(
        f"\n{kind} {n:,} x {DIM}: index {index.kind}, build {build:.1f} s, "
        f"memory +{grown / 2**20:.0f} MiB (= {grown / 2**20 * 100_000 / n:.0f} MiB per 100k; "
        f"float32 matrix for numpy: {v.nbytes / 2**20 * 100_000 / n:.0f} MiB per 100k)"
    )
    filters = {
        "none": None,
        "concept (1 of 50)": [3],
        "concepts (10 of 50)": list(range(10)),
    }
    for name, chosen in filters.items():
        mask = None if chosen is None else np.isin(concept, chosen)
        allowed = None if mask is None else {ids[k] for k in np.flatnonzero(mask)}
        t_ann, t_np, recall = [], [], []
        for q in qs[:queries]:
            t = time.perf_counter()
            want = exact(v, q, 10, mask)
            t_np.append(time.perf_counter() - t)
            t = time.perf_counter()
            got = index.search(q, 10, allowed)
            t_ann.append(time.perf_counter() - t)
            recall.append(len({int(i[1:]) for i, _ in got} & set(want.tolist())) / 10)
        size = n if mask is None else int(mask.sum())
        print(
            f"  filter {name:20s} ({size:>6,} candidates)  faiss {pct(t_ann)}  recall@10 "
            f"{np.mean(recall):.3f}   |  numpy scan {pct(t_np)}"
        )
    del index
    gc.collect()


def embed_crops(count: int) -> None:
    from skimage import data as samples

    from app.search import embed

    rng = np.random.default_rng(1)
    photos = [samples.chelsea(), samples.coffee(), samples.astronaut(), samples.rocket()]
    crops = []
    for k in range(count):
        img = photos[k % len(photos)]
        h, w = img.shape[:2]
        top, left = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        bottom, right = top + int(rng.integers(h // 4, h - top)), left + int(rng.integers(w // 4, w - left))
        crops.append(np.ascontiguousarray(img[top:bottom, left:right]))
    embed.embed_arrays(crops[:4])  # load the session
    t = time.perf_counter()
    vectors = embed.embed_arrays(crops)
    took = time.perf_counter() - t
    print(
        f"\nembed {count:,} crops (EfficientNet-Lite0 pooled features, batch {embed.BATCH}, "
        f"{vectors.shape[1]}-d): {took:.1f} s = {took / count * 1e3:.1f} ms a crop"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--sets", default="random,clustered")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--crops", type=int, default=1000)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.calibrate import print_calibration

    print_calibration()
    print(
        f"calibration: 512x512 float32 matmul median {calibrate():.2f} ms "
        f"(load average {psutil.getloadavg()[0]:.1f} on {psutil.cpu_count()} cores)"
    )
    rng = np.random.default_rng(0)
    for n in (int(s) for s in args.sizes.split(",")):
        for kind in args.sets.split(","):
            run_set(kind, n, args.queries, rng)
    if args.crops:
        embed_crops(args.crops)
    print(f"\ncalibration again: {calibrate():.2f} ms")


if __name__ == "__main__":
    main()
