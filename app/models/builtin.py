"""The built-in models every new app gets (real pretrained models on onnxruntime).

Their concept lists come from the adapters themselves (ImageNet synsets, COCO names, ...), so
the registry entry and what the model outputs can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.models.adapters import get_adapter
from app.models.models import ModelConceptEntry, ModelEntry, ModelKind


@dataclass(frozen=True)
class Builtin:
    name: str
    kind: ModelKind
    adapter: str
    zero_shot: bool = False


BUILTINS = (
    Builtin("general-image-classifier", ModelKind.CLASSIFIER, "general-image-classifier"),
    Builtin("general-object-detector", ModelKind.DETECTOR, "general-object-detector"),
    Builtin("text-region-detector", ModelKind.SEGMENTER, "text-region-detector"),
    Builtin("text-topic-classifier", ModelKind.TEXT_CLASSIFIER, "text-topic-classifier", True),
    Builtin("text-sentiment", ModelKind.TEXT_CLASSIFIER, "text-sentiment"),
)


def builtin_entry(app_id: str, spec: Builtin) -> ModelEntry:
    concepts = [] if spec.zero_shot else get_adapter(spec.adapter).concepts()
    return ModelEntry(
        app_id=app_id,
        name=spec.name,
        kind=spec.kind,
        adapter=spec.adapter,
        concepts=[ModelConceptEntry(id=c.id, name=c.name) for c in concepts],
        zero_shot=spec.zero_shot,
        builtin=True,
    )


async def register_builtin_models(app_id: str) -> list[ModelEntry]:
    entries = [builtin_entry(app_id, spec) for spec in BUILTINS]
    await ModelEntry.insert_many(entries)
    return entries
