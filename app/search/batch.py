"""Input vectors a task's batch makes on the way: its own classifier pass stands for the search's.

When a task runs the built-in image classifier (default preprocessing) or the text topic
classifier, one session run gives the predictions and the pooled features
(``predict_with_features``), which are exactly the vectors ``app.search.embed`` would compute
for those inputs. The run keeps them (``collect``) and stores them before its annotations are
written (``flush``), with the same ``source`` as ``app.search.work``: the ``search_embed`` job
that the annotation change records enqueue then finds them current and skips those inputs
(no second decode, no second model pass).

The vectors travel from the predict step to the write step of the same chunk in a context
variable: both run in the batch job's own asyncio task, one chunk after another, so a chunk
only ever sees its own (``collect`` starts afresh each chunk; ``flush`` empties it).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from app.inputs.models import Input
from app.models.adapters import ImageClassifierAdapter, ModelAdapter, TextTopicAdapter
from app.search import embed, store, work
from app.search.codec import normalise
from app.search.models import RefKind

log = logging.getLogger("labelstream.search")


def feature_model(adapter: ModelAdapter) -> embed.EmbeddingModel | None:
    """The embedding model whose vectors ``adapter.predict_with_features`` returns, if any."""
    if isinstance(adapter, ImageClassifierAdapter) and adapter.default_features:
        return embed.IMAGE_MODEL
    if isinstance(adapter, TextTopicAdapter):
        return embed.TEXT_MODEL
    return None


@dataclass
class Pending:
    """A chunk's vectors by input id (the first model that made one for an input wins)."""

    vectors: dict[str, tuple[Input, embed.EmbeddingModel, np.ndarray]] = field(default_factory=dict)

    def add(self, model: embed.EmbeddingModel, docs: Sequence[Input], features: np.ndarray) -> None:
        if len(docs) != len(features):
            return
        for doc, vec in zip(docs, normalise(features), strict=True):
            self.vectors.setdefault(doc.id, (doc, model, vec))


_pending: contextvars.ContextVar[Pending | None] = contextvars.ContextVar(
    "search_batch_vectors", default=None
)


def collect() -> Pending:
    """A fresh collection for this chunk's predict step."""
    pending = Pending()
    _pending.set(pending)
    return pending


async def flush(input_ids: Sequence[str]) -> int:
    """Store the collected vectors of ``input_ids`` (the inputs whose predictions are being
    written); the rest is dropped. A failure is logged, never raised: the ``search_embed`` job
    computes whatever is missing."""
    pending = _pending.get()
    if pending is None or not pending.vectors:
        return 0
    _pending.set(None)
    vectors = []
    for input_id in input_ids:
        item = pending.vectors.get(input_id)
        if item is None:
            continue
        doc, model, vec = item
        source = work.input_source(doc)
        if source is not None:
            vectors.append(store.Vector(doc.app_id, model.key, RefKind.INPUT, doc.id, doc.id, source, vec))
    if not vectors:
        return 0
    try:
        await store.put(vectors)
    except Exception:
        log.warning("search: could not store a batch's input vectors", exc_info=True)
        return 0
    return len(vectors)
