"""Lean workers (issue 15 point 4), on the embedded servers (nx-27017 + valkey):

    python bench/worker_memory.py                  # memory, idle and latency
    python bench/worker_memory.py memory           # peak over a 200-image task, per arena variant
    python bench/worker_memory.py memory --model general-object-detector --variant shrink
    python bench/worker_memory.py idle --seconds 30   # idle worker CPU, polling vs waking
    python bench/worker_memory.py latency          # enqueue-to-start p50 / p99 (bench/pipeline.py)

memory: each figure comes from a fresh process (no allocator state carried over) running the
API in-process and one arq worker sharing its runtime, as in bench/pipeline.py (``--where
in-process``, the default), or the API there and ``labelstream worker --burst`` in a process of
its own, as deployed (``--where process``: that process's peak from the kernel, ``ru_maxrss``;
"before" is then its first sample, moments after it started): 200 JPEGs
(bench/pipeline.py's sample images, 256-480 px) are added, then the task runs in batches of 32
(the default). Memory is the process's resident set just before the task (the model not yet
loaded), its peak during the task (Linux VmHWM, reset through /proc/self/clear_refs just
before), what it still holds after the task, and after the worker unloaded its idle models
(``model_idle_unload_s``). onnxruntime's CPU arena variants (``LABELSTREAM_ONNX_*``):
  grow    arena on, never shrunk (the default)
  shrink  arena on, unused chunks given back after every run (onnx_arena_shrink=true)
  off     no arena (onnx_cpu_mem_arena=false)

idle: ``labelstream worker`` as its own process, started, left to settle, then its CPU
time (user + system, psutil) over ``--seconds`` of an empty queue, as % of one core; once as
deployed (``WakingWorker``), once with arq's plain 10 ms polling loop (the old worker).

latency: bench/pipeline.py's ``latency`` (300 pings at random moments to an idle worker), with
the deployed worker and with arq's polling loop, back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
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
VARIANTS = {"grow": (True, False), "shrink": (True, True), "off": (False, False)}  # arena, shrink
MB = 1024 * 1024


def reset_peak() -> int:
    Path("/proc/self/clear_refs").write_text("5")
    return int(psutil.Process().memory_info().rss)


def peak() -> int:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    assert match, "no VmHWM in /proc/self/status"
    return int(match.group(1)) * 1024


async def run_in_worker_process(bench: Any, fields: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The task run by ``labelstream worker --burst`` in a process of its own, as deployed:
    its resident set sampled every 20 ms from its start, its peak from the kernel
    (``ru_maxrss`` of the waited-for child) once it exits with the queue empty."""
    made = await bench.gql(
        "mutation($i: CreateLabelingTaskInput!) { createLabelingTask(input: $i) { "
        "... on LabelingTaskSuccess { labelingTask { id } } ... on Error { code message } } }",
        i=fields,
    )
    task_id = made["createLabelingTask"]["labelingTask"]["id"]
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "worker",
        "--burst",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ps, samples = psutil.Process(proc.pid), []
    while proc.returncode is None:
        with contextlib.suppress(psutil.Error):
            rss = ps.memory_info().rss
            if rss:  # not yet reaped: a zombie has none
                samples.append(rss)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.02)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the worker exited with {proc.returncode}")
    task = (
        await bench.gql(
            "query($id: ID!) { labelingTask(id: $id) { status metrics { processed failed } } }", id=task_id
        )
    )["labelingTask"]
    top = max([resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, *samples])
    first = samples[0] if samples else 0
    return {
        "status": task["status"],
        "processed": task["metrics"]["processed"],
        "failed": task["metrics"]["failed"],
        "rss_mb": first / MB,
        "peak_mb": top / MB,
        "growth_mb": (top - first) / MB,
        "after_mb": (samples[-1] if samples else 0) / MB,
        "unloaded_mb": float("nan"),
        "seconds": seconds,
    }


