"""Two OS processes assigning the same task's inputs at once: each input once, counts within one."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

from app.annotations.models import Annotation, AnnotationStatus
from app.review.models import Assignment
from app.settings import Settings
from tests.factories import Api
from tests.review.helpers import open_counts, review_setup, spread

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from app.documents import open_database
    import app.review.models  # registers the assignment documents
    from app.review import assign
    from app.tasks.models import LabelingTask

    async def main(url, db, task_id, reverse, ids):
        client = await open_database(url, db)
        try:
            task = await LabelingTask.get(task_id)
            order = list(reversed(ids)) if reverse == "1" else ids
            for k in range(0, len(order), 4):
                await assign.sync_inputs(task, order[k : k + 4], reason="ROUTED")
        finally:
            await client.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].split(",")))
    """
)


async def test_two_processes_assigning_concurrently_never_assign_twice_and_stay_even(
    api: Api, settings: Settings
) -> None:
    s = await review_setup(api, None, inputs=0, reviewers=3, run=False)
    inputs = [f"input-{k:03d}" for k in range(60)]
    await Annotation.insert_many(
        [
            Annotation(
                app_id=s.w.app_id,
                input_id=i,
                concept_id=s.concepts["cat"],
                confidence=0.6,
                status=AnnotationStatus.AWAITING_REVIEW,
                labeled_by_model_id=s.model_id,
                task_id=s.task_id,
                key=f"{s.task_id}|{i}|cat|",
            )
            for i in inputs
        ]
    )
    assert settings.mongodb_url
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SCRIPT,
            settings.mongodb_url,
            settings.mongodb_db,
            s.task_id,
            reverse,
            ",".join(inputs),
            cwd=ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        for reverse in ("0", "1")
    ]
    results = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err.decode()[-2000:] for _, err in results]
    docs = await Assignment.find({"task_id": s.task_id, "kind": "REVIEW"}).to_list()
    assert sorted(d.input_id for d in docs) == inputs  # each input exactly once
    counts = await open_counts(s.task_id)
    assert sum(counts.values()) == 60
    assert spread(counts, [r.user_id for r in s.reviewers]) <= 1, counts
