"""Versions that never change (issue 10, part 4): a version exports the same bytes whatever
happens later, keeps its images, says what each format could not hold, and holds one copy of a
label however many tasks made it."""

from __future__ import annotations

import asyncio
import io
import warnings
import zipfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonlines
import pytest

from app.annotations.models import Annotation
from app.core.blobs import LocalBlobStore
from app.inputs.models import Input
from app.settings import Settings
from tests.exports.helpers import (
    FORMATS,
    PREDICTIONS,
    Exported,
    create_version,
    detection_task,
    download,
    exported,
    manifest,
    zip_bytes,
)
from tests.factories import Api
from tests.tasks_engine.conftest import Drain
from tests.tasks_engine.helpers import add_inputs, b64, create_dataset, null_model, png

# zip times have a two-second resolution: a wait this long makes "later" a different zip time
LATER_S = 2.1


def _typename(result: dict[str, Any]) -> str:
    name: str = result["__typename"]
    assert name.endswith("Success"), result
    return name


async def _delete_input(api: Api, e: Exported) -> None:
    first = next(iter(e.images))
    q = "mutation($id: ID!) { deleteInput(id: $id) { __typename ... on Error { code message } } }"
    _typename((await api.gql(e.owner, q, id=first))["deleteInput"])


async def _remove_annotations(api: Api, e: Exported) -> None:
    ids = [a.id for a in await Annotation.find({"app_id": e.app_id}).to_list()][:2]
    q = "mutation($ids: [ID!]!) { removeAnnotations(ids: $ids) { __typename ... on Error { code message } } }"
    _typename((await api.gql(e.owner, q, ids=ids))["removeAnnotations"])


async def _edit_annotation(api: Api, e: Exported) -> None:
    cat = await Annotation.find_one(
        {"app_id": e.app_id, "concept_id": e.concepts["cat"], "status": "SUCCESS"}
    )
    assert cat is not None
    q = """mutation($i: EditAnnotationInput!) { editAnnotation(input: $i) {
             __typename ... on Error { code message } } }"""
    box = {"top": 0.3, "left": 0.3, "bottom": 0.9, "right": 0.9}
    _typename((await api.gql(e.owner, q, i={"annotationId": cat.id, "box": box}))["editAnnotation"])


async def _delete_task(api: Api, e: Exported) -> None:
    q = """mutation($id: ID!) { deleteLabelingTask(id: $id, deleteAnnotations: true) {
             __typename ... on Error { code message } } }"""
    _typename((await api.gql(e.owner, q, id=e.task_id))["deleteLabelingTask"])


async def _review(api: Api, e: Exported) -> None:
    bird = await Annotation.find_one({"app_id": e.app_id, "concept_id": e.concepts["bird"]})
    assert bird is not None and bird.status != "SUCCESS"
    q = """mutation($i: ReviewAnnotationsInput!) { reviewAnnotations(input: $i) {
             __typename ... on Error { code message } } }"""
    i = {"taskId": e.task_id, "action": "APPROVE", "annotationIds": [bird.id]}
    _typename((await api.gql(e.owner, q, i=i))["reviewAnnotations"])


async def _rename_concept(api: Api, e: Exported) -> None:
    q = """mutation($i: UpdateConceptInput!) { updateConcept(input: $i) {
             __typename ... on Error { code message } } }"""
    _typename((await api.gql(e.owner, q, i={"id": e.concepts["indoor"], "name": "inside"}))["updateConcept"])


LATER: dict[str, Callable[[Api, Exported], Awaitable[None]]] = {
    "deleteInput": _delete_input,
    "removeAnnotations": _remove_annotations,
    "editAnnotation": _edit_annotation,
    "deleteLabelingTask": _delete_task,
    "reviewAnnotations": _review,
    "updateConcept": _rename_concept,
}


