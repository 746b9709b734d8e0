"""A PyMongo command listener that records which code writes the annotations collection.

Registered globally before any client exists (``tests/conftest.py``). A write command
(insert, update, delete, findAndModify) on ``annotations`` whose Python stack contains a frame of
``app/`` but none of ``app/annotations/store.py`` is a violation of the one-writer rule; the
autouse fixture fails the test that caused it. Test code itself (set-up, clean-up) may write.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from pymongo import monitoring

APP = str(Path(__file__).resolve().parents[1] / "app") + "/"
STORE = APP + "annotations/store.py"
WRITES = {"insert", "update", "delete", "findAndModify"}


class AnnotationWriters(monitoring.CommandListener):
    def __init__(self) -> None:
        self.violations: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in WRITES or event.command.get(event.command_name) != "annotations":
            return
        files = [f.filename for f in traceback.extract_stack()]
        if any(f == STORE for f in files):
            return
        app_frames = [f for f in traceback.extract_stack() if f.filename.startswith(APP)]
        if app_frames:
            where = f"{app_frames[-1].filename}:{app_frames[-1].lineno}"
            self.violations.append(f"{event.command_name} on annotations from {where}")

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


WATCH = AnnotationWriters()
monitoring.register(WATCH)
