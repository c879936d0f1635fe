"""Nothing that identifies the build or its machine is baked into the image."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlflow_vm.image_files import ImageFiles
from mlflow_vm.vm import VM, BootOptions

IDENTITY = "cat /etc/machine-id /etc/ssh/ssh_host_ed25519_key.pub"


@pytest.fixture(scope="module")
def image_files(install: str, image: Path) -> Iterator[ImageFiles]:
    """The built image's root file system, read without booting it."""
    if install != "image":
        pytest.skip("checks the built qcow2 file itself, not a first-boot install "
                    "or a converted copy")
    with ImageFiles(image) as files:
        yield files


def test_image_has_no_ssh_host_keys(image_files: ImageFiles) -> None:
    keys = [n for n in image_files.listdir("/etc/ssh") if n.startswith("ssh_host_")]
    assert keys == []


def test_image_machine_id_is_empty(image_files: ImageFiles) -> None:
    assert image_files.read("/etc/machine-id") == b""


def test_image_has_no_cloud_init_state(image_files: ImageFiles) -> None:
    assert not image_files.exists("/var/lib/cloud/instance")
    assert not image_files.exists("/var/lib/cloud/instances") or \
        image_files.listdir("/var/lib/cloud/instances") == []


def test_image_has_no_build_user_or_its_keys(image_files: ImageFiles, profile) -> None:
    user = profile.ssh_username
    passwd = image_files.read("/etc/passwd").decode()
    assert f"\n{user}:" not in f"\n{passwd}"
    assert not image_files.exists(f"/home/{user}")
    assert not image_files.exists("/etc/sudoers.d/90-cloud-init-users")
    assert not image_files.exists("/root/.ssh/authorized_keys")


def test_image_has_no_passwords(image_files: ImageFiles) -> None:
    for line in image_files.read("/etc/shadow").decode().splitlines():
        name, hashed = line.split(":")[:2]
        assert not hashed.startswith("$"), f"{name} has a password"


def test_image_keeps_no_installer_scratch(image_files: ImageFiles) -> None:
    # uv's throwaway venv and cache, and the copied install files.
    left = [n for n in image_files.listdir("/var/tmp") if n.startswith("mlflow-")]
    assert left == []
    assert not image_files.exists("/tmp/mlflow-install")


def test_booted_vm_has_its_own_machine_id_and_host_keys(host) -> None:
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert len(machine_id) == 32
    booted = int(float(host.check_output("cut -d' ' -f1 /proc/uptime")))
    now = int(host.check_output("date +%s"))
    key_made = int(host.check_output("stat -c %Y /etc/ssh/ssh_host_ed25519_key.pub"))
    assert key_made >= now - booted - 5, "the SSH host key predates this boot"


def test_cloud_init_ran_once_and_cleanly(host) -> None:
    status = host.run("cloud-init status --long")
    assert status.rc == 0, status.stdout + status.stderr
    assert "status: done" in status.stdout
    instances = host.check_output("sudo ls /var/lib/cloud/instances").split()
    assert len(instances) == 1, f"cloud-init state from earlier boots: {instances}"
    log = host.check_output("sudo cat /var/log/cloud-init.log")
    assert " WARNING " not in log and " ERROR " not in log


def test_two_clones_of_the_image_get_their_own_identity(
    install: str, image: Path, host
) -> None:
    if install != "image":
        pytest.skip("clones are made from a built image")
    first = host.check_output(IDENTITY)
    with VM(image, BootOptions()) as clone:
        clone.wait_for_ssh()
        second = clone.ssh(IDENTITY).stdout.strip()
    machine_ids = (first.splitlines()[0], second.splitlines()[0])
    host_keys = (first.splitlines()[1], second.splitlines()[1])
    assert machine_ids[0] != machine_ids[1]
    assert host_keys[0] != host_keys[1]


def test_image_runs_cloud_init_when_no_seed_exists(image_files: ImageFiles) -> None:
    policy = image_files.read("/etc/cloud/ds-identify.cfg").decode()
    assert "notfound=enabled" in policy
    lists = [
        line for name in sorted(image_files.listdir("/etc/cloud/cloud.cfg.d"))
        if name.endswith(".cfg")
        for line in image_files.read(f"/etc/cloud/cloud.cfg.d/{name}").decode().splitlines()
        if line.startswith("datasource_list:")
    ]
    assert lists and lists[-1].replace(" ", "").endswith(",None]"), lists