async def _all_formats(api: Api, e: Exported) -> dict[tuple[str, bool], bytes]:
    return {
        (fmt, images): await zip_bytes(api, e.owner, e.version_id, fmt, images=images)
        for fmt in FORMATS
        for images in (True, False)
    }


@pytest.mark.parametrize("action", list(LATER))
async def test_a_version_exports_the_same_bytes_after_a_later_change(
    api: Api, drain: Drain, action: str
) -> None:
    # given a version with regions, whole-image labels and a text input, exported every way
    e = await exported(api, drain, whole_image=True)
    before = await _all_formats(api, e)
    await asyncio.sleep(LATER_S)
    # when something it was made from changes
    await LATER[action](api, e)
    # then every export is the same bytes as before
    after = await _all_formats(api, e)
    for key, data in before.items():
        assert after[key] == data, key


async def test_the_same_version_downloads_as_the_same_bytes_stamped_with_its_creation_time(
    api: Api, drain: Drain
) -> None:
    e = await exported(api, drain, whole_image=True)
    first = {fmt: await zip_bytes(api, e.owner, e.version_id, fmt) for fmt in FORMATS}
    await asyncio.sleep(LATER_S)
    again = {fmt: await zip_bytes(api, e.owner, e.version_id, fmt) for fmt in FORMATS}
    assert again == first
    q = "query($id: ID!) { datasetVersion(id: $id) { createdAt } }"
    created = datetime.fromisoformat(
        (await api.gql(e.owner, q, id=e.version_id))["datasetVersion"]["createdAt"]
    )
    stamp = created.astimezone(UTC).timetuple()[:6]
    stamp = (*stamp[:5], stamp[5] - stamp[5] % 2)  # zip keeps even seconds
    for fmt, data in first.items():
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
        assert {i.date_time for i in infos} == {stamp}, fmt
        assert {i.external_attr >> 16 for i in infos} == {0o644}, fmt


async def test_a_deleted_inputs_image_stays_in_every_format_of_the_version(
    api: Api, drain: Drain, tmp_path: Path
) -> None:
    from pycocotools.coco import COCO

    # given a version, when one of its images' input is deleted
    e = await exported(api, drain)
    gone = next(iter(e.images))
    await _delete_input(api, e)
    assert await Input.get(gone) is None
    # then every format still has that image, byte for byte, where its labels say it is
    name = f"{gone}.png"
    coco = COCO(str((await download(api, e.owner, e.version_id, "COCO", tmp_path)) / "annotations.json"))
    assert f"images/{name}" in {i["file_name"] for i in coco.loadImgs(coco.getImgIds())}
    assert (tmp_path / "coco" / "images" / name).read_bytes() == e.pngs[gone]
    jsonl = await download(api, e.owner, e.version_id, "JSONL", tmp_path)
    with jsonlines.open(jsonl / "data.jsonl") as reader:
        assert f"images/{name}" in {row["file_name"] for row in reader}
    assert (jsonl / "images" / name).read_bytes() == e.pngs[gone]
    yolo = await download(api, e.owner, e.version_id, "YOLO", tmp_path)
    assert (yolo / "labels" / f"{gone}.txt").read_text().count("\n") == 2
    assert (yolo / "images" / name).read_bytes() == e.pngs[gone]
    voc = await download(api, e.owner, e.version_id, "VOC", tmp_path)
    assert (voc / "Annotations" / f"{gone}.xml").exists()
    assert (voc / "JPEGImages" / name).read_bytes() == e.pngs[gone]


