"""The review workflow under random sequences of ordinary actions (issue 10, "Done when").

A Hypothesis ``RuleBasedStateMachine`` drives the real GraphQL API (httpx over the ASGI app, a
real arq worker in burst mode, the live subscriptions over a real WebSocket) through random
sequences of: create and run a task, re-run it, re-apply thresholds, approve / reject / request
changes (as the reviewer holding the item, or as the owner), open a review item, edit an
annotation, remove annotations, delete inputs, change a task's reviewers and labelers, create a
dataset version (exporting it in every format), delete a task.

After every step the invariants are checked (each one a small ``check_*`` function below, so a
definition can be changed in one place):

* ``check_waiting_work_has_one_reviewer``: each annotation AWAITING_(CONSENSUS_)REVIEW of a live
  task sits in exactly one open (OPEN or STARTED) REVIEW assignment, held by a current reviewer
  of the task (its ``reviewerIds``, or its creator when it has none);
* ``check_review_queues_show_the_waiting_work``: the same seen through the API: the current
  reviewers' ``reviewQueue`` lists every waiting annotation exactly once;
* ``check_open_review_items_have_work``: no open REVIEW assignment lacks reviewable work (its
  task and input exist and at least one annotation of that task and input waits);
* ``check_metrics_match_recount``: the task's metrics equal a recount from the documents;
* ``check_reviewed_percent_agrees``: every "% reviewed" the API gives agrees (``labelingTask``,
  the ``labelingTasks`` list, the ``labelingTaskProgress`` and ``labelingTasks`` subscription
  snapshots), and so does every "inputs reviewed" count;
* ``check_versions_export_the_same_bytes``: every dataset version exports what it exported when
  it was made;
* ``check_stored_counts_are_fresh``: the assignment counts a task's next lock holder would start
  from (``AssignmentCounts``, when trusted) equal a fresh count of its assignments.

Each example starts from an empty database and an empty Redis: an owner, 2-3 reviewers and 1-2
labelers, a dataset of 6 texts and one image (the image carries a person's box, so versions hold
an image file), and a null text model predicting, for every input, one concept above the upper
threshold, two between the thresholds and one below the lower one. (The text model cannot read
the image, so every run has one FAILED input.)

Environment:
  LABELSTREAM_HYPOTHESIS_SEED      replay a run (the seed is printed first)
  LABELSTREAM_HYPOTHESIS_EXAMPLES  examples (default 8)
  LABELSTREAM_HYPOTHESIS_STEPS     steps per example (default 12)
  LABELSTREAM_HYPOTHESIS_SHRINK    0: report the first failing sequence, do not minimise it
  LABELSTREAM_STATEFUL_CHECKS      comma-separated check names (without ``check_``) to run
                                   only those, e.g. ``metrics_match_recount``
  LABELSTREAM_STATEFUL_STRICT_ZIP  1: compare the raw zip bytes, not only the entries
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import random
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, note, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from PIL import Image
from starlette.applications import Starlette

from app.annotations.models import Annotation
from app.inputs.models import Input
from app.review import assign
from app.review.models import OPEN_STATES, Assignment, AssignmentCounts, AssignmentKind
from app.tasks.models import InputState, LabelingTask, TaskInput
from tests.factories import Api, Caller
from tests.live.helpers import client
from tests.tasks_engine.conftest import Drain

T = TypeVar("T")

# --- budget ------------------------------------------------------------------------------------

SEED = int(os.environ.get("LABELSTREAM_HYPOTHESIS_SEED") or random.randrange(2**32))
EXAMPLES = int(os.environ.get("LABELSTREAM_HYPOTHESIS_EXAMPLES") or 8)
STEPS = int(os.environ.get("LABELSTREAM_HYPOTHESIS_STEPS") or 12)
SHRINK = os.environ.get("LABELSTREAM_HYPOTHESIS_SHRINK", "1") not in ("0", "false", "no")
ONLY = {c.strip() for c in os.environ.get("LABELSTREAM_STATEFUL_CHECKS", "").split(",") if c.strip()}
STRICT_ZIP = os.environ.get("LABELSTREAM_STATEFUL_STRICT_ZIP", "0") in ("1", "true", "yes")
STEP_TIMEOUT_S = 120

BUDGET = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    derandomize=False,
    database=None,  # replay by seed; nothing written outside tests/
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    + ([Phase.shrink, Phase.explain] if SHRINK else []),
    print_blob=False,
)

# --- data --------------------------------------------------------------------------------------

TEXTS = 6
# For every input: one concept approved, two waiting for review, one discarded (thresholds 0.5-0.9).
PREDICTIONS: list[dict[str, Any]] = [
    {"concept": "cat", "confidence": 0.95},
    {"concept": "dog", "confidence": 0.7},
    {"concept": "bird", "confidence": 0.55},
    {"concept": "fish", "confidence": 0.3},
]
OUTSIDE = "politics"  # an app concept that no task uses
THRESHOLDS = [(0.5, 0.9), (0.6, 0.96), (0.25, 0.8), (0.4, 0.6)]
WAITING = ("AWAITING_REVIEW", "AWAITING_CONSENSUS_REVIEW")
BOX = {"top": 0.1, "left": 0.1, "bottom": 0.6, "right": 0.7}


def png_base64(width: int = 24, height: int = 16) -> str:
    """A small PNG, made here so this test depends on no other test module's helpers."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 90)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


