"""`mlflowctl upgrade` in the VM: from an older MLflow to the image's, keeping
every run, param, metric and artifact; back to the older one, which cannot
read the upgraded schema, goes back to the image's MLflow and data.

The older MLflow's lock (``requirements/older``) comes from the host's
wheelhouse, served on the host's loopback and reached at 10.0.2.2.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from guest import ARTIFACTS, DATABASE, STATE, VENV, sql
from mlflow_vm import load, lock, wheelhouse
from mlflow_vm.profiles import Profile
from mlflow_vm.vm import VM

# Building a venv under an emulated CPU takes minutes.
UPGRADE_TIMEOUT = 2400


def _put(vm: VM, local: str, remote: str) -> None:
    with open(local, "rb") as source:
        subprocess.run(vm.ssh_command(f"cat > {remote}"), stdin=source, check=True, timeout=120)


def _release(host) -> str:
    return json.loads(host.check_output("sudo mlflowctl status --json"))["versions"]["mlflow"]


def _upgrade(vm: VM, lock_file: str, pip_env: str) -> subprocess.CompletedProcess[str]:
    return vm.ssh(f"sudo env {pip_env} mlflowctl upgrade {lock_file} --timeout 900",
                  timeout=UPGRADE_TIMEOUT)


@pytest.mark.disruptive
def test_an_upgrade_keeps_every_run_and_one_that_fails_goes_back(
    vm: VM, host, profile: Profile, once_per_image: None, tmp_path
) -> None:
    older = lock.older_lock(profile.python_version)
    if not older.is_file():
        pytest.skip(f"no lock of an older MLflow for Python {profile.python_version}: "
                    f"the profile pins MLflow {lock.OLDER_MLFLOW} itself")
    _put(vm, str(older), "/var/tmp/older.txt")
    host.run_test(f"cp {VENV}/requirements.txt /var/tmp/image.txt")
    # Start from the older MLflow on an empty store, so that it writes the
    # data at its own schema; the image's data moves aside.
    host.run_test(f"sudo systemctl stop mlflow && sudo mkdir {STATE}-aside && "
                  f"sudo sh -c 'mv {DATABASE}* {ARTIFACTS} {STATE}-aside/' && "
                  f"sudo install -d -o mlflow -g mlflow -m 0750 {ARTIFACTS}")

    with wheelhouse.serve(wheelhouse.fill(profile, older)) as port:
        pip_env = (f"PIP_NO_INDEX=1 PIP_FIND_LINKS=http://10.0.2.2:{port}/ "
                   "PIP_TRUSTED_HOST=10.0.2.2")
        down = _upgrade(vm, "/var/tmp/older.txt", pip_env)
        assert down.returncode == 0, down.stdout + down.stderr
        assert "No database yet" in down.stdout
        assert _release(host) == lock.OLDER_MLFLOW
        old_schema = sql(host, "SELECT version_num FROM alembic_version")

        with load.writers(vm.url, clients=2) as ledger:
            ledger.wait_for_runs(10)
        client = MlflowClient(vm.url)
        run_id = next(iter(ledger.runs))
        artifact = tmp_path / "model.txt"
        artifact.write_text("weights of the older MLflow\n")
        client.log_artifact(run_id, str(artifact))

        up = _upgrade(vm, "/var/tmp/image.txt", pip_env)
        assert up.returncode == 0, up.stdout + up.stderr
        # The image's venv stayed beside the older one and serves again.
        assert "installed from the same lock before" in up.stdout
        assert f"MLflow {lock.OLDER_MLFLOW} -> {profile.mlflow_version}: up" in up.stdout
        assert _release(host) == profile.mlflow_version
        new_schema = sql(host, "SELECT version_num FROM alembic_version")
        assert new_schema != old_schema
        assert load.verify(vm.url, ledger) == (0, 0)
        assert (client.download_artifacts(run_id, "model.txt", str(tmp_path / "back"))
                and (tmp_path / "back" / "model.txt").read_text() == artifact.read_text())

        back = _upgrade(vm, "/var/tmp/older.txt", pip_env)
    assert back.returncode == 1, back.stdout + back.stderr
    assert "is newer than MLflow" in back.stderr
    assert f"MLflow {profile.mlflow_version} is up again" in back.stderr
    assert _release(host) == profile.mlflow_version
    assert sql(host, "SELECT version_num FROM alembic_version") == new_schema
    assert load.verify(vm.url, ledger) == (0, 0)
    assert sql(host, "PRAGMA integrity_check") == "ok"
