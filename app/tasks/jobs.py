"""Thin arq functions: take ids, call the engine (CONVENTIONS.md: jobs take ids, not documents)."""

from __future__ import annotations

from typing import Any

from arq import Retry, func

from app.tasks import engine
from app.tasks.engine import TRANSIENT  # retried later (arq's max_tries): a batch is idempotent

MAX_TRIES = 5

# A batch of 32 images through the slowest built-in model (OCR, ~0.6 s each) stays well
# under this; a worker that dies mid-job has it re-run this long (+10 s) later.
BATCH_TIMEOUT_S = 600


async def process_batch(
    ctx: dict[str, Any], task_id: str, input_ids: list[str], run: int, retry: bool = False
) -> dict[str, int]:
    try:
        result = await engine.run_batch(ctx["runtime"], task_id, input_ids, run=run, retry=retry)
    except TRANSIENT as exc:
        tries = int(ctx.get("job_try", 1))
        if tries >= MAX_TRIES:
            raise
        raise Retry(defer=2.0 * tries) from exc
    return {"processed": result.processed, "failed": result.failed, "skipped": result.skipped}


FUNCTIONS = [func(process_batch, name="process_batch", timeout=BATCH_TIMEOUT_S, max_tries=MAX_TRIES)]  # type: ignore[arg-type]
