"""Take a built qcow2 to other hypervisors: shared checks and atomic outputs.

Every file is written under a hidden temporary name in its final folder and
renamed once complete, so a failure or Ctrl-C never leaves a half-written
disk, appliance or descriptor where a user would pick it up.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import tools
from .errors import UserError
from .progress import format_seconds

LOG = logging.getLogger(__name__)

DEFAULT_CPUS = 2
DEFAULT_MEMORY_MIB = 4096
MIN_MEMORY_MIB = 1024


@dataclass(frozen=True)
class Image:
    """A built image as the exports see it."""

    path: Path
    virtual_size: int
    profile: str
    guest_port: int

    @property
    def name(self) -> str:
        """The image's file name without its extension, e.g. mlflow-debian-12."""
        return self.path.stem


def inspect(path: Path) -> Image:
    """Check that ``path`` is a qcow2 image and read its size and build manifest."""
    tools.require(("qemu-img",))
    if not path.is_file():
        raise UserError(f"image {path} does not exist: build it with `make image` "
                        "or give IMAGE=path.qcow2")
    result = subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                            capture_output=True, text=True)
    info = json.loads(result.stdout) if result.returncode == 0 else {}
    fmt = info.get("format", "")
    if fmt != "qcow2":
        found = f"a {fmt} file" if fmt else "not a disk image qemu-img can read"
        raise UserError(f"{path} is {found}, not a qcow2 image: give the qcow2 "
                        "that `make image` built (IMAGE=output/<profile>/mlflow-<profile>.qcow2)")
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    return Image(
        path=path.resolve(),
        virtual_size=int(info["virtual-size"]),
        profile=str(manifest.get("profile", "")),
        guest_port=int(manifest.get("mlflow_port", 5000)),
    )


def check_resources(cpus: int, memory_mib: int) -> None:
    """Refuse CPU and memory figures a VM cannot run the server with."""
    if not 1 <= cpus <= 64:
        raise UserError(f"CPUS={cpus} must be a number of virtual CPUs from 1 to 64")
    if memory_mib < MIN_MEMORY_MIB:
        raise UserError(f"MEMORY={memory_mib} MiB is too little for the server; "
                        f"give at least {MIN_MEMORY_MIB}")


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it to ``target`` on success.

    On any failure, interrupts included, the temporary file is removed and
    ``target`` is left as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def human_size(size: int) -> str:
    """Bytes as people read them: 533 MiB, 1.8 GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if value >= 10 or unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def convert(source: Path, target: Path, fmt: str, options: tuple[str, ...] = ()) -> float:
    """Convert ``source`` to ``fmt`` at ``target`` with qemu-img; return the seconds taken."""
    start = time.monotonic()
    command = ["qemu-img", "convert", "-f", "qcow2", "-O", fmt]
    for option in options:
        command += ["-o", option]
    result = subprocess.run([*command, str(source), str(target)], capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"qemu-img could not convert {source} to {fmt}: "
                        f"{result.stderr.strip() or 'no message'}")
    seconds = time.monotonic() - start
    LOG.info("  %s: %s in %s", target.name if not target.name.endswith(".partial")
             else fmt, human_size(target.stat().st_size), format_seconds(seconds))
    return seconds
