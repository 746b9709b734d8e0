"""Writing a dataset version as a zip: COCO JSON, YOLO (boxes or polygons), Pascal VOC, JSON Lines.

Everything streams: the version is read ``PAGE`` inputs at a time and each page is written into
the zip before the next is read (zip entries are opened for writing and fed piece by piece; the
COCO file is one JSON document written as it goes, in passes: images, annotations, image labels).
The zip goes to a file object the caller gives (a spooled temporary file for HTTP), never to one
big ``bytes``.

The same version always gives the same bytes: entries come in the version's order, every entry
carries the version's creation time and fixed permissions, and nothing else read at export time
(the clock, the current inputs, annotations, concepts or tasks) goes in.

Coordinates: stored regions are normalised (row = y, col = x, 0..1). COCO and VOC get pixels
(COCO ``bbox`` = ``[x, y, width, height]``, ``area`` in square pixels; VOC 1-based ``xmin``,
``ymin``), YOLO gets normalised centre/size (boxes) or normalised points (polygons).

What each format holds, and what it leaves out (counted by reason in version.json's ``export``):
* COCO, YOLO and VOC hold image inputs of known size only (``NOT_AN_IMAGE``, ``UNKNOWN_SIZE``).
* Whole-image labels (no box, no polygon) go to COCO's top-level ``image_labels`` (shaped like
  ``annotations`` without geometry; pycocotools ignores it), to YOLO's ``classify/`` folder
  (ultralytics classification layout ``classify/all/<class>/<image>``, listed in
  ``classify/labels.txt`` so it is there with ``images=false`` too) and to JSON Lines' ``labels``.
  Pascal VOC has no place for them (``WHOLE_IMAGE``).
* JSON Lines has every input and every annotation.
* A text region's recognised text (``Annotation.text``) is JSON Lines' ``text`` on each annotation
  (null for the others) and COCO's ``attributes: {"text": ...}`` on the annotation, where CVAT's
  COCO importer and most COCO-text tools look for per-object attributes (only when there is one);
  YOLO and VOC have no place for it.
"""

from __future__ import annotations

import asyncio
import enum
import re
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import IO, Any
from xml.etree import ElementTree as ET

import orjson

from app.annotations.geometry import polygon_area, unflatten
from app.core.blobs import BlobStore
from app.core.errors import ErrorCode, ValidationFailed
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


def has_region(a: VersionAnnotation) -> bool:
    return bool(a.box) or bool(a.polygon)


def _r(value: float) -> float:
    return round(value, 3)


class LeftOut(enum.StrEnum):
    """Why a format left an input or an annotation of the version out."""

    WHOLE_IMAGE = "WHOLE_IMAGE"  # the format has no place for a label without a region
    NOT_AN_IMAGE = "NOT_AN_IMAGE"  # a text input, in an image-only format
    UNKNOWN_SIZE = "UNKNOWN_SIZE"  # an image never fetched or decoded: no pixels to convert to


@dataclass
class Tally:
    written: int = 0
    whole_image: int = 0  # of ``written``: whole-image labels (image-level, not regions)
    left_out: Counter[str] = field(default_factory=Counter)

    def leave(self, reason: LeftOut, n: int = 1) -> None:
        if n:
            self.left_out[reason] += n

    def json(self, *, labels: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"written": self.written}
        if labels:
            out["wholeImageLabels"] = self.whole_image
        out["leftOut"] = {str(k): n for k, n in sorted(self.left_out.items())}
        return out


def _class_folders(version: DatasetVersion) -> dict[str, str]:
    """A safe folder name per concept id, unique within the version."""
    names: dict[str, str] = {}
    for c in version.concepts:
        name = re.sub(r"[\x00-\x1f/\\:*?\"<>|]", "_", c.name).strip().strip(".") or c.id
        names[c.id] = name
    counts = Counter(names.values())
    return {cid: (f"{n}-{cid}" if counts[n] > 1 else n) for cid, n in names.items()}


