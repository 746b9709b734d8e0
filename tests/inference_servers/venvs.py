"""The inference servers' own virtual environments, made once and kept in the user's cache.

KServe pins ``protobuf<7`` (the application's ``onnx`` wants 7) and brings FastAPI, gRPC and
Kubernetes clients; ``label-studio-ml`` 1.0.9 pins Flask 1.1.2 and Werkzeug 2.0.2. Neither
belongs in the application's environment, so each gets a venv under
``~/.cache/labelstream/<name>-venv`` (``LABELSTREAM_SERVER_VENVS`` moves it), built from PyPI the
first time a test or benchmark needs it and reused while its requirements stay the same.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REQUIREMENTS: dict[str, list[str]] = {
    # opencv + Pillow: the encoded-image model decodes and preprocesses with the application's code
    "kserve": [
        "kserve==0.21.0",
        "onnxruntime>=1.17,<2",
        "numpy>=1.26,<3",
        "opencv-python-headless>=4.8,<5",
        "Pillow>=10.4",
    ],
    # the backend runs the application's own detector code (PYTHONPATH), hence its few needs
    "lsml": [
        "label-studio-ml==1.0.9",
        "rq",  # imported by label_studio_ml.api but not declared by 1.0.9
        "httpx>=0.27,<1",
        "onnxruntime>=1.17,<2",
        "numpy>=1.26,<3",
        "opencv-python-headless>=4.8,<5",
        "pydantic>=2.7,<3",
        "orjson>=3.10,<4",
        "Pillow>=10.4",
    ],
}


def root() -> Path:
    return Path(os.environ.get("LABELSTREAM_SERVER_VENVS", Path.home() / ".cache" / "labelstream"))


def python_of(name: str) -> Path:
    """The venv's python, installing the venv first when missing or out of date."""
    wanted = REQUIREMENTS[name]
    venv = root() / f"{name}-venv"
    marker = venv / ".labelstream-requirements"
    digest = hashlib.sha256("\n".join(wanted).encode()).hexdigest()
    python = venv / "bin" / "python"
    if python.exists() and marker.exists() and marker.read_text() == digest:
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *wanted], check=True)
    marker.write_text(digest)
    return python
