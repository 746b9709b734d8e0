"""Load a batch's inputs: texts as they are, images fetched (URL inputs) and decoded.

Failures become ``InputFailure``s with a code (the input's task state turns FAILED), never a
failed batch: one bad image never fails a task.

Images are decoded within a memory budget:
* ``load_inputs`` reads each image's header only and refuses, from it alone, an image over the
  hard limits (``max_image_pixels``, ``max_image_side``, ``max_image_pixels_per_byte``; code
  ``TOO_LARGE``). It then plans the size each image is decoded to: at most
  ``image_decode_max_side`` on the long side (no built-in model looks at more: the classifier
  takes 224 px, the detector 416, the text-region detector caps at 2000), and together at most
  ``image_batch_pixel_budget`` pixels for the batch (an equal share each, never below
  ``MIN_DECODE_SIDE`` on the long side).
* ``decode_all`` decodes one image at a time and shrinks it at once: JPEG through the
  decoder's own scaling (``draft``: 1/2, 1/4, 1/8, so the full-size pixels never exist); other
  formats with an integer ``reduce`` right after decoding, in strips for modes that would
  otherwise need a full-size RGB copy. The peak is about one full-size image in its stored
  mode, not a batch of them.

Regions are normalised (0..1), so the size an image is decoded to never changes where an
annotation lands.
"""

from __future__ import annotations

import asyncio
import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.core.errors import ValidationFailed
from app.inputs import images
from app.inputs.models import Input, InputKind, InputStatus
from app.models.adapters import AdapterInput
from app.runtime import Runtime
from app.settings import Settings
from app.tasks.fetch import FetchFailed, fetch_image
from app.tasks.models import LabelingTask

MIN_DECODE_SIDE = 640  # the budget never shrinks an image's long side below this
STRIP_PIXELS = 1 << 22  # pixels converted at once when shrinking in strips (12 MB as RGB)


class InputFailure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Loaded:
    """An input ready for the models: a text, or image bytes decoded just before predicting.

    ``size`` is the (width, height) the image is decoded to, planned by ``load_inputs``
    within the batch's budget; None means the default budget for a batch of one."""

    doc: Input
    adapter_input: AdapterInput | None = None
    raw: bytes | None = None
    size: tuple[int, int] | None = None


@dataclass(frozen=True)
class DecodeBudget:
    max_side: int = Settings.model_fields["image_decode_max_side"].default
    batch_pixels: int = Settings.model_fields["image_batch_pixel_budget"].default

    @classmethod
    def from_settings(cls, settings: Settings) -> DecodeBudget:
        return cls(max_side=settings.image_decode_max_side, batch_pixels=settings.image_batch_pixel_budget)

    def size_for(self, width: int, height: int, share: int) -> tuple[int, int]:
        """The size to decode a ``width`` x ``height`` image to, given its ``share`` of the
        batch's pixels: aspect kept, never enlarged."""
        long_side = max(width, height)
        scale = min(1.0, self.max_side / long_side, math.sqrt(share / (width * height)))
        scale = max(scale, min(1.0, min(MIN_DECODE_SIDE, self.max_side) / long_side))
        # rounded down (the epsilon absorbs float error), so the share is never exceeded
        return max(1, math.floor(width * scale + 1e-9)), max(1, math.floor(height * scale + 1e-9))


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
    settings = runtime.settings
    refused = await asyncio.to_thread(
        plan_sizes, loaded, images.PixelLimits.from_settings(settings), DecodeBudget.from_settings(settings)
    )
    failures.update(refused)
    return [x for x in loaded if x.doc.id not in refused], failures


def plan_sizes(
    loaded: Sequence[Loaded], limits: images.PixelLimits, budget: DecodeBudget
) -> dict[str, InputFailure]:
    """Set each image's decode ``size`` from its header (no pixels decoded); an image over a
    hard limit, or without a readable header, fails alone."""
    failures: dict[str, InputFailure] = {}
    headers: list[tuple[Loaded, images.ImageHeader]] = []
    for item in loaded:
        if item.raw is None:
            continue
        try:
            header = images.read_header(item.raw)
            images.check_header(header, limits, "the image")
        except ValidationFailed as exc:
            failures[item.doc.id] = InputFailure("TOO_LARGE", exc.message)
            continue
        except Image.DecompressionBombError as exc:
            failures[item.doc.id] = InputFailure("TOO_LARGE", f"the image is too large: {exc}")
            continue
        except images.UNREADABLE as exc:
            failures[item.doc.id] = InputFailure("IMAGE_UNDECODABLE", f"cannot read the image: {exc}")
            continue
        headers.append((item, header))
    share = budget.batch_pixels // max(1, len(headers))
    for item, header in headers:
        item.size = budget.size_for(header.width, header.height, share)
    return failures


