"""Exports to libvirt and VirtualBox, on a tiny qcow2 made for each test."""

import hashlib
import json
import shutil
import subprocess
import tarfile
import xml.etree.ElementTree as ET

import pytest

from mlflow_vm import cli, export, libvirt, ovf, vbox

RASD = f"{{{ovf.RASD}}}"
OVF = f"{{{ovf.OVF}}}"


@pytest.fixture
def image(tmp_path):
    """A 64 MiB qcow2 with a little data and a build manifest beside it."""
    folder = tmp_path / "debian-12"
    folder.mkdir()
    raw = folder / "disk.raw"
    raw.write_bytes(b"\x55" * 1024 * 1024)
    subprocess.run(["truncate", "-s", "64M", str(raw)], check=True)
    path = folder / "mlflow-debian-12.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(raw), str(path)], check=True)
    raw.unlink()
    (folder / "manifest.json").write_text(json.dumps({"profile": "debian-12", "mlflow_port": 8080}))
    return path


def validate_domain(path):
    if shutil.which("virt-xml-validate") is None or shutil.which("xmllint") is None:
        pytest.skip("virt-xml-validate is missing: `sudo apt-get install libvirt-clients "
                    "libxml2-utils` (make deps installs them)")
    result = subprocess.run(["virt-xml-validate", str(path), "domain"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("with_seed", [False, True])
def test_libvirt_domain_is_valid_and_uses_virtio_and_a_serial_console(
    tmp_path, image, with_seed, capsys
):
    seed_iso = tmp_path / "seed.iso"
    seed_iso.write_bytes(b"\0" * 0x8001 + b"CD001" + b"\0" * 2042)
    argv = ["libvirt", "--image", str(image), "--cpus", "3", "--memory", "2048"]
    assert cli.main(argv + (["--seed", str(seed_iso)] if with_seed else [])) == 0
    xml_path = image.with_suffix(".xml")
    validate_domain(xml_path)
    root = ET.parse(xml_path).getroot()
    assert root.findtext("vcpu") == "3"
    assert root.find("memory").text == "2048" and root.find("memory").get("unit") == "MiB"
    disks = root.findall("devices/disk")
    assert disks[0].find("target").get("bus") == "virtio"
    assert disks[0].find("source").get("file") == str(image.resolve())
    assert root.find("devices/interface/model").get("type") == "virtio"
    assert root.find("devices/console").get("type") == "pty"
    cdroms = [d for d in disks if d.get("device") == "cdrom"]
    assert [c.find("source").get("file") for c in cdroms] == (
        [str(seed_iso.resolve())] if with_seed else [])


def test_virt_install_line_imports_the_same_disk_and_seed(tmp_path):
    domain = libvirt.Domain(name="m", disk=tmp_path / "a b.qcow2", cpus=2, memory_mib=4096,
                            seed=tmp_path / "seed.iso")
    line = libvirt.virt_install_command(domain)
    assert line.startswith("virt-install --import --name m --virt-type kvm --memory 4096 "
                           "--vcpus 2 ")
    assert f"'path={tmp_path}/a b.qcow2,format=qcow2,bus=virtio'" in line
    assert f"path={tmp_path}/seed.iso,device=cdrom" in line


def test_vbox_writes_a_vdi_and_an_ova_whose_descriptor_matches_its_disk(image):
    outputs = vbox.export_image(export.inspect(image), cpus=2, memory_mib=4096)
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(outputs.vdi)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "vdi" and info["virtual-size"] == 64 * 1024 * 1024

    with tarfile.open(outputs.ova) as archive:
        members = archive.getmembers()
        names = [m.name for m in members]
        assert names == ["mlflow-debian-12.ovf", "mlflow-debian-12-disk1.vmdk",
                         "mlflow-debian-12.mf"]
        descriptor = archive.extractfile(members[0]).read()
        disk = archive.extractfile(members[1]).read()
        manifest = archive.extractfile(members[2]).read().decode()
    root = ET.fromstring(descriptor)
    file_ref = root.find(f"{OVF}References/{OVF}File")
    assert file_ref.get(f"{OVF}href") == names[1]
    assert int(file_ref.get(f"{OVF}size")) == len(disk) == members[1].size
    disk_def = root.find(f"{OVF}DiskSection/{OVF}Disk")
    assert int(disk_def.get(f"{OVF}capacity")) == 64 * 1024 * 1024
    assert disk_def.get(f"{OVF}format").endswith("#streamOptimized")
    items = {int(i.findtext(f"{RASD}ResourceType")): i
             for i in root.iter(f"{OVF}Item")}
    assert items[ovf.CPU].findtext(f"{RASD}VirtualQuantity") == "2"
    assert items[ovf.MEMORY].findtext(f"{RASD}VirtualQuantity") == "4096"
    assert items[ovf.ETHERNET].findtext(f"{RASD}Connection") == "NAT"
    assert items[ovf.DISK].findtext(f"{RASD}HostResource") == "/disk/vmdisk1"
    assert f"SHA256({names[1]})= {hashlib.sha256(disk).hexdigest()}" in manifest
    assert f"SHA256({names[0]})= {hashlib.sha256(descriptor).hexdigest()}" in manifest

    vmdk = image.parent / "check.vmdk"
    vmdk.write_bytes(disk)
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(vmdk)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "vmdk"
    assert info["format-specific"]["data"]["create-type"] == "streamOptimized"
    leftovers = [p.name for p in image.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_vbox_commands_forward_ssh_and_the_manifest_port_to_loopback(image):
    lines = vbox.import_commands(export.inspect(image), image.with_suffix(".ova"))
    forwarding = lines[1]
    assert "--natpf1 ssh,tcp,127.0.0.1,2222,,22" in forwarding
    assert "--natpf1 mlflow,tcp,127.0.0.1,8080,,8080" in forwarding
    assert "--uart1 0x3F8 4" in forwarding


def test_failed_conversion_leaves_no_partial_file(image, monkeypatch):
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "convert", fail)
    with pytest.raises(KeyboardInterrupt):
        vbox.export_image(export.inspect(image), cpus=2, memory_mib=4096)
    assert sorted(p.name for p in image.parent.iterdir()) == [
        "manifest.json", "mlflow-debian-12.qcow2"]


def test_libvirt_domain_without_kvm_emulates_the_cpu(tmp_path, image, monkeypatch):
    monkeypatch.setenv("ACCEL", "tcg")
    assert cli.main(["libvirt", "--image", str(image), "-o", str(tmp_path / "d.xml")]) == 0
    validate_domain(tmp_path / "d.xml")
    root = ET.parse(tmp_path / "d.xml").getroot()
    assert root.get("type") == "qemu" and root.find("cpu") is None
