"""Seeds for test boots keep the user-data and add only what the test needs."""

import subprocess

import yaml

from mlflow_vm import render, seed


def standalone_user_data():
    return (render.CLOUD_INIT / "debian-12" / "user-data").read_text()


def test_login_is_added_without_touching_the_install():
    original = yaml.safe_load(standalone_user_data())
    changed = yaml.safe_load(seed.with_login(standalone_user_data(), "verify", "ssh-ed25519 K"))
    assert changed["write_files"] == original["write_files"]
    assert changed["runcmd"] == original["runcmd"]
    (login,) = changed["users"]
    assert login["name"] == "verify"
    assert login["ssh_authorized_keys"] == ["ssh-ed25519 K"]
    assert login["lock_passwd"] is True


def test_wheelhouse_points_pip_at_the_host_without_an_index():
    changed = yaml.safe_load(
        seed.with_wheelhouse(standalone_user_data(), "http://10.0.2.2:8000/"))
    pip_conf = changed["write_files"][-1]
    assert pip_conf["path"] == "/etc/pip.conf"
    assert "no-index = true" in pip_conf["content"]
    assert "find-links = http://10.0.2.2:8000/" in pip_conf["content"]
    assert "trusted-host = 10.0.2.2" in pip_conf["content"]


def test_seed_iso_is_labelled_cidata_and_holds_both_files(tmp_path):
    iso = seed.write_iso(tmp_path / "seed.iso", "#cloud-config\n", seed.meta_data("i-1", "h"))
    listing = subprocess.run(
        ["xorriso", "-indev", str(iso), "-pvd_info", "-ls", "/"],
        capture_output=True, text=True, check=True,
    )
    output = listing.stdout + listing.stderr
    assert "cidata" in output
    assert "user-data" in output and "meta-data" in output