class _Writer:
    """One zip being written; subclasses add their entries page by page."""

    format: ExportFormat

    def __init__(self, version: DatasetVersion, out: IO[bytes], blobs: BlobStore, images: bool) -> None:
        self.version, self.blobs, self.with_images = version, blobs, images
        self.zip = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.categories = {c.id: k for k, c in enumerate(version.concepts)}
        self.names = [c.name for c in version.concepts]
        self.inputs, self.annotations = Tally(), Tally()
        self.files = Counter[str]()  # image files: "written", or "missing" from the blob store
        stamp = version.created_at.astimezone(UTC)
        self.date_time = max((1980, 1, 1, 0, 0, 0), stamp.timetuple()[:6])

    def entry(self, name: str, compress: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
        """A zip entry stamped with the version's time, never the clock's."""
        info = zipfile.ZipInfo(name, date_time=self.date_time)
        info.compress_type = compress
        info.create_system = 3  # Unix, whatever the platform writing it
        info.external_attr = 0o644 << 16
        return info

    def text(self, name: str, data: str | bytes) -> None:
        self.zip.writestr(self.entry(name), data)

    def stream(self, name: str) -> IO[bytes]:
        return self.zip.open(self.entry(name), "w", force_zip64=True)

    async def image(self, path: str, item: VersionInput) -> None:
        if not self.with_images or item.kind != "IMAGE" or not item.blob_key:
            return
        data = await self.blobs.get(item.blob_key)
        if data is None:  # only a version made before images were pinned can lose one
            self.files["missing"] += 1
            return
        # already compressed formats: store, do not deflate again
        self.zip.writestr(self.entry(path, zipfile.ZIP_STORED), data)
        self.files["written"] += 1

    async def images(self, folder: str, items: list[VersionInput]) -> None:
        for item in items:
            await self.image(f"{folder}/{image_name(item)}", item)

    def pixel_items(self, page: service.VersionPage, *, count: bool) -> list[VersionInput]:
        """The page's images of known size; with ``count``, the others and their annotations are
        counted as left out."""
        kept = []
        for item in page.inputs:
            if has_pixels(item):
                kept.append(item)
                if count:
                    self.inputs.written += 1
            elif count:
                reason = LeftOut.UNKNOWN_SIZE if item.kind == "IMAGE" else LeftOut.NOT_AN_IMAGE
                self.inputs.leave(reason)
                self.annotations.leave(reason, len(page.annotations.get(item.input_id, [])))
        return kept

    async def run(self) -> None:
        raise NotImplementedError

    def manifest(self) -> dict[str, Any]:
        return {
            "versionId": self.version.id,
            "datasetId": self.version.dataset_id,
            "createdAt": self.version.created_at.isoformat(),
            "inputs": self.version.inputs_count,
            "annotations": self.version.annotations_count,
            "filter": self.version.filter,
            "leftOutOfVersion": dict(sorted(self.version.left_out.items())),
            "concepts": [c.model_dump() for c in self.version.concepts],
            "export": {
                "format": self.format.value,
                "images": self.with_images,
                "imageFiles": {"written": self.files["written"], "missing": self.files["missing"]},
                "inputs": self.inputs.json(labels=False),
                "annotations": self.annotations.json(labels=True),
            },
        }

    def close(self) -> None:
        try:
            self.text("version.json", orjson.dumps(self.manifest(), option=orjson.OPT_INDENT_2))
        finally:
            self.zip.close()


class CocoWriter(_Writer):
    format = ExportFormat.COCO

    async def run(self) -> None:
        with self.stream("annotations.json") as fh:
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
            async for page in service.pages(self.version):
                rows = [
                    {
                        "id": i.seq + 1,
                        "file_name": f"images/{image_name(i)}",
                        "width": i.width,
                        "height": i.height,
                    }
                    for i in self.pixel_items(page, count=True)
                ]
                first = await asyncio.to_thread(_write_items, fh, rows, first)
            fh.write(b'],"annotations":[')
            first, next_id = True, 1
            async for page in service.pages(self.version):
                rows = []
                for item in self.pixel_items(page, count=False):
                    for a in page.annotations.get(item.input_id, []):
                        if has_region(a):
                            rows.append(self._annotation(next_id, item, a))
                            next_id += 1
                self.annotations.written += len(rows)
                first = await asyncio.to_thread(_write_items, fh, rows, first)
            # whole-image labels: an extension readers of plain COCO ignore
            fh.write(b'],"image_labels":[')
            first, next_id = True, 1
            async for page in service.pages(self.version):
                rows = []
                for item in self.pixel_items(page, count=False):
                    for a in page.annotations.get(item.input_id, []):
                        if not has_region(a):
                            rows.append(self._label(next_id, item, a))
                            next_id += 1
                self.annotations.written += len(rows)
                self.annotations.whole_image += len(rows)
                first = await asyncio.to_thread(_write_items, fh, rows, first)
            fh.write(b"]}")
        async for page in service.pages(self.version, with_annotations=False):
            await self.images("images", [i for i in page.inputs if has_pixels(i)])

    def _annotation(self, ident: int, item: VersionInput, a: VersionAnnotation) -> dict[str, Any]:
        w, h = int(item.width or 0), int(item.height or 0)
        box = pixel_box(a, w, h)
        assert box is not None
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
            **({"attributes": {"text": a.text}} if a.text is not None else {}),
        }

    def _label(self, ident: int, item: VersionInput, a: VersionAnnotation) -> dict[str, Any]:
        return {
            "id": ident,
            "image_id": item.seq + 1,
            "category_id": self.categories[a.concept_id] + 1,
            "score": a.confidence,
        }


def _write_items(fh: IO[bytes], rows: list[dict[str, Any]], first: bool) -> bool:
    for row in rows:
        fh.write((b"" if first else b",") + orjson.dumps(row))
        first = False
    return first


