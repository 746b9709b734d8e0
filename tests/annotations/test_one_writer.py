"""Only ``app/annotations/store.py`` writes the annotations collection.

Two checks: a static one over every module of ``app`` (no write call on the collection or the
document class elsewhere), and a runtime one (``tests/writers.py``): every write command the
whole suite sends to ``annotations`` is traced back to its Python frames, and one sent by app
code outside the store fails the test that caused it.
"""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
STORE = APP / "annotations" / "store.py"
READS = {"find", "find_one", "aggregate", "count_documents", "distinct"}
DOCUMENT_WRITES = {"insert", "insert_one", "insert_many", "save", "replace", "replace_many", "delete",
                   "delete_all", "update", "update_many", "upsert", "set", "inc"}  # fmt: skip


def _is_annotation_collection(node: ast.AST) -> bool:
    """``Annotation.get_pymongo_collection()``."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get_pymongo_collection"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "Annotation"
    )


def writes_outside_store(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    parents: dict[ast.AST, ast.AST] = {}
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            parents[child] = parent
    found: list[str] = []
    for node in ast.walk(tree):
        if _is_annotation_collection(node):
            parent = parents.get(node)
            if not (isinstance(parent, ast.Attribute) and parent.attr in READS):
                found.append(
                    f"{path}:{node.lineno}: Annotation collection used for something else than a read"
                )
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "Annotation"
            and node.attr in DOCUMENT_WRITES
        ):
            found.append(f"{path}:{node.lineno}: Annotation.{node.attr}")
    return found


def test_no_module_but_the_store_writes_annotations() -> None:
    offenders = [
        line for path in sorted(APP.rglob("*.py")) if path != STORE for line in writes_outside_store(path)
    ]
    assert offenders == []


def test_the_static_check_catches_a_writer(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text(
        "async def f():\n"
        "    coll = Annotation.get_pymongo_collection()\n"
        "    await Annotation.get_pymongo_collection().delete_many({})\n"
        "    await Annotation.insert_many([])\n"
        "    await Annotation.get_pymongo_collection().find({}).to_list()\n"
    )
    assert len(writes_outside_store(sample)) == 3  # the alias, delete_many, insert_many
