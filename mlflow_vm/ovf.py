"""OVF 1.0 descriptors and OVA packages that VirtualBox imports.

The descriptor follows DMTF OVF 1.0 as VirtualBox writes it itself
(VirtualSystemType ``virtualbox-2.2``): one virtual system with its CPUs,
memory, a SATA disk, an empty CD drive for a NoCloud seed, and one NAT
network adapter. NAT port forwarding has no standard OVF element; VirtualBox
keeps it only in its complete ``vbox:Machine`` settings section, so the
forwarding rules are applied after import with ``VBoxManage modifyvm``
(printed by ``make vbox`` and shown in the README).

An OVA is a plain tar archive whose first member is the descriptor, then the
files it references, then an optional ``.mf`` manifest of their SHA-256.
"""

from __future__ import annotations

import hashlib
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

OVF = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VBOX = "http://www.virtualbox.org/ovf/machine"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
STREAM_OPTIMIZED = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"

for _prefix, _uri in (("ovf", OVF), ("rasd", RASD), ("vssd", VSSD), ("vbox", VBOX),
                      ("xsi", XSI)):
    ET.register_namespace(_prefix, _uri)

# CIM resource types (DMTF CIM_ResourceAllocationSettingData).
CPU, MEMORY, IDE, ETHERNET, CD_DRIVE, DISK, SATA = 3, 4, 5, 10, 15, 17, 20
# OVF operating system ids (CIM_OperatingSystem) and VirtualBox's OS types.
OS_TYPES = {"debian": (96, "Debian_64"), "ubuntu": (94, "Ubuntu_64")}


@dataclass(frozen=True)
class Appliance:
    """What the descriptor declares about the VM and its one disk."""

    name: str
    disk_file: str
    disk_file_size: int
    disk_capacity: int
    cpus: int
    memory_mib: int
    os_family: str = "debian"


def _q(namespace: str, tag: str) -> str:
    return f"{{{namespace}}}{tag}"


def _item(parent: ET.Element, fields: dict[str, object]) -> None:
    """Add a hardware Item; rasd fields go in the schema's (alphabetical) order."""
    item = ET.SubElement(parent, _q(OVF, "Item"))
    for key in sorted(fields):
        ET.SubElement(item, _q(RASD, key)).text = str(fields[key])


def descriptor(appliance: Appliance) -> bytes:
    """The OVF descriptor of ``appliance``, as UTF-8 XML."""
    envelope = ET.Element(_q(OVF, "Envelope"), {
        _q(OVF, "version"): "1.0",
        "{http://www.w3.org/XML/1998/namespace}lang": "en-US",
    })
    references = ET.SubElement(envelope, _q(OVF, "References"))
    ET.SubElement(references, _q(OVF, "File"), {
        _q(OVF, "id"): "file1",
        _q(OVF, "href"): appliance.disk_file,
        _q(OVF, "size"): str(appliance.disk_file_size),
    })

    disks = ET.SubElement(envelope, _q(OVF, "DiskSection"))
    ET.SubElement(disks, _q(OVF, "Info")).text = "List of the virtual disks used in the package"
    ET.SubElement(disks, _q(OVF, "Disk"), {
        _q(OVF, "capacity"): str(appliance.disk_capacity),
        _q(OVF, "capacityAllocationUnits"): "byte",
        _q(OVF, "diskId"): "vmdisk1",
        _q(OVF, "fileRef"): "file1",
        _q(OVF, "format"): STREAM_OPTIMIZED,
    })

    networks = ET.SubElement(envelope, _q(OVF, "NetworkSection"))
    ET.SubElement(networks, _q(OVF, "Info")).text = "Logical networks used in the package"
    network = ET.SubElement(networks, _q(OVF, "Network"), {_q(OVF, "name"): "NAT"})
    ET.SubElement(network, _q(OVF, "Description")).text = "NAT network of the MLflow server"

    system = ET.SubElement(envelope, _q(OVF, "VirtualSystem"), {_q(OVF, "id"): appliance.name})
    ET.SubElement(system, _q(OVF, "Info")).text = "MLflow tracking server"
    os_id, vbox_os = OS_TYPES.get(appliance.os_family, OS_TYPES["debian"])
    os_section = ET.SubElement(system, _q(OVF, "OperatingSystemSection"),
                               {_q(OVF, "id"): str(os_id)})
    ET.SubElement(os_section, _q(OVF, "Info")).text = (
        "The kind of installed guest operating system")
    ET.SubElement(os_section, _q(OVF, "Description")).text = vbox_os
    ET.SubElement(os_section, _q(VBOX, "OSType"), {_q(OVF, "required"): "false"}).text = vbox_os

    hardware = ET.SubElement(system, _q(OVF, "VirtualHardwareSection"))
    ET.SubElement(hardware, _q(OVF, "Info")).text = (
        "Virtual hardware requirements for a virtual machine")
    settings = ET.SubElement(hardware, _q(OVF, "System"))
    for key, value in (("ElementName", "Virtual Hardware Family"), ("InstanceID", "0"),
                       ("VirtualSystemIdentifier", appliance.name),
                       ("VirtualSystemType", "virtualbox-2.2")):
        ET.SubElement(settings, _q(VSSD, key)).text = value

    cpus = f"{appliance.cpus} virtual CPU" + ("s" if appliance.cpus > 1 else "")
    _item(hardware, {"Caption": cpus, "Description": "Number of virtual CPUs",
                     "ElementName": cpus, "InstanceID": 1, "ResourceType": CPU,
                     "VirtualQuantity": appliance.cpus})
    memory = f"{appliance.memory_mib} MB of memory"
    _item(hardware, {"AllocationUnits": "MegaBytes", "Caption": memory,
                     "Description": "Memory Size", "ElementName": memory, "InstanceID": 2,
                     "ResourceType": MEMORY, "VirtualQuantity": appliance.memory_mib})
    _item(hardware, {"Address": 0, "Caption": "ideController0", "Description": "IDE Controller",
                     "ElementName": "ideController0", "InstanceID": 3,
                     "ResourceSubType": "PIIX4", "ResourceType": IDE})
    _item(hardware, {"Address": 0, "Caption": "sataController0", "Description": "SATA Controller",
                     "ElementName": "sataController0", "InstanceID": 4,
                     "ResourceSubType": "AHCI", "ResourceType": SATA})
    _item(hardware, {"AutomaticAllocation": "true", "Caption": "Ethernet adapter on 'NAT'",
                     "Connection": "NAT", "ElementName": "Ethernet adapter on 'NAT'",
                     "InstanceID": 5, "ResourceSubType": "E1000", "ResourceType": ETHERNET})
    _item(hardware, {"AddressOnParent": 0, "Caption": "disk1", "Description": "Disk Image",
                     "ElementName": "disk1", "HostResource": "/disk/vmdisk1", "InstanceID": 6,
                     "Parent": 4, "ResourceType": DISK})
    # An empty drive: attach the seed ISO of `make seed` to it to log in.
    _item(hardware, {"AddressOnParent": 0, "AutomaticAllocation": "false", "Caption": "cdrom1",
                     "Description": "CD-ROM Drive", "ElementName": "cdrom1", "InstanceID": 7,
                     "Parent": 3, "ResourceType": CD_DRIVE})

    ET.indent(envelope)
    return ET.tostring(envelope, encoding="utf-8", xml_declaration=True) + b"\n"


def manifest(files: dict[str, bytes | Path]) -> bytes:
    """An OVF manifest: one ``SHA256(name)= hex`` line per file."""
    lines = []
    for name, content in files.items():
        digest = hashlib.sha256()
        if isinstance(content, Path):
            with content.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        else:
            digest.update(content)
        lines.append(f"SHA256({name})= {digest.hexdigest()}\n")
    return "".join(lines).encode()


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def write_ova(target: Path, appliance: Appliance, disk: Path) -> None:
    """Write the OVA at ``target``: descriptor first, then the disk, then the manifest."""
    ovf_name = f"{appliance.name}.ovf"
    ovf = descriptor(appliance)
    mf = manifest({ovf_name: ovf, appliance.disk_file: disk})
    # USTAR: the format the OVF specification names for OVA packages.
    with tarfile.open(target, "w", format=tarfile.USTAR_FORMAT) as archive:
        _add_bytes(archive, ovf_name, ovf)
        info = archive.gettarinfo(str(disk), arcname=appliance.disk_file)
        info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
        with disk.open("rb") as handle:
            archive.addfile(info, handle)
        _add_bytes(archive, f"{appliance.name}.mf", mf)
