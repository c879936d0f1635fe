"""Measure what users wait for: base image, image builds, boot, sizes, and
the time pip and uv take to install MLflow in the guest.

Prints a table; nothing here is a test. A cold build uses an empty download
cache; a warm one reuses the cache the cold one filled.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path

from . import accel, base_image, build, profiles, wheelhouse
from .paths import UV_REQUIREMENTS
from .vm import VM, BootOptions

LOG = logging.getLogger(__name__)


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def _measure_required(image: Path) -> int:
    """Bytes the image's data needs as an uncompressed qcow2."""
    out = subprocess.run(
        ["qemu-img", "measure", "--output=json", "-O", "qcow2", str(image)],
        capture_output=True, text=True, check=True,
    ).stdout
    return int(json.loads(out)["required"])


def run(profile_name: str = "debian-12") -> dict[str, str]:
    """Run every measurement for ``profile_name``; return label -> figure."""
    profile = profiles.get(profile_name)
    figures: dict[str, str] = {"accelerator": accel.detect()}

    if profile.base_image.is_local:
        start = time.monotonic()
        base_image.build(profile, force=True)
        figures["base image build"] = f"{time.monotonic() - start:.0f} s"

    with tempfile.TemporaryDirectory(prefix="mlflow-vm-cold-cache-") as cold:
        previous = os.environ.get("MLFLOW_VM_CACHE")
        os.environ["MLFLOW_VM_CACHE"] = cold
        try:
            start = time.monotonic()
            build.build(profile, build.BuildOptions())
            figures["image build, cold cache"] = f"{time.monotonic() - start:.0f} s"
        finally:
            if previous is None:
                os.environ.pop("MLFLOW_VM_CACHE")
            else:
                os.environ["MLFLOW_VM_CACHE"] = previous

    start = time.monotonic()
    folder = build.build(profile, build.BuildOptions())
    figures["image build, warm cache"] = f"{time.monotonic() - start:.0f} s"

    image = folder / f"{profile.image_name}.qcow2"
    manifest = json.loads((folder / "manifest.json").read_text())
    figures["image virtual size"] = _mib(manifest["virtual_size"])
    figures["image data (uncompressed qcow2)"] = _mib(_measure_required(image))
    figures["image file (compressed qcow2)"] = _mib(manifest["file_size"])

    with VM(image, BootOptions()) as machine:
        figures["boot to SSH"] = f"{machine.wait_for_ssh():.0f} s"
        figures["boot to /health"] = f"{machine.wait_for_http('/health'):.0f} s"
        figures.update(install_times(machine, profile))
    return figures


# Each installs the image's own lock into a new venv, hash-checked, with
# bytecode compiled (pip compiles by default; the server's venv is not
# writable by the server, so it must ship compiled).
_PIP = ("{python} -m venv /var/tmp/bench-pip && /var/tmp/bench-pip/bin/pip install --quiet "
        "--no-cache-dir --disable-pip-version-check --require-hashes --no-deps {links} "
        "-r /opt/mlflow/requirements.txt")
_UV_BOOTSTRAP = ("{python} -m venv /var/tmp/bench-uv-tool && /var/tmp/bench-uv-tool/bin/pip "
                 "install --quiet --no-cache-dir --disable-pip-version-check --require-hashes "
                 "--no-deps {links} -r /var/tmp/uv-requirements.txt")
_UV = ("{python} -m venv /var/tmp/bench-uv && /var/tmp/bench-uv-tool/bin/uv pip install "
       "--quiet --no-cache --python /var/tmp/bench-uv/bin/python --require-hashes --no-deps "
       "--compile-bytecode {links} -r /opt/mlflow/requirements.txt")


def install_times(machine: VM, profile: profiles.Profile) -> dict[str, str]:
    """Seconds pip and uv take to install the image's locked MLflow in ``machine``,
    both from the host's wheelhouse, one after the other."""
    figures = {}
    copied = subprocess.run(machine.ssh_command("cat > /var/tmp/uv-requirements.txt"),
                            input=UV_REQUIREMENTS.read_text(), text=True, timeout=120)
    if copied.returncode != 0:
        raise RuntimeError("could not copy uv's lock into the VM")
    with wheelhouse.serve(wheelhouse.fill(profile)) as port:
        values = {"python": f"python{profile.python_version}",
                  "links": f"--no-index --find-links http://10.0.2.2:{port}/ "
                           "--trusted-host 10.0.2.2"}
        for label, command in (("install MLflow in the guest, pip", _PIP),
                               ("install uv in the guest", _UV_BOOTSTRAP),
                               ("install MLflow in the guest, uv", _UV)):
            LOG.info("Measuring: %s", label)
            start = time.monotonic()
            result = machine.ssh(f"sudo sh -c '{command.format(**values)}'", timeout=3600)
            if result.returncode != 0:
                raise RuntimeError(f"{label} failed: {result.stderr.strip()[-300:]}")
            figures[label] = f"{time.monotonic() - start:.0f} s"
    return figures


def print_table(figures: dict[str, str]) -> None:
    """Print the figures as a two-column table."""
    width = max(map(len, figures))
    for label, value in figures.items():
        print(f"{label:<{width}}  {value}")
