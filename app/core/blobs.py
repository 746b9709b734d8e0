"""Blob store for image bytes behind a small interface.

The default keeps each blob in a local content-addressed folder (``ab/cdef...`` by SHA-256), so
the same image uploaded twice is stored once and a key never changes meaning. Another backend
(S3, GCS) implements the same methods.

Deleting goes in two steps so that a concurrent upload of the same bytes cannot lose them
(``app.blob_refs``): ``retire`` moves the blob aside under a one-time token, then the caller
either ``restore``s it (something named the key meanwhile) or ``purge``s it. An uploader, once
the documents naming the key are written, calls ``ensure``: the bytes are stored again if a
release took them meanwhile.

A process that dies between the two steps leaves the blob retired. Retired blobs and the
temporary files of unfinished writes live in two folders of their own (``.retired``, ``.tmp``),
so finding the ones left behind (``stale_retired``, ``drop_stale_temporaries``) reads those
folders, not the whole store; ``app.blob_refs.recover_retired`` decides for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Protocol


def blob_key(data: bytes) -> str:
    """The key ``put`` stores ``data`` under (its SHA-256, hex)."""
    return hashlib.sha256(data).hexdigest()


def _is_key(key: str) -> bool:
    return len(key) == 64 and all(c in "0123456789abcdef" for c in key)


class BlobStore(Protocol):
    async def put(self, data: bytes) -> str: ...
    async def get(self, key: str) -> bytes | None: ...
    async def ensure(self, key: str, data: bytes) -> None: ...
    async def retire(self, key: str) -> str | None: ...
    async def restore(self, key: str, token: str) -> None: ...
    async def purge(self, key: str, token: str) -> None: ...
    async def stale_retired(self, older_than_s: float) -> list[tuple[str, str]]: ...
    async def drop_stale_temporaries(self, older_than_s: float) -> int: ...
    def stored(self, older_than_s: float) -> AsyncIterator[list[str]]: ...


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._retired_dir = root / ".retired"
        self._tmp_dir = root / ".tmp"

    def _path(self, key: str) -> Path:
        if not _is_key(key):
            raise ValueError("invalid blob key")
        return self.root / key[:2] / key[2:]

    def _put_sync(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp_dir.mkdir(exist_ok=True)
        # write-then-rename: a crash never leaves a half-written blob under its final name
        fd, tmp = tempfile.mkstemp(dir=self._tmp_dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def put(self, data: bytes) -> str:
        key = blob_key(data)
        await asyncio.to_thread(self._put_sync, key, data)
        return key

    async def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def ensure(self, key: str, data: bytes) -> None:
        """Store ``data`` (whose key is ``key``) again unless the blob is there."""
        if not self._path(key).exists():
            await asyncio.to_thread(self._put_sync, key, data)

    def _retired(self, key: str, token: str) -> Path:
        self._path(key)  # validates the key
        return self._retired_dir / f"{token}-{key}"

    async def retire(self, key: str) -> str | None:
        """Move the blob aside (an atomic rename); its token, or None when there is none.
        The token starts with the time it was retired (``stale_retired``)."""
        token = f"{int(time.time())}.{secrets.token_hex(8)}"
        self._retired_dir.mkdir(exist_ok=True)
        try:
            os.rename(self._path(key), self._retired(key, token))
        except FileNotFoundError:
            return None
        return token

    async def restore(self, key: str, token: str) -> None:
        """Put a retired blob back (over an equal copy written meanwhile, if any)."""
        with contextlib.suppress(FileNotFoundError):
            os.replace(self._retired(key, token), self._path(key))

    async def purge(self, key: str, token: str) -> None:
        self._retired(key, token).unlink(missing_ok=True)

    @staticmethod
    def _entries(folder: Path) -> Iterator[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as it:
                yield from it
        except FileNotFoundError:
            return

    async def stale_retired(self, older_than_s: float) -> list[tuple[str, str]]:
        """``(key, token)`` of every blob retired more than ``older_than_s`` ago and not yet
        restored or purged: its release died, or is very slow."""
        cutoff = time.time() - older_than_s
        out = []
        for entry in self._entries(self._retired_dir):
            token, _, key = entry.name.rpartition("-")
            retired_at, _, _ = token.partition(".")
            if retired_at.isdigit() and int(retired_at) <= cutoff and _is_key(key):
                out.append((key, token))
        return out

    async def drop_stale_temporaries(self, older_than_s: float) -> int:
        """Delete the temporary files of writes that died more than ``older_than_s`` ago."""
        cutoff = time.time() - older_than_s
        dropped = 0
        for entry in self._entries(self._tmp_dir):
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime <= cutoff:
                    os.unlink(entry.path)
                    dropped += 1
        return dropped

    def _key_folders(self) -> list[tuple[str, str]]:
        """``(prefix, path)`` of every key folder (``ab/`` holds the keys starting ``ab``)."""
        hexdigits = set("0123456789abcdef")
        return sorted(
            (e.name, e.path)
            for e in self._entries(self.root)
            if len(e.name) == 2 and set(e.name) <= hexdigits and e.is_dir()
        )

    async def adopt_legacy(self, retired_before_s: float, written_before_s: float) -> int:
        """Move what the previous layout left in key folders to this one's folders: a blob
        retired (``.retired-<token>-<rest of key>``) more than ``retired_before_s`` ago joins
        ``.retired``, dated long ago so ``stale_retired`` reports it at once; a temporary file
        (``.tmp-*``) last written more than ``written_before_s`` ago joins ``.tmp`` with its
        time. Younger ones may belong to a process of the previous version still at work.
        Returns how many moved. Reads every key folder: ``labelstream blobs gc`` calls it, not
        the workers' loop."""
        now = time.time()

        def folder(path: str, prefix: str) -> int:
            moved = 0
            for entry in self._entries(Path(path)):
                name = entry.name
                with contextlib.suppress(FileNotFoundError):
                    if name.startswith(".retired-"):
                        token, _, rest = name.removeprefix(".retired-").rpartition("-")
                        # a rename sets the inode's change time: when it was retired
                        if (
                            not (token and _is_key(prefix + rest))
                            or entry.stat().st_ctime > now - retired_before_s
                        ):
                            continue
                        target = self._retired(prefix + rest, f"0.{token}")
                    elif name.startswith(".tmp-"):
                        if entry.stat().st_mtime > now - written_before_s:
                            continue
                        target = self._tmp_dir / name
                    else:
                        continue
                    target.parent.mkdir(exist_ok=True)
                    os.rename(entry.path, target)
                    moved += 1
            return moved

        moved = 0
        for prefix, path in self._key_folders():
            moved += await asyncio.to_thread(folder, path, prefix)
        return moved

    async def stored(self, older_than_s: float) -> AsyncIterator[list[str]]:
        """Every key stored more than ``older_than_s`` ago, one sorted list per key folder (a
        256th of the store each), so a scan of a large store never holds every key at once."""
        cutoff = time.time() - older_than_s

        def folder(path: str, prefix: str) -> list[str]:
            keys = []
            for entry in self._entries(Path(path)):
                key = prefix + entry.name
                with contextlib.suppress(FileNotFoundError):
                    if _is_key(key) and entry.is_file() and entry.stat().st_mtime <= cutoff:
                        keys.append(key)
            return sorted(keys)

        for prefix, path in self._key_folders():
            keys = await asyncio.to_thread(folder, path, prefix)
            if keys:
                yield keys
