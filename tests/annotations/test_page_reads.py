"""A page of annotations is one query, and its items, built from the stored documents without
the Beanie model, say exactly what the model-built ``annotation(id:)`` says."""

from __future__ import annotations

from typing import Any

from pymongo import monitoring

from app.annotations.models import Annotation
from tests.annotations.test_graphql import LIST, add, setup
from tests.factories import Api

# every scalar and region field of Annotation (resolver fields need no stored value of their own)
ALL = """id appId inputId conceptId datasetIds box { top left bottom right } polygon { row col }
  confidence text status labeledByUserId labeledByModelId modelVersionId taskId reviewedBy
  reviewedAt reviewAction editedBy approvedBy audit createdAt updatedAt cropUrl __typename"""
PAGE = "query($a: ID!) { annotations(appId: $a, first: 50) { nodes { " + ALL + " } } }"
OBJECTS = "query($a: ID!) { annotationObjects(appId: $a, first: 50) { nodes { " + ALL + " } } }"
ONE = "query($id: ID!) { annotation(id: $id) { " + ALL + " } }"
# what a request reads for the caller (the key, its user, the membership) and keeps for a while
CALLER = {"api_keys", "users", "memberships"}


class Commands(monitoring.CommandListener):
    """The commands sent (name, collection), by any client created after registration."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, event.command.get(event.command_name)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


# registered at collection time, before the session's clients exist (as tests/writers.py)
COMMANDS = Commands()
monitoring.register(COMMANDS)


async def test_a_page_of_annotations_is_one_query(api: Api) -> None:
    s = await setup(api)
    await add(api, s.w.owner, s.w.app_id, [s.item(confidence=c / 10) for c in range(5)])
    first = await api.gql(s.w.owner, LIST, a=s.w.app_id, first=2)
    COMMANDS.sent.clear()

    page = await api.gql(
        s.w.owner, LIST, a=s.w.app_id, first=2, after=first["annotations"]["pageInfo"]["endCursor"]
    )

    assert len(page["annotations"]["nodes"]) == 2
    sent = [c for c in COMMANDS.sent if c[1] not in CALLER]
    assert sent == [("find", "annotations")]


async def test_page_items_say_what_the_single_annotation_says(api: Api) -> None:
    s = await setup(api)
    made = await add(
        api,
        s.w.owner,
        s.w.app_id,
        [
            s.item(),
            s.item(conceptId=s.dog, box={"top": 0.1, "left": 0.2, "bottom": 0.3, "right": 0.4}, text="hi"),
            s.item(
                polygon=[{"row": 0, "col": 0}, {"row": 0, "col": 1}, {"row": 1, "col": 1}], confidence=0.25
            ),
        ],
    )
    assert not made["errors"]

    nodes = (await api.gql(s.w.owner, PAGE, a=s.w.app_id))["annotations"]["nodes"]
    objects = (await api.gql(s.w.owner, OBJECTS, a=s.w.app_id))["annotationObjects"]["nodes"]

    singles = [(await api.gql(s.w.owner, ONE, id=n["id"]))["annotation"] for n in nodes]
    assert nodes == singles and len(nodes) == 3
    assert objects == [n for n in singles if n["box"] or n["polygon"]] and len(objects) == 2
    assert {n["text"] for n in nodes} == {None, "hi"}


async def test_an_older_annotation_missing_newer_fields_pages_with_the_model_defaults(api: Api) -> None:
    s = await setup(api)
    made = await add(api, s.w.owner, s.w.app_id, [s.item()])
    ident = made["annotations"][0]["id"]
    # as stored by a release before these fields (test set-up may write the collection)
    newer = ["text", "model_version_id", "edited_by", "reviewed_at", "review_action", "approved_by", "audit"]
    await Annotation.get_pymongo_collection().update_one({"_id": ident}, {"$unset": dict.fromkeys(newer, "")})

    nodes = (await api.gql(s.w.owner, PAGE, a=s.w.app_id))["annotations"]["nodes"]

    assert nodes == [(await api.gql(s.w.owner, ONE, id=ident))["annotation"]]
    assert nodes[0]["approvedBy"] == [] and nodes[0]["audit"] is False and nodes[0]["text"] is None


async def test_a_page_of_an_app_the_caller_is_not_in_is_not_found(api: Api) -> None:
    s = await setup(api)
    await add(api, s.w.owner, s.w.app_id, [s.item()])
    stranger = await api.user("stranger@example.com")

    errors = await api.gql_errors(stranger, LIST, a=s.w.app_id, first=2)

    assert [(e["extensions"]["code"], e["extensions"]["field"]) for e in errors] == [("NOT_FOUND", "appId")]
