"""Open Inference Protocol (KServe v2) tensors over HTTP: JSON, or the binary tensor extension
(``Inference-Header-Content-Length``) that KServe, Triton and OpenVINO Model Server accept.

A ``BYTES`` tensor (encoded images) travels in JSON as base64 strings with the input parameter
``content_type: "base64"`` (MLServer's codec name; a server that does not know it decodes them
itself), or in the binary extension as each element's 4-byte little-endian length followed by
its bytes (the protocol's layout; Triton reads it as is).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from .errors import ERROR, ServerFailure

HEADER = "Inference-Header-Content-Length"

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
NAMES = {dtype: name for name, dtype in DTYPES.items()}


def datatype(array: np.ndarray) -> str:
    try:
        return NAMES[array.dtype]
    except KeyError:
        raise ServerFailure(ERROR, f"no Open Inference Protocol datatype for {array.dtype}") from None


def encode_request(
    inputs: Mapping[str, np.ndarray], outputs: Sequence[str], binary: bool
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an infer request."""
    if not binary:
        body = {
            "inputs": [
                {"name": n, "shape": list(a.shape), "datatype": datatype(a), "data": a.ravel()}
                for n, a in inputs.items()
            ],
            "outputs": [{"name": n} for n in outputs],
        }
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), {"Content-Type": "application/json"}
    raw = [np.ascontiguousarray(a).tobytes() for a in inputs.values()]
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": n,
                    "shape": list(a.shape),
                    "datatype": datatype(a),
                    "parameters": {"binary_data_size": len(r)},
                }
                for (n, a), r in zip(inputs.items(), raw, strict=True)
            ],
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs],
        }
    )
    return b"".join([head, *raw]), {"Content-Type": "application/octet-stream", HEADER: str(len(head))}


def encode_bytes_request(
    name: str, items: Sequence[bytes], outputs: Sequence[str], binary: bool
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an infer request whose one input is a ``BYTES`` tensor of shape
    ``[len(items)]`` (one encoded image each)."""
    if not binary:
        body = {
            "inputs": [
                {
                    "name": name,
                    "shape": [len(items)],
                    "datatype": "BYTES",
                    "parameters": {"content_type": "base64"},
                    "data": [base64.b64encode(b).decode("ascii") for b in items],
                }
            ],
            "outputs": [{"name": n} for n in outputs],
        }
        return orjson.dumps(body), {"Content-Type": "application/json"}
    raw = b"".join(part for b in items for part in (struct.pack("<I", len(b)), b))
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": [len(items)],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs],
        }
    )
    return head + raw, {"Content-Type": "application/octet-stream", HEADER: str(len(head))}


def decode_response(body: bytes, header_length: str | None) -> dict[str, np.ndarray]:
    """Output name -> array, from a JSON or binary-extension answer."""
    try:
        size = int(header_length) if header_length is not None else len(body)
        head = orjson.loads(body[:size])
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise ServerFailure(ERROR, f"the infer answer is not the protocol's JSON: {exc}") from exc
    outputs = head.get("outputs") if isinstance(head, dict) else None
    if not isinstance(outputs, list):
        raise ServerFailure(ERROR, "the infer answer has no outputs list")
    out: dict[str, np.ndarray] = {}
    offset = size
    for item in outputs:
        try:
            name, shape, dtype = str(item["name"]), [int(s) for s in item["shape"]], DTYPES[item["datatype"]]
            params = item.get("parameters") or {}
            if "binary_data_size" in params:
                length = int(params["binary_data_size"])
                array = np.frombuffer(body[offset : offset + length], dtype=dtype)
                offset += length
            else:
                array = np.asarray(item["data"], dtype=dtype)
            out[name] = array.reshape(shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise ServerFailure(ERROR, f"an output tensor of the infer answer is malformed: {exc!r}") from exc
    return out
