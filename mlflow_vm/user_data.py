"""Standalone user-data with the user's settings, checked before it is written."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from . import build, export, render, tools
from .errors import UserError
from .profiles import Profile

HOST = re.compile(
    r"^(\*|[A-Za-z0-9*]([A-Za-z0-9.*-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")
# A requirement specifier without spaces, quotes or options: name, extras, versions.
PACKAGE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?([<>=!~]=?[A-Za-z0-9.*+!,<>=~-]+)?$")
# Lines of `cloud-init schema` output that say what is wrong, not the echoed YAML.
MEANINGFUL = re.compile(r"error|line \d+|expected|not valid|is not|found", re.IGNORECASE)
# Clouds that take the least user-data accept 16 KiB (EC2) or 32 KiB and more.
WARN_SIZE = 32 * 1024


def check_allowed_hosts(value: str) -> str:
    """Return ``value`` if it is a comma-separated list of host names or addresses."""
    names = value.split(",")
    if not value or not all(HOST.match(name) for name in names):
        raise UserError(f"ALLOWED_HOSTS={value} must be host names or addresses separated "
                        "by commas, e.g. mlflow.example.com,10.0.0.5 (or * for any)")
    return value


def check_package(value: str) -> str:
    """Return ``value`` if pip reads it as one requirement, e.g. boto3 or boto3==1.35.0."""
    if not PACKAGE.match(value):
        raise UserError(f"PIP_PACKAGES: {value!r} is not a package name with an optional "
                        "version (boto3, boto3==1.35.0, psycopg[binary]>=3.1)")
    return value


def schema_problems(text: str) -> str:
    """What ``cloud-init schema`` finds wrong with ``text``; empty if nothing."""
    tools.require(("cloud-init",))
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="user-data-") as handle:
        handle.write(text)
        handle.flush()
        result = subprocess.run(["cloud-init", "schema", "--config-file", handle.name],
                                capture_output=True, text=True)
    output = (result.stdout + "\n" + result.stderr).replace(handle.name, "the user-data")
    return "" if result.returncode == 0 else output.strip()


def summarize_problems(problems: str) -> str:
    """One line of ``cloud-init schema`` output: the lines that say what and where."""
    kept = []
    for raw in problems.splitlines():
        line = raw.strip()
        if not line or line in ("Error:", "^") or line.endswith("deprecations:"):
            continue
        if MEANINGFUL.search(line):
            kept.append(line.removeprefix("Cloud config schema errors:").strip().rstrip(":"))
    return "; ".join(kept) if kept else problems.strip().splitlines()[-1]


def write(profile: Profile, target: Path, port: str, allowed_hosts: str,
          packages: list[str], ssh_keys: list[str], settings: str = "") -> int:
    """Render the user-data with these settings, check it, write it; return its size.

    ``settings`` are checked KEY=VALUE lines (see :mod:`mlflow_vm.settings`).
    """
    if "\nMLFLOW_PORT=" in f"\n{settings}":
        raise UserError("SETTINGS sets MLFLOW_PORT: give the port as PORT= instead, which the "
                        "user-data's instructions and checks follow too")
    server = {
        "port": build.validate_port(port),
        "allowed_hosts": check_allowed_hosts(allowed_hosts),
        "extra_pip_packages": " ".join(check_package(p) for p in packages),
    }
    text = render.custom_user_data(profile, server, ssh_keys, settings)
    problems = schema_problems(text)
    if problems:
        raise UserError("cloud-init schema rejects the user-data: "
                        f"{summarize_problems(problems)}")
    if target.is_dir():
        raise UserError(f"{target} is a directory; name the file to write, "
                        "e.g. USER_DATA=my-user-data")
    # Settings may hold passwords and keys.
    with export.atomic_path(target, "USER_DATA", 0o600 if settings else 0o644) as tmp:
        tmp.write_text(text)
    return len(text.encode())
