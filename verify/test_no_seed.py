"""With no seed and no serial port, as in VirtualBox, the image still serves."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from mlflow_vm.vm import VM, BootOptions

# A boot with a seed serves in about 150 s on an emulated CPU. Waiting for
# cloud metadata services or a serial console would add minutes.
NO_SEED_TIMEOUT = 420


def test_image_without_seed_or_serial_port_serves_health(
    request: pytest.FixtureRequest, image: Path, manifest: dict, boot_times: dict
) -> None:
    if "no-seed" not in request.config.getoption("--install").split(","):
        pytest.skip("no-seed not selected (--install)")
    options = BootOptions(guest_port=manifest.get("mlflow_port", 5000), seed=False,
                          serial=False)
    with VM(image, options) as machine:
        seconds = machine.wait_for_http("/health", timeout=NO_SEED_TIMEOUT)
        assert requests.get(f"{machine.url}/health", timeout=30).text.strip() == "OK"
    boot_times["no-seed"] = (0.0, seconds)
