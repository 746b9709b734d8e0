"""Load a batch's inputs: texts as they are, images fetched (URL inputs) and decoded.

Failures become ``InputFailure``s with a code (the input's task state turns FAILED), never a
failed batch: one bad image never fails a task.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.inputs.models import Input, InputKind, InputStatus
from app.models.adapters import AdapterInput
from app.runtime import Runtime
from app.tasks.fetch import FetchFailed, fetch_image
from app.tasks.models import LabelingTask


class InputFailure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Loaded:
    """An input ready for the models: a text, or image bytes decoded just before predicting."""

    doc: Input
    adapter_input: AdapterInput | None = None
    raw: bytes | None = None


def _decode(data: bytes, max_pixels: int) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        if img.width * img.height > max_pixels:
            raise InputFailure("TOO_LARGE", f"image has {img.width * img.height} pixels")
        return np.asarray(img.convert("RGB"))


async def _fetch(runtime: Runtime, doc: Input) -> bytes:
    """A URL input's image, fetched under the URL rules and kept in the blob store."""
    try:
        data, info = await fetch_image(doc.url or "", runtime.settings)
    except FetchFailed as exc:
        await Input.get_pymongo_collection().update_one(
            {"_id": doc.id}, {"$set": {"status": InputStatus.FETCH_FAILED.value}}
        )
        raise InputFailure(exc.code, exc.message) from exc
    key = await runtime.blobs.put(data)
    await Input.get_pymongo_collection().update_one(
        {"_id": doc.id},
        {
            "$set": {
                "blob_key": key,
                "status": InputStatus.READY.value,
                "width": info.width,
                "height": info.height,
                "content_type": info.content_type,
                "size_bytes": info.size_bytes,
            },
            "$currentDate": {"updated_at": True},
        },
    )
    return data


async def _load_one(runtime: Runtime, doc: Input) -> Loaded:
    if doc.kind == InputKind.TEXT:
        return Loaded(doc, AdapterInput(text=doc.text or ""))
    if doc.blob_key is None and doc.url:
        return Loaded(doc, raw=await _fetch(runtime, doc))
    data = await runtime.blobs.get(doc.blob_key) if doc.blob_key else None
    if data is None:
        raise InputFailure("INPUT_MISSING", "the input's image bytes are missing")
    return Loaded(doc, raw=data)


async def load_inputs(
    runtime: Runtime, task: LabelingTask, input_ids: Sequence[str]
) -> tuple[list[Loaded], dict[str, InputFailure]]:
    docs = await Input.find({"_id": {"$in": list(input_ids)}, "app_id": task.app_id}).to_list()
    by_id = {d.id: d for d in docs}
    failures: dict[str, InputFailure] = {}
    loaded: list[Loaded] = []
    for input_id in input_ids:
        doc = by_id.get(input_id)
        if doc is None:
            failures[input_id] = InputFailure("INPUT_MISSING", "the input no longer exists")
            continue
        try:
            loaded.append(await _load_one(runtime, doc))
        except InputFailure as exc:
            failures[input_id] = exc
    return loaded, failures


def decode_all(loaded: Sequence[Loaded], max_pixels: int) -> tuple[list[Loaded], dict[str, InputFailure]]:
    """Decode the images (CPU-bound: called in a thread, right before the model runs)."""
    ready: list[Loaded] = []
    failures: dict[str, InputFailure] = {}
    for item in loaded:
        if item.raw is None:
            ready.append(item)
            continue
        try:
            array = _decode(item.raw, max_pixels)
        except InputFailure as exc:
            failures[item.doc.id] = exc
            continue
        except Exception as exc:  # Pillow raises many types for corrupt data
            failures[item.doc.id] = InputFailure("IMAGE_UNDECODABLE", f"cannot decode the image: {exc}")
            continue
        ready.append(Loaded(item.doc, AdapterInput(image=array)))
    return ready, failures
