"""libvirt/KVM: a domain definition for a built image, and the virt-install line."""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Domain:
    """The VM libvirt defines: its disk, optional seed, resources and network."""

    name: str
    disk: Path
    cpus: int
    memory_mib: int
    seed: Path | None = None
    network: str = "default"
    kvm: bool = True


def domain_xml(domain: Domain) -> bytes:
    """The libvirt domain XML of ``domain``, as UTF-8."""
    # Without KVM, QEMU emulates the CPU (type qemu), several times slower.
    root = ET.Element("domain", {"type": "kvm" if domain.kvm else "qemu"})
    ET.SubElement(root, "name").text = domain.name
    ET.SubElement(root, "description").text = "MLflow tracking server"
    ET.SubElement(root, "memory", {"unit": "MiB"}).text = str(domain.memory_mib)
    ET.SubElement(root, "vcpu").text = str(domain.cpus)
    os_element = ET.SubElement(root, "os")
    ET.SubElement(os_element, "type", {"arch": "x86_64", "machine": "q35"}).text = "hvm"
    ET.SubElement(os_element, "boot", {"dev": "hd"})
    features = ET.SubElement(root, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    if domain.kvm:
        ET.SubElement(root, "cpu", {"mode": "host-passthrough"})
    ET.SubElement(root, "on_poweroff").text = "destroy"
    ET.SubElement(root, "on_reboot").text = "restart"
    ET.SubElement(root, "on_crash").text = "destroy"

    devices = ET.SubElement(root, "devices")
    disk = ET.SubElement(devices, "disk", {"type": "file", "device": "disk"})
    ET.SubElement(disk, "driver", {"name": "qemu", "type": "qcow2", "discard": "unmap"})
    ET.SubElement(disk, "source", {"file": str(domain.disk)})
    ET.SubElement(disk, "target", {"dev": "vda", "bus": "virtio"})
    if domain.seed is not None:
        cdrom = ET.SubElement(devices, "disk", {"type": "file", "device": "cdrom"})
        ET.SubElement(cdrom, "driver", {"name": "qemu", "type": "raw"})
        ET.SubElement(cdrom, "source", {"file": str(domain.seed)})
        ET.SubElement(cdrom, "target", {"dev": "sda", "bus": "sata"})
        ET.SubElement(cdrom, "readonly")
    interface = ET.SubElement(devices, "interface", {"type": "network"})
    ET.SubElement(interface, "source", {"network": domain.network})
    ET.SubElement(interface, "model", {"type": "virtio"})
    serial = ET.SubElement(devices, "serial", {"type": "pty"})
    ET.SubElement(serial, "target", {"port": "0"})
    console = ET.SubElement(devices, "console", {"type": "pty"})
    ET.SubElement(console, "target", {"type": "serial", "port": "0"})
    # First boot generates SSH host keys: give the guest the host's entropy.
    rng = ET.SubElement(devices, "rng", {"model": "virtio"})
    ET.SubElement(rng, "backend", {"model": "random"}).text = "/dev/urandom"

    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def virt_install_command(domain: Domain) -> str:
    """The ``virt-install --import`` line that creates the same VM."""
    command = [
        "virt-install", "--import", "--name", domain.name,
        "--virt-type", "kvm" if domain.kvm else "qemu",
        "--memory", str(domain.memory_mib), "--vcpus", str(domain.cpus),
        "--disk", f"path={domain.disk},format=qcow2,bus=virtio",
    ]
    if domain.seed is not None:
        command += ["--disk", f"path={domain.seed},device=cdrom"]
    command += [
        "--network", f"network={domain.network},model=virtio",
        "--osinfo", "detect=on,require=off",
        "--graphics", "none", "--console", "pty,target_type=serial",
        "--noautoconsole",
    ]
    return shlex.join(command)
