"""What announcing progress within a batch costs: the null-model throughput of
``bench/pipeline.py throughput`` with progress every 10 inputs (the default) against one
announcement per batch (``progress_every_inputs`` = the batch size), side by side in one run.

    python bench/progress_chunks.py [inputs]     # default 2000 text inputs, batch 250

Figures are printed; bench/RESULTS.md records them.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline

from app.embedded import EmbeddedServers
from app.settings import Settings


async def main(inputs: int) -> None:
    pipeline.NULL_INPUTS = inputs
    for every in (pipeline.NULL_BATCH, 10, pipeline.NULL_BATCH, 10):
        with tempfile.TemporaryDirectory() as tmp, EmbeddedServers(Path(tmp), None, None) as servers:
            settings = Settings(
                mongodb_url=servers.mongodb_url,
                redis_url=servers.redis_url,
                data_dir=Path(tmp),
                mongodb_db="bench",
                progress_every_inputs=every,
            )
            result = await pipeline.throughput(settings)
        print(
            f"progress_every_inputs={every} inputs={inputs} batch={pipeline.NULL_BATCH} "
            f"seconds={result['seconds']:.2f} inputs_per_s={result['inputs_per_s']:.0f}",
            flush=True,
        )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.calibrate import print_calibration

    print_calibration()
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
