"""The built-in models every new app gets (real pretrained models on onnxruntime).

Their concept lists, kinds and zero-shot flags come from the adapters themselves (ImageNet
synsets, COCO names, ...), so the registry entry and what the model outputs can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.models.adapters import adapter_class, get_adapter
from app.models.models import ModelConceptEntry, ModelEntry, ModelKind


@dataclass(frozen=True)
class Builtin:
    name: str
    adapter: str

    @property
    def kind(self) -> ModelKind:
        return ModelKind(adapter_class(self.adapter).kind)

    @property
    def zero_shot(self) -> bool:
        return adapter_class(self.adapter).zero_shot


BUILTINS = tuple(
    Builtin(name, name)
    for name in (
        "general-image-classifier",
        "general-object-detector",
        "text-region-detector",
        "text-topic-classifier",
        "text-sentiment",
    )
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
