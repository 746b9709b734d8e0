"""``labelstream tasks list|watch``: a real task run by the ``up``'s worker, watched live over
the WebSocket subscription."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import datasets
from tests.cli.conftest import Client, Server
from tests.cli.test_import_export import APPS, dataset

MODELS = "query($a: ID!) { models(appId: $a, builtin: true) { nodes { id name } } }"
CONCEPT = """mutation($a: ID!) { createConcept(input: {appId: $a, name: "tabby"}) {
  __typename ... on ConceptSuccess { concept { id } } ... on Error { code message } } }"""
CONCEPTS = 'query($a: ID!) { concepts(appId: $a, namePrefix: "tabby") { nodes { id } } }'
TASK = """mutation($i: CreateLabelingTaskInput!) { createLabelingTask(input: $i) {
  __typename ... on LabelingTaskSuccess { labelingTask { id } } ... on Error { code message } } }"""


@pytest.mark.slow
def test_watch_follows_a_task_to_done_and_list_shows_it(
    logged_in: Client, cli_server: Server, tmp_path: Path
) -> None:
    for k in range(5):
        datasets.image(tmp_path / "few" / f"f{k}.png", 64, 64, k)
    logged_in.ok("import", str(tmp_path / "few"), "--dataset", "to-label")
    app = cli_server.gql(APPS)["me"]["apps"]["nodes"][0]["id"]
    models = {m["name"]: m["id"] for m in cli_server.gql(MODELS, a=app)["models"]["nodes"]}
    made = cli_server.gql(CONCEPT, a=app)["createConcept"]
    concept = (
        made["concept"]["id"]
        if "concept" in made
        else cli_server.gql(CONCEPTS, a=app)["concepts"]["nodes"][0]["id"]
    )
    task = cli_server.gql(
        TASK,
        i={
            "appId": app,
            "name": "cli-watch",
            "datasetId": dataset(cli_server, "to-label")["id"],
            "modelId": models["general-image-classifier"],
            "conceptIds": [concept],
            "conceptMapping": [{"modelConceptId": "n02123045", "conceptId": concept}],
        },
    )["createLabelingTask"]["labelingTask"]["id"]

    watched = logged_in.run("tasks", "watch", task, timeout=600)
    assert watched.returncode == 0, watched.stderr
    assert f"{task} cli-watch: DONE (5/5 inputs, 0 failed" in watched.stdout

    # a finished task: the snapshot says so and watch ends at once
    assert "DONE (5/5" in logged_in.ok("tasks", "watch", task)
    listed = logged_in.ok("tasks", "list")
    row = next(line for line in listed.splitlines() if line.startswith(task))
    assert "cli-watch" in row and "DONE" in row and "100.0%" in row and "5/5" in row


def test_watch_of_an_unknown_task_fails_cleanly(logged_in: Client) -> None:
    done = logged_in.run("tasks", "watch", "no-such-task")
    assert done.returncode == 1 and "NOT_FOUND" in done.stderr
