"""Building a task whose inputs wait for review, through the real API and a real worker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.annotations.models import Annotation
from app.review.models import Assignment, AssignmentKind
from tests.factories import Api, Caller, World, world
from tests.registry.factories import dataset, text_input
from tests.tasks_engine.conftest import Drain

TASK_FIELDS = """id status reviewerIds auditPercent metrics { inputsTotal processed approved awaitingReview reviewed }
  review { inputsToReview inputsReviewed reviewedPercent reviewComplete inputsToLabel labelingActive
           reviewers { userId assigned done percent } }
  labeledBy { kind id name annotations }"""
QUEUE = """query($t: ID!, $o: QueueOrder, $c: [ID!], $first: Int, $after: String) {
  reviewQueue(taskId: $t, order: $o, conceptIds: $c, first: $first, after: $after) {
    nodes { id inputId state minConfidence conceptIds waiting assignedTo
            annotations { id status confidence conceptId } }
    pageInfo { hasNextPage endCursor } } }"""
LABEL_QUEUE = """query($t: ID!) { labelingQueue(taskId: $t, first: 50) { nodes { inputId state reason assignedTo } } }"""
REVIEW = """mutation($i: ReviewAnnotationsInput!) { reviewAnnotations(input: $i) { __typename
  ... on ReviewAnnotationsSuccess { changedIds approved rejected changesRequested awaitingConsensus
        errors { index code field } labelingTask { id metrics { approved awaitingReview reviewed } } }
  ... on Error { code field message } } }"""
EDIT = """mutation($i: EditAnnotationInput!) { editAnnotation(input: $i) { __typename
  ... on AnnotationSuccess { annotation { id status conceptId reviewedBy reviewedAt reviewAction
        box { top left bottom right } polygon { row col } } }
  ... on Error { code field message } } }"""
OPEN = """mutation($t: ID!, $i: ID!) { openReviewItem(taskId: $t, inputId: $i) { __typename
  ... on QueueItemSuccess { item { inputId state } } ... on Error { code field } } }"""
UPDATE = """mutation($i: UpdateLabelingTaskInput!) { updateLabelingTask(input: $i) { __typename
  ... on Error { code field message } } }"""
CREATE = (
    "mutation($i: CreateLabelingTaskInput!) { createLabelingTask(input: $i) { __typename "
    "... on LabelingTaskSuccess { labelingTask { id } } ... on Error { code field message } } }"
)


@dataclass
class ReviewSetup:
    w: World
    task_id: str
    model_id: str
    dataset_id: str
    inputs: list[str]
    concepts: dict[str, str]
    reviewers: list[Caller] = field(default_factory=list)
    labelers: list[Caller] = field(default_factory=list)


async def text_model(api: Api, owner: Caller, app_id: str, predictions: list[dict[str, Any]]) -> str:
    names = sorted({p["concept"] for p in predictions})
    data = await api.gql(
        owner,
        """mutation($i: CreateModelInput!) { createModel(input: $i) {
             __typename ... on ModelSuccess { model { id } } ... on Error { code field message } } }""",
        i={
            "appId": app_id,
            "name": "text model",
            "kind": "TEXT_CLASSIFIER",
            "adapter": "null",
            "config": {"predictions": predictions},
            "concepts": [{"id": n, "name": n} for n in names],
        },
    )
    assert data["createModel"]["__typename"] == "ModelSuccess", data
    model_id: str = data["createModel"]["model"]["id"]
    return model_id


async def review_setup(
    api: Api,
    drain: Drain | None,
    *,
    inputs: int,
    reviewers: int = 2,
    labelers: int = 0,
    predictions: list[dict[str, Any]] | None = None,
    run: bool = True,
    **task_fields: Any,
) -> ReviewSetup:
    """Text inputs labeled by a null model; by default every input gets one ``cat`` annotation
    waiting for review (0.7) and one approved ``dog`` (0.95)."""
    w = await world(api)
    preds = predictions or [{"concept": "cat", "confidence": 0.7}, {"concept": "dog", "confidence": 0.95}]
    concepts = {p["concept"]: await api.concept(w.owner, w.app_id, p["concept"]) for p in preds}
    ds = await dataset(w.app_id)
    ids = [await text_input(w.app_id, [ds], text=f"text {k}") for k in range(inputs)]
    model = await text_model(api, w.owner, w.app_id, preds)
    revs = [await api.member(w.owner, w.app_id, ["REVIEWER"]) for _ in range(reviewers)]
    labs = [await api.member(w.owner, w.app_id, ["LABELER"]) for _ in range(labelers)]
    body = {
        "appId": w.app_id,
        "name": "Review task",
        "datasetId": ds,
        "modelId": model,
        "conceptIds": list(concepts.values()),
        "thresholds": {"lower": 0.5, "upper": 0.9},
        "reviewerIds": [r.user_id for r in revs],
        "labelerIds": [lab.user_id for lab in labs],
        "start": run,
    } | task_fields
    made = (await api.gql(w.owner, CREATE, i=body))["createLabelingTask"]
    assert made["__typename"] == "LabelingTaskSuccess", made
    task_id = made["labelingTask"]["id"]
    if run and drain is not None:
        await drain()
    return ReviewSetup(w, task_id, model, ds, ids, concepts, revs, labs)


async def task_view(api: Api, caller: Caller, task_id: str) -> dict[str, Any]:
    data = await api.gql(
        caller, "query($id: ID!) { labelingTask(id: $id) { " + TASK_FIELDS + " } }", id=task_id
    )
    task: dict[str, Any] = data["labelingTask"]
    return task


async def queue_of(api: Api, caller: Caller, task_id: str, **variables: Any) -> list[dict[str, Any]]:
    """Every item of the caller's review queue (all pages)."""
    out: list[dict[str, Any]] = []
    after = None
    while True:
        data = await api.gql(caller, QUEUE, t=task_id, first=5, after=after, **variables)
        conn = data["reviewQueue"]
        out.extend(conn["nodes"])
        if not conn["pageInfo"]["hasNextPage"]:
            return out
        after = conn["pageInfo"]["endCursor"]


