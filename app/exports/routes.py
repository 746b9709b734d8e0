"""``GET /dataset-versions/{id}/export?format=COCO&images=true``: a version as a zip.

The zip is written to a spooled temporary file (memory up to ``SPOOL_BYTES``, then disk) and
streamed back in chunks, so neither the data nor the archive is ever held whole in memory.
Same API-key auth as GraphQL; another app's version answers 404 like an unknown one.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from typing import IO

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app.annotations.routes import routes as annotation_routes
from app.core.errors import DomainError
from app.exports import service
from app.exports.writers import parse_format, write_export
from app.http import error_response, principal_of, runtime_of

SPOOL_BYTES = 8 * 1024 * 1024
CHUNK = 256 * 1024


async def _chunks(fh: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while True:
            data = await asyncio.to_thread(fh.read, CHUNK)
            if not data:
                return
            yield data
    finally:
        fh.close()


async def export_version(request: Request) -> Response:
    try:
        principal = await principal_of(request)
        fmt = parse_format(request.query_params.get("format", "COCO"))
        images = request.query_params.get("images", "true").lower() not in ("0", "false", "no")
        version = await service.get_version(principal, request.path_params["version_id"], ready=True)
    except DomainError as exc:
        return error_response(exc)
    fh = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # closed by _chunks
    try:
        await write_export(version, fmt, fh, runtime_of(request).blobs, images=images)
        size = fh.tell()
        fh.seek(0)
    except BaseException:
        fh.close()
        raise
    name = f"{version.id}-{fmt.value.lower()}.zip"
    return StreamingResponse(
        _chunks(fh),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Content-Length": str(size)},
    )


routes = [
    Route("/dataset-versions/{version_id}/export", export_version, methods=["GET"]),
    *annotation_routes,
]
