"""The server comes back after a clean reboot of the VM with its data."""

from __future__ import annotations

import pytest
import requests
from mlflow.tracking import MlflowClient

from mlflow_vm.vm import VM


@pytest.mark.disruptive
def test_server_comes_back_after_a_reboot_with_the_same_data(
    vm: VM, install: str, hello_world_run: str
) -> None:
    if install == "image":
        pytest.skip("the built image is power-cut instead (test_faults.py), "
                    "which also boots it again")
    vm.reboot()
    vm.wait_for_http("/health", timeout=900)
    assert requests.get(f"{vm.url}/health", timeout=30).status_code == 200
    run = MlflowClient(vm.url).get_run(hello_world_run)
    assert run.data.params == {"param1": "5"}
