"""VirtualBox: a VDI disk and an OVA appliance made from a built qcow2."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import export, ovf
from .progress import format_seconds

LOG = logging.getLogger(__name__)

SSH_HOST_PORT = 2222


@dataclass(frozen=True)
class Outputs:
    """What ``make vbox`` wrote, and what it measured."""

    vdi: Path
    ova: Path
    vdi_seconds: float
    vmdk_seconds: float


def _os_family(profile: str) -> str:
    return "ubuntu" if profile.startswith("ubuntu") else "debian"


def export_image(image: export.Image, cpus: int, memory_mib: int,
                 folder: Path | None = None) -> Outputs:
    """Write ``<name>.vdi`` and ``<name>.ova`` in ``folder``, by default beside the qcow2."""
    export.check_resources(cpus, memory_mib)
    folder = folder or image.path.parent
    export.make_folder(folder, "OUTPUT_DIR")
    vdi = folder / f"{image.name}.vdi"
    ova = folder / f"{image.name}.ova"
    LOG.info("Converting %s (%s virtual, %s file)", image.path.name,
             export.human_size(image.virtual_size),
             export.human_size(image.path.stat().st_size))
    with export.atomic_path(vdi, "OUTPUT_DIR") as tmp:
        vdi_seconds = export.convert(image.path, tmp, "vdi")
    # The VMDK only lives inside the OVA; its scratch copy sits beside the
    # outputs (same file system) and goes whatever happens.
    try:
        scratch = Path(tempfile.mkdtemp(prefix=f".{image.name}.vmdk-", dir=folder))
    except OSError as exc:
        raise export.write_error(folder, exc, "OUTPUT_DIR") from None
    try:
        vmdk = scratch / f"{image.name}-disk1.vmdk"
        vmdk_seconds = export.convert(image.path, vmdk, "vmdk", ("subformat=streamOptimized",))
        appliance = ovf.Appliance(
            name=image.name, disk_file=vmdk.name, disk_file_size=vmdk.stat().st_size,
            disk_capacity=image.virtual_size, cpus=cpus, memory_mib=memory_mib,
            os_family=_os_family(image.profile),
        )
        with export.atomic_path(ova, "OUTPUT_DIR") as tmp:
            ovf.write_ova(tmp, appliance, vmdk)
    except KeyboardInterrupt:
        LOG.warning("%s is complete; the OVA was not written", vdi)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    LOG.info("Wrote %s (%s, converted in %s)", vdi, export.human_size(vdi.stat().st_size),
             format_seconds(vdi_seconds))
    LOG.info("Wrote %s (%s, VMDK converted in %s)", ova, export.human_size(ova.stat().st_size),
             format_seconds(vmdk_seconds))
    return Outputs(vdi=vdi, ova=ova, vdi_seconds=vdi_seconds, vmdk_seconds=vmdk_seconds)


def import_commands(image: export.Image, ova: Path, name: str = "mlflow") -> list[str]:
    """The VBoxManage lines that import the OVA and forward SSH and MLflow to 127.0.0.1."""
    port = image.guest_port
    return [
        f"VBoxManage import {ova} --vsys 0 --vmname {name}",
        f"VBoxManage modifyvm {name} --natpf1 ssh,tcp,127.0.0.1,{SSH_HOST_PORT},,22 "
        f"--natpf1 mlflow,tcp,127.0.0.1,{port},,{port} "
        "--uart1 0x3F8 4 --uartmode1 disconnected",
        f"VBoxManage startvm {name} --type headless",
    ]
