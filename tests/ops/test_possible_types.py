"""possible-types.json (Apollo's and urql's ``possibleTypes``) is what the running API says
through introspection, and ``labelstream schema check`` fails when it is stale."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from app.cli import cli
from app.graphql import possible_types
from tests.factories import Api

REPO = Path(__file__).resolve().parents[2]
INTROSPECT = "{ __schema { types { name kind possibleTypes { name } } } }"


async def test_the_repository_file_lists_every_interface_and_union_the_api_reports(api: Api) -> None:
    caller = await api.user()
    response = await api.raw(INTROSPECT, key=caller.key)
    types = response.json()["data"]["__schema"]["types"]
    reported = {
        t["name"]: sorted(p["name"] for p in t["possibleTypes"])
        for t in types
        if t["kind"] in ("INTERFACE", "UNION") and not t["name"].startswith("__")
    }
    in_repo = json.loads((REPO / possible_types.FILE_NAME).read_text())
    assert in_repo == reported
    assert "NotFoundError" in in_repo["Error"]  # what `... on Error { code }` needs to match


def test_schema_check_fails_on_a_stale_possible_types_file_and_an_export_fixes_it(tmp_path: Path) -> None:
    runner = CliRunner()
    schema = tmp_path / "schema.graphql"
    assert runner.invoke(cli, ["schema", "export", "--path", str(schema)]).exit_code == 0
    assert not (tmp_path / "possible-types.json").exists()  # only on request
    exported = runner.invoke(cli, ["schema", "export", "--path", str(schema), "--possible-types"])
    assert exported.exit_code == 0, exported.output
    assert runner.invoke(cli, ["schema", "check", "--path", str(schema)]).exit_code == 0
    (tmp_path / "possible-types.json").write_text("{}\n")
    stale = runner.invoke(cli, ["schema", "check", "--path", str(schema)])
    assert stale.exit_code == 1 and "possible-types" in stale.output
    # once the file exists, a plain export keeps it in step
    assert runner.invoke(cli, ["schema", "export", "--path", str(schema)]).exit_code == 0
    assert runner.invoke(cli, ["schema", "check", "--path", str(schema)]).exit_code == 0
