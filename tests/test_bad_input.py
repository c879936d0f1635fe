"""Bad input gets one clear line, exit status 2, and leaves nothing behind."""

import hashlib

import pytest

from mlflow_vm import accel, build, cli, paths, profiles
from mlflow_vm.errors import UserError


def run_cli(capsys, *argv):
    """Run the CLI; return its exit status and the lines it wrote to stderr."""
    status = cli.main(list(argv))
    return status, capsys.readouterr().err.strip().splitlines()


@pytest.fixture(autouse=True)
def no_build_leftovers():
    """Every test here must leave output/ as it found it."""
    before = set(paths.OUTPUT.glob("*")) if paths.OUTPUT.exists() else set()
    yield
    after = set(paths.OUTPUT.glob("*")) if paths.OUTPUT.exists() else set()
    assert after == before


def test_unknown_ubuntu_version_lists_the_supported_ones(capsys):
    status, err = run_cli(capsys, "build", "--profile", "ubuntu-23.10")
    assert status == 2
    assert len(err) == 1
    assert "UBUNTU=22.04 or 24.04" in err[0]


@pytest.mark.parametrize("port", ["99999", "0", "http", "-5", " 80", "5_000", "٥٠٠٠"])
def test_port_outside_the_tcp_range_is_refused(capsys, port):
    status, err = run_cli(capsys, "build", "--profile", "debian-12", "--port", port)
    assert status == 2
    assert err == [f"error: PORT={port} is not a TCP port; use a number from 1 to 65535"]


def test_missing_base_image_says_so(capsys, tmp_path):
    missing = tmp_path / "nothing.qcow2"
    status, err = run_cli(
        capsys, "build", "--profile", "ubuntu-24.04", "--base-image", str(missing)
    )
    assert status == 2
    assert len(err) == 1
    assert str(missing) in err[0] and "does not exist" in err[0]


def test_base_image_without_checksum_file_is_refused(capsys, tmp_path):
    image = tmp_path / "base.qcow2"
    image.write_bytes(b"not really an image")
    status, err = run_cli(capsys, "build", "--profile", "ubuntu-24.04", "--base-image", str(image))
    assert status == 2
    assert "SHA256SUMS" in err[-1]


def test_mismatching_base_image_checksum_is_refused(capsys, tmp_path):
    image = tmp_path / "base.qcow2"
    image.write_bytes(b"not really an image")
    wrong = hashlib.sha256(b"something else").hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{wrong}  base.qcow2\n")
    status, err = run_cli(capsys, "build", "--profile", "ubuntu-24.04", "--base-image", str(image))
    assert status == 2
    assert f"expected {wrong}" in err[-1]


def test_missing_tool_names_the_package_to_install(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    status, err = run_cli(capsys, "build", "--profile", "debian-12")
    assert status == 2
    assert len(err) == 1
    assert "packer" in err[0] and "apt-get install" in err[0]


def test_unknown_accelerator_is_refused(monkeypatch):
    monkeypatch.setenv("ACCEL", "hax")
    accel.detect.cache_clear()
    with pytest.raises(UserError, match="ACCEL=hax"):
        accel.detect()
    accel.detect.cache_clear()


def test_accelerator_can_be_forced(monkeypatch):
    monkeypatch.setenv("ACCEL", "tcg")
    accel.detect.cache_clear()
    assert accel.detect() == "tcg"
    accel.detect.cache_clear()


def test_kvm_needs_vmx_or_svm_in_the_cpu_flags():
    assert accel._cpu_has_virtualization("flags\t: fpu vme vmx sse\n")
    assert accel._cpu_has_virtualization("flags\t: fpu svm\n")
    assert not accel._cpu_has_virtualization("flags\t: fpu hypervisor sse\n")


def test_ssh_port_is_refused_as_the_mlflow_port(capsys):
    status, err = run_cli(capsys, "build", "--profile", "debian-12", "--port", "22")
    assert status == 2
    assert err == ["error: PORT=22 is the VM's SSH port; choose another one"]


@pytest.mark.parametrize("content", [b"hello\n", b"\x30\x82\x03\x0e\xff\xfe binary DER"])
def test_ca_certificates_must_be_pem_and_say_how_to_convert(capsys, tmp_path, content):
    ca = tmp_path / "ca.crt"
    ca.write_bytes(content)
    status, err = run_cli(capsys, "build", "--profile", "debian-12", "--ca-certificates", str(ca))
    assert status == 2
    assert len(err) == 1
    assert "openssl x509 -inform der" in err[0]


@pytest.mark.parametrize("checksum", ["md5:abc", "banana", "sha256:zzz"])
def test_malformed_base_image_checksum_is_refused(capsys, checksum):
    status, err = run_cli(capsys, "build", "--profile", "ubuntu-24.04",
                          "--base-image-checksum", checksum)
    assert status == 2
    assert err == [f"error: BASE_IMAGE_CHECKSUM={checksum} must be sha256:<64 hex digits> "
                   "or file:<path or URL of a SHA256SUMS file>"]


@pytest.mark.parametrize("variable", ["WHEELHOUSE", "KEEP_CA_CERTIFICATES"])
def test_yes_no_settings_refuse_other_words(capsys, monkeypatch, variable):
    monkeypatch.setenv(variable, "maybe")
    status, err = run_cli(capsys, "build", "--profile", "debian-12")
    assert status == 2
    assert err == [f"error: {variable}=maybe is not yes or no"]


def test_base_image_url_takes_the_sha256sums_beside_it():
    options = build.BuildOptions(base_image="https://mirror.example/noble/disk.img")
    url, checksum = build._base_image_inputs(profiles.get("ubuntu-24.04"), options)
    assert url == "https://mirror.example/noble/disk.img"
    assert checksum == "file:https://mirror.example/noble/SHA256SUMS"


def test_hand_edited_rendered_file_is_not_overwritten(capsys, monkeypatch):
    rendered = paths.PACKER / "debian-12" / "files" / "mlflow.env"
    original = rendered.read_text()
    try:
        rendered.write_text(original + "EXTRA=1\n")
        status, err = run_cli(capsys, "build", "--profile", "debian-12")
        assert status == 2
        assert "packer/debian-12/files/mlflow.env was edited by hand" in err[0]
        assert rendered.read_text().endswith("EXTRA=1\n")
    finally:
        rendered.write_text(original)
