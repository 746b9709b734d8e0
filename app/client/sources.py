"""What ``labelstream import`` reads: a folder of images, a file of URLs, or a COCO / YOLO /
VOC / JSON Lines dataset with its labels, turned into neutral :class:`Item` s.

Boxes and polygons are kept in the unit each format uses (pixels for COCO and VOC, fractions for
YOLO and JSON Lines); :func:`Label.normalized` and :func:`Label.normalized_polygon` turn them into
Labelstream's 0..1 ``top,left,bottom,right`` and ``(row, col)`` points once the server has
measured the image. Coordinates round-trip with the exports (``app/exports/writers.py``): COCO
``bbox = [x, y, w, h]`` and ``segmentation = [[x0, y0, x1, y1, ...]]`` (pixels); VOC is 1-based
(``xmin - 1``, ``xmax``); YOLO ``cls cx cy w h`` or ``cls x0 y0 x1 y1 ...`` (a polygon, fractions);
JSON Lines (Labelstream's own export, ``data.jsonl``) ``box {top, left, bottom, right}`` and
``polygon [{row, col}, ...]`` (fractions).

A polygon becomes a polygon region annotation, as the built-in segmentation models make (a COCO
annotation with both a ``bbox`` and a polygon ``segmentation`` keeps the polygon; one whose
``segmentation`` has several parts becomes one polygon annotation per part; an RLE mask, not a
polygon, keeps its ``bbox``). A polygon needs at least 3 points, at most ``MAX_POLYGON_POINTS``,
finite coordinates and an area; anything else is refused before anything is imported.

A text region's recognised text comes back too: JSON Lines' ``text`` on an annotation, COCO's
``attributes: {"text": ...}`` (what the exports write); a string of at most ``MAX_TEXT_CHARS``.

A malformed dataset raises :class:`SourceError` naming the file and the place in it.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from app.client.errors import UsageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})


class SourceFormat(StrEnum):
    """What ``--format`` accepts; ``auto`` guesses from the path."""

    AUTO = "auto"
    FOLDER = "folder"
    URLS = "urls"
    COCO = "coco"
    YOLO = "yolo"
    VOC = "voc"
    JSONL = "jsonl"


class SourceError(UsageError):
    """The dataset on disk cannot be read as the format says."""


MAX_POLYGON_POINTS = 1_000  # the server's limit (app/annotations/geometry.py)
MAX_TEXT_CHARS = 10_000  # the server's limit on a text region's text

Points = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Label:
    concept: str
    box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2
    unit_box: bool = False  # True: fractions of the image (YOLO, JSONL); False: pixels
    polygon: Points | None = None  # (x, y) points, in the same unit as a box
    text: str | None = None  # a text region's recognised text (JSONL ``text``, COCO ``attributes.text``)

    def normalized_polygon(self, width: int, height: int) -> list[dict[str, float]] | None:
        """``[{row, col}, ...]`` in 0..1 of an image of this size (clamped to it)."""
        if self.polygon is None:
            return None
        sx, sy = (1.0, 1.0) if self.unit_box else (1.0 / width, 1.0 / height)
        return [
            {"row": min(max(y * sy, 0.0), 1.0), "col": min(max(x * sx, 0.0), 1.0)} for x, y in self.polygon
        ]

    def normalized(self, width: int, height: int) -> dict[str, float] | None:
        """``{top, left, bottom, right}`` in 0..1 of an image of this size (clamped to it)."""
        if self.box is None:
            return None
        x1, y1, x2, y2 = self.box
        if not self.unit_box:
            x1, x2, y1, y2 = x1 / width, x2 / width, y1 / height, y2 / height

        def clamp(v: float) -> float:
            return min(max(v, 0.0), 1.0)

        return {"top": clamp(y1), "left": clamp(x1), "bottom": clamp(y2), "right": clamp(x2)}


@dataclass
class Item:
    """One input to add: a local image file or an image URL, with its labels."""

    key: str  # stable across runs: the path relative to the dataset, or the URL
    path: Path | None = None
    url: str | None = None
    labels: list[Label] = field(default_factory=list)


@dataclass
class Source:
    format: SourceFormat
    root: Path
    items: list[Item]
    concepts: list[str]  # every concept name the labels use, in the dataset's order


def detect(path: Path) -> SourceFormat:
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            return SourceFormat.JSONL
        return SourceFormat.COCO if suffix == ".json" else SourceFormat.URLS
    if not path.is_dir():
        raise SourceError(f"{path} does not exist")
    if (path / "Annotations").is_dir():
        return SourceFormat.VOC
    if (path / "data.yaml").is_file() or (path / "labels").is_dir():
        return SourceFormat.YOLO
    if (path / "annotations.json").is_file():
        return SourceFormat.COCO
    if (path / "data.jsonl").is_file():
        return SourceFormat.JSONL
    return SourceFormat.FOLDER


def read(path: Path, fmt: SourceFormat = SourceFormat.AUTO) -> Source:
    path = path.expanduser().resolve()
    if not path.exists():
        raise SourceError(f"{path} does not exist")
    if fmt is SourceFormat.AUTO:
        fmt = detect(path)
    reader = {
        SourceFormat.FOLDER: _folder,
        SourceFormat.URLS: _urls,
        SourceFormat.COCO: _coco,
        SourceFormat.YOLO: _yolo,
        SourceFormat.VOC: _voc,
        SourceFormat.JSONL: _jsonl,
    }[fmt]
    return reader(path)


def _images_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _folder(root: Path) -> Source:
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder")
    items = [Item(key=p.relative_to(root).as_posix(), path=p) for p in _images_under(root)]
    return Source(SourceFormat.FOLDER, root, items, [])


def _urls(path: Path) -> Source:
    if not path.is_file():
        raise SourceError(f"{path} is not a file of URLs")
    items: list[Item] = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        url = line.strip()
        if not url or url.startswith("#"):
            continue
        if not url.startswith(("http://", "https://")):
            raise SourceError(f"{path}:{number}: not an http(s) URL: {url[:80]!r}")
        if url not in seen:
            seen.add(url)
            items.append(Item(key=url, url=url))
    return Source(SourceFormat.URLS, path.parent, items, [])


# -- COCO -----------------------------------------------------------------------------------------


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SourceError(f"{where}: expected a number, got {value!r}")
    return float(value)


def polygon(points: list[tuple[float, float]], where: str) -> Points:
    """``points`` as a polygon, or ``SourceError``: at least 3 and at most ``MAX_POLYGON_POINTS``
    points, with an area (not all on one line)."""
    if len(points) < 3:
        raise SourceError(f"{where}: a polygon needs at least 3 points, got {len(points)}")
    if len(points) > MAX_POLYGON_POINTS:
        raise SourceError(
            f"{where}: a polygon may have at most {MAX_POLYGON_POINTS} points, got {len(points)}"
        )
    twice_area = sum(
        x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True)
    )
    if twice_area == 0:
        raise SourceError(f"{where}: the polygon has no area (its points are on one line)")
    return tuple(points)


def region_text(value: Any, where: str) -> str | None:
    """A region's recognised text: a string of at most ``MAX_TEXT_CHARS``, or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise SourceError(f"{where}: expected a string or null, got {type(value).__name__}")
    if len(value) > MAX_TEXT_CHARS:
        raise SourceError(f"{where}: at most {MAX_TEXT_CHARS:,} characters, got {len(value):,}")
    return value


