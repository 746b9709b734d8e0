"""Exporting a large dataset version: snapshot N image inputs, then write the COCO zip.

    python bench/exports.py [--inputs 10000] [--no-images]

On a fresh embedded nx-27017 with a local blob folder: N small PNG inputs (each its own bytes)
in one dataset, each with a box and a polygon annotation (SUCCESS). Then

* ``createDatasetVersion``: ``exports.service.create_version`` (pages of 500 inputs);
* COCO export to a file: ``exports.writers.write_export`` (what the HTTP route and
  ``labelstream export`` run), timed; then again under ``tracemalloc`` for the peak of Python
  allocations while exporting (the process's RSS growth is printed too).

The zip is checked with pycocotools when it is installed (dev extra).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import resource
import sys
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.access import Principal  # noqa: E402
from app.annotations.models import Annotation, AnnotationStatus  # noqa: E402
from app.apps.models import App, Membership, Role  # noqa: E402
from app.concepts.models import Concept  # noqa: E402
from app.core.blobs import LocalBlobStore  # noqa: E402
from app.datasets.models import Dataset  # noqa: E402
from app.documents import open_database  # noqa: E402
from app.embedded import EmbeddedMongo  # noqa: E402
from app.exports import service  # noqa: E402
from app.exports.writers import ExportFormat, write_export  # noqa: E402
from app.inputs.models import Input, InputKind  # noqa: E402
from app.users.models import User  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def small_png(k: int) -> bytes:
    pixels = np.full((24, 32, 3), k % 251, dtype=np.uint8)
    pixels[0, 0] = [k % 256, (k // 256) % 256, 7]  # every image different
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


async def run(url: str, root: Path, n: int, images: bool) -> None:
    client = await open_database(url, "bench_exports")
    blobs = LocalBlobStore(root / "blobs")
    owner = User(email="owner@bench.local")
    await owner.insert()
    app = App(name="bench", created_by=owner.id)
    await app.insert()
    await Membership(app_id=app.id, user_id=owner.id, roles=[Role.OWNER]).insert()
    ds = Dataset(app_id=app.id, name="big", inputs_count=n)
    await ds.insert()
    cat = Concept(app_id=app.id, name="cat", name_key="cat")
    dog = Concept(app_id=app.id, name="dog", name_key="dog")
    await cat.insert()
    await dog.insert()
    t0 = time.perf_counter()
    for k0 in range(0, n, 1000):
        inputs, anns = [], []
        for k in range(k0, min(n, k0 + 1000)):
            key = await blobs.put(small_png(k))
            doc = Input(
                app_id=app.id, kind=InputKind.IMAGE, dataset_ids=[ds.id], blob_key=key,
                content_type="image/png", size_bytes=0, width=32, height=24,
            )  # fmt: skip
            inputs.append(doc.model_dump(by_alias=True, mode="python"))
            for concept, region in (
                (cat, {"box": [0.1, 0.2, 0.6, 0.7]}),
                (dog, {"polygon": [0.2, 0.2, 0.2, 0.8, 0.8, 0.5]}),
            ):
                anns.append(
                    Annotation(
                        app_id=app.id, input_id=doc.id, concept_id=concept.id, dataset_ids=[ds.id],
                        status=AnnotationStatus.SUCCESS, labeled_by_user_id=owner.id, **region,
                    ).model_dump(by_alias=True, mode="python")
                )  # fmt: skip
        await Input.get_pymongo_collection().insert_many(inputs)
        await Annotation.get_pymongo_collection().insert_many(anns)
    t_setup = time.perf_counter() - t0
    principal = Principal(user=owner, key_id="bench")

    t0 = time.perf_counter()
    version = await service.create_version(principal, ds.id)
    t_version = time.perf_counter() - t0

    out = root / "coco.zip"
    rss0 = rss_mb()
    t0 = time.perf_counter()
    with out.open("wb") as fh:
        await write_export(version, ExportFormat.COCO, fh, blobs, images=images)
    t_export = time.perf_counter() - t0
    rss1 = rss_mb()
    tracemalloc.start()
    with (root / "coco2.zip").open("wb") as fh:
        await write_export(version, ExportFormat.COCO, fh, blobs, images=images)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = out.stat().st_size
    with zipfile.ZipFile(out) as zf:
        json_size = zf.getinfo("annotations.json").file_size
        entries = len(zf.namelist())
    print(f"inputs: {n}, annotations: {2 * n}, images in zip: {images} (nx-27017 embedded)")
    print(f"  setup (blobs + insert_many):   {t_setup:7.2f} s")
    print(f"  createDatasetVersion:          {t_version:7.2f} s  ({n / t_version:,.0f} inputs/s)")
    print(f"  COCO export to file:           {t_export:7.2f} s  ({n / t_export:,.0f} inputs/s)")
    print(f"  zip: {size / 1e6:.1f} MB, {entries} entries, annotations.json {json_size / 1e6:.1f} MB")
    print(f"  peak Python allocations while exporting (tracemalloc): {peak / 1e6:.1f} MB")
    print(f"  process max RSS before / after export: {rss0:.0f} / {rss1:.0f} MB")
    try:
        from pycocotools.coco import COCO
    except ImportError:
        return
    with zipfile.ZipFile(out) as zf:
        zf.extract("annotations.json", root)
    coco = COCO(str(root / "annotations.json"))
    assert len(coco.getImgIds()) == n and len(coco.getAnnIds()) == 2 * n
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--no-images", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.calibrate import print_calibration

    print_calibration()
    with tempfile.TemporaryDirectory(prefix="bench-exports-") as tmp:
        mongo = EmbeddedMongo(Path(tmp) / "mongodb")
        mongo.start()
        try:
            asyncio.run(run(mongo.url, Path(tmp), args.inputs, not args.no_images))
        finally:
            mongo.stop()


if __name__ == "__main__":
    main()
