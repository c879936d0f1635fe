"""Faults a server meets in service: a killed process, a power cut, a full disk.

Writers on the host keep logging runs while the fault happens; afterwards
every write the server acknowledged must read back from it.
"""

from __future__ import annotations

import time

import pytest
import requests

from guest import ARTIFACTS, DATABASE, STATE
from mlflow_vm import load
from mlflow_vm.vm import VM

WRITERS = 4


def _main_pid(vm: VM) -> int:
    result = vm.ssh("systemctl show -p MainPID --value mlflow", timeout=60)
    return int(result.stdout.strip() or 0)


def _assert_nothing_lost(vm: VM, ledger: load.Ledger) -> None:
    lost, unverified = load.verify(vm.url, ledger)
    assert (lost, unverified) == (0, 0), (
        f"{lost} acknowledged rows lost, {unverified} unreadable, "
        f"of {ledger.acknowledged_rows()}")


@pytest.mark.disruptive
def test_a_killed_server_comes_back_without_losing_an_acknowledged_write(
    vm: VM, once_per_image: None
) -> None:
    before = _main_pid(vm)
    with load.writers(vm.url, clients=WRITERS) as ledger:
        ledger.wait_for_runs(5)
        assert vm.ssh(f"sudo kill -9 {before}").returncode == 0
        deadline = time.monotonic() + 600
        while _main_pid(vm) in (0, before):
            if time.monotonic() > deadline:
                pytest.fail("mlflow.service did not start again within 10 minutes")
            time.sleep(2)
        vm.wait_for_http("/health", timeout=600)
        # The writers carry on against the new process.
        ledger.wait_for_runs(len(ledger.runs) + 5)
    _assert_nothing_lost(vm, ledger)


@pytest.mark.disruptive
def test_a_power_cut_during_writes_leaves_an_intact_database_and_every_write(
    vm: VM, once_per_image: None
) -> None:
    with load.writers(vm.url, clients=WRITERS) as ledger:
        ledger.wait_for_runs(10)
        vm.power_cycle()
    vm.wait_for_ssh()
    check = vm.ssh(f"sudo sqlite3 -readonly {DATABASE} 'PRAGMA integrity_check'")
    assert check.stdout.strip() == "ok", check.stdout + check.stderr
    vm.wait_for_http("/health", timeout=900)
    _assert_nothing_lost(vm, ledger)


# Among the disruptive tests: the failed upload's traceback and journald's
# own clean-up on a full disk push earlier lines out of the journal.
@pytest.mark.disruptive
def test_a_full_data_disk_fails_uploads_not_the_server_until_space_is_freed(
    vm: VM, once_per_image: None
) -> None:
    upload = f"{vm.url}/api/2.0/mlflow-artifacts/artifacts/verify-disk-full/blob.bin"
    blob = bytes(4 * 2**20)
    filler = f"{STATE}/verify-disk-filler"
    # As the mlflow user, as the server writes: the blocks ext4 reserves for
    # root keep SSH and the journal working.
    free = int(vm.ssh(f"sudo -u mlflow df --output=avail -B1 {STATE} | tail -1").stdout)
    try:
        filled = vm.ssh(f"sudo -u mlflow fallocate -l {free - 2**20} {filler}")
        assert filled.returncode == 0, filled.stderr
        refused = requests.put(upload, data=blob, timeout=120)
        assert not refused.ok, "an upload to a full disk was acknowledged"
        assert requests.get(f"{vm.url}/health", timeout=30).status_code == 200
    finally:
        vm.ssh(f"sudo rm -f {filler}")
    accepted = requests.put(upload, data=blob, timeout=120)
    assert accepted.ok, accepted.text[:300]
    size = vm.ssh(f"sudo stat -c %s {ARTIFACTS}/verify-disk-full/blob.bin").stdout.strip()
    assert size == str(len(blob))
