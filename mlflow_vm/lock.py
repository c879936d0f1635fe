"""Regenerate the hash-locked requirements installed in the images.

One lock file per Python version, resolved with uv for Linux x86-64, from
the MLflow release the profiles pin for that version.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from . import profiles
from .paths import REQUIREMENTS, ROOT
from .progress import step

LOG = logging.getLogger(__name__)


def lock_all() -> list[Path]:
    """Write ``requirements/mlflow-pyX.Y.in`` and ``.txt`` for each Python version."""
    pins = {p.python_version: p.mlflow_version for p in profiles.load_all().values()}
    written = []
    for version, mlflow in sorted(pins.items()):
        source = REQUIREMENTS / f"mlflow-py{version}.in"
        source.write_text(f"mlflow=={mlflow}\n")
        target = source.with_suffix(".txt")
        with step(f"locking MLflow {mlflow} for Python {version}"):
            subprocess.run(
                [
                    sys.executable, "-m", "uv", "pip", "compile", "--quiet",
                    "--native-tls", "--generate-hashes", "--no-header",
                    "--emit-index-url", "--python-version", version,
                    "--python-platform", "x86_64-manylinux_2_28",
                    "-o", str(target), str(source),
                ],
                check=True,
                cwd=ROOT,
            )
        written.append(target)
    return written
