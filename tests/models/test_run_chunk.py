"""A batch run in chunks (``LABELSTREAM_ONNX_RUN_CHUNK``) gives what one run of the whole batch
gives: the built-in classifier's labels and search vectors do not depend on the chunk size."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from skimage import data

from app.models.adapters import ImageClassifierAdapter, get_adapter
from app.models.adapters.base import RUNTIME_OPTIONS, AdapterInput


@pytest.fixture
def chunk() -> Iterator[None]:
    before = RUNTIME_OPTIONS["run_chunk"]
    yield
    RUNTIME_OPTIONS["run_chunk"] = before


def _images() -> list[np.ndarray]:
    photos = [data.chelsea(), data.astronaut(), data.coffee(), data.rocket()]
    return [np.ascontiguousarray(photos[k % 4][k * 3 :, k * 5 :]) for k in range(11)]


@pytest.mark.usefixtures("chunk")
@pytest.mark.parametrize("size", [1, 3, 8, 64])
def test_a_chunked_run_gives_the_whole_batchs_outputs(size: int) -> None:
    adapter = get_adapter("general-image-classifier")
    assert isinstance(adapter, ImageClassifierAdapter)
    adapter.ensure_loaded()
    x = np.stack([adapter.preprocess(img) for img in _images()])
    RUNTIME_OPTIONS["run_chunk"] = 0
    whole = adapter._session.run_chunked(["logits", "features"], {"input": x})
    RUNTIME_OPTIONS["run_chunk"] = size
    chunked = adapter._session.run_chunked(["logits", "features"], {"input": x})
    assert [a.shape for a in chunked] == [a.shape for a in whole] == [(11, 1000), (11, 1280)]
    for a, b in zip(chunked, whole, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.usefixtures("chunk")
def test_labels_do_not_depend_on_the_chunk_size() -> None:
    adapter = get_adapter("general-image-classifier")
    batch = [AdapterInput(image=img) for img in _images()]
    RUNTIME_OPTIONS["run_chunk"] = 0
    whole = adapter.predict(batch)
    RUNTIME_OPTIONS["run_chunk"] = 4
    chunked = adapter.predict(batch)
    assert [[p.concept for p in row] for row in chunked] == [[p.concept for p in row] for row in whole]
    for row_a, row_b in zip(chunked, whole, strict=True):
        np.testing.assert_allclose([p.confidence for p in row_a], [p.confidence for p in row_b], atol=1e-5)
