"""``labelstream import`` of labelled datasets, checked by exporting them back through the API
(``versions create`` / ``versions download`` / ``export``) and reading the zips with reference
readers (pycocotools)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.cli import datasets
from tests.cli.conftest import Client, Server, files_under

DATASETS = "query($a: ID!) { datasets(appId: $a, first: 100) { nodes { id name inputsCount } } }"
APPS = "{ me { apps { nodes { id } } } }"


def dataset(server: Server, name: str) -> dict[str, Any]:
    app = server.gql(APPS)["me"]["apps"]["nodes"][0]["id"]
    return next(d for d in server.gql(DATASETS, a=app)["datasets"]["nodes"] if d["name"] == name)


def state_items(client: Client) -> dict[str, dict[str, Any]]:
    (path,) = (client.state_dir / "imports").glob("*.json")
    items: dict[str, dict[str, Any]] = json.loads(path.read_text())["items"]
    return items


def version_of(client: Client, dataset_id: str) -> str:
    return client.ok("versions", "create", "--dataset", dataset_id).strip()


@pytest.mark.slow
def test_a_coco_dataset_of_200_images_comes_back_with_exactly_its_boxes(
    logged_in: Client, cli_server: Server, tmp_path: Path
) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    source = tmp_path / "coco"
    original = datasets.coco(source, 200)
    out = logged_in.ok("import", str(source / "annotations.json"), "--dataset", "coco200", timeout=600)
    boxes = len(original["annotations"])  # type: ignore[arg-type]
    assert f"Imported 200 inputs and {boxes} annotations" in out
    ds = dataset(cli_server, "coco200")
    assert ds["inputsCount"] == 200

    version = version_of(logged_in, ds["id"])
    zipped = logged_in.cwd / "coco.zip"
    logged_in.ok("versions", "download", version, "-f", "coco", "--no-images", "-o", str(zipped))
    zipfile.ZipFile(zipped).extractall(tmp_path / "back")
    back = COCO(str(tmp_path / "back" / "annotations.json"))
    truth = COCO(str(source / "annotations.json"))

    # map exported images to the originals through the import's state (input id per file)
    by_input = {v["input_id"]: k for k, v in state_items(logged_in).items()}
    truth_id = {img["file_name"]: img["id"] for img in truth.loadImgs(truth.getImgIds())}
    names = {c["id"]: c["name"] for c in back.loadCats(back.getCatIds())}
    exported: dict[int, list[tuple[str, list[float]]]] = {}
    detections = []
    for img in back.loadImgs(back.getImgIds()):
        source_id = truth_id[by_input[Path(img["file_name"]).stem]]
        for a in back.loadAnns(back.getAnnIds(imgIds=[img["id"]])):
            exported.setdefault(source_id, []).append((names[a["category_id"]], a["bbox"]))
            category = next(
                c["id"] for c in truth.loadCats(truth.getCatIds()) if c["name"] == names[a["category_id"]]
            )
            detections.append(
                {"image_id": source_id, "category_id": category, "bbox": a["bbox"], "score": 1.0}
            )
    expected: dict[int, list[tuple[str, list[float]]]] = {}
    for a in truth.loadAnns(truth.getAnnIds()):
        expected.setdefault(a["image_id"], []).append((truth.cats[a["category_id"]]["name"], a["bbox"]))
    assert {k: sorted(v) for k, v in exported.items()} == {k: sorted(v) for k, v in expected.items()}

    evaluation = COCOeval(truth, truth.loadRes(detections), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0) and evaluation.stats[8] == pytest.approx(1.0)

    again = logged_in.ok("import", str(source / "annotations.json"), "--dataset", "coco200")
    assert "Imported 0 inputs and 0 annotations" in again and "200 already imported" in again
    assert files_under(logged_in.cwd) == ["coco.zip"]


def test_a_yolo_dataset_keeps_its_classes_and_boxes(
    logged_in: Client, cli_server: Server, tmp_path: Path
) -> None:
    labels = datasets.yolo(tmp_path / "yolo")
    out = logged_in.ok("import", str(tmp_path / "yolo"), "--dataset", "yolo-set")
    assert "Imported 3 inputs and 3 annotations" in out
    version = version_of(logged_in, dataset(cli_server, "yolo-set")["id"])
    logged_in.ok("export", version, "-f", "yolo", "--no-images", "-o", "y.zip")
    archive = zipfile.ZipFile(logged_in.cwd / "y.zip")
    names = {n for n in archive.namelist() if n.startswith("labels/") and n.endswith(".txt")}
    by_input = {v["input_id"]: Path(k).name for k, v in state_items(logged_in).items()}
    classes = ["cat", "dog", "car"]
    got: dict[str, list[tuple[str, float, float, float, float]]] = {}
    for n in names:
        rows = [line.split() for line in archive.read(n).decode().splitlines() if line.strip()]
        got[by_input[Path(n).stem]] = sorted(
            (_class_name(archive, int(r[0]), classes), *(float(v) for v in r[1:])) for r in rows
        )
    want = {k: sorted((classes[c], x, y, w, h) for c, x, y, w, h in v) for k, v in labels.items() if v}
    assert {k: v for k, v in got.items() if v}.keys() == want.keys()
    for k, rows in want.items():
        for a, b in zip(got[k], rows, strict=True):
            assert a[0] == b[0] and a[1:] == pytest.approx(b[1:], abs=1e-5)


def _class_name(archive: zipfile.ZipFile, index: int, fallback: list[str]) -> str:
    import yaml

    for name in archive.namelist():
        if name.endswith(".yaml"):
            names = yaml.safe_load(archive.read(name)).get("names")
            return str(names[index])
    return fallback[index]


def test_a_voc_dataset_keeps_its_pixel_boxes(logged_in: Client, cli_server: Server, tmp_path: Path) -> None:
    boxes = datasets.voc(tmp_path / "voc")
    out = logged_in.ok("import", str(tmp_path / "voc"), "--dataset", "voc-set")
    assert "Imported 2 inputs and 3 annotations" in out
    version = version_of(logged_in, dataset(cli_server, "voc-set")["id"])
    logged_in.ok("export", version, "-f", "voc", "--no-images", "-o", "v.zip")
    archive = zipfile.ZipFile(logged_in.cwd / "v.zip")
    by_input = {v["input_id"]: k for k, v in state_items(logged_in).items()}
    got = {}
    for n in archive.namelist():
        if n.endswith(".xml"):
            root = ET.fromstring(archive.read(n))
            objects = [
                (
                    o.findtext("name"),
                    *(int(o.findtext(f"bndbox/{t}") or 0) for t in ("xmin", "ymin", "xmax", "ymax")),
                )
                for o in root.findall("object")
            ]
            got[by_input[Path(n).stem]] = sorted(objects)
    assert got == {k: sorted(v) for k, v in boxes.items()}


def test_a_folder_and_a_url_list_become_inputs(logged_in: Client, cli_server: Server, tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    for k in range(3):
        datasets.image(folder / ("sub" if k else "") / f"p{k}.jpg", 30, 20, k)
    (folder / "notes.txt").write_text("not an image")
    assert "Imported 3 inputs and 0 annotations" in logged_in.ok("import", str(folder), "--dataset", "pics")
    urls = tmp_path / "urls.txt"
    urls.write_text(f"# images\n{cli_server.url}/nothing-1.png\n\n{cli_server.url}/nothing-2.png\n")
    assert "Imported 2 inputs" in logged_in.ok("import", str(urls), "--dataset", "pics")
    assert dataset(cli_server, "pics")["inputsCount"] == 5


def test_an_import_that_failed_resumes_where_it_stopped(
    logged_in: Client, cli_server: Server, tmp_path: Path
) -> None:
    source = tmp_path / "resume"
    doc = datasets.coco(source, 12, seed=3)
    broken = source / "images" / "img_0005.png"
    good = broken.read_bytes()
    broken.write_bytes(b"this is not an image")
    (source / "images" / "img_0007.png").unlink()

    first = logged_in.run("import", str(source), "--dataset", "resume")
    assert first.returncode == 1
    assert "2 failed" in first.stderr and "img_0005.png" in first.stderr and "img_0007.png" in first.stderr
    assert "Run the same command again" in first.stderr
    assert dataset(cli_server, "resume")["inputsCount"] == 10

    broken.write_bytes(good)
    datasets.image(
        source / "images" / "img_0007.png", doc["images"][7]["width"], doc["images"][7]["height"], 7
    )  # type: ignore[index]
    second = logged_in.run("import", str(source), "--dataset", "resume")
    assert second.returncode == 0, second.stderr
    assert "Imported 2 inputs" in second.stdout and "10 already imported" in second.stdout
    assert dataset(cli_server, "resume")["inputsCount"] == 12
    version = version_of(logged_in, dataset(cli_server, "resume")["id"])
    assert f"({12} inputs, {len(doc['annotations'])} annotations)" in logged_in.ok(  # type: ignore[arg-type]
        "versions", "download", version, "--no-images", "-o", "r.zip"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"images": [], "annotations": [], "categories": {}}', "`categories` must be a list"),
        (
            '{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "x"}],'
            ' "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}]}',
            "annotations[0].bbox: expected [x, y, width, height]",
        ),
        (
            '{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "x"}],'
            ' "annotations": [{"image_id": 2, "category_id": 1, "bbox": [1, 2, 3, 4]}]}',
            "image_id 2 is not in `images`",
        ),
    ],
)
def test_a_malformed_coco_file_is_refused_before_anything_is_sent(
    logged_in: Client, tmp_path: Path, content: str, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    done = logged_in.run("import", str(bad))
    assert done.returncode == 2
    assert message in done.stderr and str(bad) in done.stderr.replace("\n", "")


def test_malformed_yolo_and_voc_datasets_are_refused_with_the_file_and_line(
    client: Client, tmp_path: Path
) -> None:
    yolo = tmp_path / "yolo"
    datasets.yolo(yolo)
    (yolo / "labels" / "train" / "b.txt").write_text("1 0.3 0.4 0.2\n")
    done = client.run("import", str(yolo), "--url", "http://127.0.0.1:9", "--key", "k")
    assert done.returncode == 2 and "b.txt:1: expected `class cx cy w h`" in done.stderr.replace("\n", "")

    (yolo / "labels" / "train" / "b.txt").write_text("7 0.3 0.4 0.2 0.2\n")
    done = client.run("import", str(yolo), "--url", "http://127.0.0.1:9", "--key", "k")
    assert done.returncode == 2 and "class 7 is not in the 3 names" in done.stderr

    voc = tmp_path / "voc"
    datasets.voc(voc)
    (voc / "Annotations" / "two.xml").write_text("<annotation><filename>two.png</file")
    done = client.run("import", str(voc), "--url", "http://127.0.0.1:9", "--key", "k")
    assert done.returncode == 2 and "two.xml is not valid XML" in done.stderr.replace("\n", "")
    assert files_under(client.cwd) == []