class YoloWriter(_Writer):
    format = ExportFormat.YOLO
    segment = False

    async def run(self) -> None:
        names = "\n".join(f"  {k}: {orjson.dumps(n).decode()}" for k, n in enumerate(self.names))
        self.text(
            "data.yaml",
            f"# labelstream dataset version {self.version.id}\npath: .\ntrain: images\nval: images\n"
            f"nc: {len(self.names)}\nnames:\n{names}\n",
        )
        any_labels = False
        async for page in service.pages(self.version):
            items = self.pixel_items(page, count=True)
            for item in items:
                anns = page.annotations.get(item.input_id, [])
                lines = [self._line(item, a) for a in anns if has_region(a)]
                self.annotations.written += len(lines)
                any_labels = any_labels or len(lines) < len(anns)
                stem = image_name(item).rsplit(".", 1)[0]
                self.text(f"labels/{stem}.txt", "".join(line + "\n" for line in lines))
            await self.images("images", items)
        if any_labels:
            await self._classify()

    async def _classify(self) -> None:
        """Whole-image labels in the ultralytics classification layout: a copy of the image per
        class it has (the version has no split: ``all``), listed in ``classify/labels.txt``."""
        folders = _class_folders(self.version)
        with self.stream("classify/labels.txt") as fh:
            async for page in service.pages(self.version):
                lines: list[str] = []
                for item in self.pixel_items(page, count=False):
                    labels = [a for a in page.annotations.get(item.input_id, []) if not has_region(a)]
                    self.annotations.written += len(labels)
                    self.annotations.whole_image += len(labels)
                    paths = dict.fromkeys(f"all/{folders[a.concept_id]}/{image_name(item)}" for a in labels)
                    lines.extend(paths)
                await asyncio.to_thread(fh.write, "".join(f"{p}\n" for p in lines).encode())
        if not self.with_images:
            return
        async for page in service.pages(self.version):
            for item in self.pixel_items(page, count=False):
                labels = [a for a in page.annotations.get(item.input_id, []) if not has_region(a)]
                for folder in dict.fromkeys(folders[a.concept_id] for a in labels):
                    await self.image(f"classify/all/{folder}/{image_name(item)}", item)

    def _line(self, item: VersionInput, a: VersionAnnotation) -> str:
        w, h = int(item.width or 0), int(item.height or 0)
        cls = self.categories[a.concept_id]
        if self.segment:
            poly = pixel_polygon(a, w, h)
            return f"{cls} " + " ".join(f"{x / w:.6f} {y / h:.6f}" for x, y in poly)
        box = pixel_box(a, w, h)
        assert box is not None
        x1, y1, x2, y2 = box
        return (
            f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
        )


class YoloSegmentWriter(YoloWriter):
    format = ExportFormat.YOLO_SEGMENT
    segment = True


class VocWriter(_Writer):
    format = ExportFormat.VOC

    async def run(self) -> None:
        ids: list[str] = []
        async for page in service.pages(self.version):
            items = self.pixel_items(page, count=True)
            for item in items:
                stem = image_name(item).rsplit(".", 1)[0]
                ids.append(stem)
                anns = page.annotations.get(item.input_id, [])
                regions = [a for a in anns if has_region(a)]
                self.annotations.written += len(regions)
                self.annotations.leave(LeftOut.WHOLE_IMAGE, len(anns) - len(regions))
                self.text(f"Annotations/{stem}.xml", self._xml(item, regions))
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
            assert box is not None
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
    format = ExportFormat.JSONL

    async def run(self) -> None:
        with self.stream("data.jsonl") as fh:
            async for page in service.pages(self.version):
                lines = [self._line(i, page.annotations.get(i.input_id, [])) for i in page.inputs]
                await asyncio.to_thread(fh.write, b"".join(line + b"\n" for line in lines))
        async for page in service.pages(self.version, with_annotations=False):
            await self.images("images", page.inputs)

    def _line(self, item: VersionInput, anns: list[VersionAnnotation]) -> bytes:
        w, h = int(item.width or 0), int(item.height or 0)
        regions = [a for a in anns if has_region(a)]
        labels = [a for a in anns if not has_region(a)]
        self.inputs.written += 1
        self.annotations.written += len(anns)
        self.annotations.whole_image += len(labels)
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
                    **self._about(a),
                    "box": dict(zip(("top", "left", "bottom", "right"), a.box, strict=True))
                    if a.box
                    else None,
                    "polygon": [{"row": r, "col": c} for r, c in unflatten(a.polygon)] if a.polygon else None,
                    "bbox_pixels": [_r(v) for v in box] if (box := pixel_box(a, w, h)) and w and h else None,
                }
                for a in regions
            ],
            "labels": [self._about(a) for a in labels],  # whole-input labels: no region
        }
        return orjson.dumps(row)

    @staticmethod
    def _about(a: VersionAnnotation) -> dict[str, Any]:
        return {
            "id": a.annotation_id,
            "concept_id": a.concept_id,
            "concept": a.concept_name,
            "status": a.status,
            "confidence": a.confidence,
            "text": a.text,
            "labeled_by_user_id": a.labeled_by_user_id,
            "labeled_by_model_id": a.labeled_by_model_id,
            "reviewed_by": a.reviewed_by,
            "task_id": a.task_id,
        }


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
    try:
        return ExportFormat(value.upper().replace("-", "_"))
    except ValueError:
        names = ", ".join(f.value for f in ExportFormat)
        raise ValidationFailed(
            f"unknown export format {value!r}; one of {names}",
            field="format",
            code=ErrorCode.UNSUPPORTED_FORMAT,
        ) from None
