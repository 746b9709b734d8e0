"""``GET /annotations/{id}/crop``: object mode, the annotation's region cut out of its image
(PNG; a polygon is cut along its bounding box), for members of the annotation's app."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.access import get_for
from app.annotations.crops import crop_png, region_box
from app.annotations.models import Annotation
from app.core.errors import DomainError, NotFound
from app.http import error_response, principal_of, runtime_of
from app.inputs.models import Input


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
