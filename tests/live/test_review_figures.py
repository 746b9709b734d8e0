"""The progress subscription's "% reviewed" is the same figure as the task's (issue 10: the
subscription said 17.02 = reviewed / inputsTotal while the task said 50.0)."""

from __future__ import annotations

from tests.factories import Api
from tests.live.helpers import LEGACY, PROGRESS_REVIEW, TRANSPORT, client
from tests.review.helpers import queue_of, review, review_setup, task_view
from tests.tasks_engine.conftest import Drain


async def test_the_subscription_reports_the_tasks_reviewed_percent(
    api: Api, drain: Drain, ws_url: str
) -> None:
    s = await review_setup(api, drain, inputs=6, reviewers=1, predictions=[
        {"concept": "cat", "confidence": 0.7}, {"concept": "dog", "confidence": 0.95}])  # fmt: skip
    item = (await queue_of(api, s.reviewers[0], s.task_id))[0]
    await review(api, s.reviewers[0], s.task_id, "APPROVE", inputIds=[item["inputId"]])
    view = await task_view(api, s.w.owner, s.task_id)
    expected = view["review"]["reviewedPercent"]
    assert expected == round(100 / 6, 2)
    for protocol in (TRANSPORT, LEGACY):
        async with client(ws_url, protocol, key=s.w.owner.key) as ws:
            await ws.subscribe("p", PROGRESS_REVIEW, t=s.task_id)
            snapshot = await ws.data("p", "labelingTaskProgress")
            assert snapshot["reviewedPercent"] == expected
            assert snapshot["metrics"]["reviewedPercent"] == expected
            second = (await queue_of(api, s.reviewers[0], s.task_id))[0]
            await review(api, s.reviewers[0], s.task_id, "APPROVE", inputIds=[second["inputId"]])
            update = await ws.data("p", "labelingTaskProgress")
            now = (await task_view(api, s.w.owner, s.task_id))["review"]["reviewedPercent"]
            assert update["reviewedPercent"] == update["metrics"]["reviewedPercent"] == now
            expected = now
