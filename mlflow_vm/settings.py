"""Server settings given at first boot: a file of KEY=VALUE lines.

The image's own ``mlflowctl`` checks them on the host, so a bad value stops
here with the message the VM would give. cloud-init writes them to a
root-only file in the VM, and ``mlflow-settings.service`` merges them into
``/etc/mlflow/mlflow.env`` before the server's first start.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from .errors import UserError
from .paths import PACKER
from .profiles import Profile

# Where cloud-init leaves them for mlflow-settings.service.
PENDING = "/etc/mlflow/mlflow.env.pending"


def mlflowctl(profile: Profile) -> ModuleType:
    """The rendered ``mlflowctl`` of ``profile``, loaded as a module."""
    path = PACKER / profile.name / "files" / "mlflowctl"
    loader = importlib.machinery.SourceFileLoader(f"mlflowctl_{profile.name}", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    # dataclasses looks the module up by name while it is created.
    sys.modules[loader.name] = module
    loader.exec_module(module)
    return module


def read(path: Path, profile: Profile) -> str:
    """The settings in ``path`` as KEY=VALUE lines, once ``profile``'s mlflowctl
    accepts them on top of the image's own settings."""
    if path.is_dir():
        raise UserError(f"SETTINGS={path} is a directory: name a file of KEY=VALUE lines")
    ctl = mlflowctl(profile)
    shipped = (PACKER / profile.name / "files" / "mlflow.env").read_text()
    try:
        changes = ctl.read_settings_file(path)
        if not changes:
            raise ctl.Refused(f"{path} sets nothing: write KEY=VALUE lines")
        ctl.checked_changes(shipped, changes)
    except ctl.Refused as exc:
        raise UserError(f"SETTINGS={path}: {exc}") from None
    return "".join(f"{key}={value}\n" for key, value in changes.items())


def write_files_entry(text: str) -> dict[str, str]:
    """The cloud-config ``write_files`` entry that leaves ``text`` for the VM."""
    return {"path": PENDING, "owner": "root:root", "permissions": "0600", "content": text}
