"""A host-side cache of the wheels an image installs, shared by every build.

The guest's own downloads are the slow and fragile part of a build: under
emulation, behind a TLS-inspecting proxy, once per build. So the host
downloads the locked, hash-checked wheels once per Python version and Packer
serves them to the build VM over its loopback-bound HTTP server.
"""

from __future__ import annotations

import functools
import http.server
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError
from .paths import UV_REQUIREMENTS, cache_dir
from .profiles import Profile

LOG = logging.getLogger(__name__)

# Linux x86-64 wheel tags, newest first; "any" covers pure-Python wheels.
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
    "any",
)


def path_for(profile: Profile) -> Path:
    """The wheelhouse directory of the profile's Python version."""
    return cache_dir() / "wheels" / f"py{profile.python_version}"


def fill(profile: Profile, *locks: Path) -> Path:
    """Download the profile's locked wheels, uv's, and those of further
    ``locks`` for the same Python, into its wheelhouse; return it.

    pip skips wheels already there, so a warm cache costs a few seconds.
    """
    target = path_for(profile)
    target.mkdir(parents=True, exist_ok=True)
    version = profile.python_version
    abi = "cp" + version.replace(".", "")
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--require-hashes", "--no-deps", "--only-binary=:all:",
        # A late patch release: some wheels exclude early ones (!=3.9.0).
        "--python-version", f"{version}.99", "--implementation", "cp",
        "--abi", abi, "--abi", "abi3", "--abi", "none", "-d", str(target),
    ]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    # A host-wide pip constraint file has no hashes and would fail the lock.
    env = {**os.environ, "PIP_CONSTRAINT": ""}
    # One pip per lock: two locks may pin different releases of a package.
    for files in ([profile.requirements_file, UV_REQUIREMENTS], *[[lock] for lock in locks]):
        requirements = [arg for path in files for arg in ("-r", str(path))]
        result = subprocess.run(command + requirements, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            detail = result.stderr.strip().splitlines()[-1:] or ["pip failed"]
            raise UserError(
                f"could not download the wheels for Python {version}: {detail[0]} "
                "(set WHEELHOUSE=no to let the build VM download them itself)"
            )
    count = sum(1 for _ in target.glob("*.whl"))
    LOG.info("Wheelhouse %s: %d wheels", target, count)
    return target


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        LOG.debug("wheelhouse: " + format, *args)


@contextmanager
def serve(folder: Path) -> Iterator[int]:
    """Serve ``folder`` over HTTP on 127.0.0.1; yield the port.

    A QEMU guest reaches it at 10.0.2.2 through user-mode networking.
    """
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
