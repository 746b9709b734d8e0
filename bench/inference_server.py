"""The same model in process vs through an inference server, side by side in one run, both
ways from the same image files to predictions.

    python bench/inference_server.py [--images 200] [--rounds 3] [--modes encoded,tensor]
        [--batch-size 4] [--concurrency 3] [--binary] [--server-threads 1]
        [--sweep] [--no-task] [--task-rounds 2]

EfficientNet-Lite0 (the built-in classifier's ONNX file) on 200 JPEG files (``bench/pipeline.py``'s
samples: crops of the scikit-image samples up to 480 px). Every way starts from the files and
runs the worker's own load step (``app/tasks/run/load.py``: header read and size plan, then
``decode_all``) on batches of 32 (a worker's batch), then the model:

* plain loop: the files decoded by Pillow and preprocessed, then onnxruntime (2 threads);
  what decoding plus inference alone cost here;
* in process: ``decode_all`` decodes, the ``general-image-classifier`` adapter predicts;
* server, encoded: ``decode_all(files_suffice=True)`` only checks the files (no decoding:
  ``kserve-v2`` with ``input.format: encoded_image`` wants files), the adapter sends them as a
  BYTES tensor; the server decodes, preprocesses and runs (the ``efficientnet-image`` model of
  tests/inference_servers/kserve_onnx.py);
* server, tensor: ``decode_all`` decodes, the adapter sends preprocessed float tensors
  (``efficientnet``).

Both server ways use KServe's model server from PyPI on 127.0.0.1 (its own venv,
tests/inference_servers/venvs.py) with request batching (``--batch-size`` images a request) and
concurrency (``--concurrency`` in flight), one onnxruntime thread per request on the server.
Every way must give the built-in's top-1 for every image (checked before timing); ways
alternate in each round; medians and ratios server / in process are printed.

``--sweep`` first times the encoded way once for each batch size in (4, 8, 16) and concurrency
in (1, 2, 3, 4) and prints the figures. The defaults (4 a request, 3 in flight) are the best
of the quiet runs recorded in bench/RESULTS.md (1.30x against 1.49x for 8 x 2 and 1.51x for
8 x 4); on the shared box the sweep's single runs were too noisy to rank them.

Unless ``--no-task``, a last line runs actual labeling tasks over the same files with the
built-in model and with the served one, ``--task-rounds`` each, which goes first alternating
(embedded MongoDB + valkey, one in-process worker, as ``bench/pipeline.py overhead``; the
inputs' own jobs drained first): seconds from createLabelingTask until the worker has run
every job, and the ratio of the medians. The machine's calibration ends the output;
bench/RESULTS.md records the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.inputs.images import PixelLimits
from app.inputs.models import Input, InputKind
from app.models.adapters import ModelAdapter, Prediction, get_adapter
from app.models.adapters.remote import RemoteAdapter
from app.tasks.run.load import DecodeBudget, Loaded, decode_all, plan_sizes
from tests.inference_servers.processes import CLASSIFIER_ONNX, ServerProcess, kserve_server

BATCH = 32
MAX_PIXELS = 80_000_000  # the max_image_pixels default


def predict_files(
    adapter: ModelAdapter, files: list[bytes], *, files_suffice: bool
) -> list[list[Prediction]]:
    """The worker's path from files to predictions: per batch of ``BATCH``, headers read and
    sizes planned, then ``decode_all`` (decoding, or with ``files_suffice`` checking only),
    then the model."""
    out: list[list[Prediction]] = []
    for k in range(0, len(files), BATCH):
        loaded = [
            Loaded(Input.model_construct(id=str(k + i), app_id="bench", kind=InputKind.IMAGE), raw=raw)
            for i, raw in enumerate(files[k : k + BATCH])
        ]
        refused = plan_sizes(loaded, PixelLimits(), DecodeBudget())
        ready, failed = decode_all(loaded, MAX_PIXELS, files_suffice=files_suffice)
        assert not refused and not failed, (refused, failed)
        out.extend(adapter.predict([x.adapter_input for x in ready if x.adapter_input is not None]))
    return out


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def top1(predictions: list[list[Prediction]]) -> list[str]:
    return [p[0].concept for p in predictions]


def configs(args: argparse.Namespace, batch_size: int, concurrency: int) -> dict[str, dict[str, Any]]:
    common = {"batch_size": batch_size, "max_concurrency": concurrency}
    return {
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


def served(server: ServerProcess, config: dict[str, Any]) -> RemoteAdapter:
    remote = get_adapter("kserve-v2", {"url": server.url, **config})
    assert isinstance(remote, RemoteAdapter)
    remote.bind_network(True)
    return remote


def sweep(args: argparse.Namespace, server: ServerProcess, files: list[bytes], want: list[str]) -> None:
    print(f"sweep, encoded way, {len(files)} images, one run each (load average {os.getloadavg()[0]:.1f}):")
    local = get_adapter("general-image-classifier")
    base = timed(lambda: predict_files(local, files, files_suffice=False))
    for batch_size in (4, 8, 16):
        row = []
        for concurrency in (1, 2, 3, 4):
            remote = served(server, configs(args, batch_size, concurrency)["encoded"])
            assert top1(predict_files(remote, files, files_suffice=True)) == want
            row.append(timed(lambda r=remote: predict_files(r, files, files_suffice=True)) / base)
        print(f"  {batch_size:2d} a request, 1/2/3/4 in flight: " + " ".join(f"{r:.2f}x" for r in row))


def side_by_side(args: argparse.Namespace, files: list[bytes]) -> dict[str, list[float]]:
    """Rounds of every way, alternating; the answers checked first."""
    import onnxruntime as ort
    from PIL import Image

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    local = get_adapter("general-image-classifier")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(CLASSIFIER_ONNX), sess_options=opts, providers=["CPUExecutionProvider"]
    )

    def plain() -> None:
        for i in range(0, len(files), BATCH):
            arrays = [np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in files[i : i + BATCH]]
            session.run(["logits"], {"input": np.stack([local.preprocess(a) for a in arrays])})  # type: ignore[attr-defined]

    want = top1(predict_files(local, files, files_suffice=False))
    with tempfile.TemporaryDirectory() as tmp:
        server = kserve_server(Path(tmp) / "kserve.log", threads=args.server_threads).start()
        try:
            if args.sweep:
                sweep(args, server, files, want)
            ways: dict[str, Callable[[], object]] = {
                "plain loop": plain,
                "in process": lambda: predict_files(local, files, files_suffice=False),
            }
            for mode in modes:
                remote = served(server, configs(args, args.batch_size, args.concurrency)[mode])
                suffice = remote.wants_encoded
                got = top1(predict_files(remote, files, files_suffice=suffice))  # warm-up, and checked
                assert got == want, f"the server's top-1 ({mode}) differs from the built-in's"
                ways[f"server, {mode}"] = lambda r=remote, s=suffice: predict_files(r, files, files_suffice=s)
            times: dict[str, list[float]] = {k: [] for k in ways}
            for _ in range(args.rounds):
                for name, fn in ways.items():
                    times[name].append(timed(fn))
        finally:
            server.stop()
    return times


async def tasks(args: argparse.Namespace, files: list[bytes]) -> tuple[list[float], list[float]]:
    """Seconds of a labeling task over ``files`` with the built-in classifier, then with the
    same model served (encoded files), each from createLabelingTask to the task closed."""
    from app.embedded import EmbeddedServers
    from bench.pipeline import Bench, bench_settings

    with tempfile.TemporaryDirectory() as tmp:
        kserve = kserve_server(Path(tmp) / "kserve.log", threads=args.server_threads).start()
        try:
            with EmbeddedServers(Path(tmp), None, None) as servers:
                settings = bench_settings(
                    servers, Path(tmp), task_batch_size=BATCH, inference_allow_private_networks=True
                )
                async with Bench(settings) as bench:
                    app_id, ds = await bench.app_with_dataset(
                        [{"imageBase64": base64.b64encode(f).decode()} for f in files]
                    )
                    builtin = get_adapter("general-image-classifier")
                    made = await bench.gql(
                        "mutation($i: CreateModelInput!) { createModel(input: $i) { "
                        "... on ModelSuccess { model { id } } ... on Error { code message } } }",
                        i={
                            "appId": app_id,
                            "name": "served classifier",
                            "kind": "CLASSIFIER",
                            "adapter": "kserve-v2",
                            "config": {
                                "url": kserve.url,
                                **configs(args, args.batch_size, args.concurrency)["encoded"],
                            },
                            "concepts": [{"id": c.id, "name": c.name} for c in builtin.concepts()],
                        },
                    )
                    served_id = made["createModel"]["model"]["id"]
                    models = await bench.gql(
                        "query($a: ID!) { models(appId: $a, builtin: true) { nodes { id name } } }", a=app_id
                    )
                    builtin_id = next(
                        m["id"] for m in models["models"]["nodes"] if m["name"] == "general-image-classifier"
                    )
                    cat = await bench.concept(app_id, "cat")
                    drained = bench.worker()  # the inputs' own jobs (search embeddings), untimed
                    await drained.async_run()
                    await drained.close()
                    seconds: dict[str, list[float]] = {builtin_id: [], served_id: []}
                    order = [builtin_id, served_id]
                    runs = []
                    for r in range(args.task_rounds):  # alternating which goes first
                        runs.extend(order if r % 2 == 0 else order[::-1])
                    for model_id in runs:
                        elapsed, task = await bench.run_task(
                            {
                                "appId": app_id,
                                "name": "bench",
                                "datasetId": ds,
                                "modelId": model_id,
                                "conceptIds": [cat],
                                "conceptMapping": [{"modelConceptId": "n02124075", "conceptId": cat}],
                            }
                        )
                        metrics = task["metrics"]
                        assert task["status"] == "DONE" and metrics["processed"] == len(files), task
                        assert metrics["failed"] == 0, task
                        seconds[model_id].append(elapsed)
        finally:
            kserve.stop()
    return seconds[builtin_id], seconds[served_id]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="encoded,tensor", help="server ways: encoded, tensor")
    parser.add_argument("--batch-size", type=int, default=4, help="images per server request")
    parser.add_argument("--concurrency", type=int, default=3, help="server requests in flight")
    parser.add_argument("--binary", action="store_true", help="tensor way: binary tensor extension")
    parser.add_argument("--server-threads", type=int, default=1, help="onnxruntime threads a request")
    parser.add_argument("--sweep", action="store_true", help="time batch sizes x concurrency first")
    parser.add_argument("--no-task", action="store_true", help="skip the labeling-task line")
    parser.add_argument("--task-rounds", type=int, default=2, help="labeling tasks of each model")
    args = parser.parse_args()
    for noisy in ("httpx", "arq"):  # one line per request or job otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from bench.pipeline import sample_images

    files = sample_images(args.images)
    times = side_by_side(args, files)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{args.images} JPEG files -> predictions, batches of {BATCH}; server: {args.batch_size} per "
        f"request, {args.concurrency} in flight, {args.server_threads} onnxruntime thread(s) a request; "
        f"tensor way: {'binary' if args.binary else 'JSON'}; load average {os.getloadavg()[0]:.1f}"
    )
    for k, v in times.items():
        print(f"  {k:16s} median {med[k]:.2f} s  ({', '.join(f'{x:.2f}' for x in v)})")
    best = {k: min(v) for k, v in times.items()}
    for k in med:
        if k.startswith("server"):
            print(
                f"  ratio {k} / in process: {med[k] / med['in process']:.2f}x of the medians, "
                f"{best[k] / best['in process']:.2f}x of the best rounds (target <= 1.3)"
            )
    print(f"  ratio in process / plain loop: {med['in process'] / med['plain loop']:.2f}x")
    if not args.no_task:
        builtin_s, served_s = asyncio.run(tasks(args, files))
        b, sv = statistics.median(builtin_s), statistics.median(served_s)
        print(
            f"  labeling task over the {args.images} files, {args.task_rounds} round(s): built-in median "
            f"{b:.2f} s ({', '.join(f'{x:.2f}' for x in builtin_s)}), served (encoded) {sv:.2f} s "
            f"({', '.join(f'{x:.2f}' for x in served_s)}), ratio {sv / b:.2f}x "
            f"(load average {os.getloadavg()[0]:.1f})"
        )
    from bench.calibrate import calibration

    print(calibration())


if __name__ == "__main__":
    main()
