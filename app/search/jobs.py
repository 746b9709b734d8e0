"""Thin arq functions for search (registered in ``app.tasks.jobs.FUNCTIONS``)."""

from __future__ import annotations

from typing import Any

from arq import func

from app.search import work

JOB_TIMEOUT_S = 600
BACKFILL_TIMEOUT_S = 6 * 3600


async def search_embed(
    ctx: dict[str, Any], annotation_ids: list[str] | None = None, input_ids: list[str] | None = None
) -> dict[str, int]:
    """Embed the given ids, or (without any) the waiting ones (``app.search.pending``): after
    the labeling tasks' batches, many at a time."""
    runtime = ctx["runtime"]
    if annotation_ids or input_ids:
        return {
            "annotations": await work.embed_annotations(runtime, annotation_ids or []),
            "inputs": await work.embed_inputs(runtime, input_ids or []),
        }
    return await work.embed_pending(runtime)


async def search_backfill(ctx: dict[str, Any], backfill_id: str) -> None:
    await work.run_backfill(ctx["runtime"], backfill_id)


FUNCTIONS = [
    # one job per time slot (pending.JOB): no result is kept, there would be one per second
    func(search_embed, name=work.JOB, timeout=JOB_TIMEOUT_S, max_tries=3, keep_result=0),  # type: ignore[arg-type]
    func(search_backfill, name=work.BACKFILL_JOB, timeout=BACKFILL_TIMEOUT_S, max_tries=1),  # type: ignore[arg-type]
]
