"""An annotation's region cut out of its input image (object mode crops, search embeddings).

Pure functions over bytes and PIL images: both the HTTP crop route and the worker's embedding
jobs use them, and the worker imports no web framework.
"""

from __future__ import annotations

import io

from PIL import Image

from app.annotations.geometry import unflatten
from app.annotations.models import Annotation
from app.core.errors import ErrorCode, ValidationFailed

Box = tuple[float, float, float, float]


def crop_image(img: Image.Image, box: Box) -> Image.Image:
    """``box`` = (top, left, bottom, right), normalised; at least one pixel each way."""
    w, h = img.size
    top, left, bottom, right = box
    x1, y1 = min(int(left * w), w - 1), min(int(top * h), h - 1)
    x2, y2 = max(x1 + 1, round(right * w)), max(y1 + 1, round(bottom * h))
    return img.convert("RGB").crop((x1, y1, min(x2, w), min(y2, h)))


def crop_png(data: bytes, box: Box) -> bytes:
    """The region of an encoded image, as PNG."""
    with Image.open(io.BytesIO(data)) as img:
        out = io.BytesIO()
        crop_image(img, box).save(out, format="PNG")
        return out.getvalue()


def region_of(box: list[float] | None, polygon: list[float] | None) -> Box | None:
    """The box of a region (a polygon's bounding box); None without a region."""
    if box:
        top, left, bottom, right = box
        return top, left, bottom, right
    if polygon:
        pts = unflatten(polygon)
        return min(p[0] for p in pts), min(p[1] for p in pts), max(p[0] for p in pts), max(p[1] for p in pts)
    return None


def region_box(doc: Annotation) -> Box:
    found = region_of(doc.box, doc.polygon)
    if found is None:
        raise ValidationFailed("the annotation has no region", field="id", code=ErrorCode.NO_REGION)
    return found
