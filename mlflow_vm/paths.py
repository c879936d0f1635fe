"""Where the project's files live, relative to the top of the repository."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "profiles"
TEMPLATES = ROOT / "templates"
REQUIREMENTS = ROOT / "requirements"
# The hash-locked uv that installs each image's requirements in the guest.
UV_REQUIREMENTS = REQUIREMENTS / "uv.txt"
# Locks of an older MLflow release, which the upgrade test starts from.
OLDER_REQUIREMENTS = REQUIREMENTS / "older"
PACKER = ROOT / "packer"
CLOUD_INIT = ROOT / "cloud-init"
OUTPUT = ROOT / "output"
SCRIPTS = ROOT / "scripts"


def cache_dir() -> Path:
    """Return the download cache shared by every build and boot.

    ``MLFLOW_VM_CACHE`` overrides it; the default follows XDG.
    """
    import os

    explicit = os.environ.get("MLFLOW_VM_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "mlflow-vm"
