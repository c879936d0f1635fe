"""NoCloud seeds: the CD (label ``cidata``) that cloud-init reads at first boot."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import yaml


def write_iso(target: Path, user_data: str, meta_data: str) -> Path:
    """Write a NoCloud seed ISO holding ``user-data`` and ``meta-data``."""
    with tempfile.TemporaryDirectory(prefix="mlflow-vm-seed-") as tmp:
        folder = Path(tmp)
        (folder / "user-data").write_text(user_data)
        (folder / "meta-data").write_text(meta_data)
        subprocess.run(
            ["xorriso", "-as", "mkisofs", "-quiet", "-output", str(target),
             "-volid", "cidata", "-joliet", "-rock", str(folder)],
            check=True,
        )
    return target


def with_login(user_data: str, user: str, public_key: str) -> str:
    """Add a passwordless-sudo login for ``user`` with ``public_key`` to user-data."""
    config = yaml.safe_load(user_data) or {}
    login = {
        "name": user,
        "shell": "/bin/bash",
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
        "lock_passwd": True,
        "ssh_authorized_keys": [public_key],
    }
    # No "default" user: an image whose build user is gone must show none.
    config["users"] = [*config.get("users", []), login]
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)


def meta_data(instance_id: str, hostname: str) -> str:
    """NoCloud meta-data naming the instance; a new id means a first boot."""
    return f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n"


def with_wheelhouse(user_data: str, url: str) -> str:
    """Point pip at a wheelhouse instead of an index, through /etc/pip.conf."""
    config = yaml.safe_load(user_data) or {}
    host = url.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]
    pip_conf = f"[global]\nno-index = true\nfind-links = {url}\ntrusted-host = {host}\n"
    config.setdefault("write_files", []).append(
        {"path": "/etc/pip.conf", "permissions": "0644", "content": pip_conf}
    )
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)
