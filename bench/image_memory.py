"""Memory an image costs the API (checking an upload) and a worker (decoding a batch), before and
after issue 11, on the embedded servers (nx-27017 + valkey).

    python bench/image_memory.py            # both
    python bench/image_memory.py api        # addInput of a 2.5 KB 65 MP WebP, of an 80 MP JPEG
    python bench/image_memory.py worker     # one task batch of 4 images of 80 MP (JPEG, PNG, WebP)

"before" is the code as it was, reproduced below and patched in: an upload was verified and
fully decoded; a worker decoded every image of a batch at full size and converted it to RGB,
keeping all of them until the model ran. "after" is the code as it is.

Each figure comes from a fresh process running the API in-process (ASGI, the same GraphQL layer
as over HTTP) and, for the worker figures, one arq worker sharing its runtime, as in
bench/pipeline.py. Memory is the process's peak resident set during the measured step (Linux
VmHWM, reset just before it through /proc/self/clear_refs) minus its resident set just before
(psutil); allocator state is never carried from one figure to another.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.embedded import EmbeddedServers
from app.settings import Settings

BATCH = 4
SIDE = (10240, 7680)  # 78.6 megapixels, under the default max_image_pixels (80 M)
MB = 1024 * 1024


# --- the code before issue 11 -------------------------------------------------------------


async def before_inspect_image(data: bytes, field: str, *, max_bytes: int, max_pixels: int, **_: Any) -> Any:
    """app/inputs/images.py as it was: ``verify``, then a full ``load`` of every pixel."""
    from app.inputs.images import FORMATS, ImageInfo

    def inspect() -> ImageInfo:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as probe:
                width, height, fmt = probe.width, probe.height, probe.format or ""
                probe.verify()
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                image.load()
        return ImageInfo(width, height, Image.MIME.get(fmt, ""), len(data))

    return await asyncio.to_thread(inspect)


def before_decode_all(loaded: Any, max_pixels: int) -> tuple[list[Any], dict[str, Any]]:
    """app/tasks/run/load.py as it was: every image decoded at full size, all kept."""
    from app.models.adapters import AdapterInput
    from app.tasks.run.load import Loaded

    ready = []
    for item in loaded:
        if item.raw is None:
            ready.append(item)
            continue
        with Image.open(io.BytesIO(item.raw)) as img:
            ready.append(Loaded(item.doc, AdapterInput(image=np.asarray(img.convert("RGB")))))
    return ready, {}


def patch_before(kind: str) -> None:
    """Put back the old upload check (``api``) or the old batch decoding (``worker``)."""
    import app.inputs.images
    import app.tasks.engine

    if kind == "api":
        app.inputs.images.inspect_image = before_inspect_image  # type: ignore[assignment]
    else:
        app.tasks.engine.decode_all = before_decode_all  # type: ignore[assignment]


# --- measuring ------------------------------------------------------------------------------


def reset_peak() -> int:
    """Reset the kernel's high-water mark of this process; return its resident set now."""
    Path("/proc/self/clear_refs").write_text("5")
    return int(psutil.Process().memory_info().rss)


def peak() -> int:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match, "no VmHWM in /proc/self/status"
    return int(match.group(1)) * 1024


def images(folder: Path) -> dict[str, Path]:
    """The test images, written once: smooth colour (JPEG, WebP) or flat blocks (PNG), 78.6 MP,
    and the 2.5 KB lossless WebP of 65 MP from issue 11."""
    files = {
        "bomb": folder / "bomb.webp",
        "jpeg": folder / "big.jpeg",
        "png": folder / "big.png",
        "webp": folder / "big.webp",
    }
    if all(p.exists() for p in files.values()):
        return files
    Image.MAX_IMAGE_PIXELS = None
    Image.new("RGB", (8062, 8062), "white").save(files["bomb"], format="WEBP", lossless=True)
    rng = np.random.default_rng(0)
    seed = Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    seed.resize(SIDE, Image.Resampling.NEAREST).save(files["png"], format="PNG")
    smooth = seed.resize(SIDE, Image.Resampling.BILINEAR)
    smooth.save(files["jpeg"], format="JPEG", quality=85)
    smooth.save(files["webp"], format="WEBP", quality=80)
    return files


# --- one measurement, in a process of its own -------------------------------------------------


