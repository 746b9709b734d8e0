"""Model registry and workflows, and the rule of which app concepts a worker *produces*.

Invariants:
* A model's ``concepts`` are written whole (insert or replace), never ``$push``-ed; their ids
  are unique within the model.
* A model's adapter exists and serves its kind, and its config passes the adapter's schema
  (``adapters.validate_config``: known keys, types, bounds), so a stored model can run.
* A workflow names at least one model, every one of its own app, none twice, in run order.
* An uploaded model (adapter ``onnx``) is created and re-versioned only from a file that passed
  the upload check (``app.models.upload``); its config and concepts are those of its active
  version and change only with a new version, never through ``updateModel``.
* A model or workflow that a labeling task (or, for a model, a workflow) uses is not deleted,
  and a change to it that would leave such a task with a concept nobody produces is refused
  (``IN_USE``), so a stored task always stays runnable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.access import MANAGERS, Principal, get_for, require_app
from app.concepts.models import Concept
from app.core import validate
from app.core.blobs import BlobStore
from app.core.errors import Conflict, DomainError, ErrorCode, NotFound, ValidationFailed
from app.core.pagination import Page, PageArgs, paginate
from app.models import upload
from app.models.adapters import OnnxModelAdapter, validate_config
from app.models.models import (
    JsonConfig,
    ModelConceptEntry,
    ModelEntry,
    ModelKind,
    ModelVersion,
    TaskModelVersion,
    Workflow,
)
from app.models.upload import ModelFile
from app.settings import Settings
from app.tasks.models import ConceptMapping, LabelingTask

MAX_MODEL_CONCEPTS = 10_000
MAX_WORKFLOW_MODELS = 20
MAX_CONFIG_BYTES = 64 * 1024
MAX_ADAPTER_NAME = 100


# --- validation ------------------------------------------------------------------------------


def _model_concepts(concepts: Sequence[ModelConceptEntry]) -> list[ModelConceptEntry]:
    """Cleaned model concepts: non-empty id and name, ids unique within the model."""
    validate.bounded_list(list(concepts), "concepts", max_items=MAX_MODEL_CONCEPTS, allow_empty=True)
    seen: set[str] = set()
    out: list[ModelConceptEntry] = []
    for index, entry in enumerate(concepts):
        cid = validate.name(entry.id, f"concepts.{index}.id")
        if cid in seen:
            raise Conflict(
                f"model concept id {cid!r} appears twice",
                field=f"concepts.{index}.id",
                code=ErrorCode.DUPLICATE,
            )
        seen.add(cid)
        out.append(ModelConceptEntry(id=cid, name=validate.name(entry.name, f"concepts.{index}.name")))
    return out


def _adapter(value: str) -> str:
    return validate.name(value, "adapter", max_len=MAX_ADAPTER_NAME)


def _config(value: Any) -> dict[str, Any]:
    return validate.json_object(value, "config", max_bytes=MAX_CONFIG_BYTES)


def _runnable(adapter: str, kind: ModelKind, config: dict[str, Any], zero_shot: bool) -> dict[str, Any]:
    """The config to store, once the adapter exists, serves ``kind`` and accepts the config
    (keys, types, bounds); otherwise an ``AdapterError`` naming the field. A stored model can
    therefore always run, and its config never costs the shared worker more than the bounds."""
    return validate_config(adapter, kind, config, zero_shot=zero_shot)


async def models_of_app(app_id: str, model_ids: Sequence[str], field: str) -> list[ModelEntry]:
    """The given models, all of ``app_id``, in the given order; NotFound names the first missing
    one with its index, DUPLICATE the first repeated one."""
    found = await ModelEntry.find({"_id": {"$in": list(model_ids)}, "app_id": app_id}).to_list()
    by_id = {m.id: m for m in found}
    seen: set[str] = set()
    for index, mid in enumerate(model_ids):
        if mid not in by_id:
            raise NotFound("model", mid, field=f"{field}.{index}")
        if mid in seen:
            raise Conflict(f"model {mid!r} appears twice", field=f"{field}.{index}", code=ErrorCode.DUPLICATE)
        seen.add(mid)
    return [by_id[mid] for mid in model_ids]


# --- concept production ----------------------------------------------------------------------


def _key(name: str) -> str:
    return name.strip().casefold()


@dataclass(frozen=True)
class Producer:
    """What runs for a task: one model, or a workflow's models. ``field`` names it in errors."""

    models: list[ModelEntry]
    field: str

    @property
    def zero_shot(self) -> bool:
        return any(m.zero_shot for m in self.models)

    def concept_ids(self) -> set[str]:
        return {c.id for m in self.models for c in m.concepts}

    def concept_keys(self) -> set[str]:
        return {_key(c.name) for m in self.models for c in m.concepts}


