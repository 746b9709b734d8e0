"""Review at scale: assigning N inputs to reviewers, then approving every annotation of a model.

    python bench/review.py [--annotations 10000] [--reviewers 3]

On a fresh embedded nx-27017 (MongoDB wire over SQLite): N annotations AWAITING_REVIEW, one per
input, written with ``insert_many``; then

* assign: ``assign.sync_inputs`` over all N inputs in engine-sized batches of 32 (the lock,
  the open counts: the ones the previous batch left, ``AssignmentCounts``, grouped again with
  one ``$group`` once a minute; an ``insert_many`` of the assignments per batch). Printed
  with the mean time of a batch over the first and the last tenth of them: a batch should
  cost the same whatever the number of assignments the task already has;
* approve by labeler: one ``reviewAnnotations(APPROVE, labeledBy=<model>)`` by the owner
  through ``actions.review`` (what the GraphQL mutation calls): the status updates, the
  assignment updates for every input, the metrics, the task's review figures.

Prints wall times and rates; checks that everything ended SUCCESS and every assignment DONE.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.access import Principal  # noqa: E402
from app.annotations.models import Annotation, AnnotationStatus  # noqa: E402
from app.apps.models import App, Membership, Role  # noqa: E402
from app.bootstrap import install_listeners  # noqa: E402
from app.documents import open_database  # noqa: E402
from app.embedded import EmbeddedMongo  # noqa: E402
from app.review import actions, assign  # noqa: E402
from app.review.models import Assignment  # noqa: E402
from app.tasks.models import LabelingTask, TaskMetrics, TaskStatus  # noqa: E402
from app.users.models import User  # noqa: E402


async def run(url: str, n: int, reviewers: int) -> None:
    install_listeners()
    client = await open_database(url, "bench_review")
    owner = User(email="owner@bench.local")
    await owner.insert()
    app = App(name="bench", created_by=owner.id)
    await app.insert()
    people = [User(email=f"r{k}@bench.local") for k in range(reviewers)]
    for p in people:
        await p.insert()
    await Membership(app_id=app.id, user_id=owner.id, roles=[Role.OWNER]).insert()
    for p in people:
        await Membership(app_id=app.id, user_id=p.id, roles=[Role.REVIEWER]).insert()
    task = LabelingTask(
        app_id=app.id,
        name="bench",
        dataset_id="d",
        model_id="model",
        concept_ids=["c"],
        reviewer_ids=[p.id for p in people],
        status=TaskStatus.DONE,
        metrics=TaskMetrics(inputs_total=n, inputs_processed=n, annotations_awaiting_review=n),
        created_by=owner.id,
    )
    await task.insert()
    inputs = [f"in{k:06d}" for k in range(n)]
    t0 = time.perf_counter()
    docs = [
        Annotation(
            app_id=app.id,
            input_id=i,
            concept_id="c",
            confidence=0.5 + (k % 400) / 1000,
            status=AnnotationStatus.AWAITING_REVIEW,
            labeled_by_model_id="model",
            task_id=task.id,
            key=f"{task.id}|{i}|c|",
        ).model_dump(by_alias=True, mode="python")
        for k, i in enumerate(inputs)
    ]
    for k in range(0, n, 1000):
        await Annotation.get_pymongo_collection().insert_many(docs[k : k + 1000])
    t_insert = time.perf_counter() - t0

    t0 = time.perf_counter()
    each = []
    for k in range(0, n, 32):
        started = time.perf_counter()
        await assign.sync_inputs(task, inputs[k : k + 32], reason="ROUTED")
        each.append(time.perf_counter() - started)
    t_assign = time.perf_counter() - t0
    tenth = max(1, len(each) // 10)
    first_ms, last_ms = (1000 * sum(part) / len(part) for part in (each[:tenth], each[-tenth:]))
    counts = await assign.bucket_counts(task.id)

    principal = Principal(user=owner, key_id="bench")
    t0 = time.perf_counter()
    result = await actions.review(
        None,
        principal,
        task.id,
        actions.ReviewAction.APPROVE,
        actions.Selection(labeled_by="model"),
        max_items=128,
    )
    t_approve = time.perf_counter() - t0
    left = await Annotation.find({"task_id": task.id, "status": {"$ne": "SUCCESS"}}).count()
    open_left = await Assignment.find({"task_id": task.id, "state": {"$ne": "DONE"}}).count()
    fresh = await LabelingTask.get(task.id)
    assert fresh is not None
    print(f"annotations: {n}, reviewers: {reviewers} (nx-27017 embedded)")
    print(f"  setup insert_many:         {t_insert:7.2f} s")
    print(
        f"  assign in batches of 32:   {t_assign:7.2f} s  ({n / t_assign:,.0f} inputs/s); buckets {sorted(counts.values())}"
    )
    print(f"  a batch, first/last tenth: {first_ms:7.1f} / {last_ms:.1f} ms")
    print(
        f"  approve all by labeler:    {t_approve:7.2f} s  ({result.approved / t_approve:,.0f} annotations/s)"
    )
    print(
        f"  approved {result.approved}, not SUCCESS left {left}, open assignments left {open_left}, "
        f"metrics.reviewed {fresh.metrics.inputs_reviewed}"
    )
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--annotations", type=int, default=10_000)
    parser.add_argument("--reviewers", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.calibrate import print_calibration

    print_calibration()
    with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
        mongo = EmbeddedMongo(Path(tmp) / "mongodb")
        mongo.start()
        try:
            asyncio.run(run(mongo.url, args.annotations, args.reviewers))
        finally:
            mongo.stop()


if __name__ == "__main__":
    main()
