"""The bytes of uploaded models, handed from the worker's async side to the sync adapters.

An ``onnx`` adapter names its file by content hash (``blob_key``) and loads it lazily inside a
worker thread, where the (async) blob store cannot be read. The worker therefore fetches the
bytes first (``app.tasks.run.predict``) and ``provide``s them here; the adapter ``get``s them
when it builds its session. A few files are kept (least recently provided go first): an adapter
evicted from the adapter cache is rebuilt from here, or the worker provides the bytes again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

KEEP = 4

_files: OrderedDict[str, bytes] = OrderedDict()
_lock = threading.Lock()


class ModelFileMissing(LookupError):
    """The worker did not provide the model's bytes (its blob is gone from the store)."""


def has(key: str) -> bool:
    with _lock:
        return key in _files


def provide(key: str, data: bytes) -> None:
    """Keep ``data`` as the file ``key``; refuses bytes whose SHA-256 is not ``key``."""
    if hashlib.sha256(data).hexdigest() != key:
        raise ValueError(f"model file {key[:12]}... does not match its content hash")
    with _lock:
        _files[key] = data
        _files.move_to_end(key)
        while len(_files) > KEEP:
            _files.popitem(last=False)


def get(key: str) -> bytes:
    with _lock:
        data = _files.get(key)
    if data is None:
        raise ModelFileMissing(f"model file {key[:12]}... is not available to this worker")
    return data


def clear() -> None:
    with _lock:
        _files.clear()
