"""What remote adapters share: a pooled client, the address rule from the settings, and
sending a batch as several requests in parallel."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..base import ModelAdapter
from .client import ServerClient
from .config import RemoteConfig
from .errors import PartialFailure, ServerFailure

T = TypeVar("T")
R = TypeVar("R")


class RemoteAdapter(ModelAdapter):
    """An adapter whose model runs on a server. ``bind_network(allow_private)`` sets the address
    rule from the worker's settings before each use (default: public addresses only)."""

    options: RemoteConfig

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.client = ServerClient(self.options, self.limit_key())

    def limit_key(self) -> str:
        """What one concurrency limit covers: the server (subclasses add the model)."""
        return self.options.url

    def bind_network(self, allow_private: bool) -> None:
        if self.client.allow_private != allow_private:
            self.client.allow_private = allow_private
            self.client.recheck()

    def in_chunks(self, items: Sequence[T], size: int, run: Callable[[Sequence[T]], list[R]]) -> list[R]:
        """``run`` over consecutive chunks of ``size`` items, up to ``max_concurrency`` chunks at
        once, results concatenated in order. When every chunk failed, the first failure is
        raised; when only some did, ``PartialFailure`` keeps the others' results."""
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        if len(chunks) <= 1:
            return run(chunks[0]) if chunks else []

        def attempt(chunk: Sequence[T]) -> list[R] | ServerFailure:
            try:
                return run(chunk)
            except ServerFailure as exc:
                return exc

        with ThreadPoolExecutor(min(self.options.max_concurrency, len(chunks))) as pool:
            parts = list(pool.map(attempt, chunks))
        failed = [p for p in parts if isinstance(p, ServerFailure)]
        if len(failed) == len(parts):
            raise failed[0]
        results: list[R | None] = []
        failures: list[ServerFailure | None] = []
        for chunk, part in zip(chunks, parts, strict=True):
            if isinstance(part, ServerFailure):
                results.extend([None] * len(chunk))
                failures.extend([part] * len(chunk))
            else:
                results.extend(part)
                failures.extend([None] * len(part))
        if failed:
            raise PartialFailure(results, failures)
        return [r for r in results if r is not None]
