"""mlflowctl: status, doctor, set, backup and restore, and the login message.

Each problem the tutorial's troubleshooting annex describes is provoked in
the VM, and ``mlflowctl doctor`` must name it. The guest's address on QEMU's
user network is always 10.0.2.15.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from guest import SETTINGS, STATE, sql
from mlflow_vm.vm import VM

GUEST_ADDRESS = "10.0.2.15"


def ctl(host, arguments: str):
    """Run mlflowctl as root in the guest."""
    return host.run(f"sudo mlflowctl {arguments}")


def status(host) -> dict:
    """mlflowctl status --json, parsed."""
    result = ctl(host, "status --json")
    assert result.rc in (0, 3), result.stderr
    return json.loads(result.stdout)


def wait_for_health(vm: VM, timeout: float = 900) -> None:
    """Wait until the server answers again from the host."""
    vm.wait_for_http("/health", timeout=timeout)


def test_status_reports_state_urls_versions_and_stores(
    host, profile, hello_world_run: str
) -> None:
    info = status(host)
    assert info["service"]["state"] == "active"
    assert info["service"]["enabled"] is True
    assert info["health"] == "ok"
    assert f"http://{GUEST_ADDRESS}:{info['port']}/" in info["urls"]
    assert info["versions"]["mlflow"] == profile.mlflow_version
    assert info["versions"]["python"].startswith(f"{profile.python_version}.")
    backend = info["backend_store"]
    assert backend["path"] == f"{STATE}/mlflow.db"
    assert backend["integrity"] == "ok"
    assert backend["counts"]["runs"] == int(sql(host, "SELECT count(*) FROM runs"))
    assert backend["counts"]["experiments"] >= 1
    assert info["artifact_root"]["location"] == f"{STATE}/artifacts"
    assert 0 < info["disk"]["free"] < info["disk"]["total"]
    assert info["port_held_by"] == []


def test_status_text_shows_where_to_open_mlflow_and_how_to_get_help(host) -> None:
    result = ctl(host, "status")
    assert result.rc == 0, result.stdout + result.stderr
    assert f"http://{GUEST_ADDRESS}:5000/" in result.stdout
    assert "mlflowctl doctor" in result.stdout


def test_doctor_finds_no_problem_on_a_healthy_server(host) -> None:
    result = ctl(host, "doctor")
    assert result.rc == 0, result.stdout
    assert "no problem found" in result.stdout


def test_doctor_names_a_firewall_rule_that_drops_the_port(host) -> None:
    rules = [
        "add table inet mlflow_verify",
        "add chain inet mlflow_verify input { type filter hook input priority 0 ; }",
        "add rule inet mlflow_verify input tcp dport 5000 drop",
    ]
    try:
        for rule in rules:
            host.run_test(f"sudo nft '{rule}'")
        result = ctl(host, "doctor")
    finally:
        host.run("sudo nft delete table inet mlflow_verify")
    assert result.rc == 1
    assert ("PROBLEM: nftables chain inet mlflow_verify input has a rule that drops "
            "TCP port 5000") in result.stdout


def test_doctor_names_a_nearly_full_data_disk(host) -> None:
    free = int(host.check_output(f"df --output=avail -B1 {STATE} | tail -1"))
    filler = f"{STATE}/verify-filler"
    try:
        host.run_test(f"sudo fallocate -l {free - 100 * 2**20} {filler}")
        result = ctl(host, "doctor")
    finally:
        host.run(f"sudo rm -f {filler}")
    assert result.rc == 1
    assert "free of" in result.stdout and "on the data disk" in result.stdout


def test_login_message_shows_the_url_the_state_and_the_help_command(host) -> None:
    # pam_motd writes the message of the login testinfra's SSH session made.
    message = host.check_output("cat /run/motd.dynamic")
    assert "MLflow tracking server: active (running)" in message
    assert f"http://{GUEST_ADDRESS}:5000/" in message
    assert "mlflowctl doctor" in message


def test_logs_show_the_server_starting(host) -> None:
    result = ctl(host, "logs --lines 200")
    assert result.rc == 0
    assert "MLflow on 0.0.0.0:5000" in result.stdout


def test_set_refuses_a_bad_value_and_leaves_settings_and_server_alone(host) -> None:
    before = host.check_output(f"sudo sha256sum {SETTINGS}")
    pid = host.check_output("systemctl show -p MainPID --value mlflow")
    result = ctl(host, "set MLFLOW_PORT=abc")
    assert result.rc == 2
    assert result.stderr.strip().splitlines() == [
        "mlflowctl: MLFLOW_PORT=abc is not valid: use a TCP port between 1 and 65535"]
    assert host.check_output(f"sudo sha256sum {SETTINGS}") == before
    assert host.check_output("systemctl show -p MainPID --value mlflow") == pid


def test_backup_holds_a_consistent_copy_of_the_database_and_artifacts(
    vm: VM, host, install: str, hello_world_run: str, carried_backup: dict
) -> None:
    result = ctl(host, "backup --dir /var/tmp/mlflow-verify-backups")
    assert result.rc == 0, result.stderr
    folder = result.stdout.split("Backup written to ", 1)[1].split()[0]
    manifest = json.loads(host.check_output(f"sudo cat {folder}/manifest.json"))
    assert manifest["database"]["integrity"] == "ok"
    assert manifest["database"]["counts"]["runs"] == int(sql(host, "SELECT count(*) FROM runs"))
    listed = host.check_output(f"sudo tar -tzf {folder}/artifacts.tar.gz")
    assert listed.splitlines()[0].rstrip("/") == "artifacts"
    if install == "image":
        # Carried to the host, for another VM of the session to restore.
        archive = carried_backup["dir"] / "backup.tar"
        with archive.open("wb") as out:
            subprocess.run(vm.ssh_command(f"sudo tar -C {folder} -cf - ."), stdout=out,
                           check=True, timeout=600)
        carried_backup["archive"] = archive
        carried_backup["run"] = hello_world_run


def test_daily_backup_timer_is_armed_and_its_service_writes_a_backup(
    host, hello_world_run: str
) -> None:
    timer = host.service("mlflow-backup.timer")
    assert timer.is_enabled and timer.is_running
    next_run = host.check_output(
        "systemctl show mlflow-backup.timer -P NextElapseUSecRealtime")
    assert next_run, "the timer has no next run"
    before = set(host.check_output("sudo ls -1 /var/backups/mlflow 2>/dev/null || true").split())
    result = host.run("sudo systemctl start mlflow-backup.service")
    assert result.rc == 0, host.check_output(
        "sudo journalctl -u mlflow-backup.service -n 20 --no-pager")
    after = set(host.check_output("sudo ls -1 /var/backups/mlflow").split())
    (new,) = after - before
    manifest = json.loads(host.check_output(f"sudo cat /var/backups/mlflow/{new}/manifest.json"))
    assert manifest["database"]["integrity"] == "ok"
    # Backups hold every run: other users of the VM may not read them.
    assert host.file("/var/backups/mlflow").mode & 0o007 == 0


@pytest.mark.disruptive
def test_doctor_names_a_damaged_database_and_a_process_holding_the_port(
    vm: VM, host, once_per_image: None
) -> None:
    """The server is stopped, its database damaged, then its port taken."""
    db = f"{STATE}/mlflow.db"
    host.run_test("sudo systemctl stop mlflow")
    try:
        host.run_test(f"sudo cp -a {db} /var/tmp/mlflow-verify.db")
        # Overwrite the second page (the first table's root) with garbage.
        host.run_test(f"sudo dd if=/dev/urandom of={db} bs=4096 seek=1 count=1 "
                      "conv=notrunc status=none")
        damaged = ctl(host, "doctor")
        host.run_test(f"sudo cp -a /var/tmp/mlflow-verify.db {db}")

        host.run_test("sudo systemd-run --unit=mlflow-verify-squatter "
                      "/opt/mlflow/bin/python -m http.server 5000")
        deadline = time.monotonic() + 120
        while not host.socket("tcp://0.0.0.0:5000").is_listening:
            assert time.monotonic() < deadline, "the squatter did not start"
            time.sleep(1)
        host.run("sudo systemctl start mlflow")
        held = ctl(host, "doctor")
        journal = host.check_output("sudo journalctl -u mlflow -n 50 --no-pager")
        status_text = host.run("sudo systemctl status mlflow --no-pager -n 20").stdout
    finally:
        host.run("sudo systemctl stop mlflow-verify-squatter")
        host.run("sudo systemctl start mlflow")
    wait_for_health(vm)

    assert damaged.rc == 1
    assert f"PROBLEM: the database {db} fails its integrity check" in damaged.stdout
    assert "mlflowctl restore" in damaged.stdout
    assert held.rc == 1
    holder = "`/opt/mlflow/bin/python -m http.server 5000`"
    assert f"PROBLEM: port 5000 is held by {holder}" in held.stdout
    assert "unit mlflow-verify-squatter.service" in held.stdout
    assert f"port 5000 is held by {holder}" in journal
    # The status shows which step refused to start; the journal says why.
    assert "mlflowctl preflight (code=exited, status=1/FAILURE)" in status_text


@pytest.mark.disruptive
def test_set_applies_a_change_and_rolls_back_one_the_server_cannot_start_with(
    vm: VM, host, once_per_image: None, hello_world_run: str
) -> None:
    applied = ctl(host, "set MLFLOW_WORKERS=1")
    assert applied.rc == 0, applied.stdout + applied.stderr
    assert "MLflow is up with the new settings" in applied.stdout
    assert "MLFLOW_WORKERS=1" in host.check_output(f"sudo cat {SETTINGS}").splitlines()
    before = host.check_output(f"sudo cat {SETTINGS}")

    # Nothing listens on the guest's own port 5432, so the server cannot start.
    failed = ctl(host, "set MLFLOW_BACKEND_STORE_URI=postgresql://mlflow@127.0.0.1:5432/mlflow"
                       " --timeout 600")
    assert failed.rc == 1
    assert "did not come up with MLFLOW_BACKEND_STORE_URI" in failed.stderr
    assert "MLflow is up again with the previous settings" in failed.stderr
    assert host.check_output(f"sudo cat {SETTINGS}") == before
    wait_for_health(vm)
    assert MlflowClient(vm.url).get_run(hello_world_run).data.params == {"param1": "5"}


@pytest.mark.disruptive
def test_a_backup_of_one_vm_restores_into_another(
    vm: VM, host, install: str, carried_backup: dict
) -> None:
    if install != "user-data":
        pytest.skip("restores the built image's backup into the VM the user-data "
                    "installed, a fresh VM")
    if "archive" not in carried_backup:
        pytest.skip("no backup of the built image was taken in this session")
    folder = "/var/tmp/mlflow-backup-from-image"
    host.run_test(f"sudo mkdir -p {folder}")
    with carried_backup["archive"].open("rb") as archive:
        subprocess.run(vm.ssh_command(f"sudo tar -C {folder} -xf -"), stdin=archive,
                       check=True, timeout=600)
    client = MlflowClient(vm.url)
    local = client.create_run(client.get_experiment_by_name("Default").experiment_id)

    restored = ctl(host, f"restore {folder} --timeout 900")
    assert restored.rc == 0, restored.stdout + restored.stderr
    wait_for_health(vm)
    restored_run = client.get_run(carried_backup["run"])
    assert restored_run.data.params == {"param1": "5"}
    assert restored_run.data.metrics == {"metric1": 0.85}
    run_ids = sql(host, "SELECT run_uuid FROM runs").split()
    assert local.info.run_id not in run_ids
    assert ctl(host, "doctor").rc == 0
