"""Model versions under random sequences of uploads, broken uploads and task runs.

A Hypothesis ``RuleBasedStateMachine`` drives the real API (multipart uploads over httpx, a
real arq worker in burst mode). After every step:

* the model's versions are numbered 1..n in upload order, one per accepted upload, none for a
  refused one; ``activeVersion`` is the last accepted, and the model's config and concepts are
  that version's;
* every version's file is in the blob store and pinned by exactly that version;
* every run of the task recorded one version (``taskModelVersions``), and the task's
  annotations say the version of its latest run made them.

Environment: ``LABELSTREAM_HYPOTHESIS_EXAMPLES`` (default 4), ``LABELSTREAM_HYPOTHESIS_STEPS``
(default 8).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from app.annotations.models import Annotation
from app.core.blob_pins import BlobPin
from app.models.models import ModelVersion
from app.settings import Settings
from tests.factories import Api, world
from tests.models.onnx_files import constant_model, yolov8_output
from tests.models.upload_helpers import concepts_input, upload_model, upload_version
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import add_inputs, b64, create_dataset, create_task, png

pytestmark = pytest.mark.slow

T = TypeVar("T")
BUDGET = settings(
    max_examples=int(os.environ.get("LABELSTREAM_HYPOTHESIS_EXAMPLES", "4")),
    stateful_step_count=int(os.environ.get("LABELSTREAM_HYPOTHESIS_STEPS", "8")),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    print_blob=False,
)
MODEL = """query($id: ID!) { model(id: $id) { config conceptsCount
  concepts(first: 10) { nodes { id } }
  activeVersion { id number sha256 config }
  versions(first: 50) { nodes { id number sha256 } } } }"""
RUNS = """query($t: ID!) { taskModelVersions(taskId: $t, first: 50) { nodes { run versionId } } }"""


def good_file(label: int, score: float) -> bytes:
    out = yolov8_output([(32, 32, 16, 8)], [label], [score], 2)
    return constant_model({"output0": out})


def broken_file(kind: int) -> bytes:
    if kind == 0:
        return b"not a model"
    out = yolov8_output([(32, 32, 16, 8)], [0], [0.9], 2)
    if kind == 1:
        out[0, 0, 0] = np.nan
        return constant_model({"output0": out})
    return constant_model({"output0": yolov8_output([(32, 32, 16, 8)], [0], [0.9], 5)})  # 5 classes


async def _await(value: Awaitable[T]) -> T:
    return await value


class Versions(RuleBasedStateMachine):
    def __init__(self, h: dict[str, Any]) -> None:
        super().__init__()
        self.h = h
        self.accepted: list[str] = []  # sha256 of each accepted upload, in order
        self.runs = 0

    def run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(_await(coro), self.h["loop"]).result(timeout=120)

    @initialize()
    def start(self) -> None:
        api: Api = self.h["api"]
        self.w = self.run(world(api))
        ds = self.run(create_dataset(api, self.w.owner, self.w.app_id))
        self.run(
            add_inputs(
                api, self.w.owner, self.w.app_id, [{"imageBase64": b64(png(1, (40, 20))), "datasetIds": [ds]}]
            )
        )
        result = self.run(
            upload_model(self.h["http"], self.w.owner, self.w.app_id, good_file(0, 0.9),
                         concepts=concepts_input(["cat", "dog"]))
        )  # fmt: skip
        self.model = result["model"]["id"]
        self.accepted.append(result["model"]["activeVersion"]["sha256"])
        self.concepts = [self.run(api.concept(self.w.owner, self.w.app_id, n)) for n in ("cat", "dog")]
        task = self.run(
            create_task(api, self.w.owner, appId=self.w.app_id, datasetId=ds, modelId=self.model,
                        conceptIds=self.concepts, taskType="BOUNDING_BOX_DETECTION",
                        thresholds={"lower": 0.3, "upper": 0.8})
        )  # fmt: skip
        self.task = task["id"]
        self.run(self.h["drain"]())  # run 1

    @rule(label=st.integers(0, 1), score=st.sampled_from([0.5, 0.9, 0.95]))
    def upload_good(self, label: int, score: float) -> None:
        result = self.run(upload_version(self.h["http"], self.w.owner, self.model, good_file(label, score)))
        assert result["__typename"] == "ModelVersionSuccess", result
        assert result["version"]["number"] == len(self.accepted) + 1
        self.accepted.append(result["model"]["activeVersion"]["sha256"])

    @rule(kind=st.integers(0, 2))
    def upload_broken(self, kind: int) -> None:
        result = self.run(upload_version(self.h["http"], self.w.owner, self.model, broken_file(kind)))
        assert result["__typename"] == "ValidationError", result

    @rule()
    def run_task(self) -> None:
        api: Api = self.h["api"]
        data = self.run(
            api.gql(
                self.w.owner, "mutation($id: ID!) { startLabelingTask(id: $id) { __typename } }", id=self.task
            )
        )
        assert data["startLabelingTask"]["__typename"] == "TaskRunSuccess", data
        self.run(self.h["drain"]())
        self.runs += 1

    @invariant()
    def versions_follow_the_accepted_uploads(self) -> None:
        model = self.run(self.h["api"].gql(self.w.owner, MODEL, id=self.model))["model"]
        versions = model["versions"]["nodes"]
        assert [v["number"] for v in versions] == list(range(1, len(self.accepted) + 1))
        assert [v["sha256"] for v in versions] == self.accepted
        assert model["activeVersion"]["id"] == versions[-1]["id"]
        assert model["config"] == model["activeVersion"]["config"]
        assert [c["id"] for c in model["concepts"]["nodes"]] == model["config"]["labels"]

    @invariant()
    def every_version_file_is_stored_and_pinned_by_its_version(self) -> None:
        async def check() -> None:
            docs = await ModelVersion.find({"model_id": self.model}).to_list()
            for doc in docs:
                pins = await BlobPin.find({"key": doc.blob_key, "owner": doc.pin_owner}).to_list()
                assert len(pins) == 1
                path = Path(self.h["settings"].resolved_blob_dir) / doc.blob_key[:2] / doc.blob_key[2:]
                assert path.exists()

        self.run(check())

    @invariant()
    def runs_record_a_version_and_annotations_name_it(self) -> None:
        runs = self.run(self.h["api"].gql(self.w.owner, RUNS, t=self.task))["taskModelVersions"]["nodes"]
        assert [r["run"] for r in runs] == list(range(1, len(runs) + 1))
        assert len(runs) == self.runs + 1
        labels = self.run(Annotation.find({"task_id": self.task}).to_list())
        if runs and labels:
            assert {a.model_version_id for a in labels} == {runs[-1]["versionId"]}


async def test_model_versions_keep_their_invariants_under_random_uploads_and_runs(
    api: Api, http: httpx.AsyncClient, drain: Drain, settings: Settings
) -> None:
    h = {"api": api, "http": http, "drain": drain, "settings": settings, "loop": asyncio.get_running_loop()}

    def machine() -> Versions:
        return Versions(h)

    factory: Any = machine
    await asyncio.to_thread(run_state_machine_as_test, factory, settings=BUDGET)
