"""Read files from an image's root file system without booting or mounting it.

The image is converted to a sparse raw copy in a scratch folder; sfdisk finds
its largest partition (the root file system on every profile) and debugfs
reads from it through an offset. Nothing is mounted and the image is never
written, so this works unprivileged and leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType


class ImageFiles:
    """Read-only access to the root file system of a qcow2 image."""

    def __init__(self, image: Path) -> None:
        self.image = image
        self.workdir = Path()
        self.device = ""

    def __enter__(self) -> ImageFiles:
        self.workdir = Path(tempfile.mkdtemp(prefix="mlflow-vm-inspect-"))
        try:
            self._open()
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        return self

    def _open(self) -> None:
        raw = self.workdir / "disk.raw"
        subprocess.run(
            ["qemu-img", "convert", "-O", "raw", str(self.image), str(raw)], check=True
        )
        table = json.loads(
            subprocess.run(
                ["sfdisk", "-J", str(raw)], capture_output=True, text=True, check=True
            ).stdout
        )["partitiontable"]
        root = max(table["partitions"], key=lambda part: part["size"])
        offset = root["start"] * table.get("sectorsize", 512)
        self.device = f"{raw}?offset={offset}"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _debugfs(self, request: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["debugfs", "-R", request, self.device], capture_output=True)

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists in the image."""
        return b"not found" not in self._debugfs(f"stat {path}").stderr

    def read(self, path: str) -> bytes:
        """The content of the file at ``path``; FileNotFoundError if absent."""
        if not self.exists(path):
            raise FileNotFoundError(path)
        return self._debugfs(f"cat {path}").stdout

    def listdir(self, path: str) -> list[str]:
        """The names in directory ``path``, without . and .."""
        output = self._debugfs(f"ls -p {path}").stdout.decode()
        names = [line.split("/")[5] for line in output.splitlines() if line.count("/") >= 6]
        return [name for name in names if name not in (".", "..")]
