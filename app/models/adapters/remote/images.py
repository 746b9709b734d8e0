"""Images as files, for servers that decode them themselves (``kserve-v2`` with
``input.format: encoded_image``).

Invariant: the bytes sent decode to the very pixels the in-process model would see. The input's
original file is sent as it is only when it is a JPEG or PNG that the worker decoded at its own
size (Pillow then gives the server the same RGB array); otherwise (an image the worker shrank to
its decode budget, WebP, GIF, TIFF, no original at all) the decoded array is re-encoded,
losslessly as PNG unless the config asks for JPEG. In that first case the worker need not
decode at all (``ModelAdapter.wants_encoded``): it hands over the file and its header's size
(``AdapterInput.size``), and ``file_and_size`` sends the file as it is.
"""

from __future__ import annotations

import io

import numpy as np

from ..base import AdapterInput, check_image

SENT_AS_IS = frozenset({"JPEG", "PNG"})


def same_picture(raw: bytes, img: np.ndarray) -> bool:
    """Whether ``raw`` is a JPEG or PNG file of ``img``'s size (reads the header only)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as header:
            return header.format in SENT_AS_IS and header.size == (img.shape[1], img.shape[0])
    except (UnidentifiedImageError, OSError, ValueError):
        return False


def encode(img: np.ndarray, fmt: str, quality: int) -> bytes:
    """``img`` (RGB) as a PNG (fast compression) or JPEG file."""
    import cv2

    bgr = np.ascontiguousarray(img[..., ::-1])
    if fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    else:
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"cannot encode the image as {fmt}")
    return bytes(buf.tobytes())


def image_file(item: AdapterInput, img: np.ndarray, reencode: str, quality: int) -> bytes:
    """What to send for one input: its original file when that decodes to ``img``, else
    ``img`` encoded as ``reencode``."""
    if item.encoded is not None and same_picture(item.encoded, img):
        return item.encoded
    return encode(img, reencode, quality)


def file_and_size(
    item: AdapterInput, reencode: str, quality: int, model: str
) -> tuple[bytes, tuple[int, int]]:
    """What to send for one input and its (width, height): an undecoded file with its size
    as the worker read it from the header, else ``image_file`` of its checked image."""
    if item.image is None and item.encoded is not None and item.size is not None:
        width, height = item.size
        if width < 1 or height < 1:
            raise ValueError(f"{model}: image is empty {item.size}")
        return item.encoded, (width, height)
    img = check_image(item, model)
    return image_file(item, img, reencode, quality), (img.shape[1], img.shape[0])
