"""The per-batch inference time bound (issue 11, point 5): ``batch_inference_limit_s``.

A batch whose inference outlives the bound is terminated (onnxruntime's ``RunOptions.
terminate`` from a watchdog thread; the null adapter's simulated cost is cut short the same
way): its inputs end FAILED with ``INFERENCE_TIME_LIMIT``, the task still closes, the worker
goes on with other work, and ``retryFailedInputs`` redoes them once the bound is raised.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from skimage import data as samples

from app.models.adapters import AdapterInput, ObjectDetectorAdapter
from app.models.adapters.base import InferenceTimeLimit, time_limit
from app.models.adapters.text_regions import TextRegionAdapter
from app.settings import Settings
from app.tasks.models import InputState, TaskInput
from tests.factories import Api, world
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import (
    THREE,
    add_inputs,
    assert_metrics_match_recount,
    b64,
    create_dataset,
    create_task,
    get_task,
    image_inputs,
    null_model,
)
from tests.tasks_engine.test_real_models import builtin, jpeg

RETRY = """mutation($id: ID!) { retryFailedInputs(id: $id) { __typename ... on Error { code message } } }"""
FAILED = """query($t: ID!) { taskInputs(taskId: $t, states: [FAILED]) { nodes { inputId code message } } }"""


async def _failed_codes(api: Api, caller: object, task_id: str) -> list[str]:
    data = await api.gql(caller, FAILED, t=task_id)  # type: ignore[arg-type]
    return [n["code"] for n in data["taskInputs"]["nodes"]]


async def test_a_batch_over_the_time_limit_fails_its_inputs_and_a_retry_with_more_time_labels_them(
    api: Api, drain: Drain, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await world(api)
    concepts = [await api.concept(w.owner, w.app_id, n) for n in ("cat", "dog", "bird")]
    ds = await create_dataset(api, w.owner, w.app_id)
    await image_inputs(api, w.owner, w.app_id, ds, 4)  # one batch of four
    slow = await null_model(api, w.owner, w.app_id, THREE, delay_ms=500)  # 2 s for the batch
    monkeypatch.setattr(settings, "batch_inference_limit_s", 0.05)

    task = await create_task(api, w.owner, appId=w.app_id, datasetId=ds, modelId=slow, conceptIds=concepts)
    await drain()

    done = await get_task(api, w.owner, task["id"])
    assert done["status"] == "DONE"  # the task closes
    assert done["metrics"]["failed"] == 4 and done["metrics"]["approved"] == 0
    assert await _failed_codes(api, w.owner, task["id"]) == ["INFERENCE_TIME_LIMIT"] * 4

    monkeypatch.setattr(settings, "batch_inference_limit_s", 60.0)
    answer = await api.gql(w.owner, RETRY, id=task["id"])
    assert answer["retryFailedInputs"]["__typename"] == "TaskRunSuccess", answer
    await drain()
    again = await get_task(api, w.owner, task["id"])
    assert again["status"] == "DONE"
    assert again["metrics"]["failed"] == 0 and again["metrics"]["approved"] == 4
    await assert_metrics_match_recount(task["id"])


async def test_a_model_over_the_limit_does_not_hold_another_apps_task(
    api: Api, drain: Drain, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "batch_inference_limit_s", 0.2)
    tasks = {}
    for name, delay in (("slow", 1000), ("quick", 0)):  # slow: 4 s a batch without the bound
        w = await world(api)
        concepts = [await api.concept(w.owner, w.app_id, n) for n in ("cat", "dog", "bird")]
        ds = await create_dataset(api, w.owner, w.app_id)
        await image_inputs(api, w.owner, w.app_id, ds, 8)
        model = await null_model(api, w.owner, w.app_id, THREE, delay_ms=delay)
        made = await create_task(
            api, w.owner, appId=w.app_id, datasetId=ds, modelId=model, conceptIds=concepts
        )
        tasks[name] = (w.owner, made["id"])
    await drain(max_jobs=1)

    slow_owner, slow_task = tasks["slow"]
    slow = await get_task(api, slow_owner, slow_task)
    assert slow["status"] == "DONE" and slow["metrics"]["failed"] == 8
    assert set(await _failed_codes(api, slow_owner, slow_task)) == {"INFERENCE_TIME_LIMIT"}
    quick_owner, quick_task = tasks["quick"]
    quick = await get_task(api, quick_owner, quick_task)
    assert quick["status"] == "DONE" and quick["metrics"]["failed"] == 0
    assert quick["metrics"]["approved"] == 8


@pytest.mark.slow
async def test_a_builtin_onnx_model_is_terminated_by_a_tiny_limit(
    api: Api, drain: Drain, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await world(api)
    models = await builtin(api, w.owner, w.app_id)
    person = await api.concept(w.owner, w.app_id, "person")
    ds = await create_dataset(api, w.owner, w.app_id)
    await add_inputs(
        api, w.owner, w.app_id, [{"imageBase64": b64(jpeg(samples.astronaut())), "datasetIds": [ds]}]
    )
    monkeypatch.setattr(settings, "batch_inference_limit_s", 0.0001)
    task = await create_task(
        api,
        w.owner,
        appId=w.app_id,
        datasetId=ds,
        modelId=models["general-object-detector"],
        taskType="BOUNDING_BOX_DETECTION",
        conceptIds=[person],
    )
    await drain()
    assert (await get_task(api, w.owner, task["id"]))["status"] == "DONE"
    (state,) = await TaskInput.find({"task_id": task["id"]}).to_list()
    assert state.state is InputState.FAILED and state.code == "INFERENCE_TIME_LIMIT"

    monkeypatch.setattr(settings, "batch_inference_limit_s", 60.0)
    await api.gql(w.owner, RETRY, id=task["id"])
    await drain()
    after = await get_task(api, w.owner, task["id"])
    metrics = after["metrics"]
    assert metrics["failed"] == 0 and metrics["approved"] + metrics["awaitingReview"] >= 1


@pytest.mark.slow
def test_the_watchdog_terminates_an_onnx_run_in_flight() -> None:
    """Runs the detector over and over under a deadline that a second thread expires once the
    first run has started: the run in flight (or the next) stops with InferenceTimeLimit."""
    adapter = ObjectDetectorAdapter()
    image = AdapterInput(image=np.asarray(samples.astronaut(), dtype=np.uint8))
    adapter.predict([image])  # weights loaded outside the deadline
    with time_limit(3600) as deadline, pytest.raises(InferenceTimeLimit):
        started = threading.Event()
        original = adapter._session.session.run

        def run(*args: object) -> object:
            started.set()
            return original(*args)

        adapter._session.session = _Spy(adapter._session.session, run)
        threading.Thread(target=lambda: started.wait(30) and deadline.expire(), daemon=True).start()
        for _ in range(1000):
            adapter.predict([image])


class _Spy:
    def __init__(self, session: object, run: object) -> None:
        self._session, self.run = session, run

    def __getattr__(self, name: str) -> object:
        return getattr(self._session, name)


@pytest.mark.slow
def test_the_text_region_models_own_sessions_are_bounded_too() -> None:
    """rapidocr runs its own onnxruntime sessions: the adapter wraps each, so an expired
    deadline stops OCR like any other model instead of letting it run on."""
    adapter = TextRegionAdapter()
    image = AdapterInput(
        image=np.asarray(samples.page(), dtype=np.uint8).repeat(3).reshape((*samples.page().shape, 3))
    )
    assert adapter.predict([image])  # weights loaded outside the deadline; the page has text
    with time_limit(3600) as deadline, pytest.raises(InferenceTimeLimit):
        deadline.expire()
        adapter.predict([image])
