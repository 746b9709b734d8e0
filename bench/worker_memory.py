"""Peak memory of a worker over a 200-image task, onnxruntime's CPU memory arena on vs off
(``LABELSTREAM_ONNX_CPU_MEM_ARENA``), on the embedded servers (nx-27017 + valkey).

    python bench/worker_memory.py                       # both built-in image models
    python bench/worker_memory.py general-object-detector

Each figure comes from a fresh process (no allocator state carried over) running the API
in-process and one arq worker sharing its runtime, as in bench/pipeline.py: 200 JPEGs
(bench/pipeline.py's sample images, 256-480 px) are added, then the task runs in batches of 32
(the default). Memory is the process's resident set just before the task (the model not yet
loaded), and its peak during the task (Linux VmHWM, reset through /proc/self/clear_refs just
before); "growth" is the difference: what the worker needs for the model and its batches.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.embedded import EmbeddedServers
from app.settings import Settings

IMAGES = 200
# model -> task type, task concept, model concepts mapped to it (none: produced by name)
MODELS = {
    "general-image-classifier": ("CONCEPTS_CLASSIFICATION", "cat", ["n02124075", "n02123045", "n02123159"]),
    "general-object-detector": ("BOUNDING_BOX_DETECTION", "person", []),
}
MB = 1024 * 1024


def reset_peak() -> int:
    Path("/proc/self/clear_refs").write_text("5")
    return int(psutil.Process().memory_info().rss)


def peak() -> int:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    assert match, "no VmHWM in /proc/self/status"
    return int(match.group(1)) * 1024


async def measure(settings: Settings, model_name: str) -> dict[str, Any]:
    from pipeline import Bench, sample_images

    task_type, concept_name, mapped = MODELS[model_name]
    async with Bench(settings) as bench:
        items = [{"imageBase64": base64.b64encode(i).decode()} for i in sample_images(IMAGES)]
        app_id, ds = await bench.app_with_dataset(items)
        del items
        concept = await bench.concept(app_id, concept_name)
        models = await bench.gql(
            "query($a: ID!) { models(appId: $a, builtin: true) { nodes { id name } } }", a=app_id
        )
        model = next(n["id"] for n in models["models"]["nodes"] if n["name"] == model_name)
        rss = reset_peak()
        seconds, task = await bench.run_task(
            {"appId": app_id, "name": "m", "datasetId": ds, "modelId": model, "conceptIds": [concept],
             "taskType": task_type, "thresholds": {"lower": 0.0, "upper": 0.5},
             "conceptMapping": [{"modelConceptId": m, "conceptId": concept} for m in mapped]}
        )  # fmt: skip
        top = peak()
    return {
        "status": task["status"],
        "processed": task["metrics"]["processed"],
        "failed": task["metrics"]["failed"],
        "rss_mb": rss / MB,
        "peak_mb": top / MB,
        "growth_mb": (top - rss) / MB,
        "seconds": seconds,
    }


def child(argv: list[str]) -> None:
    model, arena, mongodb_url, redis_url, data_dir = argv
    settings = Settings(
        mongodb_url=mongodb_url,
        redis_url=redis_url,
        mongodb_db=f"bench_worker_memory_{model.replace('-', '_')}_{arena}",
        data_dir=Path(data_dir),
        onnx_cpu_mem_arena=arena == "on",
    )
    print(json.dumps(asyncio.run(measure(settings, model))))


def run_child(model: str, arena: str, servers: EmbeddedServers, data_dir: Path) -> dict[str, Any]:
    assert servers.mongodb_url and servers.redis_url
    argv = [model, arena, servers.mongodb_url, servers.redis_url, str(data_dir / f"{model}-{arena}")]
    done = subprocess.run(
        [sys.executable, __file__, "_child", *argv], capture_output=True, text=True, check=False, timeout=1800
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> int:
    if sys.argv[1:2] == ["_child"]:
        child(sys.argv[2:])
        return 0
    models = sys.argv[1:] or list(MODELS)
    with tempfile.TemporaryDirectory(prefix="bench-worker-memory-") as tmp:
        root = Path(tmp)
        with EmbeddedServers(root / "servers", None, None) as servers:
            for model in models:
                for arena in ("on", "off"):
                    f = run_child(model, arena, servers, root)
                    print(
                        f"{model:25} arena {arena:3}  peak {f['peak_mb']:6.0f} MB  growth "
                        f"{f['growth_mb']:6.0f} MB  (rss before {f['rss_mb']:.0f} MB)  {f['seconds']:5.1f} s  "
                        f"{f['status']} processed {f['processed']} failed {f['failed']}",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
