"""What announcing progress within a batch costs: the null-model throughput of
``bench/pipeline.py throughput`` for several ``progress_every_inputs`` (the most inputs a chunk
of a batch holds before its results are written and announced), alternated in one run.

    python bench/progress_chunks.py                          # 5,000 texts, 50 against 250, 3 rounds
    python bench/progress_chunks.py --inputs 2000 --every 10,50,250 --rounds 2 --no-embed

Each figure is the task's inputs per second until it is DONE, on fresh embedded servers.
Figures are printed; bench/RESULTS.md records them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline

from app.embedded import EmbeddedServers


async def main(inputs: int, values: list[int], rounds: int, embed: bool) -> None:
    pipeline.NULL_INPUTS = inputs
    print(f"search embeddings {'on' if embed else 'off'}", flush=True)
    figures: dict[int, list[float]] = {every: [] for every in values}
    for _ in range(rounds):
        for every in values:
            with tempfile.TemporaryDirectory() as tmp, EmbeddedServers(Path(tmp), None, None) as servers:
                settings = pipeline.bench_settings(
                    servers, Path(tmp), progress_every_inputs=every, search_embed_on_change=embed
                )
                result = await pipeline.throughput(settings)
            figures[every].append(result["inputs_per_s"])
            print(
                f"progress_every_inputs={every} inputs={inputs} batch={pipeline.NULL_BATCH} "
                f"seconds={result['seconds']:.2f} inputs_per_s={result['inputs_per_s']:.0f}",
                flush=True,
            )
    for every, runs in figures.items():
        shown = ", ".join(f"{x:.0f}" for x in runs)
        print(f"progress_every_inputs={every}: {shown} inputs/s (median {statistics.median(runs):.0f})")


if __name__ == "__main__":
    from bench.calibrate import print_calibration

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=5000)
    parser.add_argument("--every", default="50,250", help="comma-separated progress_every_inputs values")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-embed", action="store_true", help="search embeddings off")
    args = parser.parse_args()
    print_calibration()
    asyncio.run(main(args.inputs, [int(x) for x in args.every.split(",")], args.rounds, not args.no_embed))
