"""Logs: one JSON object per line (or plain text), with the request id or job id in effect.

``log_format`` (setting ``LABELSTREAM_LOG_FORMAT``): ``json``, ``text``, or ``auto`` (the
default): text when standard error is a terminal (a person reading), JSON otherwise (a container
or a service manager collecting lines). A JSON line carries ``time``, ``level``, ``logger``,
``message``, ``request_id`` / ``job_id`` when one is in effect, and ``exc_info`` for a traceback.

The ids live in context variables: the HTTP middleware (``app.observability.routes``) sets the
request id for everything a request does, the worker (``app.worker``) the job id for everything
a job does, so every log line written meanwhile carries it without being passed around.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import secrets
import sys
from datetime import UTC, datetime
from typing import Literal

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)

_ID_PREFIX = secrets.token_hex(4)
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """16 hex digits, unique: a random prefix per process and a counter (no system call per
    request, unlike ``uuid4``)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFF:08x}"


LogFormat = Literal["auto", "json", "text"]
_MARK = "_labelstream_handler"


class ContextFilter(logging.Filter):
    """Puts the request id and job id in effect on every record (``%(request_id)s`` in text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.job_id = job_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("request_id", "job_id"):
            value = getattr(record, name, None)
            if value:
                out[name] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [f"{n}={v}" for n in ("request_id", "job_id") if (v := getattr(record, n, None))]
        return f"{line} [{' '.join(ids)}]" if ids else line


def use_json(fmt: LogFormat) -> bool:
    if fmt == "auto":
        return not sys.stderr.isatty()
    return fmt == "json"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (a test runner may swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def unconfigured() -> bool:
    """Nobody set up logging in this process yet (a test runner, an embedding application)."""
    return all(getattr(h, _MARK, False) for h in logging.getLogger().handlers)


def configure(fmt: LogFormat, level: int = logging.INFO) -> None:
    """One handler on the root logger, in the chosen format, instead of ``basicConfig``'s;
    uvicorn's and arq's loggers write through it too (their own handlers are removed). Calling
    it again replaces the handler; handlers others added (a test runner's) are left alone."""
    handler = _StderrHandler()
    handler.addFilter(ContextFilter())
    if use_json(fmt):
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if type(old) is logging.StreamHandler or getattr(old, _MARK, False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "arq.worker", "arq.jobs"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
