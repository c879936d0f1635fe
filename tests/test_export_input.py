"""Bad input to libvirt, vbox, seed and user-data: one line, exit 2, nothing written."""

import subprocess

import pytest

from mlflow_vm import cli, seed


def run_cli(capsys, *argv):
    """Run the CLI; return its exit status and the lines it wrote to stderr."""
    status = cli.main([str(a) for a in argv])
    return status, capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def public_key(tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key.with_suffix(".pub")


@pytest.mark.parametrize("command", ["libvirt", "vbox"])
def test_missing_image_says_how_to_build_it(capsys, tmp_path, command):
    status, err = run_cli(capsys, command, "--image", tmp_path / "none.qcow2")
    assert status == 2
    assert len(err) == 1
    assert "does not exist" in err[0] and "make image" in err[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["libvirt", "vbox"])
def test_image_in_another_format_is_refused(capsys, tmp_path, command):
    image = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(image), "1M"], check=True)
    status, err = run_cli(capsys, command, "--image", image)
    assert status == 2
    assert err == [f"error: {image} is a raw file, not a qcow2 image: give the qcow2 that "
                   "`make image` built (IMAGE=output/<profile>/mlflow-<profile>.qcow2)"]
    assert list(tmp_path.iterdir()) == [image]


@pytest.mark.parametrize("cpus,memory,word", [("0", "4096", "CPUS"), ("two", "4096", "CPUS"),
                                              ("2", "512", "MEMORY")])
def test_bad_resources_are_refused(capsys, tmp_path, cpus, memory, word):
    image = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "1M"], check=True)
    (tmp_path / "manifest.json").write_text("{}")
    status, err = run_cli(capsys, "vbox", "--image", image, "--cpus", cpus, "--memory", memory)
    assert status == 2
    assert len(err) == 1 and err[0].startswith(f"error: {word}=")
    assert sorted(tmp_path.iterdir()) == [image, tmp_path / "manifest.json"]


def test_private_key_is_refused_and_named(capsys, tmp_path, public_key):
    private = public_key.with_suffix("")
    target = tmp_path / "seed.iso"
    status, err = run_cli(capsys, "seed", "--ssh-key", private, "-o", target)
    assert status == 2
    assert err == [f"error: {private} is a private key: give its public half "
                   f"(SSH_KEY={private}.pub), never the key itself"]
    assert not target.exists()


@pytest.mark.parametrize("content", [b"hello world\n", b"", b"\x00\xff\xfe binary",
                                     b"ssh-ed25519 not-base64!!\n"])
def test_garbage_key_file_is_refused(capsys, tmp_path, content):
    key = tmp_path / "key.pub"
    key.write_bytes(content)
    target = tmp_path / "seed.iso"
    status, err = run_cli(capsys, "seed", "--ssh-key", key, "-o", target)
    assert status == 2
    assert len(err) == 1 and "OpenSSH public key" in err[0]
    assert not target.exists()


def test_missing_key_file_says_how_to_make_one(capsys, tmp_path):
    status, err = run_cli(capsys, "seed", "--ssh-key", tmp_path / "nope.pub",
                          "-o", tmp_path / "seed.iso")
    assert status == 2
    assert len(err) == 1 and "ssh-keygen -t ed25519" in err[0]


@pytest.mark.parametrize("user", ["root", "Bad User", "mlflow", "x" * 40])
def test_unusable_login_name_is_refused(capsys, tmp_path, public_key, user):
    status, err = run_cli(capsys, "seed", "--ssh-key", public_key, "--user", user,
                          "-o", tmp_path / "seed.iso")
    assert status == 2
    assert len(err) == 1 and f"SEED_USER={user}" in err[0]


@pytest.mark.parametrize("port", ["0", "70000", "http", "22"])
def test_user_data_with_a_bad_port_is_refused(capsys, tmp_path, port):
    target = tmp_path / "user-data"
    status, err = run_cli(capsys, "user-data", "--profile", "debian-12", "--port", port,
                          "-o", target)
    assert status == 2
    assert len(err) == 1 and f"PORT={port}" in err[0]
    assert not target.exists()


@pytest.mark.parametrize("option,value", [
    ("--allowed-hosts", "a b"), ("--allowed-hosts", ""), ("--allowed-hosts", "x;rm -rf /"),
    ("--pip-package", "--index-url=http://evil"), ("--pip-package", "boto3 requests"),
    ("--pip-package", "'boto3'"),
])
def test_user_data_with_bad_settings_is_refused(capsys, tmp_path, option, value):
    target = tmp_path / "user-data"
    status, err = run_cli(capsys, "user-data", "--profile", "debian-12", f"{option}={value}",
                          "-o", target)
    assert status == 2
    assert len(err) == 1
    assert not target.exists()


def test_password_is_hashed_with_sha512_crypt():
    hashed = seed.hash_password("s3cret pass")
    assert hashed.startswith("$6$") and "s3cret" not in hashed
    salt = hashed.split("$")[2]
    again = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
                           input="s3cret pass\n", capture_output=True, text=True, check=True)
    assert again.stdout.strip() == hashed


def test_default_key_is_the_first_that_exists(tmp_path):
    (tmp_path / ".ssh").mkdir()
    assert seed.default_ssh_key(tmp_path).name == "id_ed25519.pub"
    (tmp_path / ".ssh" / "id_rsa.pub").write_text("x")
    assert seed.default_ssh_key(tmp_path).name == "id_rsa.pub"
    (tmp_path / ".ssh" / "id_ecdsa.pub").write_text("x")
    assert seed.default_ssh_key(tmp_path).name == "id_ecdsa.pub"
