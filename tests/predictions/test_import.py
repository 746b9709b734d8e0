"""importPredictions: each format, each bad input (typed errors with lines, nothing written),
and the task's metrics and review queues following an import."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import orjson
import pytest

from app.annotations.models import Annotation
from app.predictions.models import Prediction
from app.review.models import Assignment
from app.settings import Settings
from tests.factories import Api
from tests.predictions.helpers import Small, import_file, small
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import assert_metrics_match_recount, create_task, get_task, null_model


def yolo_zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


async def nothing_written(task_id: str) -> None:
    assert await Annotation.find({"task_id": task_id}).count() == 0
    assert await Prediction.find({"task_id": task_id}).count() == 0


# --- formats ---------------------------------------------------------------------------------


async def test_coco_results_by_file_name_route_by_the_task_thresholds(api: Api) -> None:
    s = await small(api)
    a, b, _ = s.inputs
    rows = [
        {"file_name": f"images/{a}.png", "category_id": "cat", "bbox": [4, 3, 20, 15], "score": 0.95},
        {"file_name": f"{b}.png", "category_id": "dog", "bbox": [0, 0, 64, 48], "score": 0.7},
        {"file_name": f"{b}.png", "category_id": "cat", "bbox": [1, 1, 2, 2], "score": 0.2},
    ]
    done = await import_file(api, s.w.owner, s.task_id, "COCO_RESULTS", orjson.dumps(rows))
    assert done["__typename"] == "ImportPredictionsSuccess", done
    assert (done["inputs"], done["predictions"], done["approved"], done["awaitingReview"], done["discarded"]) == (
        2, 3, 1, 1, 1,
    )  # fmt: skip
    anns = {ann.input_id: ann for ann in await Annotation.find({"task_id": s.task_id}).to_list()}
    assert anns[a].status.value == "SUCCESS" and anns[a].concept_id == s.c["cat"]
    assert anns[a].box == pytest.approx([0.1, 0.1, 0.6, 0.6])  # [x4 y3 w20 h15] in a 40x30 image
    assert anns[b].status.value == "AWAITING_REVIEW" and anns[b].labeled_by_model_id == done["sourceId"]
    metrics = done["labelingTask"]["metrics"]
    assert (metrics["processed"], metrics["approved"], metrics["awaitingReview"], metrics["discarded"]) == (
        2,
        1,
        1,
        1,
    )
    # the input waiting for review is in its reviewer's queue
    queued = await Assignment.find({"task_id": s.task_id, "kind": "REVIEW"}).to_list()
    assert [q.input_id for q in queued] == [b]
    await assert_metrics_match_recount(s.task_id)


async def test_coco_object_with_images_and_categories_sections(api: Api) -> None:
    s = await small(api)
    a, b, c = s.inputs
    doc = {
        "images": [
            {"id": 1, "file_name": f"{a}.png"},
            {"id": 2, "file_name": f"{b}.png"},
            {"id": 3, "file_name": "x.png"},
        ],
        "categories": [{"id": 17, "name": "Cat"}, {"id": 18, "name": "hound"}],
        "annotations": [
            {"image_id": 1, "category_id": 17, "bbox": [0, 0, 10, 10], "score": 0.99},
            {"image_id": 3, "category_id": 18, "bbox": [0, 0, 10, 10], "score": 0.99},
        ],
    }
    done = await import_file(
        api,
        s.w.owner,
        s.task_id,
        "COCO_RESULTS",
        orjson.dumps(doc),
        imageMapping=[{"image": "x.png", "inputId": c}],
        conceptMapping=[{"modelConceptId": "hound", "conceptId": s.c["dog"]}],
    )
    assert done["__typename"] == "ImportPredictionsSuccess", done
    # image 2 has no result: it is imported as an input with no prediction
    assert (done["inputs"], done["predictions"], done["approved"]) == (3, 2, 2)
    # the mapping is the task's now (re-applying thresholds routes the same way)
    assert {"modelConceptId": "hound", "conceptId": s.c["dog"]} in done["labelingTask"]["conceptMapping"]
    anns = {(x.input_id, x.concept_id) for x in await Annotation.find({"task_id": s.task_id}).to_list()}
    assert anns == {(a, s.c["cat"]), (c, s.c["dog"])}


async def test_images_match_an_inputs_metadata_file_name(api: Api) -> None:
    s = await small(api)
    update = """mutation($i: UpdateInputInput!) { updateInput(input: $i) { __typename } }"""
    await api.gql(s.w.owner, update, i={"id": s.inputs[1], "metadata": {"file_name": "IMG_0042.JPG"}})
    rows = [
        {"file_name": "/data/cam1/IMG_0042.JPG", "category_id": "dog", "bbox": [0, 0, 8, 8], "score": 0.95}
    ]
    done = await import_file(api, s.w.owner, s.task_id, "COCO_RESULTS", orjson.dumps(rows))
    assert done["__typename"] == "ImportPredictionsSuccess", done
    ann = await Annotation.find_one({"task_id": s.task_id})
    assert ann is not None and ann.input_id == s.inputs[1]


async def test_yolo_zip_with_names_and_confidences(api: Api) -> None:
    s = await small(api)
    a, b, _ = s.inputs
    data = yolo_zip(
        {
            "data.yaml": "names:\n  0: dog\n  1: cat\n",
            f"labels/{a}.txt": "1 0.5 0.5 0.5 0.5 0.97\n0 0.25 0.25 0.1 0.1 0.6\n",
            f"labels/{b}.txt": "",
        }
    )
    done = await import_file(api, s.w.owner, s.task_id, "YOLO", data, name="preds.zip")
    assert done["__typename"] == "ImportPredictionsSuccess", done
    assert (done["inputs"], done["predictions"], done["approved"], done["awaitingReview"]) == (2, 2, 1, 1)
    cat = await Annotation.find_one({"task_id": s.task_id, "concept_id": s.c["cat"]})
    assert cat is not None and cat.box == pytest.approx([0.25, 0.25, 0.75, 0.75])


async def test_yolo_names_from_the_request(api: Api) -> None:
    s = await small(api)
    data = yolo_zip({f"{s.inputs[0]}.txt": "0 0.5 0.5 0.2 0.2 0.95\n"})
    done = await import_file(api, s.w.owner, s.task_id, "YOLO", data, names=["dog"])
    assert done["__typename"] == "ImportPredictionsSuccess", done
    assert (await Annotation.find_one({"task_id": s.task_id})).concept_id == s.c["dog"]  # type: ignore[union-attr]


async def test_jsonl_export_lines_with_regions_labels_and_text(api: Api) -> None:
    s = await small(api)
    a, b, _ = s.inputs
    lines = [
        {
            "input_id": a,
            "annotations": [
                {"concept_id": s.c["cat"], "confidence": 0.95, "box": {"top": 0.1, "left": 0.1, "bottom": 0.5, "right": 0.5}},
                {"concept": "dog", "confidence": 0.92, "text": "WOOF",
                 "polygon": [{"row": 0.1, "col": 0.1}, {"row": 0.1, "col": 0.9}, {"row": 0.9, "col": 0.5}]},
            ],
            "labels": [{"concept": "cat", "confidence": 0.6}],
        },
        {"file_name": f"images/{b}.png", "annotations": [], "labels": []},
    ]  # fmt: skip
    data = b"\n".join(orjson.dumps(line) for line in lines) + b"\n"
    done = await import_file(api, s.w.owner, s.task_id, "JSONL", data)
    assert done["__typename"] == "ImportPredictionsSuccess", done
    assert (done["inputs"], done["predictions"], done["approved"], done["awaitingReview"]) == (2, 3, 2, 1)
    dog = await Annotation.find_one({"task_id": s.task_id, "concept_id": s.c["dog"]})
    assert dog is not None and dog.text == "WOOF" and dog.polygon is not None and len(dog.polygon) == 6


async def test_the_same_file_imported_again_changes_nothing(api: Api) -> None:
    s = await small(api)
    rows = [{"file_name": f"{s.inputs[0]}.png", "category_id": "cat", "bbox": [1, 1, 5, 5], "score": 0.7}]
    first = await import_file(api, s.w.owner, s.task_id, "COCO_RESULTS", orjson.dumps(rows))
    before = [(x.id, x.status, x.confidence) for x in await Annotation.find({"task_id": s.task_id}).to_list()]
    again = await import_file(api, s.w.owner, s.task_id, "COCO_RESULTS", orjson.dumps(rows))
    assert again["sourceId"] == first["sourceId"]
    after = [(x.id, x.status, x.confidence) for x in await Annotation.find({"task_id": s.task_id}).to_list()]
    assert after == before and await Prediction.find({"task_id": s.task_id}).count() == 1
    assert again["labelingTask"]["metrics"] == first["labelingTask"]["metrics"]


async def test_unknown_categories_can_be_skipped_on_request(api: Api) -> None:
    s = await small(api)
    rows = [
        {"file_name": f"{s.inputs[0]}.png", "category_id": "cat", "bbox": [1, 1, 5, 5], "score": 0.95},
        {"file_name": f"{s.inputs[0]}.png", "category_id": "zebra", "bbox": [1, 1, 5, 5], "score": 0.95},
    ]
    done = await import_file(
        api, s.w.owner, s.task_id, "COCO_RESULTS", orjson.dumps(rows), skipUnknownCategories=True
    )
    assert (done["predictions"], done["skipped"], done["approved"]) == (1, 1, 1)


async def test_importing_every_input_closes_a_task_labeled_by_people(api: Api) -> None:
    s = await small(api)
    assert (await get_task(api, s.w.owner, s.task_id))["status"] == "IN_PROGRESS"
    rows = [
        {"file_name": f"{i}.png", "category_id": "dog", "bbox": [1, 1, 5, 5], "score": 0.99} for i in s.inputs
    ]
    done = await import_file(api, s.w.owner, s.task_id, "COCO_RESULTS", orjson.dumps(rows))
    assert done["labelingTask"]["status"] == "DONE"
    assert done["labelingTask"]["metrics"]["processed"] == done["labelingTask"]["metrics"]["inputsTotal"] == 3


async def test_a_finished_model_task_takes_an_import_too(api: Api, drain: Drain) -> None:
    s = await small(api)
    preds = [{"concept": "cat", "confidence": 0.95}, {"concept": "dog", "confidence": 0.1}]
    model = await null_model(api, s.w.owner, s.w.app_id, preds)
    task = await create_task(
        api, s.w.owner, appId=s.w.app_id, datasetId=s.ds, modelId=model, conceptIds=[s.c["cat"], s.c["dog"]]
    )
    await drain()
    rows = [{"file_name": f"{s.inputs[0]}.png", "category_id": "dog", "bbox": [1, 1, 5, 5], "score": 0.7}]
    done = await import_file(api, s.w.owner, task["id"], "COCO_RESULTS", orjson.dumps(rows))
    assert done["__typename"] == "ImportPredictionsSuccess", done
    # the model's whole-image cat stays beside the imported dog box on that input
    anns = {(x.input_id, x.concept_id) for x in await Annotation.find({"task_id": task["id"]}).to_list()}
    assert (s.inputs[0], s.c["cat"]) in anns and (s.inputs[0], s.c["dog"]) in anns
    assert (
        done["labelingTask"]["metrics"]["approved"] == 3
        and done["labelingTask"]["metrics"]["awaitingReview"] == 1
    )
    await assert_metrics_match_recount(task["id"])


# --- bad input: typed errors, lines, nothing written ----------------------------------------


async def refused(api: Api, s: Small, fmt: str, data: bytes, **extra: Any) -> dict[str, Any]:
    result = await import_file(api, s.w.owner, s.task_id, fmt, data, **extra)
    assert result["__typename"] == "ImportPredictionsError", result
    await nothing_written(s.task_id)
    return result


def problems(result: dict[str, Any]) -> list[tuple[int, str]]:
    return [(p["line"], p["code"]) for p in result["problems"]]


async def test_malformed_json_is_refused(api: Api) -> None:
    s = await small(api)
    result = await refused(api, s, "COCO_RESULTS", b'[{"image_id": 1,')
    assert (result["code"], problems(result)) == ("INVALID", [(0, "INVALID")])


async def test_a_malformed_jsonl_line_is_reported_by_its_number(api: Api) -> None:
    s = await small(api)
    good = orjson.dumps({"input_id": s.inputs[0], "labels": [{"concept": "cat", "confidence": 0.9}]})
    result = await refused(api, s, "JSONL", good + b"\n{oops\n" + good + b"\n")
    assert problems(result) == [(2, "INVALID")]


async def test_unknown_images_and_categories_are_reported_per_line(api: Api) -> None:
    s = await small(api)
    rows = [
        {"file_name": f"{s.inputs[0]}.png", "category_id": "cat", "bbox": [1, 1, 5, 5], "score": 0.9},
        {"file_name": "nowhere.png", "category_id": "cat", "bbox": [1, 1, 5, 5], "score": 0.9},
        {"image_id": 99, "category_id": "cat", "bbox": [1, 1, 5, 5], "score": 0.9},
        {"file_name": f"{s.inputs[0]}.png", "category_id": "zebra", "bbox": [1, 1, 5, 5], "score": 0.9},
    ]
    result = await refused(api, s, "COCO_RESULTS", orjson.dumps(rows))
    assert problems(result) == [(2, "UNKNOWN_IMAGE"), (3, "UNKNOWN_IMAGE"), (4, "UNKNOWN_CATEGORY")]
    assert result["problemsCount"] == 3 and "nowhere.png" in result["problems"][0]["message"]


async def test_a_category_id_missing_from_the_categories_section(api: Api) -> None:
    s = await small(api)
    doc = {"categories": [{"id": 1, "name": "cat"}],
           "annotations": [{"file_name": f"{s.inputs[0]}.png", "category_id": 2, "bbox": [1, 1, 2, 2], "score": 0.5}]}  # fmt: skip
    assert problems(await refused(api, s, "COCO_RESULTS", orjson.dumps(doc))) == [(1, "UNKNOWN_CATEGORY")]


async def test_a_yolo_class_beyond_the_names(api: Api) -> None:
    s = await small(api)
    data = yolo_zip(
        {"classes.txt": "cat\n", f"{s.inputs[0]}.txt": "0 0.5 0.5 0.1 0.1 0.9\n3 0.5 0.5 0.1 0.1 0.9\n"}
    )
    result = await refused(api, s, "YOLO", data)
    assert [(p["line"], p["file"], p["code"]) for p in result["problems"]] == [
        (2, f"{s.inputs[0]}.txt", "UNKNOWN_CATEGORY")
    ]


async def test_a_bbox_outside_the_image(api: Api) -> None:
    s = await small(api)  # the first image is 40x30
    rows = [
        {"file_name": f"{s.inputs[0]}.png", "category_id": "cat", "bbox": [30, 0, 20, 10], "score": 0.9},
        {"file_name": f"{s.inputs[0]}.png", "category_id": "cat", "bbox": [0, 0, 0, 10], "score": 0.9},
        {"file_name": f"{s.inputs[0]}.png", "category_id": "cat", "bbox": [0, 0, 10], "score": 0.9},
    ]
    result = await refused(api, s, "COCO_RESULTS", orjson.dumps(rows))
    assert problems(result) == [(1, "INVALID_GEOMETRY"), (2, "INVALID_GEOMETRY"), (3, "INVALID_GEOMETRY")]
    assert "40x30" in result["problems"][0]["message"]


async def test_a_yolo_box_outside_the_image(api: Api) -> None:
    s = await small(api)
    data = yolo_zip({f"{s.inputs[0]}.txt": "0 0.95 0.5 0.5 0.5 0.9\n"})
    assert problems(await refused(api, s, "YOLO", data, names=["cat"])) == [(1, "INVALID_GEOMETRY")]


@pytest.mark.parametrize("score", [1.5, -0.1, "high", None])
async def test_a_score_not_in_0_to_1(api: Api, score: Any) -> None:
    s = await small(api)
    rows = [{"file_name": f"{s.inputs[0]}.png", "category_id": "cat", "bbox": [1, 1, 5, 5], "score": score}]
    code = "OUT_OF_RANGE" if isinstance(score, float) else "INVALID"
    assert problems(await refused(api, s, "COCO_RESULTS", orjson.dumps(rows))) == [(1, code)]


@pytest.mark.parametrize(("fmt", "data"), [("COCO_RESULTS", b""), ("COCO_RESULTS", b"[]"), ("JSONL", b"\n\n"),
                                           ("YOLO", yolo_zip({"data.yaml": "names: [cat]\n"}))])  # fmt: skip
async def test_an_empty_file(api: Api, fmt: str, data: bytes) -> None:
    s = await small(api)
    result = await refused(api, s, fmt, data)
    assert result["code"] == "EMPTY"


async def test_a_file_over_the_size_limit(
    api: Api, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = await small(api)
    monkeypatch.setattr(settings, "max_import_bytes", 1000)
    rows = [
        {"file_name": f"{s.inputs[0]}.png", "category_id": "cat", "bbox": [1, 1, 5, 5], "score": 0.5}
    ] * 50
    result = await import_file(api, s.w.owner, s.task_id, "COCO_RESULTS", orjson.dumps(rows))
    assert (result["__typename"], result["code"], result["field"]) == ("ValidationError", "TOO_LARGE", "file")
    # a small zip that unpacks beyond the limit is refused without unpacking it
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{s.inputs[0]}.txt", "0 0.5 0.5 0.1 0.1 0.9\n" * 2000)
    assert len(bomb.getvalue()) < 1000
    assert (await refused(api, s, "YOLO", bomb.getvalue(), names=["cat"]))["code"] == "TOO_LARGE"


async def test_too_many_predictions(api: Api, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    s = await small(api)
    monkeypatch.setattr(settings, "max_import_predictions", 3)
    rows = [{"file_name": f"{s.inputs[0]}.png", "category_id": "cat", "bbox": [1, 1, 5, 5], "score": 0.5}] * 4
    assert (await refused(api, s, "COCO_RESULTS", orjson.dumps(rows)))["code"] == "TOO_MANY"


async def test_another_apps_task_is_not_found(api: Api) -> None:
    s = await small(api)
    rows = orjson.dumps(
        [{"file_name": f"{s.inputs[0]}.png", "category_id": "cat", "bbox": [1, 1, 5, 5], "score": 0.5}]
    )
    result = await import_file(api, s.w.stranger, s.task_id, "COCO_RESULTS", rows)
    assert (result["__typename"], result["code"], result["field"]) == ("NotFoundError", "NOT_FOUND", "taskId")
    # the stranger's own task cannot reach this app's inputs either
    other = await small(api)
    result = await import_file(api, other.w.owner, other.task_id, "COCO_RESULTS", rows)
    assert problems(result) == [(1, "UNKNOWN_IMAGE")]
    await nothing_written(s.task_id)


async def test_a_reviewer_may_not_import(api: Api) -> None:
    s = await small(api)
    reviewer = await api.member(s.w.owner, s.w.app_id, ["REVIEWER"])
    result = await import_file(api, reviewer, s.task_id, "COCO_RESULTS", b"[]")
    assert (result["__typename"], result["code"]) == ("PermissionDeniedError", "PERMISSION_DENIED")


async def test_a_task_running_its_model_or_cancelled_takes_no_import(api: Api) -> None:
    s = await small(api)
    model = await null_model(api, s.w.owner, s.w.app_id, [{"concept": "cat", "confidence": 0.95}])
    task = await create_task(
        api, s.w.owner, appId=s.w.app_id, datasetId=s.ds, modelId=model, conceptIds=[s.c["cat"]]
    )
    assert task["status"] == "QUEUED"  # no worker has run yet
    rows = orjson.dumps(
        [{"file_name": f"{s.inputs[0]}.png", "category_id": "cat", "bbox": [1, 1, 5, 5], "score": 0.5}]
    )
    result = await import_file(api, s.w.owner, task["id"], "COCO_RESULTS", rows)
    assert (result["__typename"], result["code"], result["field"]) == (
        "ConflictError",
        "INVALID_STATE",
        "taskId",
    )
    await api.gql(
        s.w.owner, "mutation($id: ID!) { cancelLabelingTask(id: $id) { __typename } }", id=task["id"]
    )
    result = await import_file(api, s.w.owner, task["id"], "COCO_RESULTS", rows)
    assert result["code"] == "INVALID_STATE"


async def test_a_mapping_to_a_concept_outside_the_task(api: Api) -> None:
    s = await small(api)
    bird = await api.concept(s.w.owner, s.w.app_id, "bird")
    rows = orjson.dumps(
        [{"file_name": f"{s.inputs[0]}.png", "category_id": "x", "bbox": [1, 1, 5, 5], "score": 0.5}]
    )
    result = await import_file(
        api,
        s.w.owner,
        s.task_id,
        "COCO_RESULTS",
        rows,
        conceptMapping=[{"modelConceptId": "x", "conceptId": bird}],
    )
    assert (result["code"], result["field"]) == ("CONCEPT_NOT_IN_TASK", "conceptMapping.0.conceptId")
    await nothing_written(s.task_id)


async def test_a_missing_file_part_is_a_validation_error(api: Api) -> None:
    s = await small(api)
    response = await api.http.post(
        "/graphql",
        json={"query": "mutation($i: ImportPredictionsInput!) { importPredictions(input: $i) { __typename "
                          "... on Error { code field } } }",
              "variables": {"i": {"taskId": s.task_id, "format": "JSONL", "file": "not a file"}}},
        headers=s.w.owner.headers,
    )  # fmt: skip
    result = response.json()["data"]["importPredictions"]
    assert (result["__typename"], result["code"], result["field"]) == ("ValidationError", "INVALID", "file")
