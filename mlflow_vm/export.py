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
MAX_MEMORY_MIB = 1024 * 1024
MAX_CPUS = 64
IMAGE_HINT = ("give the qcow2 that `make image` built "
              "(IMAGE=output/<profile>/mlflow-<profile>.qcow2)")


def _looks_like_text(path: Path) -> bool:
    """True for an empty file or one whose start is text rather than disk data."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    if not head:
        return True
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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


def require_file(path: Path, directory: str, missing: str) -> None:
    """Refuse ``path`` in one line when it is a directory, a device or pipe, or
    does not exist; ``directory`` and ``missing`` are the first and last lines,
    saying what to give instead."""
    if path.is_dir():
        raise UserError(directory)
    if path.exists() and not path.is_file():
        raise UserError(f"{path} is a device or a pipe, not a file: give a regular file")
    if not path.is_file():
        raise UserError(missing)


def inspect(path: Path) -> Image:
    """Check that ``path`` is a qcow2 image ``make image`` built; read its size and manifest."""
    tools.require(("qemu-img",))
    require_file(path,
                 f"IMAGE={path} is a directory: name the image file in it, "
                 "e.g. IMAGE=output/<profile>/mlflow-<profile>.qcow2",
                 f"image {path} does not exist: build it with `make image` "
                 "or give IMAGE=path.qcow2")
    result = subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                            capture_output=True, text=True)
    info = json.loads(result.stdout) if result.returncode == 0 else {}
    fmt = info.get("format", "")
    if fmt == "raw" and _looks_like_text(path):
        fmt = ""
    if fmt != "qcow2":
        found = f"a {fmt} file" if fmt else "not a disk image qemu-img recognises"
        raise UserError(f"{path} is {found}, not a qcow2 image: {IMAGE_HINT}")
    chain = subprocess.run(["qemu-img", "info", "--backing-chain", "--output=json", str(path)],
                           capture_output=True, text=True)
    if chain.returncode != 0:
        detail = chain.stderr.strip().splitlines()[-1] if chain.stderr.strip() else "no message"
        raise UserError(f"{path} depends on a backing file qemu-img cannot open ({detail}): "
                        f"{IMAGE_HINT}")
    manifest_path = path.parent / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict):
        raise UserError(f"{path} has no readable manifest.json beside it, so it is not an "
                        f"image `make image` built: {IMAGE_HINT}")
    port = manifest.get("mlflow_port", 5000)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise UserError(f"{manifest_path} gives mlflow_port={port!r}, not a TCP port: "
                        "rebuild the image with `make image`")
    return Image(
        path=path.resolve(),
        virtual_size=int(info["virtual-size"]),
        profile=str(manifest.get("profile", "")),
        guest_port=port,
    )


def check_resources(cpus: int, memory_mib: int) -> None:
    """Refuse CPU and memory figures a VM cannot run the server with."""
    if not 1 <= cpus <= MAX_CPUS:
        raise UserError(f"CPUS={cpus} must be a number of virtual CPUs from 1 to {MAX_CPUS}")
    if memory_mib < MIN_MEMORY_MIB:
        raise UserError(f"MEMORY={memory_mib} MiB is too little for the server; "
                        f"give at least {MIN_MEMORY_MIB}")
    if memory_mib > MAX_MEMORY_MIB:
        raise UserError(f"MEMORY={memory_mib} MiB is more than 1 TiB; give the MiB of memory "
                        f"the VM gets, e.g. MEMORY={DEFAULT_MEMORY_MIB}")


def write_error(path: Path, exc: OSError, variable: str) -> UserError:
    """One line for an output that cannot be written: the path, the reason, what to do."""
    reason = exc.strerror or str(exc)
    return UserError(f"cannot write {path}: {reason}; choose a writable place with "
                     f"{variable}=...")


def make_folder(folder: Path, variable: str, target: Path | None = None) -> None:
    """Create ``folder`` for outputs (``target``), or say in one line why it cannot be used."""
    shown = target or folder
    if folder.exists() and not folder.is_dir():
        raise UserError(f"cannot write {shown}: {folder} is a file, not a folder; choose "
                        f"another place with {variable}=...")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(shown, exc, variable) from None


@contextmanager
def atomic_path(target: Path, variable: str = "-o", mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it to ``target``, with
    ``mode``, on success.

    On any failure, interrupts included, the temporary file is removed and
    ``target`` is left as it was. A location that cannot be written becomes a
    one-line :class:`UserError` naming ``variable``, the setting to change.
    """
    if target.is_dir():
        raise UserError(f"{target} is a directory; name the file to write in it with "
                        f"{variable}=...")
    make_folder(target.parent, variable, target)
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                    suffix=".partial")
    except OSError as exc:
        raise write_error(target, exc, variable) from None
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            yield tmp
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except OSError as exc:
            raise write_error(target, exc, variable) from None
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
