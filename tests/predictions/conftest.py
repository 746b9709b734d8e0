"""Import tests run model tasks through a real arq worker (the engine's ``drain`` fixture)."""

from tests.tasks_engine.conftest import drain

__all__ = ["drain"]
