"""Writing a dataset version as a zip: COCO JSON, YOLO (boxes or polygons), Pascal VOC, JSON Lines.

Everything streams: the version is read ``PAGE`` inputs at a time and each page is written into
the zip before the next is read (zip entries are opened for writing and fed piece by piece; the
COCO file is one JSON document written as it goes, in two passes: images, then annotations).
The zip goes to a file object the caller gives (a spooled temporary file for HTTP), never to one
big ``bytes``.

Coordinates: stored regions are normalised (row = y, col = x, 0..1). COCO and VOC get pixels
(COCO ``bbox`` = ``[x, y, width, height]``, ``area`` in square pixels; VOC 1-based ``xmin``,
``ymin``), YOLO gets normalised centre/size (boxes) or normalised points (polygons). Only
image inputs whose size is known, and only annotations with a region, go into COCO, YOLO and
VOC; JSON Lines has every input and every annotation (text inputs and whole-input labels too).
"""

from __future__ import annotations

import asyncio
import enum
import zipfile
from collections.abc import Callable
from typing import IO, Any
from xml.etree import ElementTree as ET

import orjson

from app.annotations.geometry import polygon_area, unflatten
from app.core.blobs import BlobStore
from app.exports import service
from app.exports.models import DatasetVersion, VersionAnnotation, VersionInput


class ExportFormat(enum.StrEnum):
    COCO = "COCO"
    YOLO = "YOLO"
    YOLO_SEGMENT = "YOLO_SEGMENT"
    VOC = "VOC"
    JSONL = "JSONL"


_MIME = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/bmp": "bmp",
}


def image_name(item: VersionInput) -> str:
    ext = _MIME.get(item.content_type or "", "tiff" if item.content_type == "image/tiff" else "bin")
    return f"{item.input_id}.{ext}"


def has_pixels(item: VersionInput) -> bool:
    return item.kind == "IMAGE" and bool(item.width) and bool(item.height)


def pixel_box(a: VersionAnnotation, w: int, h: int) -> tuple[float, float, float, float] | None:
    """``(x1, y1, x2, y2)`` in pixels, from the box or the polygon's extent."""
    if a.box:
        top, left, bottom, right = a.box
        return left * w, top * h, right * w, bottom * h
    if a.polygon:
        pts = unflatten(a.polygon)
        rows, cols = [p[0] for p in pts], [p[1] for p in pts]
        return min(cols) * w, min(rows) * h, max(cols) * w, max(rows) * h
    return None


def pixel_polygon(a: VersionAnnotation, w: int, h: int) -> list[tuple[float, float]]:
    """``[(x, y), ...]`` in pixels; a box becomes its four corners."""
    if a.polygon:
        return [(c * w, r * h) for r, c in unflatten(a.polygon)]
    box = pixel_box(a, w, h)
    if box is None:
        return []
    x1, y1, x2, y2 = box
    return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]


def _r(value: float) -> float:
    return round(value, 3)