def check_mapping(producer: Producer, concepts: Sequence[Concept], mapping: Sequence[ConceptMapping]) -> None:
    """Every mapping entry names a real model concept (once) and one of the task's concepts."""
    known = producer.concept_ids()
    task_ids = {c.id for c in concepts}
    seen: set[str] = set()
    for index, entry in enumerate(mapping):
        where = f"conceptMapping.{index}"
        if entry.model_concept_id not in known:
            raise NotFound("model concept", entry.model_concept_id, field=f"{where}.modelConceptId")
        if entry.model_concept_id in seen:
            raise Conflict(
                f"model concept {entry.model_concept_id!r} is mapped twice",
                field=f"{where}.modelConceptId",
                code=ErrorCode.DUPLICATE,
            )
        seen.add(entry.model_concept_id)
        if entry.concept_id not in task_ids:
            raise ValidationFailed(
                f"concept {entry.concept_id!r} is not one of the task's concepts",
                field=f"{where}.conceptId",
                code=ErrorCode.INVALID,
            )


def check_production(
    producer: Producer, concepts: Sequence[Concept], mapping: Sequence[ConceptMapping]
) -> None:
    """Every task concept is produced: by a zero-shot model, by a model concept of the same
    name (ignoring case), or through the mapping (several model concepts may map to one)."""
    check_mapping(producer, concepts, mapping)
    if producer.zero_shot:
        return
    keys = producer.concept_keys()
    if not keys:
        raise ValidationFailed(
            "the model has no concept outputs and is not zero-shot",
            field=producer.field,
            code=ErrorCode.MODEL_HAS_NO_CONCEPTS,
        )
    mapped = {entry.concept_id for entry in mapping}
    for index, concept in enumerate(concepts):
        if _key(concept.name) not in keys and concept.id not in mapped:
            raise ValidationFailed(
                f"no model produces concept {concept.name!r}; map a model concept to it",
                field=f"conceptIds.{index}",
                code=ErrorCode.CONCEPT_NOT_PRODUCED,
            )


async def producer_for(
    app_id: str, model_id: str | None, workflow_id: str | None
) -> tuple[Producer, ModelEntry | None, Workflow | None]:
    """The producer named by exactly one of ``model_id`` / ``workflow_id`` (same app)."""
    if model_id and workflow_id:
        raise ValidationFailed("give either modelId or workflowId, not both", field="workflowId")
    if model_id:
        model = await ModelEntry.find_one({"_id": model_id, "app_id": app_id})
        if model is None:
            raise NotFound("model", model_id, field="modelId")
        return Producer([model], "modelId"), model, None
    if workflow_id:
        workflow = await Workflow.find_one({"_id": workflow_id, "app_id": app_id})
        if workflow is None:
            raise NotFound("workflow", workflow_id, field="workflowId")
        models = await models_of_app(app_id, workflow.model_ids, "workflowId")
        return Producer(models, "workflowId"), None, workflow
    raise ValidationFailed("a model or a workflow is needed", field="modelId", code=ErrorCode.REQUIRED)


async def _recheck_tasks(
    app_id: str, task_query: dict[str, Any], producer_of: dict[str, list[ModelEntry]], field: str
) -> None:
    """Refuse a change that would leave a task using it with an unproduced concept."""
    tasks = await LabelingTask.find({"app_id": app_id, **task_query}).to_list()
    for task in tasks:
        key = task.model_id or task.workflow_id or ""
        models = producer_of.get(key)
        if models is None:
            continue
        concepts = await Concept.find({"_id": {"$in": task.concept_ids}}).to_list()
        try:
            check_production(Producer(models, field), concepts, task.concept_mapping)
        except DomainError as exc:
            raise Conflict(
                f"labeling task {task.name!r} uses this and would break: {exc.message}",
                field=field,
                code=ErrorCode.IN_USE,
            ) from exc