async def measure(
    settings: Settings, model_name: str, images: int, worker_env: dict[str, str] | None = None
) -> dict[str, Any]:
    from pipeline import Bench, sample_images

    from app.core.heap import limit_malloc_arenas, release_freed_memory
    from app.models.adapters import adapter_cache

    limit_malloc_arenas(settings.worker_malloc_arenas)  # as the worker's startup does

    task_type, concept_name, mapped = MODELS[model_name]
    async with Bench(settings) as bench:
        items = [{"imageBase64": base64.b64encode(i).decode()} for i in sample_images(images)]
        app_id, ds = await bench.app_with_dataset(items)
        del items
        concept = await bench.concept(app_id, concept_name)
        models = await bench.gql(
            "query($a: ID!) { models(appId: $a, builtin: true) { nodes { id name } } }", a=app_id
        )
        model = next(n["id"] for n in models["models"]["nodes"] if n["name"] == model_name)
        fields = {
            "appId": app_id, "name": "m", "datasetId": ds, "modelId": model, "conceptIds": [concept],
            "taskType": task_type, "thresholds": {"lower": 0.0, "upper": 0.5},
            "conceptMapping": [{"modelConceptId": m, "conceptId": concept} for m in mapped],
        }  # fmt: skip
        if worker_env is not None:
            return await run_in_worker_process(bench, fields, worker_env)
        rss = reset_peak()
        seconds, task = await bench.run_task(fields)
        top = peak()
        after = psutil.Process().memory_info().rss
        adapter_cache.drop_idle(0)  # what the worker's unloader does after model_idle_unload_s
        release_freed_memory()
        unloaded = psutil.Process().memory_info().rss
    return {
        "status": task["status"],
        "processed": task["metrics"]["processed"],
        "failed": task["metrics"]["failed"],
        "rss_mb": rss / MB,
        "peak_mb": top / MB,
        "growth_mb": (top - rss) / MB,
        "after_mb": after / MB,
        "unloaded_mb": unloaded / MB,
        "seconds": seconds,
    }


