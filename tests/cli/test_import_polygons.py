"""``labelstream import`` of polygons: COCO ``segmentation`` polygons, YOLO segment lines and
Labelstream's own JSON Lines become polygon region annotations; a malformed polygon is refused
with its file and place before anything is sent."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from app.client import sources
from tests.cli import datasets
from tests.cli.conftest import Client, Server, files_under
from tests.cli.test_import_export import dataset, state_items, version_of

TRIANGLE = [10.0, 5.0, 50.0, 5.0, 30.0, 35.0]  # x, y pixels of a 64 x 48 image
SQUARE = [40.0, 30.0, 60.0, 30.0, 60.0, 45.0, 40.0, 45.0]


def coco_with_polygons(root: Path) -> dict[str, Any]:
    """Two 64 x 48 images: a triangle, a two-part instance, a box only, and an RLE mask (its
    bbox kept)."""
    for k in (1, 2):
        datasets.image(root / "images" / f"p{k}.png", 64, 48, k)
    doc = {
        "images": [{"id": k, "file_name": f"p{k}.png", "width": 64, "height": 48} for k in (1, 2)],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 40, 30], "segmentation": [TRIANGLE]},
            {"id": 2, "image_id": 1, "category_id": 2, "segmentation": [TRIANGLE, SQUARE]},
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [1, 2, 3, 4]},
            {
                "id": 4,
                "image_id": 2,
                "category_id": 1,
                "bbox": [4, 4, 8, 8],
                "iscrowd": 1,
                "segmentation": {"counts": [0, 10], "size": [48, 64]},
            },
        ],
    }
    (root / "annotations.json").write_text(json.dumps(doc))
    return doc


def unit(flat: list[float]) -> list[tuple[float, float]]:
    """(row, col) in 0..1 of a 64 x 48 image."""
    return [(flat[i + 1] / 48, flat[i] / 64) for i in range(0, len(flat), 2)]


def jsonl_regions(archive: zipfile.ZipFile) -> dict[str, list[tuple[str, Any]]]:
    """file name -> sorted (concept, polygon points or box) of a JSONL export."""
    out: dict[str, list[tuple[str, Any]]] = {}
    for line in archive.read("data.jsonl").decode().splitlines():
        row = json.loads(line)
        regions = []
        for a in row["annotations"]:
            if a["polygon"]:
                regions.append(
                    (a["concept"], tuple((round(p["row"], 5), round(p["col"], 5)) for p in a["polygon"]))
                )
            else:
                regions.append(
                    (a["concept"], tuple(round(a["box"][k], 5) for k in ("top", "left", "bottom", "right")))
                )
        out[row["file_name"]] = sorted(regions, key=repr)
    return out


def test_coco_polygons_become_polygon_annotations_and_round_trip_through_jsonl(
    logged_in: Client, cli_server: Server, tmp_path: Path
) -> None:
    coco_with_polygons(tmp_path / "coco")
    out = logged_in.ok("import", str(tmp_path / "coco" / "annotations.json"), "--dataset", "polys")
    assert "Imported 2 inputs and 5 annotations" in out  # 1 + 2 parts + 1 box + 1 RLE's box
    version = version_of(logged_in, dataset(cli_server, "polys")["id"])
    logged_in.ok("export", version, "-f", "JSONL", "-o", "j.zip")
    archive = zipfile.ZipFile(logged_in.cwd / "j.zip")
    by_input = {v["input_id"]: k for k, v in state_items(logged_in).items()}
    got = {by_input[Path(k).stem]: v for k, v in jsonl_regions(archive).items()}

    def poly(flat: list[float]) -> tuple[tuple[float, float], ...]:
        return tuple((round(r, 5), round(c, 5)) for r, c in unit(flat))

    def box(x: float, y: float, w: float, h: float) -> tuple[float, ...]:
        return tuple(round(v, 5) for v in (y / 48, x / 64, (y + h) / 48, (x + w) / 64))

    assert got == {
        "p1.png": sorted([("cat", poly(TRIANGLE)), ("dog", poly(TRIANGLE)), ("dog", poly(SQUARE))], key=repr),
        "p2.png": sorted([("dog", box(1, 2, 3, 4)), ("cat", box(4, 4, 8, 8))], key=repr),
    }

    # the JSONL export, images included, imports back as the same regions
    archive.extractall(tmp_path / "back")
    out = logged_in.ok("import", str(tmp_path / "back" / "data.jsonl"), "--dataset", "polys-again")
    assert "Imported 2 inputs and 5 annotations" in out
    again = version_of(logged_in, dataset(cli_server, "polys-again")["id"])
    logged_in.ok("export", again, "-f", "JSONL", "--no-images", "-o", "k.zip")
    second = jsonl_regions(zipfile.ZipFile(logged_in.cwd / "k.zip"))
    first = jsonl_regions(archive)
    assert sorted(second.values(), key=repr) == sorted(first.values(), key=repr)


def test_yolo_segment_lines_become_polygons(logged_in: Client, cli_server: Server, tmp_path: Path) -> None:
    datasets.yolo(tmp_path / "yolo")
    (tmp_path / "yolo" / "labels" / "train" / "c.txt").write_text("1 0.1 0.1 0.9 0.1 0.5 0.8\n")
    out = logged_in.ok("import", str(tmp_path / "yolo"), "--dataset", "yolo-seg")
    assert "Imported 3 inputs and 4 annotations" in out
    version = version_of(logged_in, dataset(cli_server, "yolo-seg")["id"])
    logged_in.ok("export", version, "-f", "JSONL", "--no-images", "-o", "y.zip")
    by_input = {v["input_id"]: Path(k).name for k, v in state_items(logged_in).items()}
    got = {
        by_input[Path(k).stem]: v for k, v in jsonl_regions(zipfile.ZipFile(logged_in.cwd / "y.zip")).items()
    }
    assert got["c.png"] == [("dog", ((0.1, 0.1), (0.1, 0.9), (0.8, 0.5)))]


COCO_HEAD = (
    '{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "x"}], "annotations": '
)


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ("[[1, 2, 3, 4, 5]]", "annotations[0].segmentation[0]: a polygon is a list of x, y coordinates"),
        ("[[1, 2, 3, 4]]", "annotations[0].segmentation[0]: a polygon needs at least 3 points, got 2"),
        ("[[0, 0, 1, 1, 2, 2]]", "annotations[0].segmentation[0]: the polygon has no area"),
        ('[[0, 0, 1, "a", 2, 0]]', "annotations[0].segmentation[0]: expected a number, got 'a'"),
        ("[[0, 0, 1, 0, 1, 1], 7]", "annotations[0].segmentation[1]: a polygon is a list"),
        ('"poly"', "annotations[0].segmentation: expected a list of polygons or an RLE object"),
        (json.dumps([[float(v) for v in range(2004)]]), "at most 1000 points, got 1002"),
    ],
)
def test_a_malformed_coco_polygon_is_refused_before_anything_is_sent(
    client: Client, tmp_path: Path, segmentation: str, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(COCO_HEAD + f'[{{"image_id": 1, "category_id": 1, "segmentation": {segmentation}}}]}}')
    done = client.run("import", str(bad), "--url", "http://127.0.0.1:9", "--key", "k")
    assert done.returncode == 2
    assert message in done.stderr.replace("\n", "") and "bad.json" in done.stderr
    assert files_under(client.cwd) == []


GOOD_ROW = {"file_name": "images/a.png", "kind": "IMAGE", "annotations": [], "labels": [{"concept": "x"}]}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{not json", "data.jsonl:2: not valid JSON"),
        ('{"annotations": []}', "data.jsonl:2: needs a `file_name`"),
        (
            '{"file_name": "b.png", "annotations": [{"concept": "x", "polygon": [{"row": 0, "col": 0}]}]}',
            "data.jsonl:2: annotations[0].polygon: a polygon needs at least 3 points, got 1",
        ),
        (
            '{"file_name": "b.png", "annotations": [{"concept": "x", "polygon": [{"row": 0}, {"row": 1}, {"col": 1}]}]}',
            "data.jsonl:2: annotations[0].polygon[0].col: expected a number, got None",
        ),
        (
            '{"file_name": "b.png", "annotations": [{"concept": "x"}]}',
            "data.jsonl:2: annotations[0]: give a `box` or a `polygon`",
        ),
        ('{"file_name": "t", "kind": "TEXT"}', "data.jsonl:2: a TEXT input: only images are imported"),
        (
            '{"file_name": "b.png", "annotations": [{"concept": "x", "box": '
            '{"top": 0, "left": 0, "bottom": 1, "right": 1}, "text": 7}]}',
            "data.jsonl:2: annotations[0].text: expected a string or null, got int",
        ),
        (
            '{"file_name": "b.png", "annotations": [{"concept": "x", "box": '
            '{"top": 0, "left": 0, "bottom": 1, "right": 1}, "text": "' + "w" * 10_001 + '"}]}',
            "data.jsonl:2: annotations[0].text: at most 10,000 characters, got 10,001",
        ),
    ],
)
def test_a_malformed_jsonl_line_is_refused_with_its_line(
    client: Client, tmp_path: Path, row: str, message: str
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "data.jsonl").write_text(json.dumps(GOOD_ROW) + "\n" + row + "\n")
    done = client.run("import", str(folder), "--url", "http://127.0.0.1:9", "--key", "k")
    assert done.returncode == 2
    assert message in done.stderr.replace("\n", "")
    assert files_under(client.cwd) == []


def test_a_malformed_yolo_polygon_is_refused_with_its_line(client: Client, tmp_path: Path) -> None:
    yolo = tmp_path / "yolo"
    datasets.yolo(yolo)
    for line, message in [
        ("1 0.1 0.1 0.9 0.1 0.5 0.8 0.3\n", "b.txt:1: expected `class cx cy w h` or a polygon"),
        ("1 0.1 0.1 0.2 0.2 0.3 0.3\n", "b.txt:1: polygon: the polygon has no area"),
    ]:
        (yolo / "labels" / "train" / "b.txt").write_text(line)
        done = client.run("import", str(yolo), "--url", "http://127.0.0.1:9", "--key", "k")
        assert done.returncode == 2 and message in done.stderr.replace("\n", "")


def test_polygons_normalise_and_clamp_to_the_image() -> None:
    pixels = sources.Label("x", polygon=((-5.0, 0.0), (64.0, 24.0), (32.0, 60.0)))
    assert pixels.normalized_polygon(64, 48) == [
        {"row": 0.0, "col": 0.0},
        {"row": 0.5, "col": 1.0},
        {"row": 1.0, "col": 0.5},
    ]
    fractions = sources.Label("x", unit_box=True, polygon=((0.25, 0.5), (0.5, 0.5), (0.5, 0.75)))
    assert fractions.normalized_polygon(64, 48) == [
        {"row": 0.5, "col": 0.25},
        {"row": 0.5, "col": 0.5},
        {"row": 0.75, "col": 0.5},
    ]


def test_recognised_text_round_trips_through_coco_and_jsonl(
    logged_in: Client, cli_server: Server, tmp_path: Path
) -> None:
    """A text region's text: COCO ``attributes.text`` in, JSONL ``text`` out and back in, COCO
    ``attributes.text`` out again; a region without text stays without."""
    root = tmp_path / "coco"
    datasets.image(root / "images" / "sign.png", 64, 48, 3)
    doc = {
        "images": [{"id": 1, "file_name": "sign.png", "width": 64, "height": 48}],
        "categories": [{"id": 1, "name": "text"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [2, 2, 30, 10],
                "attributes": {"text": "EXIT"},
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 1,
                "segmentation": [TRIANGLE],
                "attributes": {"text": "Ünïcode"},
            },
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [40, 30, 10, 10]},
        ],
    }
    (root / "annotations.json").write_text(json.dumps(doc))
    assert "Imported 1 inputs and 3 annotations" in logged_in.ok(
        "import", str(root / "annotations.json"), "--dataset", "signs"
    )
    logged_in.ok(
        "export", version_of(logged_in, dataset(cli_server, "signs")["id"]), "-f", "JSONL", "-o", "j.zip"
    )
    archive = zipfile.ZipFile(logged_in.cwd / "j.zip")
    (row,) = [json.loads(line) for line in archive.read("data.jsonl").decode().splitlines()]
    assert sorted(str(a["text"]) for a in row["annotations"]) == ["EXIT", "None", "Ünïcode"]

    archive.extractall(tmp_path / "back")
    logged_in.ok("import", str(tmp_path / "back" / "data.jsonl"), "--dataset", "signs-again")
    again = version_of(logged_in, dataset(cli_server, "signs-again")["id"])
    logged_in.ok("export", again, "-f", "COCO", "--no-images", "-o", "c.zip")
    coco = json.loads(zipfile.ZipFile(logged_in.cwd / "c.zip").read("annotations.json"))
    texts = sorted(str(a.get("attributes", {}).get("text")) for a in coco["annotations"])
    assert texts == ["EXIT", "None", "Ünïcode"]


def test_a_coco_text_attribute_that_is_not_a_string_is_refused(client: Client, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        COCO_HEAD + '[{"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "attributes": {"text": []}}]}'
    )
    done = client.run("import", str(bad), "--url", "http://127.0.0.1:9", "--key", "k")
    assert done.returncode == 2
    assert "annotations[0].attributes.text: expected a string or null, got list" in done.stderr.replace(
        "\n", ""
    )
    assert files_under(client.cwd) == []
