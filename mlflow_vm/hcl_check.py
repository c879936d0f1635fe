"""Structural checks of the rendered Packer templates, read with python-hcl2.

``packer validate`` proves a template is valid Packer; these checks prove it
is the template this project promises: a qcow2 built from a checksummed
base image, with its inputs validated and its outputs recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2

from .paths import PACKER

Block = dict[str, Any]


def _unquote(value: Any) -> Any:
    """python-hcl2 8 keeps the quotes of strings and labels; drop them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _labelled(blocks: list[Block]) -> dict[str, Block]:
    """Turn ``[{'"name"': {...}}]`` into ``{'name': {...}}``."""
    return {_unquote(k): v for block in blocks for k, v in block.items()}


def load_folder(folder: Path) -> dict[str, dict[str, Any]]:
    """Parse every ``*.pkr.hcl`` file of a folder, keyed by file name."""
    parsed = {}
    for path in sorted(folder.glob("*.pkr.hcl")):
        with path.open() as handle:
            parsed[path.name] = hcl2.load(handle)
    return parsed


def check_profile(name: str) -> list[str]:
    """Return every way ``packer/<name>`` falls short; empty when it is sound."""
    folder = PACKER / name
    files = load_folder(folder)
    problems: list[str] = []

    def need(condition: bool, message: str) -> None:
        if not condition:
            problems.append(f"packer/{name}: {message}")

    expected = {f"{n}.pkr.hcl" for n in ("plugins", "variables", "source", "build")}
    need(set(files) == expected, f"expected exactly {sorted(expected)}")
    if problems:
        return problems

    plugins = files["plugins.pkr.hcl"]["packer"][0]["required_plugins"][0]
    need("qemu" in plugins, "plugins.pkr.hcl must require the qemu plugin")
    need(
        all(k in ("packer", "__comments__") for k in files["plugins.pkr.hcl"]),
        "plugins.pkr.hcl must hold only the packer block (Packer 1.6 skips that file)",
    )

    variables = _labelled(files["variables.pkr.hcl"]["variable"])
    checksum = _unquote(variables.get("base_image_checksum", {}).get("default", ""))
    need(
        checksum.startswith(("file:", "sha256:")),
        f"base_image_checksum default must be file: or sha256:, not {checksum!r}",
    )
    for validated in ("base_image_checksum", "accelerator", "mlflow_port"):
        need("validation" in variables.get(validated, {}), f"{validated} needs validation")

    sources = _labelled(files["source.pkr.hcl"]["source"])
    qemu = _labelled([sources.get("qemu", {})]).get("mlflow", {})
    need(bool(qemu), 'source.pkr.hcl must define source "qemu" "mlflow"')
    need(qemu.get("disk_image") is True, "the qemu source must start from a disk image")
    need(_unquote(qemu.get("format")) == "qcow2", "the image format must be qcow2")
    need(
        qemu.get("iso_checksum") == "${var.base_image_checksum}",
        "iso_checksum must come from var.base_image_checksum",
    )
    need(
        _unquote(qemu.get("http_bind_address")) == "127.0.0.1"
        and _unquote(qemu.get("vnc_bind_address")) == "127.0.0.1",
        "Packer's HTTP and VNC servers must listen on 127.0.0.1 only",
    )
    netdev = [arg for arg in qemu.get("qemuargs", []) if _unquote(arg[0]) == "-netdev"]
    need(
        len(netdev) == 1 and "hostfwd=tcp:127.0.0.1:" in netdev[0][1],
        "the SSH port forward must be bound to 127.0.0.1",
    )

    build = files["build.pkr.hcl"]["build"][0]
    post = {k for block in build.get("post-processor", []) for k in map(_unquote, block)}
    need({"manifest", "checksum"} <= post, "build needs manifest and checksum post-processors")
    return problems
