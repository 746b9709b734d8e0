"""Checking image bytes before anything is stored.

An upload is accepted only when Pillow can both ``verify`` it and fully ``load`` it, so a
truncated or corrupt file is refused up front instead of failing later in a worker. The pixel
count is checked from the header before any decoding, so a small file that claims huge
dimensions (a decompression bomb) never gets its pixels allocated. Decoding is CPU-bound and
runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from app.core.errors import ErrorCode, ValidationFailed

# Formats a browser or a model pipeline can use; opening only these also keeps Pillow away
# from its riskier plugins (EPS runs Ghostscript, for example).
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    content_type: str
    size_bytes: int


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


async def inspect_image(data: bytes, field: str, *, max_bytes: int, max_pixels: int) -> ImageInfo:
    """Dimensions and type of a valid image; ``ValidationFailed`` (``INVALID_IMAGE``,
    ``TOO_LARGE``) naming ``field`` otherwise."""
    if len(data) > max_bytes:
        raise too_large(field, max_bytes)
    if not data:
        raise ValidationFailed(f"{field} is empty", field=field, code=ErrorCode.INVALID_IMAGE)
    return await asyncio.to_thread(_inspect_sync, data, field, max_pixels)


def _inspect_sync(data: bytes, field: str, max_pixels: int) -> ImageInfo:
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb guard warns first; a warning here must be a refusal.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(data, field, max_pixels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb(field, max_pixels) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ValidationFailed(
            f"{field} is not a readable image ({', '.join(FORMATS)})",
            field=field,
            code=ErrorCode.INVALID_IMAGE,
        ) from exc


def _decode(data: bytes, field: str, max_pixels: int) -> ImageInfo:
    with Image.open(io.BytesIO(data), formats=FORMATS) as probe:
        width, height = probe.size
        fmt = probe.format or ""
        if width * height > max_pixels:
            raise _bomb(field, max_pixels)
        probe.verify()  # checksums and structure; leaves the image unusable
    with Image.open(io.BytesIO(data), formats=FORMATS) as image:
        image.load()  # every pixel decodes: truncated data fails here
    return ImageInfo(
        width=width,
        height=height,
        content_type=Image.MIME.get(fmt, "application/octet-stream"),
        size_bytes=len(data),
    )


def _bomb(field: str, max_pixels: int) -> ValidationFailed:
    return ValidationFailed(
        f"{field} has more than {max_pixels} pixels", field=field, code=ErrorCode.TOO_LARGE
    )
