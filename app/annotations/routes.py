"""``GET /annotations/{id}/crop``: object mode, the annotation's region cut out of its image
(PNG; a polygon is cut along its bounding box), for members of the annotation's app."""

from __future__ import annotations

import asyncio
import io

from PIL import Image
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.access import get_for
from app.annotations.geometry import unflatten
from app.annotations.models import Annotation
from app.core.errors import DomainError, ErrorCode, NotFound, ValidationFailed
from app.http import error_response, principal_of, runtime_of
from app.inputs.models import Input


def crop_png(data: bytes, box: tuple[float, float, float, float]) -> bytes:
    """``box`` = (top, left, bottom, right), normalised; at least one pixel each way."""
    with Image.open(io.BytesIO(data)) as img:
        w, h = img.size
        top, left, bottom, right = box
        x1, y1 = min(int(left * w), w - 1), min(int(top * h), h - 1)
        x2, y2 = max(x1 + 1, round(right * w)), max(y1 + 1, round(bottom * h))
        out = io.BytesIO()
        img.convert("RGB").crop((x1, y1, min(x2, w), min(y2, h))).save(out, format="PNG")
        return out.getvalue()


def region_box(doc: Annotation) -> tuple[float, float, float, float]:
    if doc.box:
        top, left, bottom, right = doc.box
        return top, left, bottom, right
    if doc.polygon:
        pts = unflatten(doc.polygon)
        return min(p[0] for p in pts), min(p[1] for p in pts), max(p[0] for p in pts), max(p[1] for p in pts)
    raise ValidationFailed("the annotation has no region", field="id", code=ErrorCode.NO_REGION)


async def annotation_crop(request: Request) -> Response:
    try:
        principal = await principal_of(request)
        doc = await get_for(principal, Annotation, request.path_params["annotation_id"], what="annotation")
        box = region_box(doc)
        source = await Input.get(doc.input_id)
        data = await runtime_of(request).blobs.get(source.blob_key) if source and source.blob_key else None
        if data is None:
            raise NotFound("image of input", doc.input_id)
    except DomainError as exc:
        return error_response(exc)
    png = await asyncio.to_thread(crop_png, data, box)
    return Response(png, media_type="image/png", headers={"X-Content-Type-Options": "nosniff"})


routes = [Route("/annotations/{annotation_id}/crop", annotation_crop, methods=["GET"])]
