"""Checking image bytes before anything is stored, without decoding their pixels.

An upload is accepted when Pillow reads its header (one of ``FORMATS``), its dimensions are
within the limits, and its structure verifies (``verify``: PNG chunk checksums; no pixels
decoded). The limits are checked from the header alone, so a small file that claims huge
dimensions costs the API a few kilobytes, never its pixels:

* ``max_image_pixels`` and ``max_image_side``: hard limits on width x height and on either side;
* ``max_image_pixels_per_byte``: an image over ``RATIO_FREE_PIXELS`` may not claim more pixels
  per byte of file than that (a 2.5 KB WebP of 65 megapixels is a decompression bomb, while
  even a blank 1-bit PNG stays under 4,000 pixels per byte).

Each refusal is ``TOO_LARGE`` naming the limit and its setting. The pixels are first decoded
by a worker (``app/tasks/run/load.py``), within its memory budget; a file whose body is corrupt
behind a valid header fails that input there (``IMAGE_UNDECODABLE``), not the batch.
The header is read in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from app.core.errors import ErrorCode, ValidationFailed
from app.settings import Settings

# Formats a browser or a model pipeline can use; opening only these also keeps Pillow away
# from its riskier plugins (EPS runs Ghostscript, for example).
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
# Images up to 4096 x 4096 are never refused for how well they compress.
RATIO_FREE_PIXELS = 4096 * 4096
# What Pillow raises for a header or body it cannot read.
UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)


def _default(name: str) -> Any:
    """A setting's declared default, for callers that pass no settings (one source of truth)."""
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    content_type: str
    size_bytes: int


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int
    size_bytes: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class PixelLimits:
    """The dimension limits checked from a header, in the API and again in the worker."""

    max_pixels: int = _default("max_image_pixels")
    max_side: int = _default("max_image_side")
    max_pixels_per_byte: int = _default("max_image_pixels_per_byte")

    @classmethod
    def from_settings(cls, settings: Settings) -> PixelLimits:
        return cls(
            max_pixels=settings.max_image_pixels,
            max_side=settings.max_image_side,
            max_pixels_per_byte=settings.max_image_pixels_per_byte,
        )


def too_large(field: str, limit: int) -> ValidationFailed:
    return ValidationFailed(f"{field} may be at most {limit} bytes", field=field, code=ErrorCode.TOO_LARGE)


def decode_base64(value: str, field: str, *, max_bytes: int) -> bytes:
    """The bytes of a base64 string (a ``data:...;base64,`` prefix is allowed).

    The length is checked before decoding, so an oversized string is refused without
    allocating its decoded copy.
    """
    text = value.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    if len(text) > (max_bytes + 2) // 3 * 4 + 4:
        raise too_large(field, max_bytes)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationFailed(f"{field} is not valid base64", field=field) from exc
    if len(data) > max_bytes:
        raise too_large(field, max_bytes)
    return data


async def inspect_image(
    data: bytes,
    field: str,
    *,
    max_bytes: int,
    max_pixels: int,
    max_side: int = _default("max_image_side"),
    max_pixels_per_byte: int = _default("max_image_pixels_per_byte"),
) -> ImageInfo:
    """Dimensions and type of an acceptable image, from its header; ``ValidationFailed``
    (``INVALID_IMAGE``, ``TOO_LARGE``) naming ``field`` otherwise."""
    if len(data) > max_bytes:
        raise too_large(field, max_bytes)
    if not data:
        raise ValidationFailed(f"{field} is empty", field=field, code=ErrorCode.INVALID_IMAGE)
    limits = PixelLimits(max_pixels=max_pixels, max_side=max_side, max_pixels_per_byte=max_pixels_per_byte)
    return await asyncio.to_thread(_inspect_sync, data, field, limits)


def _inspect_sync(data: bytes, field: str, limits: PixelLimits) -> ImageInfo:
    try:
        with _quiet(), Image.open(io.BytesIO(data), formats=FORMATS) as probe:
            header = _header_of(probe, len(data))
            check_header(header, limits, field)
            probe.verify()  # structure and checksums where the format has them; no pixels
    except Image.DecompressionBombError as exc:  # Pillow's own ceiling, far above ours
        raise _too_many_pixels(field, limits.max_pixels, None) from exc
    except UNREADABLE as exc:
        raise ValidationFailed(
            f"{field} is not a readable image ({', '.join(FORMATS)})",
            field=field,
            code=ErrorCode.INVALID_IMAGE,
        ) from exc
    return ImageInfo(
        width=header.width,
        height=header.height,
        content_type=Image.MIME.get(header.format, "application/octet-stream"),
        size_bytes=header.size_bytes,
    )


def read_header(data: bytes) -> ImageHeader:
    """Format and dimensions, without decoding pixels. Raises one of ``UNREADABLE`` or
    ``Image.DecompressionBombError``."""
    with _quiet(), Image.open(io.BytesIO(data), formats=FORMATS) as probe:
        return _header_of(probe, len(data))


def check_header(header: ImageHeader, limits: PixelLimits, field: str) -> None:
    """``TOO_LARGE`` naming the limit (and its setting) that the header's dimensions break."""
    if header.pixels > limits.max_pixels:
        raise _too_many_pixels(field, limits.max_pixels, header)
    if max(header.width, header.height) > limits.max_side:
        raise ValidationFailed(
            f"{field} is {header.width}x{header.height} pixels: a side may be at most "
            f"{limits.max_side} pixels (max_image_side)",
            field=field,
            code=ErrorCode.TOO_LARGE,
        )
    if header.pixels > RATIO_FREE_PIXELS and header.pixels > limits.max_pixels_per_byte * header.size_bytes:
        raise ValidationFailed(
            f"{field} claims {header.pixels} pixels in {header.size_bytes} bytes: an image over "
            f"{RATIO_FREE_PIXELS} pixels may hold at most {limits.max_pixels_per_byte} pixels per "
            "byte (max_image_pixels_per_byte); this looks like a decompression bomb",
            field=field,
            code=ErrorCode.TOO_LARGE,
        )


def _header_of(probe: Image.Image, size_bytes: int) -> ImageHeader:
    width, height = probe.size
    return ImageHeader(format=probe.format or "", width=width, height=height, size_bytes=size_bytes)


def _too_many_pixels(field: str, max_pixels: int, header: ImageHeader | None) -> ValidationFailed:
    claims = f"{field} is {header.width}x{header.height} pixels" if header else f"{field} is"
    return ValidationFailed(
        f"{claims}: more than {max_pixels} pixels (max_image_pixels)",
        field=field,
        code=ErrorCode.TOO_LARGE,
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Pillow warns above its own pixel ceiling; our limits decide, so the warning is noise
    (Pillow still raises ``DecompressionBombError`` at twice its ceiling)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield
