"""Dataset versions and their exports, each read back by its format's reference reader:
pycocotools (COCO), supervision (YOLO detection/segmentation, Pascal VOC), jsonlines (JSONL)."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import jsonlines
import numpy as np
import pytest

from app.annotations.geometry import polygon_area, unflatten
from app.annotations.models import Annotation
from app.inputs.models import Input
from app.settings import Settings
from tests.exports.helpers import BOX, CREATE, TRIANGLE, Exported, download, exported
from tests.factories import Api
from tests.registry.factories import text_input
from tests.tasks_engine.conftest import Drain

ROOT = Path(__file__).resolve().parents[2]


def expected_boxes(
    e: Exported, anns: list[Annotation]
) -> dict[tuple[str, str], tuple[float, float, float, float]]:
    """(input id, concept name) -> (x1, y1, x2, y2) in pixels, from the source annotations."""
    names = {v: k for k, v in e.concepts.items()}
    out = {}
    for a in anns:
        w, h = e.images[a.input_id]
        if a.box:
            top, left, bottom, right = a.box
        else:
            pts = unflatten(a.polygon or [])
            top, left = min(p[0] for p in pts), min(p[1] for p in pts)
            bottom, right = max(p[0] for p in pts), max(p[1] for p in pts)
        out[(a.input_id, names[a.concept_id])] = (left * w, top * h, right * w, bottom * h)
    return out


async def success_annotations(e: Exported) -> list[Annotation]:
    return await Annotation.find({"app_id": e.app_id, "status": "SUCCESS"}).to_list()


async def test_a_dataset_version_does_not_change_after_later_edits(
    api: Api, drain: Drain, tmp_path: Path
) -> None:
    e = await exported(api, drain)
    q = "query($id: ID!) { datasetVersion(id: $id) { status inputsCount annotationsCount statuses concepts { name } } }"
    before = (await api.gql(e.owner, q, id=e.version_id))["datasetVersion"]
    assert before == {
        "status": "READY",
        "inputsCount": 4,  # three images and the text
        "annotationsCount": 6,  # cat box + dog polygon per image; the birds wait for review
        "statuses": ["SUCCESS"],
        "concepts": [{"name": "cat"}, {"name": "dog"}],
    }
    first = (await download(api, e.owner, e.version_id, "JSONL", tmp_path / "a")) / "data.jsonl"
    content = first.read_bytes()
    # later: approve the birds, change a concept, remove an annotation, rename a concept, drop an input
    await api.gql(
        e.owner,
        "mutation($i: ReviewAnnotationsInput!) { reviewAnnotations(input: $i) { __typename } }",
        i={
            "taskId": e.task_id,
            "action": "APPROVE",
            "labeledBy": next(
                a.labeled_by_model_id for a in await success_annotations(e) if a.labeled_by_model_id
            ),
        },
    )
    cats = await Annotation.find({"task_id": e.task_id, "concept_id": e.concepts["cat"]}).to_list()
    await Annotation.get_pymongo_collection().update_one(
        {"_id": cats[0].id}, {"$set": {"concept_id": e.concepts["bird"]}}
    )
    await api.gql(
        e.owner, "mutation($ids: [ID!]!) { removeAnnotations(ids: $ids) { __typename } }", ids=[cats[1].id]
    )
    await api.gql(
        e.owner,
        "mutation($i: UpdateConceptInput!) { updateConcept(input: $i) { __typename } }",
        i={"id": e.concepts["dog"], "name": "hound"},
    )
    await Input.get_pymongo_collection().update_one({"_id": e.text_id}, {"$set": {"dataset_ids": []}})
    after = (await api.gql(e.owner, q, id=e.version_id))["datasetVersion"]
    assert after == before
    again = (await download(api, e.owner, e.version_id, "JSONL", tmp_path / "b")) / "data.jsonl"
    assert again.read_bytes() == content
    # a new version sees the edits
    v2 = (await api.gql(e.owner, CREATE, i={"datasetId": e.dataset_id}))["createDatasetVersion"][
        "datasetVersion"
    ]
    assert (v2["inputsCount"], v2["annotationsCount"]) == (3, 8)


async def test_coco_export_loads_in_pycocotools_with_pixel_boxes_polygons_and_areas(
    api: Api, drain: Drain, tmp_path: Path
) -> None:
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    e = await exported(api, drain)
    folder = await download(api, e.owner, e.version_id, "COCO", tmp_path)
    coco = COCO(str(folder / "annotations.json"))
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"cat", "dog"}
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) == 6
    files = {img["file_name"]: (img["width"], img["height"]) for img in coco.loadImgs(coco.getImgIds())}
    assert files == {f"images/{i}.png": size for i, size in e.images.items()}
    assert all((folder / name).exists() for name in files)
    expected = expected_boxes(e, await success_annotations(e))
    by_image = {
        img["id"]: img["file_name"].split("/")[1].split(".")[0] for img in coco.loadImgs(coco.getImgIds())
    }
    for ann in coco.loadAnns(coco.getAnnIds()):
        input_id = by_image[ann["image_id"]]
        name = coco.loadCats(ann["category_id"])[0]["name"]
        x1, y1, x2, y2 = expected[(input_id, name)]
        assert ann["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1e-3)
        w, h = e.images[input_id]
        if name == "cat":
            assert ann["area"] == pytest.approx((x2 - x1) * (y2 - y1), abs=1e-2)
        else:
            pixels = [(r * h, c * w) for r, c in TRIANGLE]
            assert ann["area"] == pytest.approx(polygon_area(pixels), abs=1e-2)
        # the polygon rasterises to about its area
        rle = mask_utils.frPyObjects(ann["segmentation"], h, w)
        assert abs(float(mask_utils.area(mask_utils.merge(rle))) - ann["area"]) <= 0.25 * ann["area"] + 4


def _supervision() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import supervision as sv
    return sv


@pytest.mark.parametrize("fmt", ["YOLO", "YOLO_SEGMENT"])
async def test_yolo_export_loads_in_supervision(api: Api, drain: Drain, tmp_path: Path, fmt: str) -> None:
    sv = _supervision()
    e = await exported(api, drain)
    folder = await download(api, e.owner, e.version_id, fmt, tmp_path)
    dataset = sv.DetectionDataset.from_yolo(
        images_directory_path=str(folder / "images"),
        annotations_directory_path=str(folder / "labels"),
        data_yaml_path=str(folder / "data.yaml"),
        force_masks=fmt == "YOLO_SEGMENT",
    )
    assert dataset.classes == ["cat", "dog"] and len(dataset) == 3
    expected = expected_boxes(e, await success_annotations(e))
    for path, detections in dataset.annotations.items():
        input_id = Path(path).stem
        assert len(detections) == 2
        for xyxy, cls in zip(detections.xyxy, detections.class_id, strict=True):
            want = expected[(input_id, dataset.classes[cls])]
            assert np.allclose(xyxy, want, atol=1.0), (xyxy, want)
        if fmt == "YOLO_SEGMENT":
            assert detections.mask is not None and detections.mask.shape[0] == 2


async def test_voc_export_loads_in_supervision(api: Api, drain: Drain, tmp_path: Path) -> None:
    sv = _supervision()
    e = await exported(api, drain)
    folder = await download(api, e.owner, e.version_id, "VOC", tmp_path)
    dataset = sv.DetectionDataset.from_pascal_voc(
        images_directory_path=str(folder / "JPEGImages"),
        annotations_directory_path=str(folder / "Annotations"),
    )
    assert sorted(dataset.classes) == ["cat", "dog"] and len(dataset) == 3
    expected = expected_boxes(e, await success_annotations(e))
    for path, detections in dataset.annotations.items():
        assert len(detections) == 2
        for xyxy, cls in zip(detections.xyxy, detections.class_id, strict=True):
            want = expected[(Path(path).stem, dataset.classes[cls])]
            assert np.allclose(xyxy, want, atol=1.0), (xyxy, want)


async def test_jsonl_export_reads_with_jsonlines(api: Api, drain: Drain, tmp_path: Path) -> None:
    e = await exported(api, drain)
    folder = await download(api, e.owner, e.version_id, "JSONL", tmp_path)
    with jsonlines.open(folder / "data.jsonl") as reader:
        rows = list(reader)
    assert sorted(r["input_id"] for r in rows) == sorted([*e.images, e.text_id])
    expected = expected_boxes(e, await success_annotations(e))
    for row in rows:
        if row["kind"] == "TEXT":
            assert row["annotations"] == [] and row["text"] == "a text input"
            continue
        assert (row["width"], row["height"]) == e.images[row["input_id"]]
        assert sorted(a["concept"] for a in row["annotations"]) == ["cat", "dog"]
        for a in row["annotations"]:
            assert a["status"] == "SUCCESS"
            assert a["bbox_pixels"] == pytest.approx(
                list(expected[(row["input_id"], a["concept"])]), abs=1e-3
            )
            if a["concept"] == "cat":
                assert a["box"] == BOX
            else:
                assert [[p["row"], p["col"]] for p in a["polygon"]] == TRIANGLE


async def test_exports_need_a_key_membership_and_a_known_format(api: Api, drain: Drain) -> None:
    e = await exported(api, drain)
    url = f"/dataset-versions/{e.version_id}/export"
    assert (await api.http.get(url)).status_code == 401
    stranger = await api.user()
    response = await api.http.get(url, headers=stranger.headers)
    assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
    response = await api.http.get(url + "?format=tiff", headers=e.owner.headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "UNSUPPORTED_FORMAT"
    bad = await api.gql(e.owner, CREATE, i={"datasetId": e.dataset_id, "filter": {"minConfidence": 2}})
    assert bad["createDatasetVersion"]["code"] == "OUT_OF_RANGE"


async def test_cli_export_writes_the_same_coco_zip(
    api: Api, drain: Drain, settings: Settings, tmp_path: Path
) -> None:
    from pycocotools.coco import COCO

    e = await exported(api, drain)
    out = tmp_path / "cli.zip"
    env = {
        **os.environ,
        "MONGODB_URL": settings.mongodb_url or "",
        "LABELSTREAM_MONGODB_DB": settings.mongodb_db,
        "LABELSTREAM_DATA_DIR": str(settings.data_dir),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *["-m", "app.cli", "export", e.version_id, "--format", "coco", "--output", str(out)],
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()
    assert "4 inputs, 6 annotations" in stdout.decode()
    zipfile.ZipFile(out).extractall(tmp_path / "cli")
    coco = COCO(str(tmp_path / "cli" / "annotations.json"))
    assert len(coco.getAnnIds()) == 6 and len(coco.getImgIds()) == 3
    assert all(
        (tmp_path / "cli" / img["file_name"]).stat().st_size > 0 for img in coco.loadImgs(coco.getImgIds())
    )


async def test_object_mode_lists_region_annotations_and_crops_them(api: Api, drain: Drain) -> None:
    from PIL import Image

    e = await exported(api, drain)
    q = """query($a: ID!, $f: AnnotationFilter) { annotationObjects(appId: $a, filter: $f, first: 50) {
             nodes { id inputId cropUrl box { top left bottom right } labeledBy { kind name } } } }"""
    nodes = (await api.gql(e.owner, q, a=e.app_id, f={"statuses": ["SUCCESS"]}))["annotationObjects"]["nodes"]
    assert len(nodes) == 6 and all(n["cropUrl"] == f"/annotations/{n['id']}/crop" for n in nodes)
    assert {n["labeledBy"]["kind"] for n in nodes} == {"MODEL", "USER"}
    cat = next(n for n in nodes if n["box"] is not None)
    response = await api.http.get(cat["cropUrl"], headers=e.owner.headers)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    w, h = e.images[cat["inputId"]]
    crop = Image.open(io.BytesIO(response.content))
    assert crop.size == (round(0.6 * w) - int(0.2 * w), round(0.5 * h) - int(0.1 * h))
    assert (await api.http.get(cat["cropUrl"], headers=e.w_stranger_headers)).status_code == 404
    await text_input(e.app_id, [e.dataset_id])
    whole = await api.gql(
        e.owner,
        "mutation($i: AddAnnotationInput!) { addAnnotation(input: $i) { ... on AnnotationSuccess { annotation { id cropUrl } } } }",
        i={"appId": e.app_id, "annotation": {"inputId": e.text_id, "conceptId": e.concepts["cat"]}},
    )
    label = whole["addAnnotation"]["annotation"]
    assert label["cropUrl"] is None
    response = await api.http.get(f"/annotations/{label['id']}/crop", headers=e.owner.headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "NO_REGION"