def decode_all(loaded: Sequence[Loaded], max_pixels: int) -> tuple[list[Loaded], dict[str, InputFailure]]:
    """Decode the images, one at a time, each to its planned size (CPU-bound: called in a
    thread, right before the model runs)."""
    ready: list[Loaded] = []
    failures: dict[str, InputFailure] = {}
    for item in loaded:
        if item.raw is None:
            ready.append(item)
            continue
        try:
            array = decode_image(item.raw, item.size, max_pixels)
        except InputFailure as exc:
            failures[item.doc.id] = exc
            continue
        except Exception as exc:  # Pillow raises many types for corrupt data
            failures[item.doc.id] = InputFailure("IMAGE_UNDECODABLE", f"cannot decode the image: {exc}")
            continue
        ready.append(Loaded(item.doc, AdapterInput(image=array, encoded=item.raw)))
    return ready, failures


def decode_image(data: bytes, size: tuple[int, int] | None, max_pixels: int) -> np.ndarray:
    """An RGB array of ``size`` (planned for a batch of one when None). Dimensions are
    checked from the header before any pixel is decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limits decide
        with Image.open(io.BytesIO(data), formats=images.FORMATS) as img:
            if img.width * img.height > max_pixels:
                raise InputFailure("TOO_LARGE", f"image has {img.width * img.height} pixels")
            if size is None:
                size = DecodeBudget().size_for(img.width, img.height, DecodeBudget().batch_pixels)
            if img.format != "WEBP":
                if img.format == "JPEG":
                    img.draft(None, size)  # the decoder scales down, never below size
                img.load()
                small = _shrink_to_rgb(img, size)
                return np.asarray(
                    small if small.size == size else small.resize(size, Image.Resampling.BICUBIC)
                )
            factor = min(img.width // size[0], img.height // size[1])
    return _decode_webp(data, size, factor)


def _decode_webp(data: bytes, size: tuple[int, int], factor: int) -> np.ndarray:
    """WebP through OpenCV: Pillow decodes it through libwebp's animation API, which keeps two
    full RGBA canvases plus a copy (about 16 bytes per pixel); OpenCV decodes into one BGR
    buffer and shrinks it by 2, 4 or 8 at once. EXIF orientation is ignored, as Pillow does."""
    import cv2  # heavy; only workers decode

    flag = next(
        flag
        for at_least, flag in (
            (8, cv2.IMREAD_REDUCED_COLOR_8),
            (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2),
            (1, cv2.IMREAD_COLOR),
        )
        if factor >= at_least
    )
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise InputFailure("IMAGE_UNDECODABLE", "cannot decode the image (WebP)")
    if (bgr.shape[1], bgr.shape[0]) != size:
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(bgr[..., ::-1])


def _shrink_to_rgb(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``img`` as RGB, reduced by the largest integer factor that keeps it at least ``size``,
    without a full-size copy of it."""
    factor = min(img.width // size[0], img.height // size[1])
    if factor < 2:
        return img if img.mode == "RGB" else img.convert("RGB")  # at most 4x size: small
    if img.mode in ("RGB", "L"):
        reduced = img.reduce(factor)  # allocates the result only
        return reduced if reduced.mode == "RGB" else reduced.convert("RGB")
    return _reduce_in_strips(img, factor)


def _reduce_in_strips(img: Image.Image, factor: int) -> Image.Image:
    """Convert to RGB and reduce a band of rows at a time: other modes (palette, alpha, 16-bit,
    CMYK) would need a full-size RGB or premultiplied copy first. Bands are whole multiples of
    ``factor`` rows, so the result equals reducing the whole image."""
    width, height = img.size
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    rows = factor * max(1, STRIP_PIXELS // (width * factor))
    for top in range(0, height, rows):
        band = img.crop((0, top, width, min(height, top + rows))).convert("RGB").reduce(factor)
        out.paste(band, (0, top // factor))
    return out
