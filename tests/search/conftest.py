"""Search tests embed through a real arq worker (the engine's ``drain`` fixture), with
embedding on annotation changes turned on (the rest of the suite runs without that cost)."""

from collections.abc import Iterator

import pytest

from app.settings import Settings
from tests.tasks_engine.conftest import drain

__all__ = ["drain"]


@pytest.fixture(autouse=True)
def embed_on_change(settings: Settings) -> Iterator[None]:
    before = settings.search_embed_on_change
    settings.search_embed_on_change = True
    yield
    settings.search_embed_on_change = before