# --- GraphQL documents -------------------------------------------------------------------------

ERR = "... on Error { code field message }"
TASK_FIELDS = """id status createdBy reviewerIds labelerIds
  metrics { inputsTotal processed failed approved awaitingReview discarded reviewed }
  review { inputsToReview inputsReviewed reviewedPercent reviewComplete }"""
TASK = "query($id: ID!) { labelingTask(id: $id) { " + TASK_FIELDS + " } }"
TASKS = "query($a: ID!) { labelingTasks(appId: $a, first: 50) { nodes { " + TASK_FIELDS + " } } }"
CREATE_TASK = (
    "mutation($i: CreateLabelingTaskInput!) { createLabelingTask(input: $i) { __typename "
    "... on LabelingTaskSuccess { labelingTask { id } } " + ERR + " } }"
)
START = "mutation($id: ID!) { startLabelingTask(id: $id) { __typename " + ERR + " } }"
REAPPLY = "mutation($i: ReapplyThresholdsInput!) { reapplyThresholds(input: $i) { __typename " + ERR + " } }"
UPDATE = "mutation($i: UpdateLabelingTaskInput!) { updateLabelingTask(input: $i) { __typename " + ERR + " } }"
DELETE_TASK = (
    "mutation($id: ID!, $d: Boolean!) { deleteLabelingTask(id: $id, deleteAnnotations: $d) { __typename "
    + ERR
    + " } }"
)
REVIEW = (
    """mutation($i: ReviewAnnotationsInput!) { reviewAnnotations(input: $i) { __typename
  ... on ReviewAnnotationsSuccess { changedIds errors { index code } } """
    + ERR
    + " } }"
)
OPEN = "mutation($t: ID!, $i: ID!) { openReviewItem(taskId: $t, inputId: $i) { __typename " + ERR + " } }"
EDIT = (
    """mutation($i: EditAnnotationInput!) { editAnnotation(input: $i) { __typename
  ... on AnnotationSuccess { annotation { id status conceptId } } """
    + ERR
    + " } }"
)
REMOVE = (
    """mutation($ids: [ID!]!) { removeAnnotations(ids: $ids) { __typename
  ... on RemoveAnnotationsSuccess { removedIds errors { index code } } """
    + ERR
    + " } }"
)
DELETE_INPUT = "mutation($id: ID!) { deleteInput(id: $id) { __typename " + ERR + " } }"
DELETE_INPUTS = "mutation($ids: [ID!]!) { deleteInputs(ids: $ids) { __typename " + ERR + " } }"
CREATE_VERSION = (
    """mutation($i: CreateDatasetVersionInput!) { createDatasetVersion(input: $i) { __typename
  ... on DatasetVersionSuccess { datasetVersion { id status inputsCount annotationsCount } } """
    + ERR
    + " } }"
)
QUEUE = """query($t: ID!, $after: String) { reviewQueue(taskId: $t, first: 50, after: $after) {
  nodes { inputId state waiting assignedTo annotations { id status } }
  pageInfo { hasNextPage endCursor } } }"""
PROGRESS_SUB = "subscription($t: ID!) { labelingTaskProgress(taskId: $t) { taskId snapshot reviewedPercent metrics { reviewed } } }"
TASKS_SUB = "subscription($a: ID!) { labelingTasks(appId: $a) { snapshot tasks { taskId reviewedPercent metrics { reviewed } } } }"
FORMATS = '{ __type(name: "ExportFormat") { enumValues { name } } }'


class ApiError(AssertionError):
    """The API answered with top-level errors (an unexpected, masked server error)."""


# --- the world of one example ------------------------------------------------------------------


@dataclass
class Harness:
    """What the pytest fixtures give; shared by every example."""

    api: Api
    loop: asyncio.AbstractEventLoop
    asgi_app: Starlette
    drain: Drain
    ws_url: str
    formats: list[str] = field(default_factory=list)


@dataclass
class Version:
    id: str
    label: str
    exports: dict[str, bytes]  # format -> zip as made


@dataclass
class World:
    owner: Caller
    app_id: str
    dataset_id: str
    model_id: str
    concepts: dict[str, str]  # task concepts, name -> id
    outside_concept: str
    reviewers: list[Caller]
    labelers: list[Caller]
    inputs: list[str]  # index = label: in0..in5 the texts, img6 the image
    deleted_inputs: set[str] = field(default_factory=set)
    tasks: list[str] = field(default_factory=list)  # creation order: T1, T2, ...
    deleted_tasks: set[str] = field(default_factory=set)
    versions: list[Version] = field(default_factory=list)

    @property
    def live_tasks(self) -> list[str]:
        return [t for t in self.tasks if t not in self.deleted_tasks]

    @property
    def live_inputs(self) -> list[str]:
        return [i for i in self.inputs if i not in self.deleted_inputs]

    def caller(self, user_id: str | None) -> Caller | None:
        for c in [self.owner, *self.reviewers, *self.labelers]:
            if c.user_id == user_id:
                return c
        return None

    def who(self, user_id: str | None) -> str:
        if user_id is None:
            return "nobody"
        if user_id == self.owner.user_id:
            return "owner"
        for k, r in enumerate(self.reviewers):
            if r.user_id == user_id:
                return f"R{k + 1}"
        for k, lab in enumerate(self.labelers):
            if lab.user_id == user_id:
                return f"L{k + 1}"
        return user_id

    def task_label(self, task_id: str | None) -> str:
        return f"T{self.tasks.index(task_id) + 1}" if task_id in self.tasks else str(task_id)

    def input_label(self, input_id: str) -> str:
        if input_id not in self.inputs:
            return input_id
        k = self.inputs.index(input_id)
        return f"img{k}" if k >= TEXTS else f"in{k}"

    def concept_label(self, concept_id: str) -> str:
        names = {v: k for k, v in self.concepts.items()} | {self.outside_concept: OUTSIDE}
        return names.get(concept_id, concept_id)

    def ann_label(self, a: Annotation) -> str:
        return (
            f"{self.concept_label(a.concept_id)}@{self.input_label(a.input_id)}"
            f"/{self.task_label(a.task_id)}[{a.status.value}]"
        )


