"""A team's server: PostgreSQL and an S3 bucket on the host's loopback, which
the guests reach through QEMU's forwarding at 10.0.2.2, and authentication.

Two VMs of the image share them: the session's VM, moved to them with
``mlflowctl set --from``, and a second one given the same settings at its
first boot by the project's ``seed --settings``.
"""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mlflow.server import get_app_client
from mlflow.tracking import MlflowClient

import services
from guest import SETTINGS
from mlflow_vm.paths import OUTPUT, ROOT
from mlflow_vm.vm import LOGIN, VM, BootOptions

ADMIN_PASSWORD = secrets.token_urlsafe(18)
ALICE_PASSWORD = secrets.token_urlsafe(18)
PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"


def _put(vm: VM, text: str, remote: str) -> None:
    """Write ``text`` to a root-only file in the guest, through SSH's stdin."""
    subprocess.run(vm.ssh_command(f"sudo install -m 0600 /dev/stdin {remote}"),
                   input=text, text=True, check=True, timeout=120)


def _digest(vm: VM) -> str:
    return hashlib.sha256(vm.ssh(f"sudo cat {SETTINGS}").stdout.encode()).hexdigest()


@pytest.fixture(scope="module")
def stores(install: str) -> Iterator[dict]:
    """PostgreSQL and moto's S3 on the host's loopback, and the settings that
    point a VM at them."""
    if install != "image":
        pytest.skip("team settings run on the built image; the other install paths "
                    "install the same mlflowctl and service")
    with services.scratch_dir() as work, services.postgres_server(work) as pg, \
            services.s3_server(work) as s3:
        settings = {
            "MLFLOW_BACKEND_STORE_URI": pg.uri("10.0.2.2"),
            "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{s3.bucket}/team",
            "MLFLOW_S3_ENDPOINT_URL": s3.endpoint("10.0.2.2"),
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "MLFLOW_AUTH": "true",
            "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MLFLOW_AUTH_DATABASE_URI": pg.create_database("mlflow_auth"),
        }
        file = work / "team.env"
        file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        file.chmod(0o600)
        yield {"pg": pg, "s3": s3, "file": file,
               "secrets": [pg.password, s3.secret_key, ADMIN_PASSWORD]}


@pytest.mark.disruptive
def test_bad_team_settings_are_refused_in_one_line_and_the_previous_ones_kept(
    vm: VM, once_per_image: None
) -> None:
    before = _digest(vm)
    _put(vm, "MLFLOW_ARTIFACTS_DESTINATION=s3://mlflow-artifacts/team\n", "/var/tmp/bad.env")
    refused = vm.ssh("sudo mlflowctl set --from /var/tmp/bad.env")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "needs AWS_ACCESS_KEY_ID" in refused.stderr
    assert _digest(vm) == before

    # The same settings given at first boot: mlflow-settings.service refuses
    # them before the server starts, which starts with its previous settings.
    vm.ssh("sudo mv /var/tmp/bad.env /etc/mlflow/mlflow.env.pending && "
           "sudo systemctl restart mlflow")
    vm.wait_for_http("/health", timeout=900)
    assert _digest(vm) == before
    journal = vm.ssh("sudo journalctl -u mlflow-settings --no-pager -o cat").stdout
    assert "the settings given at first boot are refused" in journal
    doctor = vm.ssh("sudo mlflowctl doctor")
    assert doctor.returncode == 1 and "/etc/mlflow/mlflow.env.refused" in doctor.stdout
    assert vm.ssh("sudo stat -c %a /etc/mlflow/mlflow.env.refused").stdout.strip() == "600"
    vm.ssh("sudo rm /etc/mlflow/mlflow.env.refused")


def _seed_with_settings(file: Path):
    def make(target: Path, public_key: str) -> None:
        subprocess.run([sys.executable, "-m", "mlflow_vm", "seed", "--ssh-key", public_key,
                        "--user", LOGIN, "--profile", "debian-12", "--settings", str(file),
                        "-o", str(target)], check=True, cwd=ROOT, capture_output=True)
    return make


@pytest.fixture(scope="module")
def team(vm: VM, image: Path, stores: dict) -> Iterator[tuple[VM, VM]]:
    """The session's VM moved to the team's stores with `mlflowctl set --from`,
    then a second VM of the image given them at first boot; the first VM
    gets its own settings back afterwards."""
    vm.ssh(f"sudo cp -p {SETTINGS} /var/tmp/mlflow.env.before-team")
    _put(vm, stores["file"].read_text(), "/var/tmp/team.env")
    moved = vm.ssh("sudo mlflowctl set --from /var/tmp/team.env && sudo rm /var/tmp/team.env",
                   timeout=1200)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    options = BootOptions(make_seed=_seed_with_settings(stores["file"]),
                          keep_serial_log=OUTPUT / "logs" / "verify-team-serial.log")
    try:
        with VM(image, options) as second:
            second.wait_for_ssh()
            second.wait_for_http("/health", timeout=1200)
            yield vm, second
    finally:
        vm.ssh(f"sudo cp /var/tmp/mlflow.env.before-team {SETTINGS} && "
               "sudo systemctl restart mlflow")
        vm.wait_for_http("/health", timeout=900)


