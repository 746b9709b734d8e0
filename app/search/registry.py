"""The indexes a process holds: one per (app, embedding model, kind), kept current from
MongoDB.

MongoDB is the system of record; an index is derived state. Before each search the index
catches up: it reads the vectors and tombstones whose ``rev`` is at or after its watermark
(less a margin, so a writer that drew its rev earlier but committed later is not missed; a
vector already applied at the same rev is skipped). Every API replica therefore answers from
the same data, whichever process wrote it, and a lost event cannot leave one stale; the
``search`` pub/sub event only tells other replicas to drop an index that was rebuilt.

An index is saved under ``<data dir>/search/`` after a rebuild and every ``SAVE_EVERY``
applied changes; a process that starts loads the file and catches up from its watermark, or
rebuilds from MongoDB when there is no file (or it does not load).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from app.search import store
from app.search.index import FaissIndex
from app.search.models import RefKind

log = logging.getLogger("labelstream.search")

MARGIN_S = 10.0
SAVE_EVERY = 2000


@dataclass
class LiveIndex:
    app_id: str
    model: str
    kind: RefKind
    dim: int
    index: FaissIndex
    path: Path
    watermark: str = ""
    applied: dict[str, str] = field(default_factory=dict)  # ref_id -> rev applied
    unsaved: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def catch_up(self) -> int:
        docs = await store.changed_since(
            self.app_id, self.model, self.kind, store.rev_floor(self.watermark, MARGIN_S), self.dim
        )
        fresh = [d for d in docs if self.applied.get(d["ref_id"]) != d["rev"]]
        if not fresh:
            return 0
        last: dict[str, dict] = {}
        for d in fresh:
            last[d["ref_id"]] = d  # oldest first: the newest state of each wins
        gone = [r for r, d in last.items() if d.get("deleted") or d.get("vector") is None]
        live = [d for d in last.values() if not (d.get("deleted") or d.get("vector") is None)]
        live = [d for d in live if int(d.get("dim") or 0) == self.dim]
        await asyncio.to_thread(self._apply, gone, live)
        for d in fresh:
            self.applied[d["ref_id"]] = d["rev"]
            self.watermark = max(self.watermark, d["rev"])
        self.unsaved += len(fresh)
        if self.unsaved >= SAVE_EVERY:
            await asyncio.to_thread(self.save)
        return len(fresh)

    def _apply(self, gone: list[str], live: list[dict]) -> None:
        self.index.remove(gone)
        if live:
            self.index.add([d["ref_id"] for d in live], store.decode_docs(live, self.dim))

    def save(self) -> None:
        try:
            self.index.save(self.path)
            self.path.with_name(self.path.name + ".rev").write_text(self.watermark)
            self.unsaved = 0
        except OSError:
            log.warning("could not save search index %s", self.path, exc_info=True)


class Registry:
    """Per-process indexes; ``get`` returns one caught up with MongoDB."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._items: dict[tuple[str, str, RefKind], LiveIndex] = {}
        self._lock = asyncio.Lock()

    def path(self, app_id: str, model: str, kind: RefKind) -> Path:
        safe = model.replace("@", "-v").replace("/", "_")
        return self.root / app_id / f"{safe}-{kind.value.lower()}.faiss"

    async def get(self, app_id: str, model: str, kind: RefKind, dim: int) -> LiveIndex:
        key = (app_id, model, kind)
        async with self._lock:
            live = self._items.get(key)
            if live is None:
                live = await asyncio.to_thread(self._open, app_id, model, kind, dim)
                self._items[key] = live
        async with live.lock:
            await live.catch_up()
        return live

    def _open(self, app_id: str, model: str, kind: RefKind, dim: int) -> LiveIndex:
        path = self.path(app_id, model, kind)
        rev_file = path.with_name(path.name + ".rev")
        if path.exists() and rev_file.exists():
            try:
                index = FaissIndex.load(path, dim)
                return LiveIndex(
                    app_id, model, kind, dim, index, path, watermark=rev_file.read_text().strip()
                )
            except (OSError, ValueError, RuntimeError):
                log.warning("search index %s does not load; rebuilding it", path, exc_info=True)
        return LiveIndex(app_id, model, kind, dim, FaissIndex(dim), path)

    async def rebuild(self, app_id: str, model: str, kind: RefKind, dim: int) -> int:
        """Drop the index and build it again from MongoDB; returns its size."""
        key = (app_id, model, kind)
        async with self._lock:
            old = self._items.pop(key, None)
            live = LiveIndex(app_id, model, kind, dim, FaissIndex(dim), self.path(app_id, model, kind))
            self._items[key] = live
        del old
        async with live.lock:
            await live.catch_up()
            await asyncio.to_thread(live.save)
        return len(live.index)

    def forget(self, app_id: str) -> None:
        for key in [k for k in self._items if k[0] == app_id]:
            del self._items[key]
