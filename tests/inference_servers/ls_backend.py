"""A Label Studio ML backend built with the SDK from PyPI (``label-studio-ml`` 1.0.9, Flask),
serving the bundled detector (the application's own NanoDet code on onnxruntime).

    PYTHONPATH=<repo> python ls_backend.py --port 9090 [--fail-every N]

Answers ``/predict`` with ``rectanglelabels`` in percent and a ``score`` per result, as the
documented protocol says. Tasks carry ``data:`` URIs (what the ``ls-ml-backend`` adapter sends);
the SDK's ``get_local_path`` only opens files and http(s) URLs, so the backend decodes them
itself, as any backend used with Labelstream must. Runs in its own venv (``venvs.py``): the SDK
pins Flask 1.1.2 and Werkzeug 2.0.2.
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import threading

import numpy as np
from label_studio_ml.api import init_app
from label_studio_ml.model import LabelStudioMLBase
from PIL import Image

from app.models.adapters.base import AdapterInput, Box
from app.models.adapters.object_detector import ObjectDetectorAdapter

DETECTOR = ObjectDetectorAdapter({"intra_op_num_threads": 1})
COUNTER = itertools.count(1)
LOCK = threading.Lock()
FAIL_EVERY = 0


def image_of(url: str) -> np.ndarray:
    if not url.startswith("data:"):
        raise ValueError("this backend reads data: URIs only")
    payload = base64.b64decode(url.split(",", 1)[1])
    with Image.open(io.BytesIO(payload)) as img:
        return np.asarray(img.convert("RGB"))


class Detector(LabelStudioMLBase):  # type: ignore[misc]
    def predict(self, tasks, **kwargs):  # type: ignore[no-untyped-def]
        with LOCK:
            n = next(COUNTER)
        if FAIL_EVERY and n % FAIL_EVERY == 0:
            raise RuntimeError("injected failure (--fail-every)")
        images = [image_of(t["data"]["image"]) for t in tasks]
        out = []
        for preds in DETECTOR.predict([AdapterInput(image=i) for i in images]):
            result = []
            for p in preds:
                assert isinstance(p.region, Box)
                b = p.region
                result.append(
                    {
                        "from_name": "label",
                        "to_name": "image",
                        "type": "rectanglelabels",
                        "score": p.confidence,
                        "value": {
                            "x": b.left * 100,
                            "y": b.top * 100,
                            "width": (b.right - b.left) * 100,
                            "height": (b.bottom - b.top) * 100,
                            "rotation": 0,
                            "rectanglelabels": [p.concept],
                        },
                    }
                )
            out.append({"result": result, "score": max((p.confidence for p in preds), default=0.0)})
        return out


def main() -> None:
    global FAIL_EVERY
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fail-every", type=int, default=0)
    args = parser.parse_args()
    FAIL_EVERY = args.fail_every
    app = init_app(model_class=Detector)
    app.run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