def _as(user: str, password: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)


@pytest.mark.disruptive
def test_two_vms_share_runs_artifacts_and_users(
    team: tuple[VM, VM], stores: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = team
    _as("admin", ADMIN_PASSWORD, monkeypatch)
    get_app_client("basic-auth", tracking_uri=first.url).create_user("alice", ALICE_PASSWORD)
    client = MlflowClient(first.url)
    experiment = client.create_experiment(f"team-{secrets.token_hex(4)}")
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "alpha", "0.5")
    client.log_metric(run.info.run_id, "rmse", 0.25)
    model = tmp_path / "model.txt"
    model.write_text("weights shared through the bucket\n")
    client.log_artifact(run.info.run_id, str(model))
    assert any(key.endswith("/model.txt") for key in stores["s3"].objects("team/"))

    _as("alice", ALICE_PASSWORD, monkeypatch)
    # MLflow 3.17's client downloads from the bucket itself, with a URL the
    # server signs, when it can: the host cannot reach 10.0.2.2, so through
    # the server.
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")
    other = MlflowClient(second.url)
    seen = other.get_run(run.info.run_id)
    assert seen.data.params == {"alpha": "0.5"} and seen.data.metrics == {"rmse": 0.25}
    path = other.download_artifacts(run.info.run_id, "model.txt", str(tmp_path / "back"))
    assert Path(path).read_text() == model.read_text()
    own = other.create_run(other.create_experiment(f"alice-{secrets.token_hex(4)}"))
    other.log_metric(own.info.run_id, "accuracy", 0.9)
    _as("admin", ADMIN_PASSWORD, monkeypatch)
    assert MlflowClient(first.url).get_run(own.info.run_id).data.metrics == {"accuracy": 0.9}


@pytest.mark.disruptive
def test_no_or_wrong_credentials_are_refused(team: tuple[VM, VM]) -> None:
    for machine in team:
        assert requests.get(machine.url + PROBE, timeout=60).status_code == 401
        wrong = requests.get(machine.url + PROBE, auth=("admin", "not-the-password"), timeout=60)
        assert wrong.status_code == 401
        right = requests.get(machine.url + PROBE, auth=("admin", ADMIN_PASSWORD), timeout=60)
        assert right.status_code == 200


@pytest.mark.disruptive
def test_secrets_stay_out_of_the_journal_the_process_list_and_cloud_init_logs(
    team: tuple[VM, VM], stores: dict
) -> None:
    for machine in team:
        places = {
            "the journal": "sudo journalctl -b --no-pager",
            "the process list": "ps -eo args",
            "cloud-init's logs": "sudo cat /var/log/cloud-init.log /var/log/cloud-init-output.log",
        }
        for where, command in places.items():
            text = machine.ssh(command, timeout=300).stdout
            assert text, f"nothing read from {where}"
            leaked = [s for s in stores["secrets"] if s in text]
            assert not leaked, f"a secret is in {where}"
        mode = machine.ssh(f"sudo stat -c '%U:%G %a' {SETTINGS} /run/mlflow/basic_auth.ini")
        assert mode.stdout.split("\n")[:2] == ["root:mlflow 640", "mlflow:mlflow 600"]
        assert machine.ssh("sudo test -e /etc/mlflow/mlflow.env.pending").returncode == 1


@pytest.mark.disruptive
def test_a_database_unreachable_at_boot_is_named_and_the_server_comes_up_once_it_answers(
    team: tuple[VM, VM], stores: dict
) -> None:
    _, second = team
    stores["pg"].stop()
    try:
        second.ssh("sudo systemctl restart --no-block mlflow")
        deadline = time.monotonic() + 600
        wanted = "Cannot reach the backend store postgresql+psycopg2://mlflow:***@10.0.2.2"
        while wanted not in second.ssh("sudo journalctl -u mlflow --no-pager -o cat -n 50").stdout:
            assert time.monotonic() < deadline, "no journal line names the unreachable database"
            time.sleep(5)
        state = second.ssh("systemctl show -p ActiveState --value mlflow").stdout.strip()
        assert state in ("activating", "failed")
        doctor = second.ssh("sudo mlflowctl doctor", timeout=300)
        assert doctor.returncode == 1
        assert f"backend store at 10.0.2.2:{stores['pg'].port} does not answer" in doctor.stdout
    finally:
        stores["pg"].start()
    second.wait_for_http("/health", timeout=900)
