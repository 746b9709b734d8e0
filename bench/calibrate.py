"""The machine's calibration figure, printed by every benchmark next to its results.

    python bench/calibrate.py

The plain inference loop: the built-in image classifier (EfficientNet-Lite0 on onnxruntime)
over 64 fixed 320x240 images in batches of 32, best of three, plus a pure-Python loop. A figure
measured on another machine is comparable after scaling by the ratio of these two numbers.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMAGES = 64
BATCH = 32


def inference_loop_s() -> float:
    from app.models.adapters import AdapterInput, get_adapter
    from app.models.adapters.base import RUNTIME_OPTIONS

    # whole batches of 32 in one run, as when the figure was defined (before run chunks), so
    # it stays comparable across versions of the code
    RUNTIME_OPTIONS["run_chunk"], chunk = 0, RUNTIME_OPTIONS["run_chunk"]
    try:
        return _inference_loop_s(get_adapter("general-image-classifier"), AdapterInput)
    finally:
        RUNTIME_OPTIONS["run_chunk"] = chunk


def _inference_loop_s(adapter: Any, input_type: Any) -> float:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(IMAGES)]
    adapter.predict([input_type(image=images[0])])  # load the session
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for k in range(0, IMAGES, BATCH):
            adapter.predict([input_type(image=i) for i in images[k : k + BATCH]])
        best = min(best, time.perf_counter() - start)
    return best


def python_loop_s() -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(3_000_000):
            total += i % 7
        best = min(best, time.perf_counter() - start)
    return best


def calibration() -> str:
    return (
        f"calibration: plain inference loop {inference_loop_s():.3f} s "
        f"({IMAGES} images, image classifier, batch {BATCH}); python loop {python_loop_s():.3f} s; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )


def print_calibration() -> None:
    """Print the calibration line (benchmarks call this before their own figures)."""
    print(calibration(), flush=True)


if __name__ == "__main__":
    print(calibration())
