"""Uploaded ONNX models: reading the file (multipart part or URL), checking it, storing a version.

Invariants:
* Nothing is stored for a refused file: the check (``adapters.onnx_check``, in a thread) runs
  before the blob is written, and a failed insert undoes the blob and its pin.
* A version's blob is pinned (owner ``model-version:<id>``) *before* the blob is put and before
  any document names it, so a concurrent input deletion never takes it; it is unpinned and
  deleted only after the version's document is gone.
* Version numbers come from an ``$inc`` on the model (``version_count``), so two uploads to one
  model never share a number; the unique (model, number) index backs that on every engine.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from pymongo.errors import DuplicateKeyError

from app.blob_refs import release_unused
from app.core import blob_pins
from app.core.blobs import BlobStore
from app.core.errors import ErrorCode, ValidationFailed
from app.models.adapters.onnx_check import Checked, check_onnx
from app.models.models import ModelConceptEntry, ModelEntry, ModelVersion
from app.settings import Settings
from app.tasks.fetch import MAX_REDIRECTS, FetchFailed, _check_host

MAX_URL = 2048
NUMBER_ATTEMPTS = 5


@dataclass(frozen=True)
class ModelFile:
    """Where an uploaded model comes from: a multipart part (``read(size)``) or an http(s) URL."""

    file: object | None = None
    url: str | None = None


@dataclass(frozen=True)
class Prepared:
    data: bytes
    checked: Checked
    concepts: list[ModelConceptEntry]
    source_url: str | None


def given(source: ModelFile) -> bool:
    return source.file is not None or source.url is not None


async def read_bytes(source: ModelFile, settings: Settings) -> bytes:
    """The file's bytes, at most ``max_model_bytes`` (``TOO_LARGE`` otherwise)."""
    limit = settings.max_model_bytes
    if source.file is not None and source.url is not None:
        raise ValidationFailed("give either file or url, not both", field="url")
    if source.file is not None:
        read = getattr(source.file, "read", None)
        if read is None:
            raise ValidationFailed("file must be a part of a GraphQL multipart request", field="file")
        data = bytes(await read(limit + 1))
    elif source.url is not None:
        data = await fetch_model(source.url, settings)
    else:
        raise ValidationFailed("an ONNX model needs its file (or url)", field="file", code=ErrorCode.REQUIRED)
    if len(data) > limit:
        raise ValidationFailed(
            f"the model file is larger than {limit} bytes", field="file", code=ErrorCode.TOO_LARGE
        )
    if not data:
        raise ValidationFailed("the model file is empty", field="file", code=ErrorCode.EMPTY)
    return data


async def fetch_model(url: str, settings: Settings) -> bytes:
    """GET ``url`` under the rules of image URLs (http/https, public addresses unless private
    networks are allowed, bounded redirects, time and size)."""
    if len(url) > MAX_URL:
        raise ValidationFailed("url is too long", field="url", code=ErrorCode.TOO_LONG)
    limit = settings.max_model_bytes
    timeout = httpx.Timeout(settings.fetch_timeout_s, connect=min(5.0, settings.fetch_timeout_s))
    data = bytearray()
    try:
        async with asyncio.timeout(settings.fetch_timeout_s * 4):
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
                current = url
                for _ in range(MAX_REDIRECTS + 1):
                    await _check_host(current, settings.fetch_allow_private_networks)
                    async with client.stream("GET", current) as response:
                        if response.is_redirect and "location" in response.headers:
                            current = str(response.url.join(response.headers["location"]))
                            continue
                        if response.status_code != 200:
                            raise FetchFailed(
                                "FETCH_FAILED", f"the server answered HTTP {response.status_code}"
                            )
                        async for chunk in response.aiter_bytes():
                            data.extend(chunk)
                            if len(data) > limit:
                                raise ValidationFailed(
                                    f"the model file is larger than {limit} bytes",
                                    field="url",
                                    code=ErrorCode.TOO_LARGE,
                                )
                        break
                else:
                    raise FetchFailed("FETCH_FAILED", "too many redirects")
    except FetchFailed as exc:
        raise ValidationFailed(
            f"cannot fetch the model: {exc.message}", field="url", code=ErrorCode.INVALID_URL
        ) from None
    except TimeoutError:
        raise ValidationFailed(
            "fetching the model took too long", field="url", code=ErrorCode.INVALID_URL
        ) from None
    except httpx.HTTPError as exc:
        raise ValidationFailed(
            f"cannot fetch the model: {type(exc).__name__}", field="url", code=ErrorCode.INVALID_URL
        ) from None
    return bytes(data)


async def prepare(
    source: ModelFile,
    settings: Settings,
    kind: str,
    config: Any,
    concepts: Sequence[ModelConceptEntry],
    fallback: Sequence[ModelConceptEntry] = (),
) -> Prepared:
    """Read and check the file (off the event loop); concepts from the request win over the
    file's ``names`` metadata, which wins over ``fallback``. Raises the typed refusal; stores
    nothing."""
    data = await read_bytes(source, settings)
    given_concepts = [(c.id, c.name) for c in concepts]
    kept = [(c.id, c.name) for c in fallback]
    checked = await asyncio.to_thread(check_onnx, data, str(kind), config, given_concepts, kept)
    entries = [ModelConceptEntry(id=cid, name=name) for cid, name in checked.concepts]
    return Prepared(data, checked, entries, source.url)


async def store_version(
    blobs: BlobStore,
    model: ModelEntry,
    prepared: Prepared,
    concepts: list[ModelConceptEntry],
    user_id: str | None,
) -> ModelVersion:
    """Store the file and a new version of ``model`` (the model document itself is the
    caller's); on any failure the blob and pin are undone."""
    key = hashlib.sha256(prepared.data).hexdigest()
    version = ModelVersion(
        app_id=model.app_id,
        model_id=model.id,
        number=0,
        blob_key=key,
        size_bytes=len(prepared.data),
        layout=prepared.checked.layout,
        config=prepared.checked.config,
        concepts=concepts,
        source_url=prepared.source_url,
        created_by=user_id,
    )
    await blob_pins.pin(version.pin_owner, [key])
    try:
        await blobs.put(prepared.data)
        for attempt in range(NUMBER_ATTEMPTS):
            counted = await ModelEntry.get_pymongo_collection().find_one_and_update(
                {"_id": model.id}, {"$inc": {"version_count": 1}}, return_document=True
            )
            version.number = int(counted["version_count"]) if counted else model.version_count + 1
            try:
                await version.insert()
                break
            except DuplicateKeyError:  # an engine whose findAndModify is not atomic gave it twice
                if attempt == NUMBER_ATTEMPTS - 1:
                    raise
    except BaseException:
        await release(blobs, version)
        raise
    return version


async def release(blobs: BlobStore, version: ModelVersion) -> None:
    """Unpin a version's file and delete it when nothing else keeps or names it."""
    async for _ in blob_pins.unpin(version.pin_owner):
        pass
    await release_unused(blobs, [version.blob_key])
