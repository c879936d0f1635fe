"""The structure checks catch the template mistakes that matter."""

import shutil

import pytest

from mlflow_vm import hcl_check


@pytest.fixture
def packer_copy(tmp_path, monkeypatch):
    """A scratch copy of packer/debian-12 that the checks read instead."""
    shutil.copytree(hcl_check.PACKER / "debian-12", tmp_path / "debian-12")
    monkeypatch.setattr(hcl_check, "PACKER", tmp_path)
    return tmp_path / "debian-12"


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_rendered_templates_pass(packer_copy):
    assert hcl_check.check_profile("debian-12") == []


def test_checksum_none_is_caught(packer_copy):
    edit(packer_copy / "variables.pkr.hcl",
         'default     = "file:output/base/debian-12/SHA256SUMS"', 'default     = "none"')
    assert any("base_image_checksum" in p for p in hcl_check.check_profile("debian-12"))


def test_source_that_is_not_a_disk_image_is_caught(packer_copy):
    edit(packer_copy / "source.pkr.hcl", "disk_image         = true", "disk_image         = false")
    assert any("disk image" in p for p in hcl_check.check_profile("debian-12"))


def test_ssh_forward_on_every_interface_is_caught(packer_copy):
    edit(packer_copy / "source.pkr.hcl", "hostfwd=tcp:127.0.0.1:", "hostfwd=tcp::")
    assert any("127.0.0.1" in p for p in hcl_check.check_profile("debian-12"))


def test_missing_checksum_post_processor_is_caught(packer_copy):
    build = packer_copy / "build.pkr.hcl"
    text = build.read_text()
    start = text.index('  post-processor "checksum"')
    build.write_text(text[:start] + "}\n")
    assert any("post-processors" in p for p in hcl_check.check_profile("debian-12"))
