"""The one writer and reader of stored embeddings (``app.search.models.Embedding``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymongo import UpdateOne

from app.core.db import any_of, sorted_chunks
from app.core.documents import utcnow
from app.core.ids import new_id
from app.search import codec
from app.search.models import Embedding, RefKind

CHUNK = 1000


def doc_id(app_id: str, model: str, kind: RefKind, ref_id: str) -> str:
    return f"{app_id}:{model}:{kind.value}:{ref_id}"


def _coll() -> Any:
    return Embedding.get_pymongo_collection()


@dataclass(frozen=True)
class Vector:
    app_id: str
    model: str
    kind: RefKind
    ref_id: str
    input_id: str
    source: str
    vector: np.ndarray


async def put(vectors: Sequence[Vector]) -> None:
    """Insert or replace vectors (each with a fresh ``rev``)."""
    ops = []
    for v in vectors:
        data, scale = codec.encode(v.vector)
        fields = {
            "app_id": v.app_id,
            "model": v.model,
            "kind": v.kind.value,
            "ref_id": v.ref_id,
            "input_id": v.input_id,
            "vector": data,
            "scale": scale,
            "dim": int(v.vector.shape[0]),
            "source": v.source,
            "deleted": False,
            "rev": new_id(),
        }
        ops.append(
            UpdateOne(
                {"_id": doc_id(v.app_id, v.model, v.kind, v.ref_id)},
                {
                    "$set": fields,
                    "$setOnInsert": {"created_at": utcnow()},
                    "$currentDate": {"updated_at": True},
                },
                upsert=True,
            )
        )
    for k in range(0, len(ops), CHUNK):
        await _coll().bulk_write(ops[k : k + CHUNK], ordered=False)


async def tombstone(kind: RefKind, ref_ids: Sequence[str]) -> int:
    """Vectors of removed annotations or inputs (any model) become tombstones."""
    n = 0
    for chunk in sorted_chunks(ref_ids, CHUNK):
        res = await _coll().update_many(
            {"ref_id": any_of(chunk), "kind": kind.value, "deleted": False},
            {"$set": {"deleted": True, "vector": None, "source": "", "rev": new_id()}},
        )
        n += res.modified_count
    return n


async def sources(app_id: str, model: str, kind: RefKind, ref_ids: Sequence[str]) -> dict[str, str]:
    """What each live vector was made from (``{ref_id: source}``)."""
    ids = [doc_id(app_id, model, kind, r) for r in ref_ids]
    docs = await _coll().find({"_id": {"$in": ids}, "deleted": False}, {"ref_id": 1, "source": 1}).to_list()
    return {d["ref_id"]: d["source"] for d in docs}


async def get_vector(app_id: str, model: str, kind: RefKind, ref_id: str) -> np.ndarray | None:
    doc = await _coll().find_one({"_id": doc_id(app_id, model, kind, ref_id), "deleted": False})
    if doc is None or doc.get("vector") is None:
        return None
    return codec.decode_many([(bytes(doc["vector"]), float(doc["scale"]))], int(doc["dim"]))[0]


def rev_floor(rev: str, margin_s: float) -> str:
    """A rev ``margin_s`` seconds before ``rev``: writers that drew their rev earlier but
    committed later are still read by a catch-up from here."""
    if not rev:
        return ""
    ms = int(rev[:12], 16) - int(margin_s * 1000)
    return f"{max(ms, 0):012x}"


def now_rev() -> str:
    return f"{time.time_ns() // 1_000_000:012x}"


async def changed_since(app_id: str, model: str, kind: RefKind, rev: str, dim: int) -> list[dict[str, Any]]:
    """Every vector or tombstone with ``rev >= rev``, oldest first, vectors decoded."""
    query: dict[str, Any] = {"app_id": app_id, "model": model, "kind": kind.value}
    if rev:
        query["rev"] = {"$gte": rev}
    docs: list[dict[str, Any]] = (
        await _coll()
        .find(query, {"ref_id": 1, "vector": 1, "scale": 1, "deleted": 1, "rev": 1, "dim": 1})
        .sort("rev", 1)
        .to_list()
    )
    return docs


def decode_docs(docs: Sequence[dict[str, Any]], dim: int) -> np.ndarray:
    return codec.decode_many([(bytes(d["vector"]), float(d["scale"])) for d in docs], dim)
