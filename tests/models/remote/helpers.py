"""Sample images and a comparison of predictions within float tolerance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from skimage import data as samples

from app.models.adapters import AdapterInput, Box, Prediction, get_adapter
from app.models.adapters.remote import RemoteAdapter

TOLERANCE = 1e-4


def sample_images() -> list[AdapterInput]:
    images = [samples.chelsea(), samples.coffee(), samples.astronaut(), samples.rocket()]
    images.append(samples.stereo_motorcycle()[0])
    return [AdapterInput(image=np.ascontiguousarray(i[..., :3])) for i in images]


def remote(name: str, config: Mapping[str, Any], allow_private: bool = True) -> RemoteAdapter:
    adapter = get_adapter(name, config)
    assert isinstance(adapter, RemoteAdapter)
    adapter.bind_network(allow_private)
    return adapter


def assert_same(got: Sequence[Sequence[Prediction]], want: Sequence[Sequence[Prediction]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert [p.concept for p in g] == [p.concept for p in w]
        for a, b in zip(g, w, strict=True):
            assert abs(a.confidence - b.confidence) < TOLERANCE
            if isinstance(b.region, Box):
                assert isinstance(a.region, Box)
                ra, rb = a.region, b.region
                assert np.allclose(
                    [ra.top, ra.left, ra.bottom, ra.right],
                    [rb.top, rb.left, rb.bottom, rb.right],
                    atol=TOLERANCE,
                )
            else:
                assert a.region == b.region
