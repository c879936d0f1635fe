"""Base images: the ones the project builds itself, and checksum checks."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from pathlib import Path

from . import tools
from .errors import UserError
from .paths import ROOT
from .profiles import Profile
from .progress import step

LOG = logging.getLogger(__name__)


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def expected_checksum(image: Path, sums_file: Path) -> str:
    """Read the checksum of ``image`` from a SHA256SUMS file."""
    if not sums_file.is_file():
        raise UserError(
            f"no checksum file {sums_file} for {image}; put the publisher's "
            "SHA256SUMS there or set BASE_IMAGE_CHECKSUM=sha256:<hex>"
        )
    for line in sums_file.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == image.name:
            return parts[0].lower()
    raise UserError(f"{sums_file} has no line for {image.name}")


def verify(image: Path, checksum: str, rebuild_hint: bool = False) -> str:
    """Check a local base image against ``sha256:<hex>`` or ``file:<SHA256SUMS>``.

    Returns:
        The image's SHA-256, in hex.
    """
    if not image.is_file():
        raise UserError(f"base image {image} does not exist")
    if checksum.startswith("file:"):
        expected = expected_checksum(image, Path(checksum[len("file:"):]))
    elif checksum.startswith("sha256:"):
        expected = checksum[len("sha256:"):].lower()
    else:
        raise UserError(f"checksum {checksum!r} must start with sha256: or file:")
    with step(f"checking the checksum of {image.name}"):
        actual = sha256(image)
    if actual != expected:
        remedy = "rebuild it with `make base FORCE=1`" if rebuild_hint else "download it again"
        raise UserError(
            f"base image {image} has checksum {actual}, expected {expected}: {remedy}"
        )
    return actual


def build(profile: Profile, force: bool = False) -> Path:
    """Build the profile's own base image unless it is already there."""
    if not profile.base_image.is_local:
        raise UserError(
            f"{profile.name} starts from a published base image "
            f"({profile.base_image.url}); only debian-12 is built here"
        )
    image = profile.base_image.local_path()
    script = ROOT / profile.base_image.builder
    # The builder's own checksum, kept beside the image: a changed builder
    # means a stale base image.
    stamp = image.with_name("builder.sha256")
    current = sha256(script)
    if image.is_file() and not force:
        if stamp.is_file() and stamp.read_text().strip() == current:
            LOG.info("Base image %s is up to date (make base FORCE=1 rebuilds it)", image)
            return image
        LOG.info("Base image %s predates its builder: rebuilding it", image)
    tools.require(tools.BASE)
    with step(f"building the {profile.name} base image (a few minutes)"):
        # Loop devices and mounts need root.
        sudo = ["sudo"] if os.geteuid() != 0 else []
        result = subprocess.run([*sudo, str(script), str(image)])
    if result.returncode != 0:
        raise UserError(f"building the base image failed (exit {result.returncode}); see above")
    stamp.write_text(current + "\n")
    return image