async def gql(api: Api, caller: Caller, query: str, **variables: Any) -> dict[str, Any]:
    response = await api.raw(query, variables, key=caller.key)
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise ApiError(f"API error for {query.split('(')[0].strip()!r}: {response.status_code} {body}")
    data: dict[str, Any] = body["data"]
    return data


async def empty_everything(h: Harness) -> None:
    """Each example starts from nothing, like tests/conftest.py's clean_database (every
    collection of the test database is emptied, indexes kept; no list of documents needed)."""
    database = Annotation.get_pymongo_collection().database
    for name in await database.list_collection_names():
        if not name.startswith("system."):
            await database[name].delete_many({})
    await h.asgi_app.state.runtime.redis.flushdb()


async def build_world(h: Harness, reviewers: int, labelers: int) -> World:
    api = h.api
    await empty_everything(h)
    owner = await api.user()
    app_id = await api.app(owner, "Stateful review")
    concepts = {str(p["concept"]): await api.concept(owner, app_id, str(p["concept"])) for p in PREDICTIONS}
    outside = await api.concept(owner, app_id, OUTSIDE)
    made = await gql(
        api,
        owner,
        """mutation($a: ID!) { createDataset(input: {appId: $a, name: "texts"}) {
             __typename ... on DatasetSuccess { dataset { id } } } }""",
        a=app_id,
    )
    dataset_id = made["createDataset"]["dataset"]["id"]
    items: list[dict[str, Any]] = [{"text": f"text {k}", "datasetIds": [dataset_id]} for k in range(TEXTS)]
    items.append({"imageBase64": png_base64(), "datasetIds": [dataset_id]})
    added = await gql(
        api,
        owner,
        """mutation($a: ID!, $i: [AddInputItem!]!) { addInputs(appId: $a, inputs: $i) {
             __typename ... on AddInputsSuccess { inputs { id } errors { index code message } } } }""",
        a=app_id,
        i=items,
    )
    assert added["addInputs"]["errors"] == [], added
    inputs = [i["id"] for i in added["addInputs"]["inputs"]]
    # a person's box on the image, so that versions hold an image file
    labeled = await gql(
        api,
        owner,
        "mutation($i: AddAnnotationInput!) { addAnnotation(input: $i) { __typename " + ERR + " } }",
        i={"appId": app_id, "annotation": {"inputId": inputs[-1], "conceptId": concepts["cat"], "box": BOX}},
    )
    assert labeled["addAnnotation"]["__typename"] == "AnnotationSuccess", labeled
    model = await gql(
        api,
        owner,
        """mutation($i: CreateModelInput!) { createModel(input: $i) {
             __typename ... on ModelSuccess { model { id } } """
        + ERR
        + " } }",
        i={
            "appId": app_id,
            "name": "null text model",
            "kind": "TEXT_CLASSIFIER",
            "adapter": "null",
            "config": {"predictions": PREDICTIONS},
            "concepts": [{"id": p["concept"], "name": p["concept"]} for p in PREDICTIONS],
        },
    )
    assert model["createModel"]["__typename"] == "ModelSuccess", model
    return World(
        owner=owner,
        app_id=app_id,
        dataset_id=dataset_id,
        model_id=model["createModel"]["model"]["id"],
        concepts=concepts,
        outside_concept=outside,
        reviewers=[await api.member(owner, app_id, ["REVIEWER"]) for _ in range(reviewers)],
        labelers=[await api.member(owner, app_id, ["LABELER"]) for _ in range(labelers)],
        inputs=inputs,
    )


# --- reading the state (read-only) -------------------------------------------------------------


def expected_reviewers(task: LabelingTask) -> list[str]:
    """Issue 10's rule: the task's reviewers, or its creator when it has none."""
    return list(task.reviewer_ids) or [task.created_by]


async def live_task_docs(w: World) -> list[LabelingTask]:
    docs = await LabelingTask.find({"app_id": w.app_id}).to_list()
    return sorted(docs, key=lambda t: w.tasks.index(t.id) if t.id in w.tasks else 99)


async def open_review_assignments(query: dict[str, Any]) -> list[Assignment]:
    return await Assignment.find(
        {**query, "kind": AssignmentKind.REVIEW.value, "state": {"$in": list(OPEN_STATES)}}
    ).to_list()


