"""The same model in process vs through an inference server, side by side in one run.

    python bench/inference_server.py [--images 200] [--rounds 3] [--modes encoded,tensor]
        [--batch-size 8] [--concurrency 2] [--binary] [--server-threads 1]

EfficientNet-Lite0 (the built-in classifier's ONNX file) on 200 images (crops of the
scikit-image samples up to 480 px, kept as the JPEG files a worker would have loaded and
decoded), ways alternating in each round:

* plain loop: onnxruntime over already preprocessed tensors (2 threads, batches of 32): what
  inference alone costs here;
* in process: the ``general-image-classifier`` adapter, batches of 32 (a worker's batch);
* server, encoded: the ``kserve-v2`` adapter with ``input.format: encoded_image`` (the JPEG files
  as a BYTES tensor; the server decodes, preprocesses and runs: the ``efficientnet-image`` model
  of tests/inference_servers/kserve_onnx.py);
* server, tensor: the same adapter sending the preprocessed float tensors (``efficientnet``).

Both server ways use KServe's model server from PyPI on 127.0.0.1 (its own venv,
tests/inference_servers/venvs.py) with request batching (``--batch-size`` images a request) and
concurrency (``--concurrency`` in flight), one onnxruntime thread per request on the server.
Every way must give the built-in's top-1 for every image (checked before timing). Medians, the
ratios server / in process, and the machine's calibration are printed; bench/RESULTS.md
records them.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.models.adapters import AdapterInput, get_adapter
from app.models.adapters.remote import RemoteAdapter
from tests.inference_servers.processes import CLASSIFIER_ONNX, kserve_server

BATCH = 32


def images(n: int) -> list[AdapterInput]:
    """``n`` JPEG files (``bench/pipeline.py``'s samples) and their decoded arrays, as the
    worker's load step hands them over."""
    from PIL import Image

    from bench.pipeline import sample_images

    out = []
    for raw in sample_images(n):
        with Image.open(io.BytesIO(raw)) as decoded:
            out.append(AdapterInput(image=np.asarray(decoded.convert("RGB")), encoded=raw))
    return out


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def in_batches(adapter: object, items: list[AdapterInput]) -> Callable[[], object]:
    def run() -> object:
        return [adapter.predict(items[i : i + BATCH]) for i in range(0, len(items), BATCH)]  # type: ignore[attr-defined]

    return run


def top1(adapter: object, items: list[AdapterInput]) -> list[str]:
    return [p[0].concept for b in in_batches(adapter, items)() for p in b]  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="encoded,tensor", help="server ways: encoded, tensor")
    parser.add_argument("--batch-size", type=int, default=8, help="images per server request")
    parser.add_argument("--concurrency", type=int, default=2, help="server requests in flight")
    parser.add_argument("--binary", action="store_true", help="tensor way: binary tensor extension")
    parser.add_argument("--server-threads", type=int, default=1, help="onnxruntime threads a request")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    items = images(args.images)

    import onnxruntime as ort

    local = get_adapter("general-image-classifier")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(CLASSIFIER_ONNX), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    tensors = np.stack([local.preprocess(i.image) for i in items])  # type: ignore[attr-defined]

    def plain() -> None:
        for i in range(0, len(tensors), BATCH):
            session.run(["logits"], {"input": tensors[i : i + BATCH]})

    common = {"batch_size": args.batch_size, "max_concurrency": args.concurrency}
    configs = {
        "encoded": {
            "model_name": "efficientnet-image",
            "preprocess": "efficientnet_lite0",
            "input": {"format": "encoded_image"},
            **common,
        },
        "tensor": {
            "model_name": "efficientnet",
            "preprocess": "efficientnet_lite0",
            "binary_data": args.binary,
            **common,
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        server = kserve_server(Path(tmp) / "kserve.log", threads=args.server_threads).start()
        try:
            ways: dict[str, Callable[[], object]] = {
                "plain loop": plain,
                "in process": in_batches(local, items),
            }
            want = top1(local, items)
            for mode in modes:
                remote = get_adapter("kserve-v2", {"url": server.url, **configs[mode]})
                assert isinstance(remote, RemoteAdapter)
                remote.bind_network(True)
                got = top1(remote, items)  # warm-up, and the answers must agree
                assert got == want, f"the server's top-1 ({mode}) differs from the built-in's"
                ways[f"server, {mode}"] = in_batches(remote, items)
            times: dict[str, list[float]] = {k: [] for k in ways}
            for _ in range(args.rounds):
                for name, fn in ways.items():
                    times[name].append(timed(fn))
        finally:
            server.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{args.images} images, batches of {BATCH}; server: {args.batch_size} per request, "
        f"{args.concurrency} in flight, {args.server_threads} onnxruntime thread(s) a request; "
        f"tensor way: {'binary' if args.binary else 'JSON'}; load average {os.getloadavg()[0]:.1f}"
    )
    for k, v in times.items():
        print(f"  {k:16s} median {med[k]:.2f} s  ({', '.join(f'{x:.2f}' for x in v)})")
    for mode in modes:
        ratio = med[f"server, {mode}"] / med["in process"]
        print(f"  ratio server ({mode}) / in process: {ratio:.2f}x (target <= 1.3)")
    print(f"  ratio in process / plain loop: {med['in process'] / med['plain loop']:.2f}x")
    from bench.calibrate import calibration

    print(calibration())


if __name__ == "__main__":
    main()
