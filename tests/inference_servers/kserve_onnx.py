"""An Open Inference Protocol server: KServe's Python model server (PyPI ``kserve``) around
onnxruntime, serving ONNX files given on the command line.

    python kserve_onnx.py --http_port 8080 --model NAME=PATH.onnx [--model ...] [--fail-every N]
        [--image-model NAME=efficientnet_lite0|nanodet ...]

``--image-model`` serves a built-in model behind encoded images, as a Triton ensemble or a
KServe transformer would: its input ``image`` is a ``BYTES`` tensor of files (base64 strings in
JSON with ``content_type: base64``, raw in the binary extension), each decoded with Pillow and
preprocessed by the application's own code (``PYTHONPATH``), then run; the outputs are the ONNX
graph's, batch axis first.

Runs in its own virtual environment (``tests/inference_servers/venvs.py``): kserve pins
``protobuf<7`` and brings FastAPI, gRPC and Kubernetes clients, none of which the application
needs. ``--fail-every N`` answers every N-th infer request with an error (HTTP 500), for the
fault tests. Inference runs in a thread, so requests overlap as onnxruntime allows.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import itertools
import sys

import numpy as np
import onnxruntime as ort

_TYPES = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
    "tensor(uint8)": "UINT8",
    "tensor(bool)": "BOOL",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--image-model", action="append", default=[])
    ours, rest = parser.parse_known_args()
    sys.argv = [sys.argv[0], *rest]  # kserve reads its own flags (--http_port ...) at import

    import uvicorn

    # kserve's REST server binds 0.0.0.0; tests and benchmarks stay on loopback
    config_init = uvicorn.Config.__init__

    def loopback_only(self: uvicorn.Config, *args: object, **kwargs: object) -> None:
        kwargs["host"] = "127.0.0.1"
        config_init(self, *args, **kwargs)  # type: ignore[arg-type]

    uvicorn.Config.__init__ = loopback_only  # type: ignore[method-assign]

    import kserve
    from kserve.errors import InferenceError

    counter = itertools.count(1)

    class OnnxModel(kserve.Model):  # type: ignore[misc]
        def __init__(self, name: str, path: str) -> None:
            super().__init__(name)
            self.path = path
            self.session: ort.InferenceSession | None = None

        def load(self) -> bool:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = ours.threads
            opts.inter_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = ort.InferenceSession(
                self.path, sess_options=opts, providers=["CPUExecutionProvider"]
            )
            self.ready = True
            return True

        def _ports(self, ports: list[ort.NodeArg]) -> list[dict[str, object]]:
            return [
                {
                    "name": p.name,
                    "datatype": _TYPES.get(p.type, "FP32"),
                    "shape": [d if isinstance(d, int) else -1 for d in p.shape],
                }
                for p in ports
            ]

        def get_input_types(self) -> list[dict[str, object]]:
            assert self.session is not None
            return self._ports(self.session.get_inputs())

        def get_output_types(self) -> list[dict[str, object]]:
            assert self.session is not None
            return self._ports(self.session.get_outputs())

        async def predict(self, payload: kserve.InferRequest, headers=None, response_headers=None):  # type: ignore[no-untyped-def]
            assert self.session is not None
            if ours.fail_every and next(counter) % ours.fail_every == 0:
                raise InferenceError("injected failure (--fail-every)")
            feeds = {i.name: i.as_numpy() for i in payload.inputs}
            wanted = [o.name for o in payload.request_outputs] or [o.name for o in self.session.get_outputs()]
            binary = {o.name: bool(o.binary_data) for o in payload.request_outputs or []}
            results = await asyncio.to_thread(self.session.run, wanted, feeds)
            outputs = []
            for name, array in zip(wanted, results, strict=True):
                out = kserve.InferOutput(name=name, shape=list(array.shape), datatype="FP32")
                out.set_data_from_numpy(np.asarray(array, np.float32), binary_data=binary.get(name, False))
                outputs.append(out)
            return kserve.InferResponse(
                model_name=self.name, infer_outputs=outputs, response_id=payload.id or "0"
            )

    class ImageModel(OnnxModel):  # type: ignore[misc]
        """Encoded images in; decode + the built-in's preprocessing + the ONNX graph here."""

        def __init__(self, name: str, builtin: str) -> None:
            from app.models.adapters.image_classifier import MODEL_FILE as CLASSIFIER_ONNX
            from app.models.adapters.image_classifier import ImageClassifierAdapter
            from app.models.adapters.object_detector import MODEL_FILE as DETECTOR_ONNX
            from app.models.adapters.object_detector import ObjectDetectorAdapter

            self.classifier = builtin == "efficientnet_lite0"
            super().__init__(name, str(CLASSIFIER_ONNX if self.classifier else DETECTOR_ONNX))
            self.builtin = ImageClassifierAdapter() if self.classifier else ObjectDetectorAdapter()

        def get_input_types(self) -> list[dict[str, object]]:
            return [{"name": "image", "datatype": "BYTES", "shape": [-1]}]

        def get_output_types(self) -> list[dict[str, object]]:
            return [{**p, "shape": [-1, *p["shape"][1:]]} for p in super().get_output_types()]  # type: ignore[list-item]

        def run(self, files: list[bytes], wanted: list[str]) -> list[np.ndarray]:
            assert self.session is not None
            arrays = [decode(f) for f in files]
            if self.classifier:
                x = np.stack([self.builtin.preprocess(a) for a in arrays])  # type: ignore[attr-defined]
                return self.session.run(wanted, {"input": x})
            runs = [self.session.run(wanted, {"input": self.builtin.preprocess(a)[0]}) for a in arrays]
            return [np.concatenate([r[i] for r in runs]) for i in range(len(wanted))]

        async def predict(self, payload: kserve.InferRequest, headers=None, response_headers=None):  # type: ignore[no-untyped-def]
            assert self.session is not None
            if ours.fail_every and next(counter) % ours.fail_every == 0:
                raise InferenceError("injected failure (--fail-every)")
            (tensor,) = payload.inputs
            items = list(tensor.as_numpy().reshape(-1))
            if (tensor.parameters or {}).get("content_type") == "base64":
                files = [base64.b64decode(x) for x in items]
            else:
                files = [x if isinstance(x, bytes) else str(x).encode() for x in items]
            wanted = [o.name for o in payload.request_outputs] or [o.name for o in self.session.get_outputs()]
            binary = {o.name: bool(o.binary_data) for o in payload.request_outputs or []}
            results = await asyncio.to_thread(self.run, files, wanted)
            outputs = []
            for name, array in zip(wanted, results, strict=True):
                out = kserve.InferOutput(name=name, shape=list(array.shape), datatype="FP32")
                out.set_data_from_numpy(np.asarray(array, np.float32), binary_data=binary.get(name, False))
                outputs.append(out)
            return kserve.InferResponse(
                model_name=self.name, infer_outputs=outputs, response_id=payload.id or "0"
            )

    def decode(data: bytes) -> np.ndarray:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))

    models = []
    for spec in ours.model:
        name, path = spec.split("=", 1)
        model = OnnxModel(name, path)
        model.load()
        models.append(model)
    for spec in ours.image_model:
        name, builtin = spec.split("=", 1)
        model = ImageModel(name, builtin)
        model.load()
        models.append(model)
    kserve.ModelServer(enable_grpc=False, workers=1).start(models)


if __name__ == "__main__":
    main()