async def test_an_image_goes_from_the_store_with_the_last_version_and_input_that_hold_it(
    api: Api, drain: Drain, settings: Settings
) -> None:
    store = LocalBlobStore(settings.resolved_blob_dir)
    e = await exported(api, drain)
    gone, kept = list(e.images)[:2]
    keys = {i.id: i.blob_key for i in await Input.find({"_id": {"$in": [gone, kept]}}).to_list()}
    assert all(keys.values())
    v2 = (await create_version(api, e.owner, datasetId=e.dataset_id))["id"]
    delete = "mutation($id: ID!) { deleteDatasetVersion(id: $id) { __typename ... on Error { code } } }"
    # given two versions holding an image whose input is then deleted
    await _delete_input(api, e)
    assert await store.get(keys[gone]) == e.pngs[gone]
    # when the first version goes, the second still holds the image
    _typename((await api.gql(e.owner, delete, id=e.version_id))["deleteDatasetVersion"])
    assert await store.get(keys[gone]) == e.pngs[gone]
    v2_zip = zipfile.ZipFile(io.BytesIO(await zip_bytes(api, e.owner, v2, "JSONL")))
    assert v2_zip.read(f"images/{gone}.png") == e.pngs[gone]
    # when the last version goes, the image nobody holds goes; one an input holds stays
    _typename((await api.gql(e.owner, delete, id=v2))["deleteDatasetVersion"])
    assert await store.get(keys[gone]) is None
    assert await store.get(keys[kept]) == e.pngs[kept]


def _supervision() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import supervision as sv
    return sv


async def test_whole_image_labels_are_image_labels_in_coco_and_jsonl(
    api: Api, drain: Drain, tmp_path: Path
) -> None:
    from pycocotools.coco import COCO

    e = await exported(api, drain, whole_image=True)
    coco_dir = await download(api, e.owner, e.version_id, "COCO", tmp_path)
    coco = COCO(str(coco_dir / "annotations.json"))
    assert len(coco.getAnnIds()) == 6  # the regions, as before: plain COCO readers are unaffected
    files = {img["id"]: img["file_name"] for img in coco.loadImgs(coco.getImgIds())}
    indoor = next(c["id"] for c in coco.loadCats(coco.getCatIds()) if c["name"] == "indoor")
    labels = coco.dataset["image_labels"]
    assert sorted(files[lb["image_id"]] for lb in labels) == sorted(f"images/{i}.png" for i in e.images)
    assert {lb["category_id"] for lb in labels} == {indoor}
    assert len({lb["id"] for lb in labels}) == 3
    jsonl = await download(api, e.owner, e.version_id, "JSONL", tmp_path)
    with jsonlines.open(jsonl / "data.jsonl") as reader:
        rows = {row["input_id"]: row for row in reader}
    for input_id in [*e.images, e.text_id]:
        assert [lb["concept"] for lb in rows[input_id]["labels"]] == ["indoor"]
        assert "indoor" not in {a["concept"] for a in rows[input_id]["annotations"]}


@pytest.mark.parametrize("fmt", ["YOLO", "YOLO_SEGMENT"])
async def test_whole_image_labels_go_to_yolo_classification_folders(
    api: Api, drain: Drain, tmp_path: Path, fmt: str
) -> None:
    sv = _supervision()
    e = await exported(api, drain, whole_image=True)
    folder = await download(api, e.owner, e.version_id, fmt, tmp_path)
    classify = sv.ClassificationDataset.from_folder_structure(str(folder / "classify" / "all"))
    assert classify.classes == ["indoor"]
    assert sorted(Path(p).stem for p in classify.image_paths) == sorted(e.images)
    for stem in e.images:
        assert (folder / "classify" / "all" / "indoor" / f"{stem}.png").read_bytes() == e.pngs[stem]
    listed = (folder / "classify" / "labels.txt").read_text().splitlines()
    assert listed == [f"all/indoor/{i}.png" for i in sorted(e.images)]
    # the detection layout is as it was
    detection = sv.DetectionDataset.from_yolo(
        images_directory_path=str(folder / "images"),
        annotations_directory_path=str(folder / "labels"),
        data_yaml_path=str(folder / "data.yaml"),
        force_masks=fmt == "YOLO_SEGMENT",
    )
    assert len(detection) == 3 and all(len(d) == 2 for d in detection.annotations.values())
    # without images, the list still says which image has which class
    bare = zipfile.ZipFile(io.BytesIO(await zip_bytes(api, e.owner, e.version_id, fmt, images=False)))
    assert bare.read("classify/labels.txt").decode().splitlines() == listed
    assert not [n for n in bare.namelist() if n.endswith(".png")]


