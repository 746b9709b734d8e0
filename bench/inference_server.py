"""The same model in process vs through an inference server, side by side in one run.

    python bench/inference_server.py [--images 200] [--rounds 3]

EfficientNet-Lite0 (the built-in classifier's ONNX file) on 200 images, three ways:

* calibration: the plain onnxruntime loop over already preprocessed tensors (2 threads,
  batches of 32): what inference alone costs here;
* in process: the ``general-image-classifier`` adapter, batches of 32 (a worker's batch);
* server: the ``kserve-v2`` adapter (``preprocess: efficientnet_lite0``) against KServe's
  model server from PyPI on 127.0.0.1, with request batching and concurrency, same batches of 32.

The server runs in its own venv (tests/inference_servers/venvs.py, made on first use) with one
onnxruntime thread per request; requests overlap, so its two cores work as the in-process
adapter's two threads do. Rounds alternate the ways (shared machine: load drifts); the medians
and the ratio server / in process are printed. bench/RESULTS.md records them.
"""

from __future__ import annotations

import argparse
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
    from PIL import Image
    from skimage import data

    bases = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        base = bases[i % len(bases)]
        h, w = base.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        img = Image.fromarray(base[top : top + ch, left : left + cw])
        img.thumbnail((480, 480))
        out.append(AdapterInput(image=np.asarray(img)))
    return out


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def in_batches(adapter: object, items: list[AdapterInput]) -> Callable[[], object]:
    def run() -> object:
        return [adapter.predict(items[i : i + BATCH]) for i in range(0, len(items), BATCH)]  # type: ignore[attr-defined]

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8, help="images per server request")
    parser.add_argument("--concurrency", type=int, default=2, help="server requests in flight")
    parser.add_argument("--binary", action="store_true", help="binary tensor extension")
    args = parser.parse_args()
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

    with tempfile.TemporaryDirectory() as tmp:
        server = kserve_server(Path(tmp) / "kserve.log", threads=1).start()
        try:
            remote = get_adapter(
                "kserve-v2",
                {
                    "url": server.url,
                    "model_name": "efficientnet",
                    "preprocess": "efficientnet_lite0",
                    "batch_size": args.batch_size,
                    "max_concurrency": args.concurrency,
                    "binary_data": args.binary,
                },
            )
            assert isinstance(remote, RemoteAdapter)
            remote.bind_network(True)
            want = in_batches(local, items)()
            got = in_batches(remote, items)()  # warm-up, and the answers must agree
            flat_w = [p[0].concept for b in want for p in b]  # type: ignore[attr-defined]
            flat_g = [p[0].concept for b in got for p in b]  # type: ignore[attr-defined]
            assert flat_w == flat_g, "the server's top-1 differs from the built-in's"
            times: dict[str, list[float]] = {"plain": [], "in process": [], "server": []}
            for _ in range(args.rounds):
                times["plain"].append(timed(plain))
                times["in process"].append(timed(in_batches(local, items)))
                times["server"].append(timed(in_batches(remote, items)))
        finally:
            server.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{args.images} images, batches of {BATCH}; server: {args.batch_size} per request, "
        f"{args.concurrency} in flight, {'binary' if args.binary else 'JSON'} tensors"
    )
    for k, v in times.items():
        print(f"  {k:11s} median {med[k]:.2f} s  ({', '.join(f'{x:.2f}' for x in v)})")
    print(f"  ratio server / in process: {med['server'] / med['in process']:.2f}x (target <= 1.3)")
    print(f"  ratio in process / plain loop: {med['in process'] / med['plain']:.2f}x")


if __name__ == "__main__":
    main()