async def _recheck_after_model_change(model: ModelEntry) -> None:
    workflows = await Workflow.find({"app_id": model.app_id, "model_ids": model.id}).to_list()
    producer_of: dict[str, list[ModelEntry]] = {model.id: [model]}
    for workflow in workflows:
        others = await ModelEntry.find({"_id": {"$in": workflow.model_ids}}).to_list()
        by_id = {m.id: m for m in others} | {model.id: model}
        producer_of[workflow.id] = [by_id[i] for i in workflow.model_ids if i in by_id]
    query = {"$or": [{"model_id": model.id}, {"workflow_id": {"$in": [w.id for w in workflows]}}]}
    await _recheck_tasks(model.app_id, query, producer_of, "concepts")


# --- models ----------------------------------------------------------------------------------


async def create_model(
    principal: Principal,
    app_id: str,
    *,
    name: str,
    kind: ModelKind,
    adapter: str,
    config: Any = None,
    concepts: Sequence[ModelConceptEntry] = (),
    zero_shot: bool = False,
    source: ModelFile | None = None,
    settings: Settings | None = None,
    blobs: BlobStore | None = None,
) -> ModelEntry:
    """Register a model. With adapter ``onnx`` the model is a file (``source``: a multipart
    part or a URL) that must pass the upload check; it becomes version 1."""
    await require_app(principal, app_id, MANAGERS)
    clean_name = validate.name(name)
    clean_adapter = _adapter(adapter)
    source = source or ModelFile()
    if clean_adapter == OnnxModelAdapter.name or upload.given(source):
        return await _create_uploaded(
            principal, app_id, clean_name, kind, clean_adapter, config, concepts, zero_shot, source,
            settings, blobs,
        )  # fmt: skip
    model = ModelEntry(
        app_id=app_id,
        name=clean_name,
        kind=kind,
        adapter=clean_adapter,
        config=_runnable(clean_adapter, kind, _config(config), zero_shot),
        concepts=_model_concepts(concepts),
        zero_shot=zero_shot,
    )
    await model.insert()
    return model


def _upload_options(adapter: str, zero_shot: bool) -> None:
    if adapter != OnnxModelAdapter.name:
        raise ValidationFailed(
            f"a model file runs on the {OnnxModelAdapter.name!r} adapter, not {adapter!r}",
            field="adapter",
            code=ErrorCode.ADAPTER_MISMATCH,
        )
    if zero_shot:
        raise ValidationFailed(
            "an uploaded model has a fixed list of concepts; it cannot be zero-shot",
            field="zeroShot",
            code=ErrorCode.ADAPTER_MISMATCH,
        )


async def _prepare(
    source: ModelFile,
    settings: Settings | None,
    kind: ModelKind,
    config: Any,
    concepts: Sequence[ModelConceptEntry],
    fallback: Sequence[ModelConceptEntry] = (),
) -> tuple[upload.Prepared, list[ModelConceptEntry]]:
    """Concepts: the request's, else the file's ``names`` metadata, else ``fallback`` (a new
    version keeps its model's concepts)."""
    if settings is None:
        raise ValidationFailed("model uploads need the server settings", field="file")
    requested = _model_concepts(concepts)
    clean_config = None if config is None else _config(config)
    prepared = await upload.prepare(source, settings, kind, clean_config, requested, fallback)
    return prepared, _model_concepts(prepared.concepts)


async def _create_uploaded(
    principal: Principal,
    app_id: str,
    name: str,
    kind: ModelKind,
    adapter: str,
    config: Any,
    concepts: Sequence[ModelConceptEntry],
    zero_shot: bool,
    source: ModelFile,
    settings: Settings | None,
    blobs: BlobStore | None,
) -> ModelEntry:
    _upload_options(adapter, zero_shot)
    prepared, clean_concepts = await _prepare(source, settings, kind, config, concepts)
    assert blobs is not None
    model = ModelEntry(
        app_id=app_id,
        name=name,
        kind=kind,
        adapter=adapter,
        config=prepared.checked.config,
        concepts=clean_concepts,
    )
    await model.insert()
    try:
        version = await upload.store_version(blobs, model, prepared, clean_concepts, principal.user_id)
    except BaseException:
        await model.delete()
        raise
    model.active_version_id = version.id
    model.version_count = version.number
    await model.touch_save()
    return model