IMAGE_ONLY = {"written": 3, "leftOut": {"NOT_AN_IMAGE": 1}}
EXPECTED = {  # 6 regions on 3 images, 4 whole-image labels (3 images and the text)
    "COCO": (IMAGE_ONLY, {"written": 9, "wholeImageLabels": 3, "leftOut": {"NOT_AN_IMAGE": 1}}),
    "YOLO": (IMAGE_ONLY, {"written": 9, "wholeImageLabels": 3, "leftOut": {"NOT_AN_IMAGE": 1}}),
    "YOLO_SEGMENT": (IMAGE_ONLY, {"written": 9, "wholeImageLabels": 3, "leftOut": {"NOT_AN_IMAGE": 1}}),
    "VOC": (
        IMAGE_ONLY,
        {"written": 6, "wholeImageLabels": 0, "leftOut": {"NOT_AN_IMAGE": 1, "WHOLE_IMAGE": 3}},
    ),
    "JSONL": ({"written": 4, "leftOut": {}}, {"written": 10, "wholeImageLabels": 4, "leftOut": {}}),
}


@pytest.mark.parametrize("fmt", FORMATS)
async def test_each_export_counts_what_it_wrote_and_what_it_left_out(
    api: Api, drain: Drain, tmp_path: Path, fmt: str
) -> None:
    e = await exported(api, drain, whole_image=True)
    meta = manifest(await download(api, e.owner, e.version_id, fmt, tmp_path))
    assert (meta["inputs"], meta["annotations"]) == (4, 10)
    inputs, annotations = EXPECTED[fmt]
    files = {"written": 6 if fmt.startswith("YOLO") else 3, "missing": 0}  # YOLO: + classify/
    assert meta["export"] == {
        "format": fmt,
        "images": True,
        "imageFiles": files,
        "inputs": inputs,
        "annotations": annotations,
    }
    assert annotations["written"] + sum(annotations["leftOut"].values()) == meta["annotations"]


async def test_voc_leaves_whole_image_labels_out_and_keeps_the_regions(
    api: Api, drain: Drain, tmp_path: Path
) -> None:
    sv = _supervision()
    e = await exported(api, drain, whole_image=True)
    folder = await download(api, e.owner, e.version_id, "VOC", tmp_path)
    dataset = sv.DetectionDataset.from_pascal_voc(
        images_directory_path=str(folder / "JPEGImages"),
        annotations_directory_path=str(folder / "Annotations"),
    )
    assert sorted(dataset.classes) == ["cat", "dog"] and len(dataset) == 3
    assert manifest(folder)["export"]["annotations"]["leftOut"]["WHOLE_IMAGE"] == 3


VERSION = """query($id: ID!) { datasetVersion(id: $id) { annotationsCount preferTaskIds } }"""


async def _version_labels(api: Api, e: Exported, version_id: str, tmp_path: Path) -> dict[str, Any]:
    folder = await download(api, e.owner, version_id, "JSONL", tmp_path / version_id)
    with jsonlines.open(folder / "data.jsonl") as reader:
        rows = {row["input_id"]: row for row in reader}
    return {"rows": rows, "manifest": manifest(folder)}


def _by_task(seen: dict[str, Any], input_id: str) -> set[tuple[str, str | None]]:
    return {(a["concept"], a["task_id"]) for a in seen["rows"][input_id]["annotations"]}


