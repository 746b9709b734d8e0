"""Models that read image files (``wants_encoded``: ``kserve-v2`` with ``input.format:
encoded_image``) get JPEG and PNG files undecoded, with their header's size; a damaged file
still fails alone with ``IMAGE_UNDECODABLE``, found from its structure (no pixel decoded)."""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data as samples

from app.inputs.images import PixelLimits
from app.inputs.models import Input, InputKind
from app.models.adapters import AdapterInput
from app.models.adapters.remote.images import file_and_size
from app.tasks.run.load import DecodeBudget, Loaded, decode_all, decode_image, file_problem, plan_sizes
from app.tasks.run.predict import RunModel, files_suffice

pytestmark = pytest.mark.usefixtures("asgi_app")  # the documents bound (Input)

MAX_PIXELS = 80_000_000
CHELSEA = Image.fromarray(samples.chelsea())  # 451 x 300


def as_file(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def doc(i: int = 0) -> Input:
    return Input(id=f"in{i}", app_id="app", kind=InputKind.IMAGE)


def planned(files: list[bytes], budget: DecodeBudget | None = None) -> list[Loaded]:
    loaded = [Loaded(doc(i), raw=raw) for i, raw in enumerate(files)]
    assert plan_sizes(loaded, PixelLimits(), budget or DecodeBudget()) == {}
    return loaded


JPEG = as_file(CHELSEA, "JPEG", quality=90)
PROGRESSIVE = as_file(CHELSEA, "JPEG", quality=90, progressive=True)
PNG = as_file(CHELSEA, "PNG")
PALETTE_PNG = as_file(CHELSEA.convert("P"), "PNG")


@pytest.mark.parametrize(
    "raw", [JPEG, PROGRESSIVE, PNG, PALETTE_PNG], ids=["jpeg", "progressive", "png", "palette"]
)
def test_a_file_at_its_own_size_goes_undecoded_with_its_headers_size(raw: bytes) -> None:
    ready, failures = decode_all(planned([raw]), MAX_PIXELS, files_suffice=True)
    assert failures == {}
    item = ready[0].adapter_input
    assert item is not None and item.image is None
    assert item.encoded is raw and item.size == (451, 300)
    # and what the adapter sends is that file, at that size
    assert file_and_size(item, "png", 95, "m") == (raw, (451, 300))


def test_without_files_suffice_every_image_is_decoded_as_before() -> None:
    ready, failures = decode_all(planned([JPEG, PNG]), MAX_PIXELS)
    assert failures == {}
    for x in ready:
        assert x.adapter_input is not None and x.adapter_input.image is not None
        assert x.adapter_input.image.shape == (300, 451, 3)


def test_images_the_adapter_would_re_encode_are_still_decoded() -> None:
    """WebP (not sent as it is), and a JPEG the budget shrinks (the re-encode of its decoded
    pixels is what keeps the server's input equal to the in-process model's)."""
    webp = as_file(CHELSEA, "WEBP", lossless=True)
    big = as_file(CHELSEA.resize((3000, 2000)), "JPEG", quality=90)
    ready, failures = decode_all(planned([webp, big]), MAX_PIXELS, files_suffice=True)
    assert failures == {}
    shapes = [
        x.adapter_input.image.shape for x in ready if x.adapter_input and x.adapter_input.image is not None
    ]
    assert shapes == [(300, 451, 3), (1365, 2048, 3)]


def truncations(raw: bytes, *tails: int) -> list[bytes]:
    """``raw`` cut inside its image data, and each of ``tails`` bytes short."""
    return [raw[:n] for n in (len(raw) // 3, len(raw) // 2, len(raw) - 200, *(len(raw) - t for t in tails))]


def damaged_png() -> bytes:
    raw = bytearray(PNG)
    (length,) = struct.unpack_from(">I", raw, 8)
    idat = raw.index(b"IDAT")
    raw[idat + 100] ^= 0xFF  # a byte of the image data: the chunk's CRC no longer matches
    assert length  # IHDR present
    return bytes(raw)


@pytest.mark.parametrize(
    "raw",
    [*truncations(JPEG, 2), *truncations(PROGRESSIVE, 2), *truncations(PNG), damaged_png()],
)
def test_a_damaged_file_fails_alone_as_undecodable_and_pillow_agrees(raw: bytes) -> None:
    # given a good file and a damaged one whose header still reads
    loaded = planned([JPEG, raw])
    # when handed to a files-reading model
    ready, failures = decode_all(loaded, MAX_PIXELS, files_suffice=True)
    # then the damaged one fails with its code, the good one goes on
    assert [x.doc.id for x in ready] == ["in0"]
    assert failures["in1"].code == "IMAGE_UNDECODABLE"
    # and the decoding way refuses it too: both ways fail the same inputs
    with pytest.raises(Exception):  # noqa: B017 - Pillow raises several types
        decode_image(raw, None, MAX_PIXELS)


def test_a_png_cut_after_its_image_data_is_whole_both_ways() -> None:
    """The decoder never reads past the image data: a PNG short of (part of) its IEND chunk
    decodes, so the file way accepts it too."""
    raw = PNG[:-2]
    ready, failures = decode_all(planned([raw]), MAX_PIXELS, files_suffice=True)
    assert failures == {} and ready[0].adapter_input is not None
    assert ready[0].adapter_input.encoded is raw
    assert decode_image(raw, None, MAX_PIXELS).shape == (300, 451, 3)


@pytest.mark.parametrize("raw", [JPEG, PROGRESSIVE, PNG, PALETTE_PNG, as_file(CHELSEA, "JPEG", exif=b"")])
def test_whole_files_have_no_problem(raw: bytes) -> None:
    assert file_problem(raw, Image.open(io.BytesIO(raw)).format or "") is None


def test_exif_orientation_is_ignored_both_ways() -> None:
    """A JPEG tagged 'rotate 90': the worker's decoder does not apply the tag, so the header's
    size the file way reports is the decoded image's size (boxes land the same)."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW
    raw = as_file(CHELSEA, "JPEG", quality=90, exif=exif.tobytes())
    (as_file_item,) = decode_all(planned([raw]), MAX_PIXELS, files_suffice=True)[0]
    (decoded,) = decode_all(planned([raw]), MAX_PIXELS)[0]
    assert as_file_item.adapter_input is not None and decoded.adapter_input is not None
    image = decoded.adapter_input.image
    assert image is not None
    assert as_file_item.adapter_input.size == (image.shape[1], image.shape[0]) == (451, 300)


def test_an_input_without_file_or_image_is_refused_by_the_adapter() -> None:
    with pytest.raises(ValueError, match="no image"):
        file_and_size(AdapterInput(encoded=JPEG), "png", 95, "m")  # a file without its size
    img = np.zeros((4, 5, 3), np.uint8)
    sent, size = file_and_size(AdapterInput(image=img), "png", 95, "m")
    assert size == (5, 4) and sent.startswith(b"\x89PNG")


def model(adapter: str, kind: str = "CLASSIFIER", **config: Any) -> RunModel:
    return RunModel(adapter, kind, adapter, config, False, {})


def test_files_suffice_only_when_every_image_model_reads_files() -> None:
    files = model(
        "kserve-v2",
        url="http://127.0.0.1:9",
        model_name="m",
        preprocess="efficientnet_lite0",
        input={"format": "encoded_image"},
    )
    tensors = model("kserve-v2", url="http://127.0.0.1:9", model_name="m", preprocess="efficientnet_lite0")
    builtin = model("general-image-classifier")
    text = model("text-sentiment", "TEXT_CLASSIFIER")
    assert files_suffice([files])
    assert files_suffice([files, text])  # text models read no images
    assert not files_suffice([files, builtin])
    assert not files_suffice([tensors])
    assert not files_suffice([text])
