"""``GET /inputs/{id}/image``: the stored image bytes, for members of the input's app."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.access import get_for
from app.core.errors import DomainError, NotFound
from app.http import error_response, principal_of, runtime_of
from app.inputs.models import Input


async def input_image(request: Request) -> Response:
    try:
        principal = await principal_of(request)
        doc = await get_for(principal, Input, request.path_params["input_id"], what="input")
        if doc.blob_key is None:
            raise NotFound("image of input", doc.id)
        data = await runtime_of(request).blobs.get(doc.blob_key)
        if data is None:
            raise NotFound("image of input", doc.id)
    except DomainError as exc:
        return error_response(exc)
    return Response(
        data,
        media_type=doc.content_type or "application/octet-stream",
        headers={
            "Cache-Control": "private, max-age=31536000, immutable",
            "ETag": f'"{doc.blob_key}"',
            # the type comes from the decoded image; never let a browser guess another one
            "X-Content-Type-Options": "nosniff",
        },
    )


routes = [Route("/inputs/{input_id}/image", input_image, methods=["GET"])]
