"""Fast tests: no VM, no network; they run in seconds."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


# Settings the CLI reads from the environment, which `make unit` exports.
CLI_SETTINGS = ("ACCEL", "IMAGE", "CPUS", "MEMORY", "SEED", "SSH_KEY", "SEED_USER",
                "ASK_PASSWORD", "PASSWORD_FILE", "ALLOWED_HOSTS", "PIP_PACKAGES", "USER_DATA",
                "VM_NAME", "LIBVIRT_NETWORK", "OUTPUT_DIR", "PORT")


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch):
    """Each test starts without the make variables a caller may have exported."""
    for name in CLI_SETTINGS:
        monkeypatch.delenv(name, raising=False)