async def waiting_annotations(w: World, task_ids: list[str]) -> list[Annotation]:
    docs = await Annotation.find({"task_id": {"$in": task_ids}, "status": {"$in": list(WAITING)}}).to_list()
    return sorted(
        docs,
        key=lambda a: (w.task_label(a.task_id), w.input_label(a.input_id), w.concept_label(a.concept_id)),
    )


async def task_annotations(w: World, task_ids: list[str]) -> list[Annotation]:
    docs = await Annotation.find({"task_id": {"$in": task_ids}}).to_list()
    return sorted(
        docs,
        key=lambda a: (w.task_label(a.task_id), w.input_label(a.input_id), w.concept_label(a.concept_id)),
    )


async def recount(task: LabelingTask) -> dict[str, int]:
    """The task's metrics from its documents, as the GraphQL ``metrics`` names them.

    Mirrors ``app.tasks.engine.recount`` (approved = SUCCESS annotations of the task, awaiting
    review = AWAITING_REVIEW ones, processed = DONE + FAILED task inputs, discarded = the task
    inputs' discarded predictions), plus reviewed = existing inputs whose every REVIEW
    assignment is DONE.
    """
    by_status: dict[str, int] = {}
    for a in await Annotation.get_pymongo_collection().find({"task_id": task.id}, {"status": 1}).to_list():
        by_status[a["status"]] = by_status.get(a["status"], 0) + 1
    states = await TaskInput.get_pymongo_collection().find({"task_id": task.id}).to_list()
    done = sum(1 for s in states if s["state"] == InputState.DONE.value)
    failed = sum(1 for s in states if s["state"] == InputState.FAILED.value)
    reviews = await Assignment.find({"task_id": task.id, "kind": AssignmentKind.REVIEW.value}).to_list()
    existing = {
        d["_id"]
        for d in await Input.get_pymongo_collection()
        .find({"_id": {"$in": list({a.input_id for a in reviews})}}, {"_id": 1})
        .to_list()
    }
    open_inputs = {a.input_id for a in reviews if a.state.value in OPEN_STATES}
    reviewed = {a.input_id for a in reviews if a.input_id in existing} - open_inputs
    return {
        "approved": by_status.get("SUCCESS", 0),
        "awaitingReview": by_status.get("AWAITING_REVIEW", 0),
        "processed": done + failed,
        "failed": failed,
        "discarded": sum(int(s.get("discarded") or 0) for s in states),
        "reviewed": len(reviewed),
    }


async def subscription_snapshots(h: Harness, w: World, task_ids: list[str]) -> dict[str, dict[str, Any]]:
    """First message of ``labelingTaskProgress`` per task, and of ``labelingTasks`` for the app."""
    out: dict[str, dict[str, Any]] = {t: {} for t in task_ids}
    async with client(h.ws_url, key=w.owner.key) as c:
        for k, t in enumerate(task_ids):
            await c.subscribe(f"p{k}", PROGRESS_SUB, t=t)
        await c.subscribe("apps", TASKS_SUB, a=w.app_id)
        for k, t in enumerate(task_ids):
            out[t]["progress"] = await c.data(f"p{k}", "labelingTaskProgress")
        listed = await c.data("apps", "labelingTasks")
        for item in listed["tasks"]:
            if item["taskId"] in out:
                out[item["taskId"]]["list"] = item
    return out


