"""Prediction files computed elsewhere, parsed into rows (pure: no database, no I/O).

``ImportFormat`` is the one list of formats (GraphQL enum, CLI help, README):

* ``COCO_RESULTS``: a JSON list of results ``{image_id | file_name, category_id, bbox, score}``
  (``bbox`` = ``[x, y, width, height]`` in pixels, as pycocotools' ``loadRes`` takes it), or a
  COCO object whose ``annotations`` are the results, with optional ``images`` (``id`` ->
  ``file_name``) and ``categories`` (``id`` -> ``name``) sections: a labelstream COCO export
  re-imports as it is. ``attributes.text`` (or ``text``) is a text region's text.
* ``YOLO``: a zip of one ``<image>.txt`` per image (any folder; ``labels/`` in an ultralytics
  layout), each line ``class cx cy w h conf`` normalised to 0..1; class names from the zip's
  ``data.yaml`` (``names``), ``classes.txt`` or ``obj.names``, or the request's ``names``.
  An empty ``.txt`` is an image with no prediction.
* ``JSONL``: labelstream's JSON Lines export (``input_id``, ``file_name``, ``annotations`` with
  normalised ``box`` / ``polygon`` and ``labels`` without a region); a category is the
  annotation's ``concept_id`` or, failing that, its ``concept`` name.

Problems are reported per row with a code: ``line`` is the 1-based line of a JSONL or YOLO
file (``file`` names the zip member), and the 1-based position in the results list for COCO
(a JSON document has no useful lines). Nothing here knows the task: images and categories are
resolved by ``app.tasks.imports``.
"""

from __future__ import annotations

import enum
import io
import math
import posixpath
import zipfile
from dataclasses import dataclass, field
from typing import Any

import orjson
import yaml

from app.core.errors import ErrorCode

MAX_PROBLEMS = 100  # problems listed in an answer (all are counted)
NAMES_FILES = ("classes.txt", "obj.names", "names.txt")


class ImportFormat(enum.StrEnum):
    COCO_RESULTS = "COCO_RESULTS"
    YOLO = "YOLO"
    JSONL = "JSONL"


@dataclass(frozen=True)
class Problem:
    line: int  # 0: the file as a whole
    code: ErrorCode
    message: str
    file: str | None = None


@dataclass(frozen=True)
class ImageRef:
    """How the file names an image: candidate keys, best first (an id, a file name, its stem)."""

    keys: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.keys[0]


def image_ref(*values: Any) -> ImageRef:
    keys: list[str] = []
    for value in values:
        if value is None or value == "":
            continue
        text = str(value)
        base = posixpath.basename(text.replace("\\", "/"))
        stem = base.rsplit(".", 1)[0] if "." in base else base
        keys.extend([text, base, stem])
    return ImageRef(tuple(dict.fromkeys(keys)))


@dataclass
class Row:
    """One prediction as the file states it; geometry is pixels (``box_px``) or normalised."""

    line: int
    file: str | None
    image: ImageRef
    category: str  # the category's name when the file names it, else its id / class index
    category_name: str | None
    score: float
    aliases: tuple[str, ...] = ()  # other keys of the category (a COCO category_id)
    box_px: tuple[float, float, float, float] | None = None  # x, y, width, height
    box: tuple[float, float, float, float] | None = None  # top, left, bottom, right (0..1)
    polygon: list[float] | None = None  # row0, col0, ... (0..1)
    text: str | None = None


