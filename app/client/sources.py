"""What ``labelstream import`` reads: a folder of images, a file of URLs, or a COCO / YOLO /
VOC dataset with its labels, turned into neutral :class:`Item` s.

Boxes are kept in the unit each format uses (pixels for COCO and VOC, fractions for YOLO);
:func:`Label.normalized` turns them into Labelstream's 0..1 ``top,left,bottom,right`` once the
server has measured the image. Coordinates round-trip with the exports (``app/exports/writers.py``):
COCO ``bbox = [x, y, w, h]``; VOC is 1-based (``xmin - 1``, ``xmax``); YOLO ``cls cx cy w h``.

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


class SourceError(UsageError):
    """The dataset on disk cannot be read as the format says."""


@dataclass(frozen=True)
class Label:
    concept: str
    box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2
    unit_box: bool = False  # True: fractions of the image (YOLO); False: pixels

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
        return SourceFormat.COCO if path.suffix.lower() == ".json" else SourceFormat.URLS
    if not path.is_dir():
        raise SourceError(f"{path} does not exist")
    if (path / "Annotations").is_dir():
        return SourceFormat.VOC
    if (path / "data.yaml").is_file() or (path / "labels").is_dir():
        return SourceFormat.YOLO
    if (path / "annotations.json").is_file():
        return SourceFormat.COCO
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
        items[ann["image_id"]].labels.append(Label(categories[ann["category_id"]], box))
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
                if len(fields) != 5:
                    raise SourceError(f"{where}: expected `class cx cy w h` (polygons are not imported)")
                try:
                    cls = int(fields[0])
                    cx, cy, w, h = (float(v) for v in fields[1:])
                except ValueError:
                    raise SourceError(f"{where}: not numbers: {line.strip()!r}") from None
                if not 0 <= cls < len(names):
                    raise SourceError(f"{where}: class {cls} is not in the {len(names)} names")
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
