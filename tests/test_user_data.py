"""The login seed and cloud user-data pass `cloud-init schema` and carry the settings."""

import subprocess

import pytest
import yaml

from mlflow_vm import cli, profiles, render, seed


def schema(path):
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def public_key(tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me@host",
                    "-f", str(key)], check=True)
    return key.with_suffix(".pub")


@pytest.mark.parametrize("password", ["", "s3cret"])
def test_login_seed_user_data_is_valid_and_creates_a_sudo_user(tmp_path, public_key, password):
    keys = seed.read_public_keys(public_key)
    hashed = seed.hash_password(password) if password else ""
    text = seed.login_user_data("mlflow-admin", keys, hashed)
    path = tmp_path / "user-data"
    path.write_text(text)
    schema(path)
    (user,) = yaml.safe_load(text)["users"]
    assert user["name"] == "mlflow-admin"
    assert user["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert user["ssh_authorized_keys"] == keys
    assert user["lock_passwd"] is (not password)
    assert user.get("hashed_passwd", "") == hashed
    assert password not in text or not password


def test_seed_command_writes_an_iso_with_a_fresh_instance_id(tmp_path, public_key):
    ids = []
    for name in ("a.iso", "b.iso"):
        target = tmp_path / name
        assert cli.main(["seed", "--ssh-key", str(public_key), "-o", str(target)]) == 0
        meta = subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(target),
                               "-extract", "/meta-data", str(tmp_path / f"{name}.meta")],
                              capture_output=True, text=True)
        assert meta.returncode == 0, meta.stderr
        ids.append(yaml.safe_load((tmp_path / f"{name}.meta").read_text())["instance-id"])
    assert ids[0] != ids[1]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_password_file_sets_a_hashed_console_password(tmp_path, public_key):
    secret = tmp_path / "password"
    secret.write_text("correct horse\n")
    target = tmp_path / "seed.iso"
    assert cli.main(["seed", "--ssh-key", str(public_key), "--password-file", str(secret),
                     "-o", str(target)]) == 0
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(target), "-extract",
                    "/user-data", str(tmp_path / "ud")], capture_output=True, check=True)
    text = (tmp_path / "ud").read_text()
    assert "correct horse" not in text
    assert yaml.safe_load(text)["users"][0]["hashed_passwd"].startswith("$6$")


@pytest.mark.parametrize("name", ["ubuntu-22.04", "ubuntu-24.04", "debian-12"])
def test_default_rendering_is_the_committed_user_data(name):
    profile = profiles.get(name)
    committed = (render.CLOUD_INIT / name / "user-data").read_text()
    assert render.custom_user_data(profile, {}, []) == committed


def test_user_data_command_fills_in_the_settings_and_keys(tmp_path, public_key):
    target = tmp_path / "my-user-data"
    status = cli.main([
        "user-data", "--profile", "ubuntu-24.04", "--port", "8080",
        "--allowed-hosts", "mlflow.example.com,10.0.0.5", "--pip-package", "boto3",
        "--pip-package", "psycopg[binary]>=3.1", "--ssh-key", str(public_key),
        "-o", str(target),
    ])
    assert status == 0
    schema(target)
    config = yaml.safe_load(target.read_text())
    assert config["ssh_authorized_keys"] == [public_key.read_text().strip()]
    env = next(f["content"] for f in config["write_files"] if f["path"].endswith("mlflow.env"))
    assert "\nMLFLOW_PORT=8080\n" in env
    assert "\nMLFLOW_SERVER_ALLOWED_HOSTS=mlflow.example.com,10.0.0.5\n" in env
    assert "\nMLFLOW_EXTRA_PIP_PACKAGES=boto3 psycopg[binary]>=3.1\n" in env
    assert "Then open http://VM-ADDRESS:8080/" in target.read_text()


def test_install_script_installs_extra_packages_after_the_locked_ones():
    script = (render.PACKER / "debian-12" / "files" / "install-mlflow.sh").read_text()
    main = script[script.index("\nmain() {"):]
    assert main.index("install_venv") < main.index("install_extra_packages")
    assert '-c "$venv/constraints.txt"' in script
