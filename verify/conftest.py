"""Boot one image for the whole session and hand it to the tests.

``--image`` names the qcow2 to boot (never written: it runs on an overlay)
and ``--profile`` the profile it was built from, for the versions it must
report. One boot serves every test; it is powered off at the end, whatever
happened.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import testinfra

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlflow_vm import profiles  # noqa: E402
from mlflow_vm.vm import VM, BootOptions  # noqa: E402

LOG = logging.getLogger(__name__)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """Treat SIGTERM like Ctrl-C, so the VM fixtures still power off and clean up."""
    signal.signal(signal.SIGTERM, _interrupt)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--image", help="qcow2 image to boot and verify")
    parser.addoption("--profile", default="debian-12", help="profile the image was built from")


@pytest.fixture(scope="session")
def profile(request: pytest.FixtureRequest) -> profiles.Profile:
    """The profile the image under test was built from."""
    return profiles.get(request.config.getoption("--profile"))


@pytest.fixture(scope="session")
def image(request: pytest.FixtureRequest) -> Path:
    """The image under test."""
    value = request.config.getoption("--image")
    if not value:
        pytest.exit("verify needs --image PATH.qcow2 (make verify IMAGE=...)", returncode=2)
    path = Path(value)
    if not path.is_file():
        pytest.exit(f"image {path} does not exist: build it with `make image`", returncode=2)
    return path


@pytest.fixture(scope="session")
def manifest(image: Path) -> dict:
    """The build manifest written beside the image, empty if there is none."""
    path = image.parent / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


@pytest.fixture(scope="session")
def vm(image: Path) -> Iterator[VM]:
    """The booted VM, with SSH up and MLflow answering."""
    with VM(image, BootOptions()) as machine:
        ssh_seconds = machine.wait_for_ssh()
        health_seconds = machine.wait_for_http("/health")
        LOG.warning(
            "boot to SSH: %.0f s, boot to /health: %.0f s", ssh_seconds, health_seconds
        )
        yield machine


@pytest.fixture(scope="session")
def host(vm: VM) -> testinfra.host.Host:
    """testinfra's view of the guest, over SSH."""
    return testinfra.get_host(
        f"ssh://verify@127.0.0.1:{vm.ssh_port}",
        ssh_identity_file=str(vm.key),
        # One SSH connection for every command: logins are slow on an emulated CPU.
        ssh_extra_args=(
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            f"-o ControlPath={vm.workdir}/ssh-%C"
        ),
    )
