"""NoCloud seeds: the CD (label ``cidata``) that cloud-init reads at first boot."""

from __future__ import annotations

import re
import subprocess
import tempfile
import uuid
from pathlib import Path

import yaml

from . import export, tools
from . import settings as server_settings
from .errors import UserError

DEFAULT_USER = "mlflow-admin"
DEFAULT_KEYS = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# Accounts Debian and Ubuntu images create or may create, and the server's own.
RESERVED_USERS = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
    "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "systemd-network",
    "systemd-resolve", "systemd-timesync", "systemd-coredump", "messagebus", "sshd", "syslog",
    "_apt", "uuidd", "tcpdump", "tss", "landscape", "pollinate", "fwupd-refresh", "lxd",
    "ubuntu", "debian", "polkitd", "dnsmasq", "admin", "mlflow",
})
RFC4716_BEGIN = "---- BEGIN SSH2 PUBLIC KEY ----"


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


def _private_key_hint(path: Path) -> str:
    """What to give instead of the private key at ``path``."""
    public = path.with_name(path.name + ".pub")
    if path.suffix != ".pub" and public.is_file():
        return f"give its public half (SSH_KEY={public}), never the key itself"
    out = public if path.suffix != ".pub" else path.with_name(f"{path.stem}-public.pub")
    return (f"write its public half with `ssh-keygen -y -f {path} > {out}` and give "
            f"SSH_KEY={out}, never the key itself")


def _check_key_line(path: Path, number: int, line: str) -> None:
    """Refuse ``line`` unless OpenSSH's own parser reads it as a public key."""
    with tempfile.NamedTemporaryFile("w", suffix=".pub", prefix="mlflow-vm-key-") as handle:
        handle.write(line + "\n")
        handle.flush()
        result = subprocess.run(["ssh-keygen", "-l", "-f", handle.name], capture_output=True)
    if result.returncode != 0:
        raise UserError(f"{path} line {number} is not an OpenSSH public key (a line like "
                        "`ssh-ed25519 AAAA... you@host`): give the .pub file of your key")


def read_public_keys(path: Path) -> list[str]:
    """The OpenSSH public keys in ``path``; refuse private keys and anything else."""
    tools.require(("ssh-keygen",))
    export.require_file(path,
                        f"SSH_KEY={path} is a directory: name the public key file, "
                        "e.g. SSH_KEY=~/.ssh/id_ed25519.pub",
                        f"SSH key {path} does not exist: make one with "
                        "`ssh-keygen -t ed25519` or give SSH_KEY=path.pub")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        text = ""
    except OSError as exc:
        raise UserError(f"cannot read SSH key {path}: {exc.strerror}") from None
    if "PRIVATE KEY" in text:
        raise UserError(f"{path} is a private key: {_private_key_hint(path)}")
    if RFC4716_BEGIN in text:
        raise UserError(f"{path} is an RFC 4716 (SSH2) public key: convert it with "
                        f"`ssh-keygen -i -f {path} > key.pub` and give SSH_KEY=key.pub")
    numbered = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)
                if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        raise UserError(f"{path} holds no OpenSSH public key (a line like "
                        "`ssh-ed25519 AAAA... you@host`): give the .pub file of your key")
    for number, line in numbered:
        _check_key_line(path, number, line)
    return [line for _, line in numbered]


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
        raise UserError(f"SEED_USER={name} is not a usable login name: start with a lower-case "
                        "letter or _, then up to 31 lower-case letters, digits, - and _; not a "
                        "system account (root, daemon, sshd, www-data, nobody, ubuntu, "
                        "debian, mlflow, ...)")
    return name


def login_user_data(user: str, public_keys: list[str], password_hash: str = "",
                    settings: str = "") -> str:
    """User-data that creates ``user``: sudo, the SSH keys, a console password
    and server settings (checked KEY=VALUE lines) if given."""
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
    config: dict[str, object] = {"ssh_pwauth": False, "users": [login]}
    if settings:
        config["write_files"] = [server_settings.write_files_entry(settings)]
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)


def write_login_seed(target: Path, user: str, public_keys: list[str],
                     password_hash: str = "", hostname: str = "mlflow",
                     settings: str = "") -> str:
    """Write a seed ISO that creates ``user``, with a fresh instance-id; return the id.

    The ISO appears at ``target`` only once complete. It is readable by all,
    for the hypervisor's user, unless it carries server settings, which may
    hold secrets: then only its owner reads it.
    """
    instance_id = f"mlflow-{uuid.uuid4()}"
    with export.atomic_path(target, "SEED", 0o600 if settings else 0o644) as tmp:
        tmp.unlink()
        write_iso(tmp, login_user_data(user, public_keys, password_hash, settings),
                  meta_data(instance_id, hostname))
    return instance_id
