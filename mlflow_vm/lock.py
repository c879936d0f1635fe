"""Regenerate the hash-locked requirements installed in the images.

One lock file per Python version, resolved with uv for Linux from the MLflow
release the profiles pin for that version and the database and object
storage drivers. uv records the hash of every file
of a release, for every platform; the lock keeps only those an x86-64 or
arm64 Linux VM can install (and the source archive), which makes the
standalone user-data that embeds it several times smaller.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import requests
from packaging.utils import canonicalize_name, parse_wheel_filename

from . import profiles
from .paths import OLDER_REQUIREMENTS, REQUIREMENTS, ROOT, UV_REQUIREMENTS
from .progress import step

LOG = logging.getLogger(__name__)
INDEX = "https://pypi.org/simple"
PLATFORM = re.compile(r"^(any|(many|musl)linux\w*_(x86_64|aarch64)|linux_(x86_64|aarch64))$")
REQUIREMENT = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
# An older MLflow release with an older database schema: the upgrade test
# installs it, logs runs with it, and upgrades to the profile's release.
OLDER_MLFLOW = "3.1.4"
# What a team configuration needs, locked beside MLflow: the basic-auth
# app's own requirements (the "auth" extra), and drivers for PostgreSQL,
# MySQL and S3-compatible object storage.
EXTRAS = "auth"
DRIVERS = ("psycopg2-binary", "pymysql", "boto3")
# MLflow 3.1.4 predates SQLAlchemy 2.1 and fails to start with it.
OLDER_PINS = ("sqlalchemy<2.1",)


def _ca_bundle() -> str | bool:
    """The CA bundle for HTTPS: the environment's, else the system's."""
    for variable in ("REQUESTS_CA_BUNDLE", "PIP_CERT", "SSL_CERT_FILE"):
        if os.environ.get(variable):
            return os.environ[variable]
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    return str(system) if system.is_file() else True


def _installable(filename: str, python: str) -> bool:
    """Whether a release file can be installed by CPython ``python`` on Linux."""
    if not filename.endswith(".whl"):
        return True  # the source archive
    minor = int(python.split(".")[1])
    for tag in parse_wheel_filename(filename)[3]:
        if not PLATFORM.match(tag.platform):
            continue
        interpreter = tag.interpreter
        if interpreter.startswith("py3") or interpreter == f"cp3{minor}":
            return True
        if tag.abi == "abi3" and interpreter.startswith("cp3") and int(interpreter[3:]) <= minor:
            return True
    return False


def _release_hashes(session: requests.Session, name: str, version: str, python: str) -> set[str]:
    """SHA-256 hashes of the release's files that a Linux VM can install."""
    response = session.get(
        f"{INDEX}/{canonicalize_name(name)}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        timeout=60,
    )
    response.raise_for_status()
    keep = set()
    for entry in response.json()["files"]:
        filename = entry["filename"]
        try:
            matches = parse_wheel_filename(filename)[1] if filename.endswith(".whl") else None
        except ValueError:
            continue
        if filename.endswith(".whl"):
            same_version = str(matches) == version
        else:
            same_version = f"-{version}." in filename
        if same_version and _installable(filename, python):
            keep.add(entry["hashes"]["sha256"])
    return keep


def filter_hashes(text: str, python: str) -> str:
    """Drop the hashes of files no Linux VM with ``python`` would install."""
    session = requests.Session()
    session.verify = _ca_bundle()
    out: list[str] = []
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if REQUIREMENT.match(line):
            blocks.append([line])
        elif blocks and line.startswith(" "):
            blocks[-1].append(line)
        else:
            out.append(line)
    for block in blocks:
        name, version = REQUIREMENT.match(block[0]).groups()  # type: ignore[union-attr]
        wanted = _release_hashes(session, name, version, python)
        hashes = [h for line in block[1:] for h in HASH.findall(line) if h in wanted]
        if not hashes:
            raise RuntimeError(f"{name}=={version}: no file installable on Linux")
        head = block[0].rstrip(" \\")
        lines = [head] + [f"    --hash=sha256:{h}" for h in hashes]
        out.append(" \\\n".join(lines))
    return "\n".join(out) + "\n"


def _compile(source: Path, python: str) -> str:
    """``source`` resolved by uv for Linux and ``python``, with every hash."""
    return subprocess.run(
        [
            sys.executable, "-m", "uv", "pip", "compile", "--quiet",
            # No --emit-index-url: an index named in the file would override
            # PIP_INDEX_URL, and a private index or mirror would be ignored.
            "--native-tls", "--generate-hashes", "--no-header", "--no-annotate",
            "--python-version", python,
            "--python-platform", "x86_64-manylinux_2_28", str(source),
        ],
        check=True, cwd=ROOT, capture_output=True, text=True,
    ).stdout


def uv_version() -> str:
    """The uv release the project's own tools pin in requirements/dev.txt."""
    for line in (REQUIREMENTS / "dev.txt").read_text().splitlines():
        match = REQUIREMENT.match(line)
        if match and canonicalize_name(match.group(1)) == "uv":
            return match.group(2)
    raise RuntimeError("requirements/dev.txt pins no uv release")


def older_lock(python: str) -> Path:
    """The lock of :data:`OLDER_MLFLOW` for ``python`` (absent where the
    profile itself pins that release)."""
    return OLDER_REQUIREMENTS / f"mlflow-py{python}.txt"


def _lock(source: Path, requirement: str, python: str) -> Path:
    """Write ``requirement`` (one per line) to ``source`` and its lock beside
    it, as ``.txt``."""
    source.write_text(f"{requirement}\n")
    target = source.with_suffix(".txt")
    target.write_text(filter_hashes(_compile(source, python), python))
    return target


def lock_all() -> list[Path]:
    """Write ``requirements/mlflow-pyX.Y.in`` and ``.txt`` for each Python version,
    the lock of :data:`OLDER_MLFLOW` under ``requirements/older``, and the lock of
    the uv that installs them in the guest."""
    pins = {p.python_version: p.mlflow_version for p in profiles.load_all().values()}
    written = []
    for version, mlflow in sorted(pins.items()):
        with step(f"locking MLflow {mlflow} for Python {version}"):
            written.append(_lock(REQUIREMENTS / f"mlflow-py{version}.in",
                                 "\n".join([f"mlflow[{EXTRAS}]=={mlflow}", *DRIVERS]), version))
        if mlflow != OLDER_MLFLOW:
            OLDER_REQUIREMENTS.mkdir(exist_ok=True)
            with step(f"locking MLflow {OLDER_MLFLOW} for Python {version} (upgrade test)"):
                written.append(_lock(older_lock(version).with_suffix(".in"),
                                     "\n".join([f"mlflow=={OLDER_MLFLOW}", *OLDER_PINS]),
                                     version))
    oldest = min(pins, key=lambda v: tuple(map(int, v.split("."))))
    with step(f"locking uv {uv_version()}"):
        written.append(_lock(UV_REQUIREMENTS.with_suffix(".in"), f"uv=={uv_version()}", oldest))
    return written
