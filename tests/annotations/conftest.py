"""Annotation tests that run labeling tasks through a real arq worker (the engine's ``drain``)."""

from tests.tasks_engine.conftest import drain

__all__ = ["drain"]
