"""NoCloud seeds: the CD (label ``cidata``) that cloud-init reads at first boot."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import uuid
from pathlib import Path

import yaml

from . import export
from .errors import UserError

DEFAULT_USER = "mlflow-admin"
DEFAULT_KEYS = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
RESERVED_USERS = {"root", "mlflow", "daemon", "bin", "sys", "nobody"}


def write_iso(target: Path, user_data: str, meta_data: str) -> Path:
    """Write a NoCloud seed ISO holding ``user-data`` and ``meta-data``."""
    with tempfile.TemporaryDirectory(prefix="mlflow-vm-seed-") as tmp:
        folder = Path(tmp)
        (folder / "user-data").write_text(user_data)
        (folder / "meta-data").write_text(meta_data)
        result = subprocess.run(
            ["xorriso", "-as", "mkisofs", "-quiet", "-output", str(target),
             "-volid", "cidata", "-joliet", "-rock", str(folder)],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise UserError(f"xorriso could not write {target}: {result.stderr.strip()}")
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


def default_ssh_key(home: Path | None = None) -> Path:
    """The first of ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub that exists."""
    folder = (home or Path.home()) / ".ssh"
    for name in DEFAULT_KEYS:
        if (folder / name).is_file():
            return folder / name
    return folder / DEFAULT_KEYS[0]


def read_public_keys(path: Path) -> list[str]:
    """The OpenSSH public keys in ``path``; refuse private keys and anything else."""
    if not path.is_file():
        raise UserError(f"SSH key {path} does not exist: make one with "
                        "`ssh-keygen -t ed25519` or give SSH_KEY=path.pub")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        text = ""
    if "PRIVATE KEY" in text:
        raise UserError(f"{path} is a private key: give its public half "
                        f"(SSH_KEY={path.with_name(path.name + '.pub')}), never the key itself")
    keys = [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    # ssh-keygen -l accepts a file only if every key in it parses.
    valid = bool(keys) and subprocess.run(
        ["ssh-keygen", "-l", "-f", str(path)], capture_output=True
    ).returncode == 0
    if not valid:
        raise UserError(f"{path} holds no OpenSSH public key (a line like "
                        "`ssh-ed25519 AAAA... you@host`): give the .pub file of your key")
    return keys


def hash_password(password: str) -> str:
    """A SHA-512 crypt hash of ``password`` from ``openssl passwd -6``, read on stdin."""
    if not password or "\n" in password:
        raise UserError("the password must be one non-empty line")
    result = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n",
                            capture_output=True, text=True)
    hashed = result.stdout.strip()
    if result.returncode != 0 or not hashed.startswith("$6$"):
        raise UserError(f"openssl could not hash the password: {result.stderr.strip()}")
    return hashed


def check_user(name: str) -> str:
    """Return ``name`` if it is a fresh login name, else say what is allowed."""
    if not USER_NAME.match(name) or name in RESERVED_USERS:
        raise UserError(f"USER={name} is not a usable login name: use lower-case letters, "
                        "digits, - and _, not a system account (root, mlflow)")
    return name


def login_user_data(user: str, public_keys: list[str], password_hash: str = "") -> str:
    """User-data that creates ``user``: sudo, the SSH keys, and a console password if given."""
    login: dict[str, object] = {
        "name": user,
        "gecos": "MLflow VM administrator",
        "shell": "/bin/bash",
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
        "ssh_authorized_keys": public_keys,
        "lock_passwd": not password_hash,
    }
    if password_hash:
        login["hashed_passwd"] = password_hash
    # SSH takes keys only; the password is for the VM's console.
    config = {"ssh_pwauth": False, "users": [login]}
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)


def write_login_seed(target: Path, user: str, public_keys: list[str],
                     password_hash: str = "", hostname: str = "mlflow") -> str:
    """Write a seed ISO that creates ``user``, with a fresh instance-id; return the id.

    The ISO appears at ``target`` only once complete.
    """
    instance_id = f"mlflow-{uuid.uuid4()}"
    with export.atomic_path(target) as tmp:
        tmp.unlink()
        write_iso(tmp, login_user_data(user, public_keys, password_hash),
                  meta_data(instance_id, hostname))
    os.chmod(target, 0o644)
    return instance_id
