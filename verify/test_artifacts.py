"""The artifact root: clients on other machines log and read artifacts there."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mlflow.tracking import MlflowClient

from guest import ARTIFACTS
from mlflow_vm.vm import VM


def test_artifact_root_exists_owned_by_mlflow_and_not_world_writable(host) -> None:
    with host.sudo():
        root = host.file(ARTIFACTS)
        assert root.is_directory
        assert root.user == "mlflow"
        assert root.mode & 0o002 == 0


def test_artifact_logged_from_the_host_lands_in_the_artifact_root(
    vm: VM, host, hello_world_run: str, tmp_path: Path
) -> None:
    payload = os.urandom(256 * 1024)
    source = tmp_path / "weights.bin"
    source.write_bytes(payload)
    client = MlflowClient(vm.url)
    client.log_artifact(hello_world_run, str(source))

    stored = host.check_output(
        f"sudo find {ARTIFACTS} -path '*{hello_world_run}*' -name weights.bin"
    )
    assert stored, f"weights.bin is not under {ARTIFACTS}"
    digest = host.check_output(f"sudo sha256sum {stored}").split()[0]
    assert digest == hashlib.sha256(payload).hexdigest()

    downloaded = client.download_artifacts(hello_world_run, "weights.bin", str(tmp_path))
    assert Path(downloaded).read_bytes() == payload