@dataclass
class Parsed:
    rows: list[Row] = field(default_factory=list)
    # every image the file names, with where: (ref, line, file)
    images: list[tuple[ImageRef, int, str | None]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_rows: int


class Rejected(Exception):
    """The file as a whole cannot be read (empty, too large, not the format)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _score(value: Any, line: int, out: Parsed, file: str | None = None) -> float | None:
    score = _number(value)
    if score is None:
        out.problems.append(Problem(line, ErrorCode.INVALID, "score must be a number", file))
        return None
    if not 0.0 <= score <= 1.0:
        out.problems.append(Problem(line, ErrorCode.OUT_OF_RANGE, f"score {score} is not in 0..1", file))
        return None
    return score


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _too_many(out: Parsed, limits: Limits) -> None:
    if len(out.rows) > limits.max_rows:
        raise Rejected(ErrorCode.TOO_MANY, f"more than {limits.max_rows} predictions in one file")


# --- COCO results ----------------------------------------------------------------------------


def parse_coco(data: bytes, limits: Limits) -> Parsed:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Rejected(ErrorCode.INVALID, f"not JSON: {exc}") from None
    out = Parsed()
    images: dict[str, ImageRef] = {}
    names: dict[str, str] | None = None
    if isinstance(doc, dict):
        results = doc.get("annotations")
        for k, img in enumerate(doc.get("images") or []):
            if not isinstance(img, dict) or img.get("id") is None:
                out.problems.append(Problem(k + 1, ErrorCode.INVALID, "images entry without an id", "images"))
                continue
            ref = image_ref(img["id"], img.get("file_name"))
            images[str(img["id"])] = ref
            out.images.append((ref, k + 1, "images"))
        if doc.get("categories") is not None:
            names = {}
            for cat in doc.get("categories") or []:
                if isinstance(cat, dict) and cat.get("id") is not None:
                    names[str(cat["id"])] = str(cat.get("name") or cat["id"])
    else:
        results = doc
    if not isinstance(results, list):
        raise Rejected(ErrorCode.INVALID, "expected a list of results, or an object with `annotations`")
    if not results and not out.images:
        raise Rejected(ErrorCode.EMPTY, "the file holds no result")
    for k, item in enumerate(results):
        _coco_row(k + 1, item, images, names, out)
        _too_many(out, limits)
    return out


def _coco_row(
    line: int, item: Any, images: dict[str, ImageRef], names: dict[str, str] | None, out: Parsed
) -> None:
    if not isinstance(item, dict):
        out.problems.append(Problem(line, ErrorCode.INVALID, "a result must be an object"))
        return
    if item.get("image_id") is not None:
        image = images.get(str(item["image_id"])) or image_ref(item["image_id"])
    elif item.get("file_name"):
        image = image_ref(item["file_name"])
    else:
        out.problems.append(Problem(line, ErrorCode.REQUIRED, "a result needs image_id or file_name"))
        return
    category = item.get("category_id")
    if category is None or isinstance(category, bool | dict | list):
        out.problems.append(Problem(line, ErrorCode.REQUIRED, "a result needs a category_id"))
        return
    label = str(category)
    if names is not None and label not in names:
        out.problems.append(
            Problem(line, ErrorCode.UNKNOWN_CATEGORY, f"category_id {label} is not in the file's categories")
        )
        return
    score = _score(item.get("score"), line, out)
    if score is None:
        return
    box_px = None
    if item.get("bbox") is not None:
        raw = item["bbox"]
        values = [_number(v) for v in raw] if isinstance(raw, list) else []
        if len(values) != 4 or any(v is None for v in values):
            out.problems.append(
                Problem(line, ErrorCode.INVALID_GEOMETRY, "bbox must be [x, y, width, height]")
            )
            return
        x, y, w, h = (float(v or 0.0) for v in values)
        if w <= 0 or h <= 0:
            out.problems.append(
                Problem(line, ErrorCode.INVALID_GEOMETRY, "bbox width and height must be > 0")
            )
            return
        box_px = (x, y, w, h)
    attrs = item.get("attributes")
    attributes: dict[str, Any] = attrs if isinstance(attrs, dict) else {}
    name = names.get(label) if names else None
    out.rows.append(
        Row(
            line=line,
            file=None,
            image=image,
            category=name or label,
            category_name=name,
            aliases=(label,) if name else (),
            score=score,
            box_px=box_px,
            text=_text(attributes.get("text")) or _text(item.get("text")),
        )
    )


# --- YOLO ------------------------------------------------------------------------------------


def _yolo_names(zf: zipfile.ZipFile, given: list[str] | None) -> list[str] | None:
    if given:
        return list(given)
    members = {posixpath.basename(n): n for n in zf.namelist()}
    for yaml_name in ("data.yaml", "dataset.yaml"):
        if yaml_name in members:
            try:
                doc = yaml.safe_load(zf.read(members[yaml_name]))
            except yaml.YAMLError as exc:
                raise Rejected(ErrorCode.INVALID, f"{yaml_name} is not YAML: {exc}") from None
            found = doc.get("names") if isinstance(doc, dict) else None
            if isinstance(found, dict):
                return [str(found[k]) for k in sorted(found, key=lambda k: int(k))]
            if isinstance(found, list):
                return [str(n) for n in found]
    for names_file in NAMES_FILES:
        if names_file in members:
            lines = zf.read(members[names_file]).decode("utf-8", "replace").splitlines()
            return [n.strip() for n in lines if n.strip()]
    return None


def parse_yolo(data: bytes, limits: Limits, names: list[str] | None = None) -> Parsed:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise Rejected(ErrorCode.INVALID, "a YOLO import is a zip of .txt files") from None
    infos = [i for i in zf.infolist() if not i.is_dir()]
    if sum(i.file_size for i in infos) > limits.max_bytes:  # a zip bomb never gets decompressed
        raise Rejected(ErrorCode.TOO_LARGE, f"the zip unpacks to more than {limits.max_bytes} bytes")
    classes = _yolo_names(zf, names)
    labels = [
        i
        for i in infos
        if i.filename.endswith(".txt") and posixpath.basename(i.filename) not in NAMES_FILES
        and not posixpath.basename(i.filename).startswith(".")
    ]  # fmt: skip
    if not labels:
        raise Rejected(ErrorCode.EMPTY, "the zip holds no .txt label file")
    out = Parsed()
    for info in labels:
        image = image_ref(posixpath.basename(info.filename))
        out.images.append((image, 0, info.filename))
        text = zf.read(info).decode("utf-8", "replace")
        for k, raw in enumerate(text.splitlines()):
            if raw.strip():
                _yolo_row(k + 1, info.filename, raw, image, classes, out)
        _too_many(out, limits)
    return out


def _yolo_row(
    line: int, file: str, raw: str, image: ImageRef, classes: list[str] | None, out: Parsed
) -> None:
    parts = raw.split()
    if len(parts) != 6:
        message = "expected `class cx cy w h conf`" + (" (no confidence)" if len(parts) == 5 else "")
        out.problems.append(Problem(line, ErrorCode.INVALID, message, file))
        return
    if not parts[0].isdigit():
        out.problems.append(Problem(line, ErrorCode.INVALID, f"class {parts[0]!r} is not an index", file))
        return
    index = int(parts[0])
    if classes is not None and index >= len(classes):
        out.problems.append(
            Problem(
                line, ErrorCode.UNKNOWN_CATEGORY, f"class {index} is not in the {len(classes)} names", file
            )
        )
        return
    try:
        cx, cy, w, h, conf = (float(p) for p in parts[1:])
    except ValueError:
        out.problems.append(
            Problem(line, ErrorCode.INVALID, "coordinates and confidence must be numbers", file)
        )
        return
    score = _score(conf, line, out, file)
    if score is None:
        return
    if not all(math.isfinite(v) for v in (cx, cy, w, h)) or w <= 0 or h <= 0:
        out.problems.append(Problem(line, ErrorCode.INVALID_GEOMETRY, "w and h must be > 0", file))
        return
    out.rows.append(
        Row(
            line=line,
            file=file,
            image=image,
            category=classes[index] if classes is not None else str(index),
            category_name=classes[index] if classes is not None else None,
            aliases=(str(index),) if classes is not None else (),
            score=score,
            box=(cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2),
        )
    )


# --- JSON Lines ------------------------------------------------------------------------------


def parse_jsonl(data: bytes, limits: Limits) -> Parsed:
    out = Parsed()
    for k, raw in enumerate(data.splitlines()):
        line = k + 1
        if not raw.strip():
            continue
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            out.problems.append(Problem(line, ErrorCode.INVALID, f"not JSON: {exc}"))
            continue
        if not isinstance(row, dict) or not (row.get("input_id") or row.get("file_name")):
            out.problems.append(Problem(line, ErrorCode.REQUIRED, "a line needs input_id or file_name"))
            continue
        image = image_ref(row.get("input_id"), row.get("file_name"))
        out.images.append((image, line, None))
        items = [*(row.get("annotations") or []), *(row.get("labels") or [])]
        for item in items:
            _jsonl_item(line, item, image, out)
        _too_many(out, limits)
    if not out.images and not out.problems:
        raise Rejected(ErrorCode.EMPTY, "the file holds no line")
    return out


def _jsonl_item(line: int, item: Any, image: ImageRef, out: Parsed) -> None:
    if not isinstance(item, dict):
        out.problems.append(Problem(line, ErrorCode.INVALID, "an annotation must be an object"))
        return
    label = item.get("concept_id") or item.get("concept")
    if not isinstance(label, str) or not label:
        out.problems.append(Problem(line, ErrorCode.REQUIRED, "an annotation needs concept_id or concept"))
        return
    score = _score(item.get("confidence", 1.0), line, out)
    if score is None:
        return
    box = polygon = None
    if item.get("box") is not None:
        b = item["box"]
        values = (
            [_number(b.get(k)) for k in ("top", "left", "bottom", "right")] if isinstance(b, dict) else []
        )
        if len(values) != 4 or any(v is None for v in values):
            out.problems.append(
                Problem(line, ErrorCode.INVALID_GEOMETRY, "box needs top, left, bottom, right")
            )
            return
        top, left, bottom, right = (float(v or 0.0) for v in values)
        box = (top, left, bottom, right)
    elif item.get("polygon") is not None:
        pts = item["polygon"]
        flat = [
            _number(p.get(k)) if isinstance(p, dict) else None
            for p in (pts if isinstance(pts, list) else [None])
            for k in ("row", "col")
        ]
        if len(flat) < 6 or any(v is None for v in flat):
            out.problems.append(
                Problem(line, ErrorCode.INVALID_GEOMETRY, "a polygon needs 3 {row, col} points")
            )
            return
        polygon = [float(v or 0.0) for v in flat]
    name = item.get("concept") if isinstance(item.get("concept"), str) else None
    out.rows.append(
        Row(
            line=line,
            file=None,
            image=image,
            category=label,
            category_name=name,
            score=score,
            box=box,
            polygon=polygon,
            text=_text(item.get("text")),
        )
    )


def parse(fmt: ImportFormat, data: bytes, limits: Limits, names: list[str] | None = None) -> Parsed:
    """Rows and per-row problems; ``Rejected`` when the file as a whole cannot be read."""
    if not data.strip():
        raise Rejected(ErrorCode.EMPTY, "the file is empty")
    if len(data) > limits.max_bytes:
        raise Rejected(ErrorCode.TOO_LARGE, f"the file is larger than {limits.max_bytes} bytes")
    if fmt is ImportFormat.COCO_RESULTS:
        return parse_coco(data, limits)
    if fmt is ImportFormat.YOLO:
        return parse_yolo(data, limits, names)
    return parse_jsonl(data, limits)
