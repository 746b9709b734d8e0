"""The per-process inference lock belongs to its event loop: one a dead loop left held never
blocks a later loop (keyed by ``id(loop)``, a new loop at a reused address got it, and a task
of the priority test then waited forever)."""

from __future__ import annotations

import asyncio
import gc

from app.tasks.run.predict import inference_lock


def test_a_lock_left_held_by_a_loop_that_ended_does_not_block_the_next_loops() -> None:
    async def take_and_leave() -> None:
        await inference_lock().acquire()  # a job its loop never finished: never released

    async def take_within_a_second() -> None:
        await asyncio.wait_for(inference_lock().acquire(), timeout=1.0)

    for _ in range(30):  # loops come and go, as one per test does; addresses get reused
        asyncio.run(take_and_leave())
        gc.collect()
        asyncio.run(take_within_a_second())
