"""Send a :class:`~app.client.sources.Source` to a server as inputs and annotations, resumably.

The state file records, per item key, the input the server created (with the size it measured)
and which of the item's labels are stored, or why the item failed. A re-run with the same state
skips what is done: an input is never added twice, an annotation never stored twice. The state
is written after every batch (atomically), so an interrupted run loses at most the batch in
flight: an input added in that batch but not recorded would be added again on the next run.

Boxes are normalised with the width and height the server measured, not those the dataset
claims, so they land on the pixels they name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.client.api import ERROR_FIELDS, Api
from app.client.errors import ClientError
from app.client.sources import Item, Source

INPUT_BATCH = 16  # inputs per addInputs request
INPUT_BATCH_BYTES = 24 * 1024 * 1024  # and at most this many bytes of images in one request
ANNOTATION_BATCH = 100  # annotations per addAnnotations request (the server's cap is 128)

ADD_INPUTS = (
    "mutation($a: ID!, $inputs: [AddInputItem!]!) { addInputs(appId: $a, inputs: $inputs) {"
    " __typename ... on AddInputsSuccess { inputs { id width height status }"
    " errors { index code field message } } " + ERROR_FIELDS + " } }"
)
ADD_ANNOTATIONS = (
    "mutation($i: AddAnnotationsInput!) { addAnnotations(input: $i) {"
    " __typename ... on AddAnnotationsSuccess { annotations { id } errors { index code field message } } "
    + ERROR_FIELDS
    + " } }"
)


@dataclass
class ImportState:
    """What a previous run did; persisted as JSON at ``path``."""

    path: Path
    items: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path, about: dict[str, str]) -> ImportState:
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path, {})
        except (OSError, ValueError) as exc:
            raise ClientError(
                f"cannot read the import state {path}: {exc}; delete it to start over"
            ) from None
        if doc.get("about") != about:
            raise ClientError(f"{path} records another import ({doc.get('about')}); pass another --state")
        return cls(path, doc.get("items") or {})

    def save(self, about: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"about": about, "items": self.items}, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def entry(self, key: str) -> dict[str, Any]:
        return self.items.setdefault(key, {})

    def done(self, item: Item) -> bool:
        e = self.items.get(item.key) or {}
        return bool(e.get("input_id")) and len(e.get("stored", [])) == len(item.labels) and not e.get("error")

    def failures(self) -> dict[str, str]:
        return {k: str(v["error"]) for k, v in self.items.items() if v.get("error")}


@dataclass
class Outcome:
    inputs_added: int = 0
    annotations_added: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def _batches(items: list[Item]) -> Iterator[list[Item]]:
    batch: list[Item] = []
    size = 0
    for item in items:
        weight = item.path.stat().st_size if item.path is not None and item.path.is_file() else 0
        if batch and (len(batch) >= INPUT_BATCH or size + weight > INPUT_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += weight
    if batch:
        yield batch


class Importer:
    def __init__(
        self,
        api: Api,
        app_id: str,
        dataset_id: str,
        concept_ids: dict[str, str],
        state: ImportState,
        about: dict[str, str],
    ) -> None:
        self.api = api
        self.app_id = app_id
        self.dataset_id = dataset_id
        self.concept_ids = concept_ids
        self.state = state
        self.about = about
        self.outcome = Outcome()

    def run(self, source: Source, advance: Callable[[int], None]) -> Outcome:
        todo = []
        for item in source.items:
            if self.state.done(item):
                self.outcome.skipped += 1
                advance(1)
            else:
                self.state.entry(item.key).pop("error", None)
                todo.append(item)
        for batch in _batches(todo):
            self._add_inputs([i for i in batch if not self.state.entry(i.key).get("input_id")])
            self._add_annotations([i for i in batch if self.state.entry(i.key).get("input_id")])
            self.state.save(self.about)
            advance(len(batch))
        self.outcome.failed = self.state.failures()
        return self.outcome

    def _fail(self, item: Item, message: str) -> None:
        self.state.entry(item.key)["error"] = message

    def _add_inputs(self, batch: list[Item]) -> None:
        sendable: list[Item] = []
        for item in batch:
            if item.path is not None and not item.path.is_file():
                self._fail(item, f"no such file: {item.path}")
            else:
                sendable.append(item)
        if not sendable:
            return
        payload: list[dict[str, Any]] = []
        files: dict[str, Path] = {}
        for k, item in enumerate(sendable):
            entry: dict[str, Any] = {"datasetIds": [self.dataset_id], "metadata": {"source": item.key}}
            if item.path is not None:
                entry["image"] = None
                files[f"inputs.{k}.image"] = item.path
            else:
                entry["imageUrl"] = item.url
            payload.append(entry)
        variables = {"a": self.app_id, "inputs": payload}
        try:
            if files:
                data = self.api.upload(ADD_INPUTS, variables, files)["addInputs"]
            else:
                data = self.api.query(ADD_INPUTS, **variables)["addInputs"]
        except ClientError as exc:
            if exc.exit_code != 1:
                raise  # unreachable server, refused key: nothing else will work either
            for item in sendable:
                self._fail(item, str(exc))
            return
        if data.get("code"):
            for item in sendable:
                self._fail(item, f"{data['code']}: {data['message']}")
            return
        refused = {e["index"]: f"{e['code']}: {e['message']}" for e in data["errors"]}
        added = iter(data["inputs"])
        for k, item in enumerate(sendable):
            if k in refused:
                self._fail(item, refused[k])
                continue
            made = next(added)
            self.state.entry(item.key).update(
                input_id=made["id"], width=made["width"], height=made["height"], stored=[]
            )
            self.outcome.inputs_added += 1

    def _add_annotations(self, batch: list[Item]) -> None:
        rows: list[tuple[Item, int, dict[str, Any]]] = []
        for item in batch:
            entry = self.state.entry(item.key)
            stored = set(entry.get("stored", []))
            for index, label in enumerate(item.labels):
                if index in stored:
                    continue
                ann: dict[str, Any] = {
                    "inputId": entry["input_id"],
                    "conceptId": self.concept_ids[label.concept],
                }
                if label.box is not None or label.polygon is not None:
                    if not entry.get("width") or not entry.get("height"):
                        self._fail(
                            item, "the server did not report the image's size; its regions were not added"
                        )
                        break
                    size = int(entry["width"]), int(entry["height"])
                    if label.polygon is not None:
                        ann["polygon"] = label.normalized_polygon(*size)
                    else:
                        ann["box"] = label.normalized(*size)
                    if label.text is not None:
                        ann["text"] = label.text
                rows.append((item, index, ann))
        for start in range(0, len(rows), ANNOTATION_BATCH):
            chunk = rows[start : start + ANNOTATION_BATCH]
            variables = {"i": {"appId": self.app_id, "annotations": [a for _, _, a in chunk]}}
            try:
                data = self.api.query(ADD_ANNOTATIONS, **variables)["addAnnotations"]
            except ClientError as exc:
                if exc.exit_code != 1:
                    raise
                data = {"code": exc.code or "ERROR", "message": exc.message}
            if data.get("code"):
                for item, _, _ in chunk:
                    self._fail(item, f"annotations: {data['code']}: {data['message']}")
                continue
            refused = {e["index"]: e for e in data["errors"]}
            for k, (item, index, _) in enumerate(chunk):
                if k in refused:
                    e = refused[k]
                    self._fail(item, f"label {index + 1}: {e['code']}: {e['message']} ({e.get('field')})")
                else:
                    self.state.entry(item.key).setdefault("stored", []).append(index)
                    self.outcome.annotations_added += 1