async def create_model_version(
    principal: Principal,
    model_id: str,
    source: ModelFile,
    *,
    config: Any = None,
    concepts: Sequence[ModelConceptEntry] = (),
    settings: Settings,
    blobs: BlobStore,
) -> tuple[ModelEntry, ModelVersion]:
    """A new version of an uploaded model from a new file; it becomes the active one. The
    concepts come from the request, else the file's ``names`` metadata, else stay as they are.
    Refused (``IN_USE``) when a task using the model would lose a concept."""
    model = await get_for(principal, ModelEntry, model_id, what="model", roles=MANAGERS, field="modelId")
    if model.adapter != OnnxModelAdapter.name:
        raise ValidationFailed(
            "only uploaded (onnx) models have versions", field="modelId", code=ErrorCode.ADAPTER_MISMATCH
        )
    prepared, clean_concepts = await _prepare(source, settings, model.kind, config, concepts, model.concepts)
    candidate = model.model_copy(update={"concepts": clean_concepts})
    await _recheck_after_model_change(candidate)
    version = await upload.store_version(blobs, model, prepared, clean_concepts, principal.user_id)
    model.concepts = clean_concepts
    model.config = JsonConfig(prepared.checked.config)
    model.active_version_id = version.id
    model.version_count = max(model.version_count, version.number)
    await model.touch_save()
    return model, version


async def list_versions(principal: Principal, model_id: str, args: PageArgs) -> Page[ModelVersion]:
    model = await get_for(principal, ModelEntry, model_id, what="model")
    return await paginate(ModelVersion, {"model_id": model.id}, args)


async def get_version(version_id: str | None) -> ModelVersion | None:
    return None if version_id is None else await ModelVersion.get(version_id)


async def task_versions(principal: Principal, task_id: str, args: PageArgs) -> Page[TaskModelVersion]:
    """Which version of each model every run of a task used (oldest run first)."""
    task = await get_for(principal, LabelingTask, task_id, what="labeling task", field="taskId")
    return await paginate(TaskModelVersion, {"task_id": task.id}, args)


async def update_model(
    principal: Principal,
    model_id: str,
    *,
    name: str | None = None,
    adapter: str | None = None,
    config: Any = None,
    concepts: Sequence[ModelConceptEntry] | None = None,
    zero_shot: bool | None = None,
) -> ModelEntry:
    """Change what is given; the kind is fixed (tasks were validated against it). A change of
    adapter, config or zero-shot is checked as a whole: the new adapter with the kept config
    (or the new config with the kept adapter) must be able to run."""
    model = await get_for(principal, ModelEntry, model_id, what="model", roles=MANAGERS)
    if name is not None:
        model.name = validate.name(name)
    uploaded = OnnxModelAdapter.name in (model.adapter, adapter)
    if uploaded and (adapter is not None or config is not None or concepts is not None or zero_shot):
        raise ValidationFailed(
            "an uploaded model's file, config and concepts change with a new version (createModelVersion)",
            field="adapter" if adapter is not None else "config" if config is not None else "concepts",
            code=ErrorCode.ADAPTER_MISMATCH,
        )
    if adapter is not None or config is not None or zero_shot is not None:
        new_adapter = _adapter(adapter) if adapter is not None else model.adapter
        new_config = _config(config) if config is not None else model.config
        new_zero_shot = zero_shot if zero_shot is not None else model.zero_shot
        model.config = JsonConfig(_runnable(new_adapter, model.kind, new_config, new_zero_shot))
        model.adapter = new_adapter
        model.zero_shot = new_zero_shot
    if concepts is not None:
        model.concepts = _model_concepts(concepts)
    if concepts is not None or zero_shot is not None:
        await _recheck_after_model_change(model)
    await model.touch_save()
    return model


