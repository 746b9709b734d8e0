"""The GraphQL-over-HTTP audit of the npm ``graphql-http`` package (``serverAudits``), run by
node against the app served on a real socket: every MUST and SHOULD audit passes.

Needs node and ``npm ci`` in tools/graphql-http-audit (``.ci/run`` does it, and sets
``LABELSTREAM_REQUIRE_GRAPHQL_HTTP_AUDIT=1`` so that a missing node fails instead of skipping).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.factories import Api

AUDIT_DIR = Path(__file__).resolve().parents[2] / "tools" / "graphql-http-audit"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (AUDIT_DIR / "node_modules" / "graphql-http").is_dir():
        why = "node, or `npm ci` in tools/graphql-http-audit, missing"
        if os.environ.get("LABELSTREAM_REQUIRE_GRAPHQL_HTTP_AUDIT"):
            pytest.fail(why)
        pytest.skip(why)
    return node


async def test_every_must_and_should_audit_of_graphql_http_passes(api: Api, base_url: str) -> None:
    node = _node()
    caller = await api.user()
    proc = await asyncio.create_subprocess_exec(
        node,
        "audit.mjs",
        f"{base_url}/graphql",
        caller.key,
        cwd=AUDIT_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    results = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert len(results) >= 40, err.decode()
    not_passed = [r for r in results if r["fatal"]]
    assert not_passed == [], json.dumps(not_passed, indent=1)
    assert proc.returncode == 0, err.decode()
    levels = {r["name"].split(" ")[0] for r in results}
    assert {"MUST", "SHOULD"} <= levels
