"""The server survives a crash of its process and a reboot of the VM."""

from __future__ import annotations

import time

import pytest
import requests
from mlflow.tracking import MlflowClient

from mlflow_vm.vm import VM


def _main_pid(host) -> int:
    return int(host.check_output("systemctl show -p MainPID --value mlflow"))


@pytest.mark.disruptive
def test_server_restarts_after_its_main_process_is_killed(vm: VM, host) -> None:
    before = _main_pid(host)
    host.run(f"sudo kill -9 {before}")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        pid = _main_pid(host)
        if pid not in (0, before) and host.service("mlflow").is_running:
            break
        time.sleep(2)
    else:
        pytest.fail("mlflow.service did not come back within 10 minutes")
    vm.wait_for_http("/health", timeout=600)


@pytest.mark.disruptive
def test_server_comes_back_after_a_reboot_with_the_same_data(
    vm: VM, host, hello_world_run: str
) -> None:
    vm.reboot()
    vm.wait_for_http("/health", timeout=900)
    assert requests.get(f"{vm.url}/health", timeout=30).status_code == 200
    run = MlflowClient(vm.url).get_run(hello_world_run)
    assert run.data.params == {"param1": "5"}
