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

Models that read image files, not pixels (``ModelAdapter.wants_encoded``: a ``kserve-v2`` model
with ``input.format: encoded_image``), need no decoding at all when the file is what the adapter
would send anyway: a JPEG or PNG the plan keeps at its own size. With ``files_suffice``,
``decode_all`` hands such a file over undecoded with its header's size, after a structural check
that costs no pixel decoding (``file_problem``: a JPEG's scan must end with its end-of-image
marker, a PNG's chunks must be whole with right CRCs up to its image data), so a truncated or damaged
file still fails alone with ``IMAGE_UNDECODABLE`` before the server sees it. Orientation is the
same both ways: neither the worker's decoder nor the file's reader applies EXIF orientation.
"""

from __future__ import annotations

import asyncio
import io
import math
import struct
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.blob_refs import release_unused
from app.core.db import one_reply
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
    format: str | None = None  # the file's format, read from its header by ``plan_sizes``
    full_size: tuple[int, int] | None = None  # the file's own (width, height), from its header


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
    named = await Input.get_pymongo_collection().update_one(
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
    if named.matched_count == 0:  # deleted while fetched: its deletion released no bytes
        await release_unused(runtime.blobs, [key])
        raise InputFailure("INPUT_MISSING", "the input was deleted while its image was fetched")
    await runtime.blobs.ensure(key, data)  # a release of the same bytes meanwhile took them
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
    docs = await Input.find(
        {"_id": {"$in": list(input_ids)}, "app_id": task.app_id}, batch_size=one_reply(len(input_ids))
    ).to_list()
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
        item.format, item.full_size = header.format, (header.width, header.height)
    return failures


SENT_AS_FILES = frozenset({"JPEG", "PNG"})  # the files remote.images sends as they are


def decode_all(
    loaded: Sequence[Loaded], max_pixels: int, *, files_suffice: bool = False
) -> tuple[list[Loaded], dict[str, InputFailure]]:
    """Decode the images, one at a time, each to its planned size (CPU-bound: called in a
    thread, right before the model runs). With ``files_suffice`` (every image model of the
    task reads files), a JPEG or PNG planned at its own size is checked, not decoded, and
    handed over as ``AdapterInput(encoded=file, size=its size)``."""
    ready: list[Loaded] = []
    failures: dict[str, InputFailure] = {}
    for item in loaded:
        if item.raw is None:
            ready.append(item)
            continue
        if files_suffice and item.format in SENT_AS_FILES and item.size == item.full_size:
            problem = file_problem(item.raw, item.format or "")
            if problem is not None:
                failures[item.doc.id] = InputFailure(
                    "IMAGE_UNDECODABLE", f"cannot decode the image: {problem}"
                )
            else:
                ready.append(Loaded(item.doc, AdapterInput(encoded=item.raw, size=item.size)))
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


def file_problem(data: bytes, fmt: str) -> str | None:
    """What makes a JPEG or PNG file undecodable as seen from its structure alone (no pixel
    decoded), or None: the truncations and damage Pillow's decoder would refuse."""
    try:
        return _jpeg_problem(data) if fmt == "JPEG" else _png_problem(data)
    except (struct.error, IndexError):
        return f"the {fmt} file ends inside a header"


def _jpeg_problem(data: bytes) -> str | None:
    """The markers up to the first scan must be whole, and an end-of-image marker must follow
    it (0xFFD9 cannot occur inside entropy-coded data: 0xFF is stuffed there)."""
    if data[:2] != b"\xff\xd8":
        return "not a JPEG file (no start-of-image marker)"
    pos = 2
    while True:
        if data[pos] != 0xFF:
            return f"JPEG marker expected at byte {pos}"
        while data[pos] == 0xFF:  # fill bytes
            pos += 1
        marker = data[pos]
        pos += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue
        if marker == 0xD9:
            return "the JPEG file ends before its image data"
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2 or pos + length > len(data):
            return "the JPEG file is truncated inside a header segment"
        pos += length
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
    if data.rfind(b"\xff\xd9", pos) < 0:
        return "the JPEG file is truncated (no end-of-image marker after its image data)"
    return None


def _png_problem(data: bytes) -> str | None:
    """Every chunk up to the last image data (IDAT) whole, with a right CRC; what follows the
    image data may be cut (Pillow's decoder never reads it)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return "not a PNG file (bad signature)"
    pos, idat, view = 8, False, memoryview(data)
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if idat and kind != b"IDAT":
            return None  # the image data is whole
        end = pos + 8 + length
        name = kind.decode("latin-1")
        if end + 4 > len(data):
            return f"the PNG file is truncated inside its {name!r} chunk"
        (crc,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(view[pos + 4 : end]) != crc:
            return f"the PNG file's {name!r} chunk is damaged (CRC mismatch)"
        idat = idat or kind == b"IDAT"
        pos = end + 4
    return None if idat else "the PNG file is truncated before or inside its image data"


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
