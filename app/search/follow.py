"""Keeping embeddings current from annotation change records (an annotation listener).

* a region annotation created, routed or edited: its crop is (re-)embedded by a worker job
  (``search_embed``; the job skips an unchanged source, so a status-only change costs a read;
  an annotation its writer says has no region costs nothing),
  and so are the inputs a task looked at or a person labeled (whole image or text). The ids
  wait in Redis (``app.search.pending``) for one job per second, which lets task batches go
  first;
* an annotation removed: its vectors become tombstones at once;
* an input deleted: likewise for the input's vectors.

Filters (concept, status, dataset, task, labeler) are read from the annotations themselves at
query time, so a review decision needs no change here. A failure is logged, never raised: the
annotation write is done and an embedding can be redone by the backfill.
"""

from __future__ import annotations

import logging
from typing import Any

from app.annotations.changes import ChangeSet, Reason
from app.search import pending, store
from app.search.models import RefKind

log = logging.getLogger("labelstream.search")

EMBED_REASONS = (Reason.LABELED, Reason.ROUTED, Reason.EDITED)


async def on_changes(runtime: Any, changes: ChangeSet) -> None:
    try:
        await _follow(runtime, changes)
    except Exception:
        log.exception("search: could not follow %s", changes.reason)


async def _follow(runtime: Any, changes: ChangeSet) -> None:
    removed = [c.annotation_id for c in changes.changes if c.after is None]
    if removed:
        await store.tombstone(RefKind.ANNOTATION, removed)
    if changes.deleted_inputs:
        await store.tombstone(RefKind.INPUT, changes.deleted_inputs)
    if changes.reason not in EMBED_REASONS:
        return
    settings = getattr(runtime, "settings", None)
    if settings is not None and not settings.search_embed_on_change:
        return
    # an annotation the writer knows has no region has no crop to embed
    annotations = [c.annotation_id for c in changes.changes if c.after is not None and c.region is not False]
    inputs = list(dict.fromkeys([c.input_id for c in changes.changes if c.after is not None]))
    for considered in changes.considered.values():
        inputs = list(dict.fromkeys([*inputs, *considered]))
    redis = getattr(runtime, "redis", None)
    if redis is None or not (annotations or inputs):
        return
    await pending.add(redis, annotations, inputs)
