"""``labelstream import-predictions``: the real command, in its own process, against the API served
by uvicorn on 127.0.0.1 (the session's app, same MongoDB and Redis)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette

from app.annotations.models import Annotation
from app.embedded import free_port
from tests.factories import Api
from tests.predictions.helpers import small

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def base_url(asgi_app: Starlette) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(asgi_app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def run(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "import-predictions", *args,
        # no saved login of whoever runs the tests: only flags and the environment count
        cwd=ROOT, env={**os.environ, "XDG_CONFIG_HOME": str(ROOT / ".no-such-config"), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_command_imports_a_coco_file(api: Api, base_url: str, tmp_path: Path) -> None:
    s = await small(api)
    path = tmp_path / "results.json"
    rows = [{"image_id": 7, "category_id": "kitty", "bbox": [4, 3, 20, 15], "score": 0.95}]
    path.write_bytes(orjson.dumps(rows))
    env = {"LABELSTREAM_URL": base_url, "LABELSTREAM_API_KEY": s.w.owner.key}
    args = [
        str(path),
        "--task",
        s.task_id,
        "--map-image",
        f"7={s.inputs[0]}",
        "--map-concept",
        f"kitty={s.c['cat']}",
    ]
    code, out, err = await run(args, env)
    assert code == 0, err
    assert "imported 1 predictions on 1 inputs" in out and "1 approved" in out
    ann = await Annotation.find_one({"task_id": s.task_id})
    assert ann is not None and ann.input_id == s.inputs[0] and ann.concept_id == s.c["cat"]


async def test_a_refused_file_lists_its_problems_and_exits_1(api: Api, base_url: str, tmp_path: Path) -> None:
    s = await small(api)
    path = tmp_path / "preds.jsonl"
    line = {"input_id": "nobody", "labels": [{"concept": "cat", "confidence": 2}]}
    path.write_bytes(orjson.dumps(line) + b"\n")
    code, _, err = await run(["--url", base_url, "--key", s.w.owner.key, "-t", s.task_id, str(path)], {})
    assert code == 1
    assert "nothing imported" in err and "1: UNKNOWN_IMAGE" in err and "1: OUT_OF_RANGE" in err
    assert await Annotation.find({"task_id": s.task_id}).count() == 0


async def test_a_wrong_key_or_no_key(api: Api, base_url: str, tmp_path: Path) -> None:
    s = await small(api)
    path = tmp_path / "preds.jsonl"
    path.write_bytes(b'{"input_id": "x"}\n')
    code, _, err = await run([str(path), "-t", s.task_id, "--url", base_url, "--key", "ls_wrong"], {})
    assert code == 1 and "import failed" in err
    code, _, err = await run([str(path), "-t", s.task_id, "--url", base_url], {"LABELSTREAM_API_KEY": ""})
    assert code == 2 and "API key" in err
