"""Workers decode images within a memory budget: headers checked first, each image shrunk to
its planned size as it is decoded, one image over the limits failing alone. Shrinking never
moves a normalised region."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data as samples
from starlette.applications import Starlette

from app.inputs.images import PixelLimits
from app.inputs.models import Input, InputKind
from app.models.adapters import AdapterInput, get_adapter
from app.tasks.run.load import DecodeBudget, Loaded, decode_all, decode_image, plan_sizes
from tests.factories import Api, world
from tests.inputs.helpers import claims_size, webp_bomb
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import (
    THREE,
    annotations_of,
    create_dataset,
    create_task,
    get_task,
    image_inputs,
    null_model,
)

MAX_PIXELS = 80_000_000


def pattern(size: tuple[int, int]) -> Image.Image:
    """Smooth colour ramps in both directions, so a band pasted at the wrong row shows."""
    width, height = size
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack(
        [np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)), (x + y) / 2], -1
    )
    return Image.fromarray(rgb.astype(np.uint8))


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def claims(width: int, height: int) -> bytes:
    """A few hundred bytes of PNG whose header claims ``width`` x ``height``."""
    return claims_size(encoded(Image.new("RGB", (1, 1)), "PNG"), width, height)


SOURCE = pattern((3000, 2000))
FORMATS: dict[str, bytes] = {
    "jpeg": encoded(SOURCE, "JPEG", quality=95),
    "png rgb": encoded(SOURCE, "PNG"),
    "png rgba": encoded(SOURCE.convert("RGBA"), "PNG"),
    "png grey": encoded(SOURCE.convert("L"), "PNG"),
    "png palette": encoded(SOURCE.quantize(256), "PNG"),
    "gif": encoded(SOURCE.quantize(256), "GIF"),
    "webp": encoded(SOURCE, "WEBP", lossless=True),
    "tiff": encoded(SOURCE, "TIFF"),
    "bmp": encoded(SOURCE, "BMP"),
}


@pytest.mark.parametrize("case", sorted(FORMATS))
def test_an_image_is_decoded_to_its_planned_size_with_the_same_picture(case: str) -> None:
    # given a 3000x2000 image, planned to 1200x800 (reduced by 2, then resized)
    data = FORMATS[case]
    with Image.open(io.BytesIO(data)) as full:
        reference = np.asarray(full.convert("RGB").resize((1200, 800), Image.Resampling.BOX), np.float32)
    # when it is decoded within the budget
    array = decode_image(data, (1200, 800), MAX_PIXELS)
    # then it has the planned size, as RGB, and shows the same picture
    assert array.shape == (800, 1200, 3) and array.dtype == np.uint8
    assert np.abs(array.astype(np.float32) - reference).mean() < 4.0


def test_a_batch_is_planned_within_its_pixel_budget_and_the_long_side_limit(asgi_app: Starlette) -> None:
    # given four images claiming 72 megapixels each, and a small one
    sizes = [(9000, 8000)] * 4 + [(300, 200)]
    loaded = [Loaded(image_doc(), raw=claims(w, h)) for w, h in sizes]
    budget = DecodeBudget(max_side=2048, batch_pixels=4_000_000)
    # when the batch is planned (headers only; the ratio check is off for these tiny files)
    failures = plan_sizes(loaded, PixelLimits(max_pixels_per_byte=10**9), budget)
    # then each gets an equal share of the budget, the small one is kept as it is
    assert failures == {}
    planned = [x.size for x in loaded]
    assert planned[4] == (300, 200)
    for size in planned[:4]:
        assert size is not None and size[0] * size[1] <= 800_000 and max(size) <= 2048
        assert abs(size[0] / size[1] - 9000 / 8000) < 0.01
    assert sum(w * h for w, h in (s for s in planned if s)) <= budget.batch_pixels


def test_the_budget_never_shrinks_below_the_models_inputs(asgi_app: Starlette) -> None:
    loaded = [Loaded(image_doc(), raw=claims(4000, 3000)) for _ in range(64)]
    plan_sizes(loaded, PixelLimits(max_pixels_per_byte=10**9), DecodeBudget(batch_pixels=1_000_000))
    assert {x.size for x in loaded} == {(640, 480)}


def test_an_image_over_a_limit_fails_alone_from_its_header(asgi_app: Starlette) -> None:
    # given a batch with an image too wide, a 65 MP WebP of 2.5 KB, one over the pixel limit,
    # an unreadable one, and a good one
    good = Loaded(image_doc(), raw=FORMATS["jpeg"])
    bad = {
        "wide": Loaded(image_doc(), raw=claims(40_000, 10)),
        "bomb": Loaded(image_doc(), raw=webp_bomb()),
        "pixels": Loaded(image_doc(), raw=claims(9000, 9000)),
        "unreadable": Loaded(image_doc(), raw=b"GIF89a not really"),
    }
    # when it is planned and decoded
    failures = plan_sizes([good, *bad.values()], PixelLimits(), DecodeBudget())
    ready, undecodable = decode_all([good], MAX_PIXELS)
    # then each bad one fails with its code, before any decoding, and the good one is decoded
    codes = {name: failures[x.doc.id].code for name, x in bad.items()}
    assert codes == {
        "wide": "TOO_LARGE",
        "bomb": "TOO_LARGE",
        "pixels": "TOO_LARGE",
        "unreadable": "IMAGE_UNDECODABLE",
    }
    assert "max_image_side" in failures[bad["wide"].doc.id].message
    assert "max_image_pixels_per_byte" in failures[bad["bomb"].doc.id].message
    assert undecodable == {} and [x.doc.id for x in ready] == [good.doc.id]
    image = ready[0].adapter_input.image if ready[0].adapter_input else None
    assert image is not None and image.shape == (1365, 2048, 3)  # the default long side


async def test_images_over_the_limits_fail_alone_in_a_task(
    api: Api, asgi_app: Starlette, drain: Drain
) -> None:
    # given a dataset of four images, two of which are swapped behind the API's back for files
    # no upload would pass today (stored before the limits, or by another route)
    w = await world(api)
    ds = await create_dataset(api, w.owner, w.app_id)
    # seeds of their own: blobs are shared by content, and two of these get overwritten
    good_a, good_b, wide, bomb = await image_inputs(api, w.owner, w.app_id, ds, 4, seed=7100)
    blobs = asgi_app.state.runtime.blobs
    for input_id, data in ((wide, claims(40_000, 10)), (bomb, webp_bomb())):
        doc = await Input.get(input_id)
        assert doc is not None and doc.blob_key
        blobs._path(doc.blob_key).write_bytes(data)
    model = await null_model(api, w.owner, w.app_id, THREE)
    concepts = [await api.concept(w.owner, w.app_id, n) for n in ("cat", "dog", "bird")]
    # when a task labels them (one batch of four)
    task = await create_task(api, w.owner, appId=w.app_id, datasetId=ds, modelId=model, conceptIds=concepts)
    await drain()
    # then only the two fail, with TOO_LARGE, and the others are labelled
    done = await get_task(api, w.owner, task["id"])
    assert done["status"] == "DONE"
    assert (done["metrics"]["processed"], done["metrics"]["failed"]) == (4, 2)
    log = await api.gql(
        w.owner,
        "query($t: ID!) { taskInputs(taskId: $t, states: [FAILED]) { nodes { inputId code } } }",
        t=task["id"],
    )
    assert {n["inputId"]: n["code"] for n in log["taskInputs"]["nodes"]} == {
        wide: "TOO_LARGE",
        bomb: "TOO_LARGE",
    }
    assert {a.input_id for a in await annotations_of(task["id"])} == {good_a, good_b}


@pytest.mark.slow
def test_a_downscaled_image_gives_the_detector_the_same_normalised_boxes() -> None:
    # given a 3072x3072 photo, decoded at full size and as planned for a busy batch (640 px)
    photo = Image.fromarray(samples.astronaut()).resize((3072, 3072), Image.Resampling.BICUBIC)
    data = encoded(photo, "JPEG", quality=90)
    small_size = DecodeBudget().size_for(3072, 3072, 640 * 640)
    assert small_size == (640, 640)
    full, small = decode_image(data, (3072, 3072), MAX_PIXELS), decode_image(data, small_size, MAX_PIXELS)
    # when the built-in detector looks at both
    detector = get_adapter("general-object-detector", {})
    on_full, on_small = detector.predict([AdapterInput(image=full), AdapterInput(image=small)])
    # then it finds the same objects, with boxes within a hundredth of the image
    confident = [p for p in on_full if p.confidence >= 0.3]
    assert "person" in {p.concept for p in confident}
    for found in confident:
        match = [p for p in on_small if p.concept == found.concept]
        assert match, (found, on_small)
        assert abs(match[0].confidence - found.confidence) < 0.05
        assert found.region is not None and match[0].region is not None
        assert np.allclose(astuple(found.region), astuple(match[0].region), atol=0.01)


def astuple(region: Any) -> tuple[float, ...]:
    return (region.top, region.left, region.bottom, region.right)


def image_doc() -> Input:
    return Input(app_id="app", kind=InputKind.IMAGE)