def zip_entries(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


async def export(h: Harness, w: World, version_id: str, fmt: str) -> bytes:
    response = await h.api.http.get(
        f"/dataset-versions/{version_id}/export?format={fmt}", headers=w.owner.headers
    )
    assert response.status_code == 200, (version_id, fmt, response.status_code, response.text[:500])
    return response.content


# --- invariants --------------------------------------------------------------------------------


async def check_waiting_work_has_one_reviewer(h: Harness, w: World) -> None:
    """Each waiting annotation of a live task is in exactly one open REVIEW assignment, held by
    a current reviewer of its task (the creator when the task has no reviewers)."""
    for task in await live_task_docs(w):
        allowed = expected_reviewers(task)
        held: dict[str, list[Assignment]] = {}
        for item in await open_review_assignments({"task_id": task.id}):
            held.setdefault(item.input_id, []).append(item)
        for a in await waiting_annotations(w, [task.id]):
            holders = held.get(a.input_id, [])
            assert len(holders) == 1, (
                f"{w.ann_label(a)} waits in {len(holders)} open review assignments "
                f"(holders {[w.who(x.user_id) for x in holders]}), expected exactly 1"
            )
            holder = holders[0]
            # two asserts, so Hypothesis reports (and minimises) each cause on its own
            assert holder.user_id is not None, (
                f"{w.ann_label(a)} waits in an assignment ({holder.state.value}) held by nobody; "
                f"its reviewers are {[w.who(u) for u in allowed]}"
            )
            assert holder.user_id in allowed, (
                f"{w.ann_label(a)} waits in an assignment ({holder.state.value}) of "
                f"{w.who(holder.user_id)}, not of a current reviewer {[w.who(u) for u in allowed]}"
            )


async def check_review_queues_show_the_waiting_work(h: Harness, w: World) -> None:
    """Through the API: the current reviewers' ``reviewQueue`` lists every waiting annotation of
    the task exactly once (and nothing that is not waiting)."""
    for task in await live_task_docs(w):
        waiting = {a.id: a for a in await waiting_annotations(w, [task.id])}
        seen: dict[str, list[str]] = {}
        for user_id in expected_reviewers(task):
            caller = w.caller(user_id)
            assert caller is not None, f"{w.task_label(task.id)} has an unknown reviewer {user_id}"
            after = None
            while True:
                conn = (await gql(h.api, caller, QUEUE, t=task.id, after=after))["reviewQueue"]
                for node in conn["nodes"]:
                    for ann in node["annotations"]:
                        if ann["status"] in WAITING:
                            seen.setdefault(ann["id"], []).append(w.who(user_id))
                if not conn["pageInfo"]["hasNextPage"]:
                    break
                after = conn["pageInfo"]["endCursor"]
        missing = [w.ann_label(a) for i, a in waiting.items() if i not in seen]
        twice = {w.ann_label(waiting[i]): who for i, who in seen.items() if i in waiting and len(who) > 1}
        stale = [i for i in seen if i not in waiting]
        where = f"{w.task_label(task.id)} review queues of {[w.who(u) for u in expected_reviewers(task)]}"
        # three asserts, so Hypothesis reports (and minimises) each on its own
        assert not missing, f"{where}: waiting but in no queue {missing}"
        assert not twice, f"{where}: waiting in several queues {twice}"
        assert not stale, f"{where}: listed as waiting but not waiting {stale}"


async def check_open_review_items_have_work(h: Harness, w: World) -> None:
    """No open REVIEW assignment is a ghost: its task and input exist, and an annotation of that
    task and input waits for review."""
    live = {t.id for t in await live_task_docs(w)}
    items = await open_review_assignments({"app_id": w.app_id})
    inputs = {
        d["_id"]
        for d in await Input.get_pymongo_collection()
        .find({"_id": {"$in": list({i.input_id for i in items})}}, {"_id": 1})
        .to_list()
    }
    waiting = {
        (d["task_id"], d["input_id"])
        for d in await Annotation.get_pymongo_collection()
        .find({"app_id": w.app_id, "status": {"$in": list(WAITING)}}, {"task_id": 1, "input_id": 1})
        .to_list()
    }
    for item in sorted(items, key=lambda x: (w.task_label(x.task_id), w.input_label(x.input_id))):
        where = f"open review item {w.input_label(item.input_id)}/{w.task_label(item.task_id)} of {w.who(item.user_id)}"
        assert item.task_id in live, f"{where}: its task was deleted"
        assert item.input_id in inputs, f"{where}: its input was deleted"
        assert (item.task_id, item.input_id) in waiting, (
            f"{where}: no annotation of it waits for review (its waiting={item.waiting})"
        )


async def check_metrics_match_recount(h: Harness, w: World) -> None:
    """``labelingTask.metrics`` (GraphQL) equal a recount from the documents."""
    for task in await live_task_docs(w):
        shown = (await gql(h.api, w.owner, TASK, id=task.id))["labelingTask"]["metrics"]
        counted = await recount(task)
        differ = {k: {"api": shown[k], "recount": v} for k, v in counted.items() if shown[k] != v}
        where = f"{w.task_label(task.id)} metrics differ from a recount: {differ}"
        # one assert per figure, so Hypothesis reports (and minimises) each on its own
        assert shown["approved"] == counted["approved"], where
        assert shown["awaitingReview"] == counted["awaitingReview"], where
        assert shown["processed"] == counted["processed"], where
        assert shown["failed"] == counted["failed"], where
        assert shown["discarded"] == counted["discarded"], where
        assert shown["reviewed"] == counted["reviewed"], where


async def check_reviewed_percent_agrees(h: Harness, w: World) -> None:
    """Every "% reviewed" and every "inputs reviewed" the API gives for a task agree."""
    tasks = [t.id for t in await live_task_docs(w)]
    page, live, *each = await asyncio.gather(
        gql(h.api, w.owner, TASKS, a=w.app_id),
        subscription_snapshots(h, w, tasks),
        *(gql(h.api, w.owner, TASK, id=t) for t in tasks),
    )
    listed = {n["id"]: n for n in page["labelingTasks"]["nodes"]}
    for task_id, shown in zip(tasks, each, strict=True):
        one = shown["labelingTask"]
        percents: dict[str, float | None] = {
            "labelingTask.review.reviewedPercent": one["review"]["reviewedPercent"],
            "labelingTasks[].review.reviewedPercent": listed.get(task_id, {})
            .get("review", {})
            .get("reviewedPercent"),
            "labelingTaskProgress.reviewedPercent": live[task_id].get("progress", {}).get("reviewedPercent"),
            "labelingTasks(sub).reviewedPercent": live[task_id].get("list", {}).get("reviewedPercent"),
        }
        counts: dict[str, int | None] = {
            "labelingTask.review.inputsReviewed": one["review"]["inputsReviewed"],
            "labelingTask.metrics.reviewed": one["metrics"]["reviewed"],
            "labelingTasks[].metrics.reviewed": listed.get(task_id, {}).get("metrics", {}).get("reviewed"),
            "labelingTaskProgress.metrics.reviewed": live[task_id]
            .get("progress", {})
            .get("metrics", {})
            .get("reviewed"),
            "labelingTasks(sub).metrics.reviewed": live[task_id]
            .get("list", {})
            .get("metrics", {})
            .get("reviewed"),
        }
        # the counts first: a wrong count is the rarer, more specific failure, and each assert
        # is its own failure for Hypothesis
        assert len(set(counts.values())) == 1, (
            f"{w.task_label(task_id)} 'inputs reviewed' disagrees: {counts}"
        )
        first: float = one["review"]["reviewedPercent"]
        assert all(p is not None and abs(p - first) < 0.011 for p in percents.values()), (
            f"{w.task_label(task_id)} '% reviewed' disagrees: {percents} "
            f"(inputsToReview={one['review']['inputsToReview']}, inputsTotal={one['metrics']['inputsTotal']})"
        )


async def check_versions_export_the_same_bytes(h: Harness, w: World) -> None:
    """Every version exports, in every format, the same files with the same bytes as when it
    was made (``LABELSTREAM_STATEFUL_STRICT_ZIP=1``: the same zip bytes)."""
    pairs = [(v, fmt, before) for v in w.versions for fmt, before in v.exports.items()]
    fresh = await asyncio.gather(*(export(h, w, v.id, fmt) for v, fmt, _ in pairs))
    for (v, fmt, before), now in zip(pairs, fresh, strict=True):
        if STRICT_ZIP:
            assert now == before, f"version {v.label} {fmt}: the zip bytes changed"
        old, new = zip_entries(before), zip_entries(now)
        changed = sorted(
            {n for n, b in old if dict(new).get(n) != b} | {n for n, _ in new if n not in dict(old)}
        )
        assert old == new, f"version {v.label} {fmt} export changed; entries added/removed/changed: {changed}"


async def check_stored_counts_are_fresh(h: Harness, w: World) -> None:
    """The counts a task's next lock holder would start from equal a fresh ``$group``."""
    for doc in await AssignmentCounts.get_pymongo_collection().find({"app_id": w.app_id}).to_list():
        if doc["holder"] is not None:
            continue
        kept = dict(zip(doc["buckets"], doc["counts"], strict=True))
        fresh = await assign.bucket_counts(doc["_id"])
        differ = {
            k: (kept.get(k, 0), fresh.get(k, 0))
            for k in kept.keys() | fresh.keys()
            if kept.get(k, 0) != fresh.get(k, 0)
        }
        assert not differ, f"{w.task_label(doc['_id'])} stored counts differ (stored, fresh): {differ}"


CHECKS: list[Callable[[Harness, World], Awaitable[None]]] = [
    check_waiting_work_has_one_reviewer,
    check_review_queues_show_the_waiting_work,
    check_open_review_items_have_work,
    check_metrics_match_recount,
    check_reviewed_percent_agrees,
    check_versions_export_the_same_bytes,
    check_stored_counts_are_fresh,
]
ACTIVE = [c for c in CHECKS if not ONLY or c.__name__.removeprefix("check_") in ONLY]


async def run_checks(h: Harness, w: World) -> None:
    """Every active check, concurrently (they only read); the first failure in ``CHECKS`` order
    is raised, so each invariant keeps its own place in Hypothesis' report."""
    outcomes = await asyncio.gather(*(check(h, w) for check in ACTIVE), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def _await(value: Awaitable[T]) -> T:
    return await value


# --- the state machine -------------------------------------------------------------------------


class ReviewWorkflow(RuleBasedStateMachine):
    def __init__(self, h: Harness) -> None:
        super().__init__()
        self.h = h
        self.w: World

    def run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(_await(coro), self.h.loop).result(timeout=STEP_TIMEOUT_S)

    def gql(self, caller: Caller, query: str, **variables: Any) -> dict[str, Any]:
        return self.run(gql(self.h.api, caller, query, **variables))

    def drain(self) -> None:
        self.run(self.h.drain())

    def outcome(self, result: dict[str, Any]) -> None:
        extra = {k: v for k, v in result.items() if k != "__typename" and v}
        note(f"  -> {result.get('__typename')} {extra if extra else ''}")

    def pick_task(self, k: int) -> str:
        live = self.w.live_tasks
        return live[k % len(live)]

    def people(self, group: list[Caller], mask: int) -> list[str]:
        return [c.user_id for k, c in enumerate(group) if mask >> k & 1]

    def holder(self, task_id: str, input_id: str) -> str | None:
        items = self.run(open_review_assignments({"task_id": task_id, "input_id": input_id}))
        return items[0].user_id if items else None

    def actor(self, task_id: str, input_id: str, as_owner: bool) -> Caller:
        """The reviewer holding the input's review item, or the owner (asked, or nobody holds it)."""
        held = self.holder(task_id, input_id)
        caller = None if as_owner else self.w.caller(held)
        return caller or self.w.owner

    # setup ------------------------------------------------------------------------------------

    @initialize(
        reviewers=st.integers(2, 3),
        labelers=st.integers(1, 2),
        task_reviewers=st.integers(0, 7),
        task_labelers=st.integers(0, 3),
    )
    def setup(self, reviewers: int, labelers: int, task_reviewers: int, task_labelers: int) -> None:
        self.w = self.run(build_world(self.h, reviewers, labelers))
        self.create_task(task_reviewers, task_labelers, THRESHOLDS[0], False)

    def create_task(
        self, reviewer_mask: int, labeler_mask: int, thresholds: tuple[float, float], delete_previous: bool
    ) -> None:
        w = self.w
        revs, labs = self.people(w.reviewers, reviewer_mask), self.people(w.labelers, labeler_mask)
        label = f"T{len(w.tasks) + 1}"
        note(
            f"create {label}: reviewers {[w.who(r) for r in revs]}, labelers {[w.who(x) for x in labs]}, "
            f"thresholds {thresholds}, deletePreviousAnnotations={delete_previous}"
        )
        made = self.gql(
            w.owner,
            CREATE_TASK,
            i={
                "appId": w.app_id,
                "name": label,
                "datasetId": w.dataset_id,
                "modelId": w.model_id,
                "conceptIds": list(w.concepts.values()),
                "thresholds": {"lower": thresholds[0], "upper": thresholds[1]},
                "reviewerIds": revs,
                "labelerIds": labs,
                "deletePreviousAnnotations": delete_previous,
            },
        )["createLabelingTask"]
        assert made["__typename"] == "LabelingTaskSuccess", made
        w.tasks.append(made["labelingTask"]["id"])
        self.drain()

    # rules ------------------------------------------------------------------------------------

    @precondition(lambda self: len(self.w.live_tasks) < 2 and len(self.w.tasks) < 3)
    @rule(
        reviewers=st.integers(0, 7),
        labelers=st.integers(0, 3),
        thresholds=st.sampled_from(THRESHOLDS),
        delete_previous=st.booleans(),
    )
    def create_and_run_task(
        self, reviewers: int, labelers: int, thresholds: tuple[float, float], delete_previous: bool
    ) -> None:
        self.create_task(reviewers, labelers, thresholds, delete_previous)

    @precondition(lambda self: bool(self.w.live_tasks))
    @rule(task=st.integers(0, 3))
    def rerun_task(self, task: int) -> None:
        t = self.pick_task(task)
        note(f"startLabelingTask {self.w.task_label(t)} (re-run)")
        self.outcome(self.gql(self.w.owner, START, id=t)["startLabelingTask"])
        self.drain()

    @precondition(lambda self: bool(self.w.live_tasks))
    @rule(task=st.integers(0, 3), thresholds=st.sampled_from(THRESHOLDS))
    def reapply_thresholds(self, task: int, thresholds: tuple[float, float]) -> None:
        t = self.pick_task(task)
        note(f"reapplyThresholds {self.w.task_label(t)} {thresholds} (not a dry run)")
        body = {"taskId": t, "thresholds": {"lower": thresholds[0], "upper": thresholds[1]}, "dryRun": False}
        self.outcome(self.gql(self.w.owner, REAPPLY, i=body)["reapplyThresholds"])
        self.drain()

    @precondition(lambda self: bool(self.w.live_tasks))
    @rule(
        action=st.sampled_from(["APPROVE", "REJECT", "REQUEST_CHANGES"]),
        pick=st.integers(0, 63),
        as_owner=st.booleans(),
        by_input=st.booleans(),
    )
    def review(self, action: str, pick: int, as_owner: bool, by_input: bool) -> None:
        w = self.w
        waiting = self.run(waiting_annotations(w, w.live_tasks))
        if not waiting:
            note(f"review {action}: nothing waits")
            return
        a = waiting[pick % len(waiting)]
        assert a.task_id is not None
        caller = self.actor(a.task_id, a.input_id, as_owner)
        selection = {"inputIds": [a.input_id]} if by_input else {"annotationIds": [a.id]}
        note(
            f"review {action} {w.ann_label(a)} by {'input' if by_input else 'annotation'} as {w.who(caller.user_id)}"
        )
        body = {"taskId": a.task_id, "action": action} | selection
        self.outcome(self.gql(caller, REVIEW, i=body)["reviewAnnotations"])
        self.drain()

    @precondition(lambda self: bool(self.w.live_tasks))
    @rule(pick=st.integers(0, 63))
    def open_review_item(self, pick: int) -> None:
        w = self.w
        items = sorted(
            self.run(open_review_assignments({"app_id": w.app_id, "user_id": {"$ne": None}})),
            key=lambda x: (w.task_label(x.task_id), w.input_label(x.input_id)),
        )
        items = [x for x in items if w.caller(x.user_id) is not None]
        if not items:
            note("openReviewItem: no open item held by anyone")
            return
        item = items[pick % len(items)]
        caller = w.caller(item.user_id)
        assert caller is not None
        note(
            f"openReviewItem {w.input_label(item.input_id)}/{w.task_label(item.task_id)} as {w.who(caller.user_id)}"
        )
        self.outcome(self.gql(caller, OPEN, t=item.task_id, i=item.input_id)["openReviewItem"])

    @precondition(lambda self: bool(self.w.live_tasks))
    @rule(
        pick=st.integers(0, 63), concept=st.integers(0, 4), as_owner=st.booleans(), waiting_only=st.booleans()
    )
    def edit_annotation(self, pick: int, concept: int, as_owner: bool, waiting_only: bool) -> None:
        w = self.w
        pool = self.run(
            waiting_annotations(w, w.live_tasks) if waiting_only else task_annotations(w, w.live_tasks)
        )
        if not pool:
            note("editAnnotation: no annotation")
            return
        a = pool[pick % len(pool)]
        assert a.task_id is not None
        ids = [*w.concepts.values(), w.outside_concept]
        target = ids[concept % len(ids)]
        caller = self.actor(a.task_id, a.input_id, as_owner)
        note(f"editAnnotation {w.ann_label(a)} -> {w.concept_label(target)} as {w.who(caller.user_id)}")
        self.outcome(self.gql(caller, EDIT, i={"annotationId": a.id, "conceptId": target})["editAnnotation"])
        self.drain()

    @precondition(lambda self: bool(self.w.live_tasks))
    @rule(pick=st.integers(0, 63), count=st.integers(1, 2), waiting_only=st.booleans())
    def remove_annotations(self, pick: int, count: int, waiting_only: bool) -> None:
        w = self.w
        pool = self.run(
            waiting_annotations(w, w.live_tasks) if waiting_only else task_annotations(w, w.live_tasks)
        )
        if not pool:
            note("removeAnnotations: no annotation")
            return
        chosen = [pool[(pick + k) % len(pool)] for k in range(min(count, len(pool)))]
        note(f"removeAnnotations {[w.ann_label(a) for a in chosen]} as owner")
        self.outcome(self.gql(w.owner, REMOVE, ids=[a.id for a in chosen])["removeAnnotations"])
        self.drain()

    @precondition(lambda self: len(self.w.live_inputs) > 3)
    @rule(pick=st.integers(0, 63), count=st.integers(1, 2))
    def delete_inputs(self, pick: int, count: int) -> None:
        w = self.w
        live = w.live_inputs
        chosen = list(dict.fromkeys(live[(pick + k) % len(live)] for k in range(count)))
        note(f"delete inputs {[w.input_label(i) for i in chosen]}")
        if len(chosen) == 1:
            result = self.gql(w.owner, DELETE_INPUT, id=chosen[0])["deleteInput"]
        else:
            result = self.gql(w.owner, DELETE_INPUTS, ids=chosen)["deleteInputs"]
        self.outcome(result)
        if result["__typename"] in ("DeleteSuccess", "DeleteInputsSuccess"):
            w.deleted_inputs.update(chosen)
        self.drain()

    @precondition(lambda self: bool(self.w.live_tasks))
    @rule(task=st.integers(0, 3), reviewers=st.integers(0, 7))
    def set_reviewers(self, task: int, reviewers: int) -> None:
        t = self.pick_task(task)
        revs = self.people(self.w.reviewers, reviewers)
        note(f"updateLabelingTask {self.w.task_label(t)} reviewerIds={[self.w.who(r) for r in revs]}")
        self.outcome(self.gql(self.w.owner, UPDATE, i={"id": t, "reviewerIds": revs})["updateLabelingTask"])
        self.drain()

    @precondition(lambda self: bool(self.w.live_tasks))
    @rule(task=st.integers(0, 3), labelers=st.integers(0, 3))
    def set_labelers(self, task: int, labelers: int) -> None:
        t = self.pick_task(task)
        labs = self.people(self.w.labelers, labelers)
        note(f"updateLabelingTask {self.w.task_label(t)} labelerIds={[self.w.who(x) for x in labs]}")
        self.outcome(self.gql(self.w.owner, UPDATE, i={"id": t, "labelerIds": labs})["updateLabelingTask"])
        self.drain()

    @precondition(lambda self: len(self.w.versions) < 3)
    @rule()
    def create_version(self) -> None:
        w = self.w
        label = f"V{len(w.versions) + 1}"
        made = self.gql(w.owner, CREATE_VERSION, i={"datasetId": w.dataset_id, "description": label})
        result = made["createDatasetVersion"]
        assert result["__typename"] == "DatasetVersionSuccess", result
        version = result["datasetVersion"]
        note(
            f"createDatasetVersion {label}: {version['inputsCount']} inputs, {version['annotationsCount']} annotations"
        )
        exports = {fmt: self.run(export(self.h, w, version["id"], fmt)) for fmt in self.h.formats}
        w.versions.append(Version(version["id"], label, exports))

    @precondition(lambda self: bool(self.w.live_tasks))
    @rule(task=st.integers(0, 3), delete_annotations=st.booleans())
    def delete_task(self, task: int, delete_annotations: bool) -> None:
        w = self.w
        t = self.pick_task(task)
        note(f"deleteLabelingTask {w.task_label(t)} deleteAnnotations={delete_annotations}")
        result = self.gql(w.owner, DELETE_TASK, id=t, d=delete_annotations)["deleteLabelingTask"]
        self.outcome(result)
        if result["__typename"] == "DeleteSuccess":
            w.deleted_tasks.add(t)
        self.drain()

    # invariants -------------------------------------------------------------------------------

    @invariant()
    def invariants_hold(self) -> None:
        self.run(run_checks(self.h, self.w))


# --- the test ----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_review_workflow_keeps_its_invariants_under_random_actions(
    api: Api, asgi_app: Starlette, drain: Drain, ws_url: str
) -> None:
    print(f"hypothesis seed {SEED}")
    owner = await api.user()
    formats = (await gql(api, owner, FORMATS))["__type"]["enumValues"]
    h = Harness(api, asyncio.get_running_loop(), asgi_app, drain, ws_url, [f["name"] for f in formats])

    def machine() -> ReviewWorkflow:
        return ReviewWorkflow(h)

    factory: Any = seed(SEED)(machine)  # a factory function is fine; the stub wants a class
    await asyncio.to_thread(run_state_machine_as_test, factory, settings=BUDGET)