async def test_two_tasks_on_one_image_give_no_duplicate_boxes_and_the_preferred_task_wins(
    api: Api, drain: Drain, tmp_path: Path
) -> None:
    from pycocotools.coco import COCO

    # given two tasks that drew the same cat box on every image, the second also a bird it is
    # sure of (a person drew a dog outside any task)
    e = await exported(api, drain)
    surer = [PREDICTIONS[0], {**PREDICTIONS[1], "confidence": 0.95}]
    model = await null_model(api, e.owner, e.app_id, surer, name="surer model")
    second = await detection_task(api, e, drain, name="again", model_id=model)
    cats = await Annotation.find({"app_id": e.app_id, "concept_id": e.concepts["cat"]}).to_list()
    assert len(cats) == 6
    # when a version is made without a preference, each box is there once: the newest copy
    v = await create_version(api, e.owner, datasetId=e.dataset_id)
    assert v["annotationsCount"] == 9
    assert (await api.gql(e.owner, VERSION, id=v["id"]))["datasetVersion"]["preferTaskIds"] == []
    folder = await download(api, e.owner, v["id"], "COCO", tmp_path)
    coco = COCO(str(folder / "annotations.json"))
    pairs = [(a["image_id"], a["category_id"]) for a in coco.loadAnns(coco.getAnnIds())]
    assert len(pairs) == 9 and len(set(pairs)) == 9
    assert manifest(folder)["leftOutOfVersion"] == {"DUPLICATE": 3}
    seen = await _version_labels(api, e, v["id"], tmp_path)
    for input_id in e.images:
        assert _by_task(seen, input_id) == {("cat", second), ("bird", second), ("dog", None)}
    # when the first task is preferred, it gives every image's task annotations, the second none
    v1 = await create_version(api, e.owner, datasetId=e.dataset_id, preferTaskIds=[e.task_id, second])
    assert (await api.gql(e.owner, VERSION, id=v1["id"]))["datasetVersion"] == {
        "annotationsCount": 6,
        "preferTaskIds": [e.task_id, second],
    }
    seen = await _version_labels(api, e, v1["id"], tmp_path)
    assert seen["manifest"]["leftOutOfVersion"] == {"NOT_PREFERRED_TASK": 6}
    for input_id in e.images:
        assert _by_task(seen, input_id) == {("cat", e.task_id), ("dog", None)}
    # when the second is preferred, the first task's cats are left out
    v2 = await create_version(api, e.owner, datasetId=e.dataset_id, preferTaskIds=[second])
    assert v2["annotationsCount"] == 9
    seen = await _version_labels(api, e, v2["id"], tmp_path)
    assert seen["manifest"]["leftOutOfVersion"] == {"NOT_PREFERRED_TASK": 3}
    for input_id in e.images:
        assert _by_task(seen, input_id) == {("cat", second), ("bird", second), ("dog", None)}


async def test_one_label_from_two_tasks_or_people_is_kept_once(api: Api, drain: Drain) -> None:
    # given an image labeled "indoor" twice (with no region), and the same cat box added by hand
    e = await exported(api, drain, whole_image=True)
    image = next(iter(e.images))
    cat = await Annotation.find_one({"input_id": image, "concept_id": e.concepts["cat"], "status": "SUCCESS"})
    assert cat is not None and cat.box
    box = dict(zip(("top", "left", "bottom", "right"), cat.box, strict=True))
    q = "mutation($i: AddAnnotationsInput!) { addAnnotations(input: $i) { ... on AddAnnotationsSuccess { errors { code } } } }"
    again = [
        {"inputId": image, "conceptId": e.concepts["indoor"]},
        {"inputId": image, "conceptId": e.concepts["cat"], "box": box},
    ]
    assert (await api.gql(e.owner, q, i={"appId": e.app_id, "annotations": again}))["addAnnotations"][
        "errors"
    ] == []
    # when a version is made, each is there once
    v = await create_version(api, e.owner, datasetId=e.dataset_id)
    assert v["annotationsCount"] == 10


