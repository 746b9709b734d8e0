"""Factories for registry, task and annotation tests.

Models, workflows and tasks go through the real API; datasets and inputs are written straight
as Beanie documents (their own API is tested in tests/datasets and tests/inputs), which keeps
these tests small and fast.
"""

from __future__ import annotations

from typing import Any

from app.datasets.models import Dataset
from app.inputs.models import Input, InputKind
from tests.factories import Api, Caller

MODEL_FIELDS = """__typename ... on ModelSuccess { model { id name kind adapter config zeroShot
  conceptsCount concepts { nodes { id name } } } } ... on Error { code field message }"""
WORKFLOW_FIELDS = """__typename ... on WorkflowSuccess { workflow { id name modelIds
  models { id } } } ... on Error { code field message }"""
TASK_FIELDS = """__typename ... on LabelingTaskSuccess { labelingTask { id name status priority
  autoAnnotation deletePreviousAnnotations datasetId modelId workflowId conceptIds
  reviewerIds labelerIds taskType
  thresholds { lower upper lowerInclusive upperInclusive }
  conceptThresholds { conceptId range { lower upper } }
  conceptMapping { modelConceptId conceptId }
  reviewerWeights { userId weight }
  metrics { inputsTotal processed failed approved awaitingReview discarded reviewed labelingPercent }
} } ... on Error { code field message }"""

CREATE_MODEL = "mutation($i: CreateModelInput!) { createModel(input: $i) { " + MODEL_FIELDS + " } }"
CREATE_WORKFLOW = (
    "mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { " + WORKFLOW_FIELDS + " } }"
)
CREATE_TASK = (
    "mutation($i: CreateLabelingTaskInput!) { createLabelingTask(input: $i) { " + TASK_FIELDS + " } }"
)


async def dataset(app_id: str, name: str = "Dataset") -> str:
    doc = Dataset(app_id=app_id, name=name)
    await doc.insert()
    return doc.id


async def text_input(app_id: str, dataset_ids: list[str] | None = None, text: str = "hi") -> str:
    doc = Input(app_id=app_id, kind=InputKind.TEXT, text=text, dataset_ids=dataset_ids or [])
    await doc.insert()
    return doc.id


def concepts(*names: str) -> list[dict[str, str]]:
    """Model concepts ``[{id: "m-<name>", name}]``."""
    return [{"id": f"m-{n.lower()}", "name": n} for n in names]


async def create_model(api: Api, caller: Caller, app_id: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "appId": app_id,
        "name": "Classifier",
        "kind": "CLASSIFIER",
        "adapter": "null",
    } | fields
    result: dict[str, Any] = (await api.gql(caller, CREATE_MODEL, i=body))["createModel"]
    return result


async def model(api: Api, caller: Caller, app_id: str, names: tuple[str, ...] = (), **fields: Any) -> str:
    made = await create_model(api, caller, app_id, concepts=concepts(*names), **fields)
    assert made["__typename"] == "ModelSuccess", made
    model_id: str = made["model"]["id"]
    return model_id


async def create_workflow(
    api: Api, caller: Caller, app_id: str, model_ids: list[str], name: str = "Flow"
) -> dict[str, Any]:
    body = {"appId": app_id, "name": name, "modelIds": model_ids}
    result: dict[str, Any] = (await api.gql(caller, CREATE_WORKFLOW, i=body))["createWorkflow"]
    return result


async def workflow(api: Api, caller: Caller, app_id: str, model_ids: list[str]) -> str:
    made = await create_workflow(api, caller, app_id, model_ids)
    assert made["__typename"] == "WorkflowSuccess", made
    workflow_id: str = made["workflow"]["id"]
    return workflow_id


async def create_task(api: Api, caller: Caller, *, defaults: bool = False, **fields: Any) -> dict[str, Any]:
    """``createLabelingTask``; these tests check what is stored, so the task does not start
    (``start: false``) unless asked, or unless ``defaults`` sends only the fields given."""
    body = ({"name": "Task"} if defaults else {"name": "Task", "start": False}) | fields
    result: dict[str, Any] = (await api.gql(caller, CREATE_TASK, i=body))["createLabelingTask"]
    return result


async def task(api: Api, caller: Caller, **fields: Any) -> str:
    made = await create_task(api, caller, **fields)
    assert made["__typename"] == "LabelingTaskSuccess", made
    task_id: str = made["labelingTask"]["id"]
    return task_id