def _flat_polygon(values: Any, where: str) -> Points:
    """A COCO / YOLO polygon ``[x0, y0, x1, y1, ...]``."""
    if not isinstance(values, list) or len(values) % 2:
        raise SourceError(f"{where}: a polygon is a list of x, y coordinates (an even count)")
    coords = [_number(v, where) for v in values]
    return polygon(list(zip(coords[::2], coords[1::2], strict=True)), where)


def _coco_polygons(segmentation: Any, where: str) -> list[Points]:
    """The polygons of a COCO ``segmentation`` (none for an RLE mask)."""
    if segmentation is None or isinstance(segmentation, dict):  # RLE (iscrowd): not a polygon
        return []
    if not isinstance(segmentation, list):
        raise SourceError(f"{where}: expected a list of polygons or an RLE object")
    return [_flat_polygon(part, f"{where}[{k}]") for k, part in enumerate(segmentation)]


def _coco(path: Path) -> Source:
    file = path / "annotations.json" if path.is_dir() else path
    try:
        doc = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read {file}: {exc}") from None
    except ValueError as exc:
        raise SourceError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SourceError(f"{file}: a COCO file is a JSON object with images, annotations, categories")
    for key in ("images", "categories"):
        if not isinstance(doc.get(key), list):
            raise SourceError(f"{file}: `{key}` must be a list")
    if not isinstance(doc.get("annotations", []), list):
        raise SourceError(f"{file}: `annotations` must be a list")
    categories: dict[Any, str] = {}
    for k, cat in enumerate(doc["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
            raise SourceError(f"{file}: categories[{k}] needs an `id` and a `name`")
        categories[cat["id"]] = cat["name"]
    base = file.parent
    items: dict[Any, Item] = {}
    for k, image in enumerate(doc["images"]):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            raise SourceError(f"{file}: images[{k}] needs an `id` and a `file_name`")
        name = image["file_name"]
        candidates = [base / name, base / "images" / name]
        found = next((c for c in candidates if c.is_file()), candidates[0])
        items[image["id"]] = Item(key=name, path=found)
    for k, ann in enumerate(doc.get("annotations", [])):
        where = f"{file}: annotations[{k}]"
        if not isinstance(ann, dict):
            raise SourceError(f"{where}: expected an object")
        if ann.get("image_id") not in items:
            raise SourceError(f"{where}: image_id {ann.get('image_id')!r} is not in `images`")
        if ann.get("category_id") not in categories:
            raise SourceError(f"{where}: category_id {ann.get('category_id')!r} is not in `categories`")
        bbox = ann.get("bbox")
        box = None
        if bbox is not None:
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise SourceError(f"{where}.bbox: expected [x, y, width, height]")
            x, y, w, h = (_number(v, f"{where}.bbox") for v in bbox)
            if w <= 0 or h <= 0:
                raise SourceError(f"{where}.bbox: width and height must be positive")
            box = (x, y, x + w, y + h)
        concept = categories[ann["category_id"]]
        attributes = ann.get("attributes")
        if attributes is not None and not isinstance(attributes, dict):
            raise SourceError(f"{where}.attributes: expected an object")
        text = region_text((attributes or {}).get("text"), f"{where}.attributes.text")
        parts = _coco_polygons(ann.get("segmentation"), f"{where}.segmentation")
        if parts:  # a polygon region, as the segmentation models make (no box besides)
            items[ann["image_id"]].labels.extend(Label(concept, polygon=p, text=text) for p in parts)
        else:
            items[ann["image_id"]].labels.append(Label(concept, box, text=text))
    for k, label in enumerate(doc.get("image_labels", []) or []):  # Labelstream's whole-image labels
        if (
            isinstance(label, dict)
            and label.get("image_id") in items
            and label.get("category_id") in categories
        ):
            items[label["image_id"]].labels.append(Label(categories[label["category_id"]]))
        else:
            raise SourceError(f"{file}: image_labels[{k}] names an unknown image or category")
    return Source(SourceFormat.COCO, base, list(items.values()), list(dict.fromkeys(categories.values())))


# -- YOLO -----------------------------------------------------------------------------------------


def _yolo_names(root: Path) -> list[str]:
    data = root / "data.yaml"
    if data.is_file():
        try:
            doc = yaml.safe_load(data.read_text())
        except yaml.YAMLError as exc:
            raise SourceError(f"{data} is not valid YAML: {exc}") from None
        names = doc.get("names") if isinstance(doc, dict) else None
        if isinstance(names, dict):
            return [str(names[k]) for k in sorted(names)]
        if isinstance(names, list):
            return [str(n) for n in names]
        raise SourceError(f"{data}: `names` must be a list or a mapping of class ids to names")
    for candidate in ("classes.txt", "obj.names"):
        if (root / candidate).is_file():
            return [n.strip() for n in (root / candidate).read_text().splitlines() if n.strip()]
    raise SourceError(f"{root}: a YOLO dataset needs data.yaml (with `names`) or classes.txt")


def _yolo_label_file(root: Path, image: Path) -> Path:
    rel = image.relative_to(root)
    parts = list(rel.parts)
    if "images" in parts:  # images/train/a.jpg -> labels/train/a.txt
        parts[parts.index("images")] = "labels"
        return (root / Path(*parts)).with_suffix(".txt")
    return image.with_suffix(".txt")


def _yolo(root: Path) -> Source:
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder")
    names = _yolo_names(root)
    items: list[Item] = []
    for image in _images_under(root):
        item = Item(key=image.relative_to(root).as_posix(), path=image)
        label_file = _yolo_label_file(root, image)
        if label_file.is_file():
            for number, line in enumerate(label_file.read_text().splitlines(), 1):
                fields = line.split()
                if not fields:
                    continue
                where = f"{label_file}:{number}"
                if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
                    raise SourceError(
                        f"{where}: expected `class cx cy w h` or a polygon `class x0 y0 x1 y1 ...`"
                    )
                try:
                    cls = int(fields[0])
                    values = [float(v) for v in fields[1:]]
                except ValueError:
                    raise SourceError(f"{where}: not numbers: {line.strip()!r}") from None
                if not 0 <= cls < len(names):
                    raise SourceError(f"{where}: class {cls} is not in the {len(names)} names")
                if len(fields) > 5:
                    item.labels.append(
                        Label(names[cls], unit_box=True, polygon=_flat_polygon(values, f"{where}: polygon"))
                    )
                    continue
                cx, cy, w, h = (_number(v, where) for v in values)
                if w <= 0 or h <= 0:
                    raise SourceError(f"{where}: width and height must be positive")
                box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                item.labels.append(Label(names[cls], box, unit_box=True))
        items.append(item)
    return Source(SourceFormat.YOLO, root, items, names)


# -- Pascal VOC -----------------------------------------------------------------------------------


def _voc(root: Path) -> Source:
    folder = root / "Annotations"
    if not folder.is_dir():
        raise SourceError(f"{root}: a VOC dataset has an Annotations/ folder of XML files")
    images = root / "JPEGImages" if (root / "JPEGImages").is_dir() else root / "images"
    items: list[Item] = []
    concepts: dict[str, None] = {}
    for xml in sorted(folder.glob("*.xml")):
        try:
            tree = ET.parse(xml).getroot()
        except ET.ParseError as exc:
            raise SourceError(f"{xml} is not valid XML: {exc}") from None
        name = tree.findtext("filename") or ""
        if not name:
            raise SourceError(f"{xml}: no <filename>")
        path = images / name
        item = Item(key=name, path=path)
        for k, obj in enumerate(tree.findall("object")):
            concept = (obj.findtext("name") or "").strip()
            if not concept:
                raise SourceError(f"{xml}: object {k + 1} has no <name>")
            box = obj.find("bndbox")
            region = None
            if box is not None:
                try:
                    xmin, ymin, xmax, ymax = (
                        float(box.findtext(t) or "") for t in ("xmin", "ymin", "xmax", "ymax")
                    )
                except ValueError:
                    raise SourceError(f"{xml}: object {k + 1} has a <bndbox> without numbers") from None
                region = (xmin - 1, ymin - 1, xmax, ymax)  # VOC pixels are 1-based, inclusive
            concepts[concept] = None
            item.labels.append(Label(concept, region))
        items.append(item)
    return Source(SourceFormat.VOC, root, items, list(concepts))


# -- JSON Lines (Labelstream's export) ------------------------------------------------------------


def _jsonl_label(row: dict[str, Any], where: str, region: bool) -> Label:
    concept = row.get("concept")
    if not isinstance(concept, str) or not concept:
        raise SourceError(f"{where}: needs a `concept` name")
    if not region:
        return Label(concept)
    text = region_text(row.get("text"), f"{where}.text")
    box, points = row.get("box"), row.get("polygon")
    if (box is None) == (points is None):
        raise SourceError(f"{where}: give a `box` or a `polygon` (not both)")
    if points is not None:
        if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
            raise SourceError(f"{where}.polygon: expected a list of {{row, col}} points")
        xy = [
            (
                _number(p.get("col"), f"{where}.polygon[{k}].col"),
                _number(p.get("row"), f"{where}.polygon[{k}].row"),
            )
            for k, p in enumerate(points)
        ]
        return Label(concept, unit_box=True, polygon=polygon(xy, f"{where}.polygon"), text=text)
    if not isinstance(box, dict):
        raise SourceError(f"{where}.box: expected {{top, left, bottom, right}}")
    top, left, bottom, right = (
        _number(box.get(k), f"{where}.box.{k}") for k in ("top", "left", "bottom", "right")
    )
    if bottom <= top or right <= left:
        raise SourceError(f"{where}.box: bottom and right must be past top and left")
    return Label(concept, (left, top, right, bottom), unit_box=True, text=text)


def _jsonl(path: Path) -> Source:
    """Labelstream's JSON Lines export: one image a line (``file_name`` relative to the file),
    its ``annotations`` (box or polygon, 0..1) and whole-image ``labels``."""
    file = path / "data.jsonl" if path.is_dir() else path
    try:
        lines = file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read {file}: {exc}") from None
    items: list[Item] = []
    concepts: dict[str, None] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{file}:{number}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise SourceError(f"{where}: not valid JSON: {exc}") from None
        if not isinstance(row, dict):
            raise SourceError(f"{where}: expected a JSON object")
        if row.get("kind", "IMAGE") != "IMAGE":
            raise SourceError(f"{where}: a {row.get('kind')} input: only images are imported")
        name = row.get("file_name")
        if not isinstance(name, str) or not name:
            raise SourceError(f"{where}: needs a `file_name`")
        item = Item(key=name, path=file.parent / name)
        for field_name, region in (("annotations", True), ("labels", False)):
            rows = row.get(field_name) or []
            if not isinstance(rows, list):
                raise SourceError(f"{where}: `{field_name}` must be a list")
            for k, ann in enumerate(rows):
                at = f"{where}: {field_name}[{k}]"
                if not isinstance(ann, dict):
                    raise SourceError(f"{at}: expected an object")
                label = _jsonl_label(ann, at, region)
                concepts[label.concept] = None
                item.labels.append(label)
        items.append(item)
    return Source(SourceFormat.JSONL, file.parent, items, list(concepts))
