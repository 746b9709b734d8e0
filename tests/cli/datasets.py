"""Small labelled datasets on disk, in the formats ``labelstream import`` reads."""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image

NAMES = ["cat", "dog", "car"]


def image(path: Path, width: int, height: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256)).save(path)


def coco(root: Path, n: int, seed: int = 7) -> dict[str, object]:
    """``root/annotations.json`` and ``root/images/*.png``: n images of various sizes, 0-4 boxes
    each, coordinates with one decimal (what the export writes back, to 3 decimals, exactly)."""
    rng = random.Random(seed)
    images, annotations = [], []
    for k in range(n):
        w, h = rng.randint(40, 120), rng.randint(40, 120)
        name = f"img_{k:04d}.png"
        image(root / "images" / name, w, h, k)
        images.append({"id": k + 1, "file_name": name, "width": w, "height": h})
        for _ in range(rng.randint(0, 4)):
            x, y = (
                rng.randint(0, w - 12) + rng.randint(0, 9) / 10,
                rng.randint(0, h - 12) + rng.randint(0, 9) / 10,
            )
            bw = rng.randint(2, int(w - x) - 1) + rng.randint(0, 9) / 10
            bh = rng.randint(2, int(h - y) - 1) + rng.randint(0, 9) / 10
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": k + 1,
                    "category_id": rng.randint(1, len(NAMES)),
                    "bbox": [x, y, round(bw, 1), round(bh, 1)],
                    "area": round(bw * bh, 2),
                    "iscrowd": 0,
                }
            )
    doc = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(NAMES)],
    }
    (root / "annotations.json").write_text(json.dumps(doc))
    return doc


def yolo(root: Path) -> dict[str, list[tuple[int, float, float, float, float]]]:
    """``data.yaml``, ``images/train/*.png``, ``labels/train/*.txt``; returns the labels by image."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("names:\n  0: cat\n  1: dog\n  2: car\n")
    labels = {
        "a.png": [(0, 0.5, 0.5, 0.5, 0.25), (2, 0.25, 0.75, 0.2, 0.1)],
        "b.png": [(1, 0.3, 0.4, 0.2, 0.2)],
        "c.png": [],
    }
    for k, (name, rows) in enumerate(labels.items()):
        image(root / "images" / "train" / name, 80, 40, k)
        txt = root / "labels" / "train" / (Path(name).stem + ".txt")
        txt.parent.mkdir(parents=True, exist_ok=True)
        txt.write_text("".join(f"{c} {x} {y} {w} {h}\n" for c, x, y, w, h in rows))
    return labels


def voc(root: Path) -> dict[str, list[tuple[str, int, int, int, int]]]:
    """``Annotations/*.xml`` and ``JPEGImages/*.png``; returns the boxes by file name."""
    boxes = {
        "one.png": [("cat", 1, 1, 30, 20), ("dog", 10, 5, 64, 48)],
        "two.png": [("car", 5, 6, 7, 8)],
    }
    (root / "Annotations").mkdir(parents=True)
    for k, (name, objects) in enumerate(boxes.items()):
        image(root / "JPEGImages" / name, 64, 48, k)
        objs = "".join(
            f"<object><name>{c}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{x}</xmax><ymax>{y}</ymax>"
            "</bndbox></object>"
            for c, a, b, x, y in objects
        )
        xml = f"<annotation><filename>{name}</filename><size><width>64</width><height>48</height></size>{objs}</annotation>"
        (root / "Annotations" / (Path(name).stem + ".xml")).write_text(xml)
    return boxes
