"""Uploads are judged from the image header: a decompression bomb or an image past a
dimension limit is refused with ``TOO_LARGE`` naming the limit, before any pixel is decoded,
and nothing is stored. (What that saves in memory is measured in bench/image_memory.py.)"""

from __future__ import annotations

import pytest

from app.inputs.models import Input as InputDoc
from app.settings import Settings
from tests.factories import Api, world
from tests.inputs.helpers import add, b64, blob_files, claims_size, image_bytes, upload, webp_bomb

REFUSED = {
    # 2.5 KB claiming 65 megapixels: under max_image_pixels, far over the compression a real
    # image reaches
    "65 MP WebP of 2.5 KB": (webp_bomb, "image/webp", "max_image_pixels_per_byte"),
    "a side over the limit": (lambda: claims_size(image_bytes(), 40_000, 10), "image/png", "max_image_side"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
@pytest.mark.parametrize("transport", ["multipart", "base64"])
async def test_an_image_past_a_dimension_limit_is_refused_from_its_header(
    api: Api, settings: Settings, case: str, transport: str
) -> None:
    w = await world(api)
    make, content_type, limit = REFUSED[case]
    data = make()
    blobs_before = blob_files(settings.resolved_blob_dir)
    if transport == "multipart":
        result, field = await upload(api.http, w.owner, w.app_id, data, "f.bin", content_type), "image"
    else:
        result, field = await add(api, w.owner, w.app_id, imageBase64=b64(data)), "imageBase64"
    assert (result["__typename"], result["code"], result["field"]) == ("ValidationError", "TOO_LARGE", field)
    assert limit in result["message"]
    assert await InputDoc.count() == 0
    assert blob_files(settings.resolved_blob_dir) == blobs_before


async def test_a_large_image_that_compresses_like_a_real_one_is_accepted(api: Api) -> None:
    # 20 megapixels of flat grey PNG, about 300 pixels per byte (deflate tops out near 1,000)
    w = await world(api)
    result = await upload(api.http, w.owner, w.app_id, image_bytes("PNG", (5000, 4000), "grey"))
    assert result["__typename"] == "InputSuccess", result
    assert (result["input"]["width"], result["input"]["height"]) == (5000, 4000)