async def test_every_bad_version_request_gets_a_typed_error(api: Api, drain: Drain) -> None:
    e = await exported(api, drain)
    create = """mutation($i: CreateDatasetVersionInput!) { createDatasetVersion(input: $i) {
                  __typename ... on Error { code field } } }"""

    async def refused(i: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = (await api.gql(e.owner, create, i=i))["createDatasetVersion"]
        return result

    unknown = "0" * 32
    # a task of another app answers like an unknown one
    other_ds = await _other_app_task(api, e, drain)
    assert await refused({"datasetId": e.dataset_id, "preferTaskIds": [unknown]}) == {
        "__typename": "NotFoundError",
        "code": "NOT_FOUND",
        "field": "preferTaskIds.0",
    }
    assert await refused({"datasetId": e.dataset_id, "preferTaskIds": [e.task_id, other_ds["task"]]}) == {
        "__typename": "NotFoundError",
        "code": "NOT_FOUND",
        "field": "preferTaskIds.1",
    }
    assert await refused({"datasetId": e.dataset_id, "preferTaskIds": [e.task_id] * 21}) == {
        "__typename": "ValidationError",
        "code": "TOO_MANY",
        "field": "preferTaskIds",
    }
    for dataset_id in (unknown, other_ds["dataset"]):
        assert await refused({"datasetId": dataset_id}) == {
            "__typename": "NotFoundError",
            "code": "NOT_FOUND",
            "field": "datasetId",
        }
    # deleting: an unknown version, another app's version, and a labeler who may not delete
    delete = "mutation($id: ID!) { deleteDatasetVersion(id: $id) { __typename ... on Error { code field } } }"
    for caller, version_id in ((e.owner, unknown), (e.stranger, e.version_id)):
        assert (await api.gql(caller, delete, id=version_id))["deleteDatasetVersion"] == {
            "__typename": "NotFoundError",
            "code": "NOT_FOUND",
            "field": "id",
        }
    labeler = await api.member(e.owner, e.app_id, ["LABELER"])
    assert (await api.gql(labeler, delete, id=e.version_id))["deleteDatasetVersion"]["code"] == (
        "PERMISSION_DENIED"
    )
    # reading and exporting: unknown and another app's version look the same
    q = "query($id: ID!) { datasetVersion(id: $id) { id } }"
    assert (await api.gql(e.owner, q, id=unknown))["datasetVersion"] is None
    assert (await api.gql(e.stranger, q, id=e.version_id))["datasetVersion"] is None
    for caller, version_id in ((e.owner, unknown), (e.stranger, e.version_id)):
        response = await api.http.get(f"/dataset-versions/{version_id}/export", headers=caller.headers)
        assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
    # nothing was made or deleted by the refused requests
    versions = """query($d: ID!) { datasetVersions(datasetId: $d) { nodes { id } } }"""
    assert (await api.gql(e.owner, versions, d=e.dataset_id))["datasetVersions"]["nodes"] == [
        {"id": e.version_id}
    ]


async def _other_app_task(api: Api, e: Exported, drain: Drain) -> dict[str, str]:
    """A dataset and a labeling task in the stranger's app."""
    owner, app_id = e.stranger, e.other_app_id
    cat = await api.concept(owner, app_id, "cat")
    ds = await create_dataset(api, owner, app_id)
    await add_inputs(api, owner, app_id, [{"imageBase64": b64(png(9)), "datasetIds": [ds]}])
    model = await null_model(api, owner, app_id, [{"concept": "cat", "confidence": 0.95}])
    made = await api.gql(
        owner,
        """mutation($i: CreateLabelingTaskInput!) { createLabelingTask(input: $i) {
             __typename ... on LabelingTaskSuccess { labelingTask { id } } ... on Error { code message } } }""",
        i={
            "appId": app_id,
            "name": "theirs",
            "datasetId": ds,
            "modelId": model,
            "conceptIds": [cat],
            "taskType": "CONCEPTS_CLASSIFICATION",
        },
    )
    assert made["createLabelingTask"]["__typename"] == "LabelingTaskSuccess", made
    await drain()
    return {"dataset": ds, "task": made["createLabelingTask"]["labelingTask"]["id"]}
