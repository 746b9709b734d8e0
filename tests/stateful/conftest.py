"""The stateful review test runs tasks through a real arq worker (``drain``) and reads the live
subscriptions from the session app served by uvicorn (``ws_url``)."""

from tests.live.conftest import ws_url
from tests.tasks_engine.conftest import drain

__all__ = ["drain", "ws_url"]
