"""Profiles carry the right Python and MLflow pins, and bad names fail clearly."""

import pytest

from mlflow_vm import profiles
from mlflow_vm.errors import UserError


@pytest.mark.parametrize(
    ("name", "python", "mlflow", "ppa"),
    [
        ("ubuntu-22.04", "3.9", "3.1.4", "ppa:deadsnakes/ppa"),
        ("ubuntu-24.04", "3.12", "3.17.2", ""),
        ("debian-12", "3.11", "3.17.2", ""),
    ],
)
def test_profile_pins_its_python_and_mlflow(name, python, mlflow, ppa):
    profile = profiles.get(name)
    assert profile.python_version == python
    assert profile.mlflow_version == mlflow
    assert profile.apt_repository == ppa
    assert profile.requirements_file.is_file()


def test_every_base_image_has_a_real_checksum_source():
    for profile in profiles.load_all().values():
        assert profile.base_image.checksum.startswith(("file:", "sha256:"))


def test_ubuntu_base_images_come_from_the_publisher_with_its_sha256sums():
    for name in ("ubuntu-22.04", "ubuntu-24.04"):
        base = profiles.get(name).base_image
        assert base.url.startswith("https://cloud-images.ubuntu.com/")
        assert base.checksum.startswith("file:https://cloud-images.ubuntu.com/")
        assert base.checksum.endswith("/SHA256SUMS")


def test_unknown_version_lists_the_supported_ones():
    with pytest.raises(UserError) as excinfo:
        profiles.get("ubuntu-23.10")
    message = str(excinfo.value)
    assert "ubuntu-23.10" in message
    assert "22.04" in message and "24.04" in message and "debian-12" in message


def test_profile_without_checksum_is_refused(tmp_path, monkeypatch):
    (tmp_path / "bad.toml").write_text(
        'name = "bad"\ndescription = "x"\nssh_username = "u"\n'
        '[base_image]\nurl = "https://example.invalid/x.img"\nchecksum = "none"\n'
        '[python]\nversion = "3.11"\n[mlflow]\nversion = "3.17.2"\n'
    )
    monkeypatch.setattr(profiles, "PROFILES", tmp_path)
    with pytest.raises(UserError, match="checksum"):
        profiles.load_all()


def test_mlflow_server_engine_follows_the_release():
    assert profiles.get("ubuntu-22.04").mlflow_server_engine == "gunicorn"
    assert profiles.get("ubuntu-24.04").mlflow_server_engine == "uvicorn"