async def delete_model(principal: Principal, model_id: str, blobs: BlobStore | None = None) -> str:
    """Delete the model, then its versions, then their files (unless something else keeps one)."""
    model = await get_for(principal, ModelEntry, model_id, what="model", roles=MANAGERS)
    if await Workflow.find_one({"app_id": model.app_id, "model_ids": model.id}):
        raise Conflict("a workflow uses this model", field="id", code=ErrorCode.IN_USE)
    if await LabelingTask.find_one({"app_id": model.app_id, "model_id": model.id}):
        raise Conflict("a labeling task uses this model", field="id", code=ErrorCode.IN_USE)
    await model.delete()
    versions = await ModelVersion.find({"model_id": model.id}).to_list()
    for version in versions:
        await version.delete()
        if blobs is not None:
            await upload.release(blobs, version)
    return model.id


async def get_model(principal: Principal, model_id: str) -> ModelEntry:
    return await get_for(principal, ModelEntry, model_id, what="model")


async def list_models(
    principal: Principal, app_id: str, args: PageArgs, builtin: bool | None = None
) -> Page[ModelEntry]:
    await require_app(principal, app_id)
    query: dict[str, Any] = {"app_id": app_id}
    if builtin is not None:
        query["builtin"] = builtin
    return await paginate(ModelEntry, query, args)


def page_of_concepts(model: ModelEntry, args: PageArgs) -> Page[ModelConceptEntry]:
    """A page of the model's concepts in their stored order; the cursor is a concept id."""
    items = model.concepts
    start = 0
    if args.after is not None:
        ids = [c.id for c in items]
        if args.after not in ids:
            raise ValidationFailed(
                "the cursor names no concept of this model",
                field="after",
                code=ErrorCode.INVALID_CURSOR,
            )
        start = ids.index(args.after) + 1
    page = items[start : start + args.first]
    return Page(
        items=page,
        has_next=start + args.first < len(items),
        has_previous=start > 0,
    )


# --- workflows -------------------------------------------------------------------------------


async def _workflow_models(app_id: str, model_ids: Sequence[str]) -> list[ModelEntry]:
    ids = [str(m) for m in model_ids]
    validate.bounded_list(ids, "modelIds", max_items=MAX_WORKFLOW_MODELS)
    return await models_of_app(app_id, ids, "modelIds")


async def create_workflow(principal: Principal, app_id: str, name: str, model_ids: Sequence[str]) -> Workflow:
    await require_app(principal, app_id, MANAGERS)
    clean = validate.name(name)
    models = await _workflow_models(app_id, model_ids)
    workflow = Workflow(app_id=app_id, name=clean, model_ids=[m.id for m in models])
    await workflow.insert()
    return workflow


async def update_workflow(
    principal: Principal,
    workflow_id: str,
    *,
    name: str | None = None,
    model_ids: Sequence[str] | None = None,
) -> Workflow:
    workflow = await get_for(principal, Workflow, workflow_id, what="workflow", roles=MANAGERS)
    if name is not None:
        workflow.name = validate.name(name)
    if model_ids is not None:
        models = await _workflow_models(workflow.app_id, model_ids)
        workflow.model_ids = [m.id for m in models]
        await _recheck_tasks(workflow.app_id, {"workflow_id": workflow.id}, {workflow.id: models}, "modelIds")
    await workflow.touch_save()
    return workflow


async def delete_workflow(principal: Principal, workflow_id: str) -> str:
    workflow = await get_for(principal, Workflow, workflow_id, what="workflow", roles=MANAGERS)
    if await LabelingTask.find_one({"app_id": workflow.app_id, "workflow_id": workflow.id}):
        raise Conflict("a labeling task uses this workflow", field="id", code=ErrorCode.IN_USE)
    await workflow.delete()
    return workflow.id


async def get_workflow(principal: Principal, workflow_id: str) -> Workflow:
    return await get_for(principal, Workflow, workflow_id, what="workflow")


async def list_workflows(principal: Principal, app_id: str, args: PageArgs) -> Page[Workflow]:
    await require_app(principal, app_id)
    return await paginate(Workflow, {"app_id": app_id}, args)
