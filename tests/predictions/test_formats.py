"""The parsers alone (no database): names files, keys an image is known by, per-line problems."""

from __future__ import annotations

import io
import zipfile

import orjson
import pytest

from app.core.errors import ErrorCode
from app.predictions.formats import ImportFormat, Limits, Rejected, image_ref, parse

LIMITS = Limits(max_bytes=1_000_000, max_rows=1000)


def zipped(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


@pytest.mark.parametrize(
    "names_file",
    [
        {"data.yaml": "names: [cat, dog]\n"},
        {"data.yaml": "names:\n  0: cat\n  1: dog\n"},
        {"dataset/obj.names": "cat\ndog\n"},
        {"classes.txt": "cat\ndog\n\n"},
    ],
)
def test_yolo_class_names_come_from_the_usual_files(names_file: dict[str, str]) -> None:
    parsed = parse(
        ImportFormat.YOLO, zipped({**names_file, "labels/a.txt": "1 0.5 0.5 0.2 0.4 0.8\n"}), LIMITS
    )
    (row,) = parsed.rows
    assert (row.category, row.aliases, row.score) == ("dog", ("1",), 0.8)
    assert row.box == pytest.approx((0.3, 0.4, 0.7, 0.6))


def test_a_yolo_line_without_confidence_is_a_problem() -> None:
    parsed = parse(ImportFormat.YOLO, zipped({"a.txt": "0 0.5 0.5 0.2 0.2\n"}), LIMITS, ["cat"])
    assert [(p.line, p.file, p.code) for p in parsed.problems] == [(1, "a.txt", ErrorCode.INVALID)]
    assert "no confidence" in parsed.problems[0].message


def test_an_image_is_known_by_its_id_name_base_name_and_stem() -> None:
    assert image_ref(3, "images/abc.png").keys == ("3", "images/abc.png", "abc.png", "abc")


def test_coco_category_names_become_the_labels() -> None:
    doc = {
        "categories": [{"id": 5, "name": "cat"}],
        "annotations": [{"image_id": 1, "category_id": 5, "score": 1}],
    }
    (row,) = parse(ImportFormat.COCO_RESULTS, orjson.dumps(doc), LIMITS).rows
    assert (row.category, row.aliases, row.box_px) == ("cat", ("5",), None)


def test_not_a_zip_is_refused_whole() -> None:
    with pytest.raises(Rejected) as caught:
        parse(ImportFormat.YOLO, b"plain text", LIMITS)
    assert caught.value.code is ErrorCode.INVALID
