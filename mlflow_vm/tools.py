"""The host programs each action needs, and the Debian packages that bring them."""

from __future__ import annotations

import shutil

from .errors import UserError

PACKAGES = {
    "packer": "packer",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "ssh-keygen": "openssh-client",
    "xorriso": "xorriso",
    "mmdebstrap": "mmdebstrap",
    "extlinux": "extlinux",
    "sfdisk": "fdisk",
    "mkfs.ext4": "e2fsprogs",
    "cloud-init": "cloud-init",
    "shellcheck": "shellcheck",
    "systemd-analyze": "systemd",
    "virt-xml-validate": "libvirt-clients",
    "xmllint": "libxml2-utils",
    "openssl": "openssl",
}

BUILD = ("packer", "qemu-system-x86_64", "qemu-img", "ssh-keygen", "xorriso")
BASE = ("mmdebstrap", "extlinux", "sfdisk", "mkfs.ext4", "qemu-img")
BOOT = ("qemu-system-x86_64", "qemu-img", "ssh-keygen", "xorriso")
LINT = ("packer", "cloud-init", "shellcheck", "systemd-analyze")


def require(commands: tuple[str, ...]) -> None:
    """Fail with one line naming what is missing and how to install it."""
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        packages = sorted({PACKAGES.get(c, c) for c in missing})
        raise UserError(
            f"missing {', '.join(missing)}: run `make deps` or "
            f"`sudo apt-get install {' '.join(packages)}`"
        )