class _Writer:
    """One zip being written; subclasses add their entries page by page."""

    def __init__(self, version: DatasetVersion, out: IO[bytes], blobs: BlobStore, images: bool) -> None:
        self.version, self.blobs, self.with_images = version, blobs, images
        self.zip = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.categories = {c.id: k for k, c in enumerate(version.concepts)}
        self.names = [c.name for c in version.concepts]

    def text(self, name: str, data: str | bytes) -> None:
        self.zip.writestr(name, data)

    async def images(self, folder: str, items: list[VersionInput]) -> None:
        if not self.with_images:
            return
        for item in items:
            if item.kind != "IMAGE" or not item.blob_key:
                continue
            data = await self.blobs.get(item.blob_key)
            if data is not None:
                # already compressed formats: store, do not deflate again
                self.zip.writestr(zipfile.ZipInfo(f"{folder}/{image_name(item)}"), data, zipfile.ZIP_STORED)

    async def run(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.zip.writestr(
            "version.json",
            orjson.dumps(
                {
                    "versionId": self.version.id,
                    "datasetId": self.version.dataset_id,
                    "createdAt": self.version.created_at.isoformat(),
                    "inputs": self.version.inputs_count,
                    "annotations": self.version.annotations_count,
                    "filter": self.version.filter,
                    "concepts": [c.model_dump() for c in self.version.concepts],
                },
                option=orjson.OPT_INDENT_2,
            ),
        )
        self.zip.close()


class CocoWriter(_Writer):
    async def run(self) -> None:
        with self.zip.open("annotations.json", "w", force_zip64=True) as fh:
            head = {
                "info": {
                    "description": f"labelstream dataset version {self.version.id}",
                    "version": self.version.id,
                },
                "licenses": [],
                "categories": [
                    {"id": k + 1, "name": n, "supercategory": ""} for k, n in enumerate(self.names)
                ],
            }
            fh.write(orjson.dumps(head)[:-1] + b',"images":[')
            first = True
            async for page in service.pages(self.version, with_annotations=False):
                rows = [
                    {
                        "id": i.seq + 1,
                        "file_name": f"images/{image_name(i)}",
                        "width": i.width,
                        "height": i.height,
                    }
                    for i in page.inputs
                    if has_pixels(i)
                ]
                first = await asyncio.to_thread(_write_items, fh, rows, first)
            fh.write(b'],"annotations":[')
            first, next_id = True, 1
            async for page in service.pages(self.version):
                rows = []
                for item in page.inputs:
                    if not has_pixels(item):
                        continue
                    for a in page.annotations.get(item.input_id, []):
                        row = self._annotation(next_id, item, a)
                        if row is not None:
                            rows.append(row)
                            next_id += 1
                first = await asyncio.to_thread(_write_items, fh, rows, first)
            fh.write(b"]}")
        async for page in service.pages(self.version, with_annotations=False):
            await self.images("images", page.inputs)

    def _annotation(self, ident: int, item: VersionInput, a: VersionAnnotation) -> dict[str, Any] | None:
        w, h = int(item.width or 0), int(item.height or 0)
        box = pixel_box(a, w, h)
        if box is None:
            return None
        x1, y1, x2, y2 = box
        poly = pixel_polygon(a, w, h)
        area = (x2 - x1) * (y2 - y1) if a.box else polygon_area([(y, x) for x, y in poly])
        return {
            "id": ident,
            "image_id": item.seq + 1,
            "category_id": self.categories[a.concept_id] + 1,
            "bbox": [_r(x1), _r(y1), _r(x2 - x1), _r(y2 - y1)],
            "area": _r(area),
            "segmentation": [[_r(v) for p in poly for v in p]],
            "iscrowd": 0,
            "score": a.confidence,
        }


def _write_items(fh: IO[bytes], rows: list[dict[str, Any]], first: bool) -> bool:
    for row in rows:
        fh.write((b"" if first else b",") + orjson.dumps(row))
        first = False
    return first


class YoloWriter(_Writer):
    segment = False

    async def run(self) -> None:
        names = "\n".join(f"  {k}: {orjson.dumps(n).decode()}" for k, n in enumerate(self.names))
        self.text(
            "data.yaml",
            f"# labelstream dataset version {self.version.id}\npath: .\ntrain: images\nval: images\n"
            f"nc: {len(self.names)}\nnames:\n{names}\n",
        )
        async for page in service.pages(self.version):
            items = [i for i in page.inputs if has_pixels(i)]
            for item in items:
                lines = [self._line(item, a) for a in page.annotations.get(item.input_id, [])]
                stem = image_name(item).rsplit(".", 1)[0]
                self.text(f"labels/{stem}.txt", "".join(line + "\n" for line in lines if line))
            await self.images("images", items)

    def _line(self, item: VersionInput, a: VersionAnnotation) -> str | None:
        w, h = int(item.width or 0), int(item.height or 0)
        cls = self.categories[a.concept_id]
        if self.segment:
            poly = pixel_polygon(a, w, h)
            if not poly:
                return None
            return f"{cls} " + " ".join(f"{x / w:.6f} {y / h:.6f}" for x, y in poly)
        box = pixel_box(a, w, h)
        if box is None:
            return None
        x1, y1, x2, y2 = box
        return (
            f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
        )


class YoloSegmentWriter(YoloWriter):
    segment = True


class VocWriter(_Writer):
    async def run(self) -> None:
        ids: list[str] = []
        async for page in service.pages(self.version):
            items = [i for i in page.inputs if has_pixels(i)]
            for item in items:
                stem = image_name(item).rsplit(".", 1)[0]
                ids.append(stem)
                self.text(f"Annotations/{stem}.xml", self._xml(item, page.annotations.get(item.input_id, [])))
            await self.images("JPEGImages", items)
        self.text("ImageSets/Main/default.txt", "".join(i + "\n" for i in ids))
        self.text("labelmap.txt", "".join(n + "\n" for n in self.names))

    def _xml(self, item: VersionInput, anns: list[VersionAnnotation]) -> bytes:
        w, h = int(item.width or 0), int(item.height or 0)
        root = ET.Element("annotation")
        ET.SubElement(root, "folder").text = "JPEGImages"
        ET.SubElement(root, "filename").text = image_name(item)
        size = ET.SubElement(root, "size")
        for tag, value in (("width", w), ("height", h), ("depth", 3)):
            ET.SubElement(size, tag).text = str(value)
        ET.SubElement(root, "segmented").text = "0"
        for a in anns:
            box = pixel_box(a, w, h)
            if box is None:
                continue
            x1, y1, x2, y2 = box
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = a.concept_name
            ET.SubElement(obj, "pose").text = "Unspecified"
            ET.SubElement(obj, "truncated").text = "0"
            ET.SubElement(obj, "difficult").text = "0"
            bnd = ET.SubElement(obj, "bndbox")
            xmin, ymin = round(x1) + 1, round(y1) + 1  # VOC is 1-based
            values = (
                ("xmin", xmin),
                ("ymin", ymin),
                ("xmax", max(round(x2), xmin)),
                ("ymax", max(round(y2), ymin)),
            )
            for tag, value in values:
                ET.SubElement(bnd, tag).text = str(value)
            if a.polygon:
                poly = ET.SubElement(obj, "polygon")
                for k, (x, y) in enumerate(pixel_polygon(a, w, h), start=1):
                    ET.SubElement(poly, f"x{k}").text = f"{x + 1:.2f}"
                    ET.SubElement(poly, f"y{k}").text = f"{y + 1:.2f}"
        return ET.tostring(root, encoding="utf-8", xml_declaration=True)


class JsonLinesWriter(_Writer):
    async def run(self) -> None:
        with self.zip.open("data.jsonl", "w", force_zip64=True) as fh:
            async for page in service.pages(self.version):
                lines = [self._line(i, page.annotations.get(i.input_id, [])) for i in page.inputs]
                await asyncio.to_thread(fh.write, b"".join(line + b"\n" for line in lines))
        async for page in service.pages(self.version, with_annotations=False):
            await self.images("images", page.inputs)

    def _line(self, item: VersionInput, anns: list[VersionAnnotation]) -> bytes:
        w, h = int(item.width or 0), int(item.height or 0)
        row = {
            "input_id": item.input_id,
            "kind": item.kind,
            "file_name": f"images/{image_name(item)}" if item.kind == "IMAGE" else None,
            "width": item.width,
            "height": item.height,
            "text": item.text,
            "metadata": item.metadata,
            "annotations": [
                {
                    "id": a.annotation_id,
                    "concept_id": a.concept_id,
                    "concept": a.concept_name,
                    "status": a.status,
                    "confidence": a.confidence,
                    "box": dict(zip(("top", "left", "bottom", "right"), a.box, strict=True))
                    if a.box
                    else None,
                    "polygon": [{"row": r, "col": c} for r, c in unflatten(a.polygon)] if a.polygon else None,
                    "bbox_pixels": [_r(v) for v in box] if (box := pixel_box(a, w, h)) and w and h else None,
                    "labeled_by_user_id": a.labeled_by_user_id,
                    "labeled_by_model_id": a.labeled_by_model_id,
                    "reviewed_by": a.reviewed_by,
                    "task_id": a.task_id,
                }
                for a in anns
            ],
        }
        return orjson.dumps(row)


WRITERS: dict[ExportFormat, Callable[..., _Writer]] = {
    ExportFormat.COCO: CocoWriter,
    ExportFormat.YOLO: YoloWriter,
    ExportFormat.YOLO_SEGMENT: YoloSegmentWriter,
    ExportFormat.VOC: VocWriter,
    ExportFormat.JSONL: JsonLinesWriter,
}


async def write_export(
    version: DatasetVersion, fmt: ExportFormat, out: IO[bytes], blobs: BlobStore, *, images: bool = True
) -> None:
    """Write the zip of ``version`` in ``fmt`` to ``out`` (left open, positioned at its end)."""
    writer = WRITERS[fmt](version, out, blobs, images)
    try:
        await writer.run()
    finally:
        writer.close()


def parse_format(value: str) -> ExportFormat:
    from app.core.errors import ErrorCode, ValidationFailed

    try:
        return ExportFormat(value.upper().replace("-", "_"))
    except ValueError:
        names = ", ".join(f.value for f in ExportFormat)
        raise ValidationFailed(
            f"unknown export format {value!r}; one of {names}",
            field="format",
            code=ErrorCode.UNSUPPORTED_FORMAT,
        ) from None