async def review(api: Api, caller: Caller, task_id: str, action: str, **selection: Any) -> dict[str, Any]:
    data = await api.gql(caller, REVIEW, i={"taskId": task_id, "action": action} | selection)
    result: dict[str, Any] = data["reviewAnnotations"]
    return result


async def open_counts(task_id: str, kind: AssignmentKind = AssignmentKind.REVIEW) -> dict[str | None, int]:
    counts: dict[str | None, int] = {}
    for a in await Assignment.find({"task_id": task_id, "kind": kind.value}).to_list():
        if a.state.value != "DONE":
            counts[a.user_id] = counts.get(a.user_id, 0) + 1
    return counts


def spread(counts: dict[str | None, int], people: list[str]) -> int:
    values = [counts.get(p, 0) for p in people]
    return max(values) - min(values)


async def annotations(task_id: str, **query: Any) -> list[Annotation]:
    return await Annotation.find({"task_id": task_id, **query}).sort("input_id").to_list()


class Events:
    """Review and task events of one task, read from the real Redis channels."""

    def __init__(self, redis: Any, task_id: str) -> None:
        self.redis, self.task_id = redis, task_id
        self.items: list[dict[str, Any]] = []

    async def __aenter__(self) -> Events:
        from app.core import pubsub

        self.sub = self.redis.pubsub()
        await self.sub.subscribe(pubsub.review_channel(self.task_id), pubsub.task_channel(self.task_id))
        return self

    async def collect(self, wait: float = 0.3) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + wait
        while asyncio.get_running_loop().time() < deadline:
            msg = await self.sub.get_message(ignore_subscribe_messages=True, timeout=0.05)
            if msg is not None:
                self.items.append(orjson.loads(msg["data"]))
        return self.items

    async def __aexit__(self, *exc: Any) -> None:
        await self.sub.unsubscribe()
        await self.sub.aclose()
