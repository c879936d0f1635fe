"""Profiles: one small TOML file per supported operating system version.

A profile names its base image, the Python the server runs on and the MLflow
release pinned for it. Everything else about an image is shared.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .paths import PROFILES, REQUIREMENTS, ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # Ubuntu 22.04's Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class BaseImage:
    """The cloud image a build starts from."""

    url: str
    checksum: str
    builder: str = ""

    @property
    def is_local(self) -> bool:
        """True when the project builds this base image itself."""
        return bool(self.builder)

    def local_path(self) -> Path:
        """Return the path of a base image the project builds."""
        return ROOT / self.url


@dataclass(frozen=True)
class Profile:
    """One supported operating system version and its pinned software."""

    name: str
    description: str
    ssh_username: str
    base_image: BaseImage
    python_version: str
    mlflow_version: str
    apt_repository: str = ""

    @property
    def image_name(self) -> str:
        """File name of the built image, without its extension."""
        return f"mlflow-{self.name}"

    @property
    def requirements_file(self) -> Path:
        """The hash-locked requirements installed in the image's venv."""
        return REQUIREMENTS / f"mlflow-py{self.python_version}.txt"

    @property
    def mlflow_server_engine(self) -> str:
        """The web server MLflow runs under: uvicorn from 3.5 on, gunicorn before."""
        major, minor = (int(part) for part in self.mlflow_version.split(".")[:2])
        return "uvicorn" if (major, minor) >= (3, 5) else "gunicorn"


def _load(path: Path) -> Profile:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    try:
        profile = Profile(
            name=data["name"],
            description=data["description"],
            ssh_username=data["ssh_username"],
            base_image=BaseImage(**data["base_image"]),
            python_version=data["python"]["version"],
            mlflow_version=data["mlflow"]["version"],
            apt_repository=data.get("apt_repository", ""),
        )
    except (KeyError, TypeError) as exc:
        raise UserError(f"{path}: missing or unknown setting {exc}") from exc
    if profile.name != path.stem:
        raise UserError(f"{path}: name {profile.name!r} must match the file name")
    if profile.base_image.checksum in ("", "none"):
        raise UserError(f"{path}: the base image needs a checksum source, not 'none'")
    return profile


def load_all() -> dict[str, Profile]:
    """Load every profile, keyed by name, in name order."""
    profiles = {p.name: p for p in map(_load, sorted(PROFILES.glob("*.toml")))}
    pins: dict[str, str] = {}
    for profile in profiles.values():
        pinned = pins.setdefault(profile.python_version, profile.mlflow_version)
        if pinned != profile.mlflow_version:
            raise UserError(
                f"profiles pin MLflow {pinned} and {profile.mlflow_version} for "
                f"Python {profile.python_version}; one lock file serves both"
            )
    return profiles


def get(name: str) -> Profile:
    """Return the profile called ``name`` or say which ones exist."""
    profiles = load_all()
    if name not in profiles:
        ubuntu = [n.removeprefix("ubuntu-") for n in profiles if n.startswith("ubuntu-")]
        others = [n for n in profiles if not n.startswith("ubuntu-")]
        raise UserError(
            f"unknown profile {name!r}: supported are UBUNTU={' or '.join(ubuntu)} "
            f"and DISTRO={' or '.join(others)}"
        )
    return profiles[name]