async def measure_api(settings: Settings, variant: str, image: bytes) -> dict[str, Any]:
    from pipeline import Bench

    if variant == "before":
        patch_before("api")
    data = base64.b64encode(image).decode()
    add = """mutation($i: AddInputInput!) { addInput(input: $i) {
      __typename ... on Error { code message } ... on InputSuccess { input { width height } } } }"""
    async with Bench(settings) as bench:
        app_id = (
            await bench.gql('mutation { createApp(input: {name: "m"}) { ... on AppSuccess { app { id } } } }')
        )["createApp"]["app"]["id"]
        warm = base64.b64encode(_small_png()).decode()
        await bench.gql(add, i={"appId": app_id, "imageBase64": warm})  # the code path, imported and run
        rss = reset_peak()
        start = time.perf_counter()
        result = (await bench.gql(add, i={"appId": app_id, "imageBase64": data}))["addInput"]
        seconds = time.perf_counter() - start
        top = peak()
    return {"result": result, "rss_mb": rss / MB, "growth_mb": (top - rss) / MB, "seconds": seconds}


async def measure_worker(settings: Settings, variant: str, image: bytes) -> dict[str, Any]:
    from pipeline import Bench

    if variant == "before":
        patch_before("worker")
    data = base64.b64encode(image).decode()
    settings = settings.model_copy(update={"task_batch_size": BATCH, "max_upload_bytes": 64 * MB})
    async with Bench(settings) as bench:
        app_id, ds = await bench.app_with_dataset([{"imageBase64": data} for _ in range(BATCH)])
        del data
        concept = await bench.concept(app_id, "thing")
        model = (
            await bench.gql(
                "mutation($i: CreateModelInput!) { createModel(input: $i) { ... on ModelSuccess { model { id } } } }",
                i={
                    "appId": app_id,
                    "name": "null",
                    "kind": "CLASSIFIER",
                    "adapter": "null",
                    "config": {"predictions": [{"concept": "thing", "confidence": 0.9}]},
                    "concepts": [{"id": "thing", "name": "thing"}],
                },
            )
        )["createModel"]["model"]["id"]
        rss = reset_peak()
        seconds, task = await bench.run_task(
            {"appId": app_id, "name": "m", "datasetId": ds, "modelId": model, "conceptIds": [concept]}
        )
        top = peak()
    return {
        "status": task["status"],
        "processed": task["metrics"]["processed"],
        "failed": task["metrics"]["failed"],
        "rss_mb": rss / MB,
        "growth_mb": (top - rss) / MB,
        "seconds": seconds,
    }


def _small_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, format="PNG")
    return out.getvalue()


def child(argv: list[str]) -> None:
    kind, variant, path, mongodb_url, redis_url, data_dir = argv
    settings = Settings(
        mongodb_url=mongodb_url,
        redis_url=redis_url,
        mongodb_db=f"bench_images_{kind}_{variant}_{Path(path).stem}",
        data_dir=Path(data_dir),
    )
    measure = measure_api if kind == "api" else measure_worker
    print(json.dumps(asyncio.run(measure(settings, variant, Path(path).read_bytes()))))


# --- the runs ---------------------------------------------------------------------------------


def run_child(
    kind: str, variant: str, path: Path, servers: EmbeddedServers, data_dir: Path
) -> dict[str, Any]:
    assert servers.mongodb_url and servers.redis_url
    argv = [
        kind,
        variant,
        str(path),
        servers.mongodb_url,
        servers.redis_url,
        str(data_dir / f"{kind}-{variant}"),
    ]
    done = subprocess.run(
        [sys.executable, __file__, "_child", *argv], capture_output=True, text=True, check=False, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> int:
    if sys.argv[1:2] == ["_child"]:
        child(sys.argv[2:])
        return 0
    which = sys.argv[1:] or ["api", "worker"]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.calibrate import print_calibration

    print_calibration()
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        root = Path(tmp)
        files = images(root)
        for name, p in files.items():
            print(f"{name}: {p.stat().st_size / 1024:,.1f} KB")
        with EmbeddedServers(root / "servers", None, None) as servers:
            if "api" in which:
                for image in ("bomb", "jpeg"):
                    for variant in ("before", "after"):
                        f = run_child("api", variant, files[image], servers, root)
                        print(
                            f"api    {image:5} {variant:6} growth {f['growth_mb']:7.1f} MB  "
                            f"(rss before {f['rss_mb']:.0f} MB)  {f['seconds']:.2f} s  {f['result']}"
                        )
            if "worker" in which:
                for image in ("jpeg", "png", "webp"):
                    for variant in ("before", "after"):
                        f = run_child("worker", variant, files[image], servers, root)
                        print(
                            f"worker {image:5} {variant:6} growth {f['growth_mb']:7.1f} MB  "
                            f"(rss before {f['rss_mb']:.0f} MB)  {f['seconds']:.2f} s  "
                            f"{f['status']} processed {f['processed']} failed {f['failed']}"
                        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