def child(argv: list[str]) -> None:
    model, variant, images, mongodb_url, redis_url, data_dir, where = argv
    arena, shrink = VARIANTS[variant]
    settings = Settings(
        mongodb_url=mongodb_url,
        redis_url=redis_url,
        mongodb_db=f"bench_worker_memory_{model.replace('-', '_')}_{variant}_{where}",
        data_dir=Path(data_dir),
        onnx_cpu_mem_arena=arena,
        onnx_arena_shrink=shrink,
    )
    worker_env = None
    if where == "process":
        worker_env = dict(os.environ)
        worker_env.update(
            {
                "MONGODB_URL": mongodb_url,
                "REDIS_URL": redis_url,
                "LABELSTREAM_MONGODB_DB": settings.mongodb_db,
                "LABELSTREAM_DATA_DIR": data_dir,
                "LABELSTREAM_ONNX_CPU_MEM_ARENA": str(arena).lower(),
                "LABELSTREAM_ONNX_ARENA_SHRINK": str(shrink).lower(),
                "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            }
        )
    print(json.dumps(asyncio.run(measure(settings, model, int(images), worker_env))))


def run_child(
    model: str, variant: str, images: int, servers: EmbeddedServers, data_dir: Path, where: str
) -> dict[str, Any]:
    assert servers.mongodb_url and servers.redis_url
    argv = [
        model,
        variant,
        str(images),
        servers.mongodb_url,
        servers.redis_url,
        str(data_dir / f"{model}-{variant}-{where}"),
        where,
    ]
    done = subprocess.run(
        [sys.executable, __file__, "_child", *argv], capture_output=True, text=True, check=False, timeout=1800
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def memory(
    servers: EmbeddedServers, root: Path, models: list[str], variants: list[str], images: int, where: str
) -> None:
    for model in models:
        for variant in variants:
            f = run_child(model, variant, images, servers, root, where)
            print(
                f"memory {model:25} {variant:6} {where:10} {images} images  peak {f['peak_mb']:5.0f} MiB  growth "
                f"{f['growth_mb']:5.0f}  before {f['rss_mb']:4.0f}  after {f['after_mb']:5.0f}  "
                f"unloaded {f['unloaded_mb']:5.0f}  {f['seconds']:5.1f} s  "
                f"{f['status']} processed {f['processed']} failed {f['failed']}",
                flush=True,
            )


# A worker running arq's own loop with the deployed settings: the old, polling worker.
POLLING_WORKER = "from arq.worker import run_worker; from app.settings import Settings; " \
    "from app.worker import worker_settings; run_worker(worker_settings(Settings()))"  # fmt: skip


def settle(proc: subprocess.Popen[bytes], ps: psutil.Process, limit_s: float = 90.0) -> None:
    """Until the started worker uses < 5 % of a core in two seconds running (or ``limit_s``)."""
    time.sleep(3)
    quiet, deadline = 0, time.monotonic() + limit_s
    while quiet < 2 and time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {proc.returncode}")
        before = ps.cpu_times()
        time.sleep(1)
        after = ps.cpu_times()
        busy = (after.user - before.user) + (after.system - before.system)
        quiet = quiet + 1 if busy < 0.05 else 0


def idle_cpu(servers: EmbeddedServers, root: Path, seconds: float) -> None:
    assert servers.mongodb_url and servers.redis_url
    env = dict(os.environ)
    env.update(
        {
            "MONGODB_URL": servers.mongodb_url,
            "REDIS_URL": servers.redis_url,
            "LABELSTREAM_MONGODB_DB": "bench_worker_idle",
            "LABELSTREAM_DATA_DIR": str(root / "idle"),
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }
    )
    for name, argv in (
        ("waking (labelstream worker)", ["-m", "app.cli", "worker"]),
        ("polling (arq, poll_delay 10 ms)", ["-c", POLLING_WORKER]),
    ):
        proc = subprocess.Popen(
            [sys.executable, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            ps = psutil.Process(proc.pid)
            settle(proc, ps)  # imports, MongoDB and Redis connections, first reconciliation
            before, start = ps.cpu_times(), time.monotonic()
            time.sleep(seconds)
            after, wall = ps.cpu_times(), time.monotonic() - start
            used = (after.user - before.user) + (after.system - before.system)
            print(f"idle {name:32} cpu {100 * used / wall:5.2f} % of a core over {wall:.0f} s", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def latency(servers: EmbeddedServers, root: Path) -> None:
    from pipeline import latency as pipeline_latency

    settings = Settings(
        mongodb_url=servers.mongodb_url, redis_url=servers.redis_url, data_dir=root / "latency",
        mongodb_db="bench_worker_latency",
    )  # fmt: skip
    for polling in (False, True):
        result = asyncio.run(pipeline_latency(settings, polling=polling))
        print(
            "latency",
            " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()),
        )


def main() -> int:
    if sys.argv[1:2] == ["_child"]:
        child(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("figures", nargs="*", metavar="figure", help="memory, idle, latency (default: all)")
    parser.add_argument("--model", action="append", choices=list(MODELS), help="memory: the model(s)")
    parser.add_argument("--variant", action="append", choices=list(VARIANTS), help="memory: arena variant(s)")
    parser.add_argument("--images", type=int, default=IMAGES, help="memory: images in the task")
    parser.add_argument(
        "--where",
        action="append",
        choices=["in-process", "process"],
        help="memory: the worker in the bench's process with the API (default), or `labelstream "
        "worker --burst` in a process of its own, as deployed",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="idle: seconds measured")
    args = parser.parse_args()
    unknown = set(args.figures) - {"memory", "idle", "latency"}
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
    from bench.calibrate import calibration

    print(calibration(), flush=True)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    figures = args.figures or ["memory", "idle", "latency"]
    with tempfile.TemporaryDirectory(prefix="bench-worker-memory-") as tmp:
        root = Path(tmp)
        with EmbeddedServers(root / "servers", None, None) as servers:
            if "memory" in figures:
                for where in args.where or ["in-process"]:
                    memory(
                        servers,
                        root,
                        args.model or list(MODELS),
                        args.variant or list(VARIANTS),
                        args.images,
                        where,
                    )
            if "idle" in figures:
                idle_cpu(servers, root, args.seconds)
            if "latency" in figures:
                latency(servers, root)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
