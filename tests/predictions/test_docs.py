"""The formats listed in the README and the CLI help come from ``ImportFormat``."""

from __future__ import annotations

from pathlib import Path

from app.predictions.cli import FORMATS
from app.predictions.formats import ImportFormat

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_import_format_is_in_the_readme_table_and_the_cli_help() -> None:
    section = README.read_text().split("## Import predictions", 1)[1].split("\n## ", 1)[0]
    table = {line.split("|")[1].strip().strip("`") for line in section.splitlines() if line.startswith("| `")}
    assert table == {f.value for f in ImportFormat}
    assert FORMATS.split(", ") == [f.value.lower() for f in ImportFormat]
