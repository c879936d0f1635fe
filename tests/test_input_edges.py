"""Edge cases of the export, seed and user-data inputs: one line, exit 2, nothing written."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from mlflow_vm import cli, export, seed, user_data, vbox

ROOT = Path(__file__).resolve().parent.parent


def run_cli(capsys, *argv):
    """Run the CLI; return its exit status and the lines it wrote to stderr."""
    status = cli.main([str(a) for a in argv])
    return status, capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def public_key(tmp_path):
    key = tmp_path / "keys" / "id_ed25519"
    key.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me@host",
                    "-f", str(key)], check=True)
    return key.with_suffix(".pub")


@pytest.fixture
def image(tmp_path):
    """A tiny qcow2 with a build manifest beside it."""
    folder = tmp_path / "img"
    folder.mkdir()
    path = folder / "mlflow-debian-12.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "1M"], check=True)
    (folder / "manifest.json").write_text(json.dumps({"profile": "debian-12"}))
    return path


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# A named SSH key that does not exist is refused, also by user-data.

def test_user_data_refuses_a_named_key_that_does_not_exist(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SSH_KEY", str(tmp_path / "typo.pub"))
    target = tmp_path / "ud"
    status, err = run_cli(capsys, "user-data", "--profile", "debian-12", "-o", target)
    assert status == 2 and len(err) == 1 and "does not exist" in err[0]
    assert not target.exists()


def test_user_data_skips_the_default_key_when_there_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    target = tmp_path / "ud"
    assert cli.main(["user-data", "--profile", "debian-12", "-o", str(target)]) == 0
    assert target.is_file()


# Output locations that cannot be written.

@pytest.mark.parametrize("where", ["parent-is-file", "directory", "read-only"])
def test_seed_into_an_unusable_place_is_one_line(capsys, tmp_path, public_key, where):
    if where == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    area = tmp_path / "area"
    area.mkdir()
    if where == "parent-is-file":
        (area / "file").write_text("x")
        target = area / "file" / "seed.iso"
    elif where == "directory":
        target = area / "somedir"
        target.mkdir()
    else:
        target = area / "ro" / "seed.iso"
        target.parent.mkdir()
        target.parent.chmod(0o555)
    before = files_under(area)
    try:
        status, err = run_cli(capsys, "seed", "--ssh-key", public_key, "-o", target)
    finally:
        (area / "ro").exists() and (area / "ro").chmod(0o755)
    assert status == 2 and len(err) == 1, err
    assert str(target) in err[0] and "SEED=" in err[0]
    assert files_under(area) == before


def test_seed_under_proc_is_one_line(capsys, public_key):
    status, err = run_cli(capsys, "seed", "--ssh-key", public_key, "-o", "/proc/seed.iso")
    assert status == 2 and len(err) == 1 and "SEED=" in err[0]


def test_atomic_path_turns_write_failures_into_one_line(tmp_path):
    target = tmp_path / "out.xml"
    with pytest.raises(export.UserError, match="OUTPUT_DIR="):
        with export.atomic_path(target, "OUTPUT_DIR") as tmp:
            raise OSError(30, "Read-only file system", str(tmp))
    assert list(tmp_path.iterdir()) == []


def test_vbox_output_dir_that_is_a_file_is_one_line(capsys, tmp_path, image):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    status, err = run_cli(capsys, "vbox", "--image", image, "--output-dir", blocker)
    assert status == 2 and len(err) == 1 and "OUTPUT_DIR=" in err[0]


def test_libvirt_xml_beside_a_read_only_image_is_one_line(capsys, tmp_path, image):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    image.parent.chmod(0o555)
    try:
        status, err = run_cli(capsys, "libvirt", "--image", image)
    finally:
        image.parent.chmod(0o755)
    assert status == 2 and len(err) == 1 and "cannot write" in err[0]
    assert files_under(image.parent) == ["manifest.json", image.name]


# Values travel through the environment, so spaces and quotes survive.

def test_seed_reads_its_settings_from_the_environment(tmp_path, monkeypatch):
    folder = tmp_path / "dir with space"
    folder.mkdir()
    key = folder / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    target = folder / "my seed.iso"
    monkeypatch.setenv("SSH_KEY", str(key) + ".pub")
    monkeypatch.setenv("SEED", str(target))
    monkeypatch.setenv("SEED_USER", "alice")
    assert cli.main(["seed"]) == 0
    assert target.is_file()


@pytest.mark.parametrize("value", ["a'b", 'a"b', "a b"])
def test_quotes_in_allowed_hosts_are_refused_in_one_line(capsys, tmp_path, monkeypatch, value):
    monkeypatch.setenv("ALLOWED_HOSTS", value)
    monkeypatch.setenv("USER_DATA", str(tmp_path / "ud test"))
    status, err = run_cli(capsys, "user-data", "--profile", "debian-12")
    assert status == 2 and err[0].startswith(f"error: ALLOWED_HOSTS={value} ")
    assert list(tmp_path.iterdir()) == []


def test_makefile_passes_values_through_the_environment(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    dump = tmp_path / "env.json"
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\nexec python3 -c 'import json, os, sys; "
                      f"json.dump(dict(os.environ, ARGV=sys.argv[1:]), open(\"{dump}\", \"w\"))' "
                      "\"$@\"\n")
    python.chmod(0o755)
    (venv / ".installed").touch()
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}
    result = subprocess.run(
        ["make", "-s", "-C", str(ROOT), f"VENV={venv}", "seed",
         "SSH_KEY=/tmp/dir with space/k.pub", "ALLOWED_HOSTS=a'b", "SEED_USER=-x",
         "ASK_PASSWORD=no", "PASSWORD_FILE=/tmp/p w"],
        capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    seen = json.loads(dump.read_text())
    # Nothing spliced in: not even --ask-password for ASK_PASSWORD=no.
    assert seen["ARGV"] == ["-m", "mlflow_vm", "seed"]
    assert seen["SSH_KEY"] == "/tmp/dir with space/k.pub"
    assert seen["ALLOWED_HOSTS"] == "a'b"
    assert seen["SEED_USER"] == "-x"
    assert seen["PASSWORD_FILE"] == "/tmp/p w"


# ACCEL, MEMORY, SEED and the image itself are checked by libvirt.

def test_libvirt_refuses_an_unknown_accelerator(capsys, tmp_path, image, monkeypatch):
    monkeypatch.setenv("ACCEL", "foo")
    status, err = run_cli(capsys, "libvirt", "--image", image)
    assert status == 2 and err == ["error: ACCEL=foo is not supported; use kvm or tcg"]
    assert not image.with_suffix(".xml").exists()


def test_memory_is_capped_at_one_tebibyte(capsys, image):
    status, err = run_cli(capsys, "libvirt", "--image", image, "--memory", "99999999999")
    assert status == 2 and len(err) == 1 and err[0].startswith("error: MEMORY=99999999999")
    assert not image.with_suffix(".xml").exists()


def test_seed_that_is_not_an_iso_is_refused(capsys, tmp_path, image):
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("ssh-ed25519 AAAA\n")
    status, err = run_cli(capsys, "libvirt", "--image", image, "--seed", garbage)
    assert status == 2 and len(err) == 1 and "not an ISO 9660 image" in err[0]
    assert not image.with_suffix(".xml").exists()


def test_real_seed_iso_is_attached(tmp_path, image):
    iso = seed.write_iso(tmp_path / "seed.iso", "#cloud-config\n", seed.meta_data("i", "h"))
    target = tmp_path / "d.xml"
    assert cli.main(["libvirt", "--image", str(image), "--seed", str(iso), "-o",
                     str(target)]) == 0
    assert str(iso) in target.read_text()


def test_image_with_a_missing_backing_file_is_refused(capsys, tmp_path, image):
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "1M"], check=True)
    image.unlink()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2",
                    str(image)], check=True)
    base.unlink()
    status, err = run_cli(capsys, "libvirt", "--image", image)
    assert status == 2 and len(err) == 1 and "backing file" in err[0]
    assert not image.with_suffix(".xml").exists()


def test_image_without_a_manifest_is_not_one_make_image_built(capsys, image):
    (image.parent / "manifest.json").unlink()
    status, err = run_cli(capsys, "libvirt", "--image", image)
    assert status == 2 and len(err) == 1 and "not an image `make image` built" in err[0]


# Passwords.

@pytest.mark.parametrize("value", ["0", "no", "off", "false"])
def test_ask_password_off_does_not_ask(tmp_path, public_key, monkeypatch, value):
    monkeypatch.setenv("ASK_PASSWORD", value)
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: pytest.fail("asked"))
    assert cli.main(["seed", "--ssh-key", str(public_key), "-o", str(tmp_path / "s.iso")]) == 0


def test_ask_password_with_a_bad_value_is_refused(capsys, tmp_path, public_key, monkeypatch):
    monkeypatch.setenv("ASK_PASSWORD", "maybe")
    status, err = run_cli(capsys, "seed", "--ssh-key", public_key, "-o", tmp_path / "s.iso")
    assert status == 2 and err == ["error: ASK_PASSWORD=maybe is not yes or no"]


def test_end_of_input_at_the_password_prompt_is_one_line(capsys, tmp_path, public_key,
                                                         monkeypatch):
    def eof(prompt):
        raise EOFError

    monkeypatch.setenv("ASK_PASSWORD", "yes")
    monkeypatch.setattr(cli.sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(cli.getpass, "getpass", eof)
    target = tmp_path / "s.iso"
    status, err = run_cli(capsys, "seed", "--ssh-key", public_key, "-o", target)
    assert status == 2 and len(err) == 1 and "end of input" in err[0]
    assert not target.exists()


def test_password_file_comes_from_the_environment(tmp_path, public_key, monkeypatch):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("PASSWORD_FILE", str(secret))
    target = tmp_path / "s.iso"
    assert cli.main(["seed", "--ssh-key", str(public_key), "-o", str(target)]) == 0
    listing = subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(target), "-extract",
                              "/user-data", str(tmp_path / "ud")], capture_output=True)
    assert listing.returncode == 0
    assert "hashed_passwd" in (tmp_path / "ud").read_text()


# Messages.

def test_ssh_key_that_is_a_directory_says_so(capsys, tmp_path):
    status, err = run_cli(capsys, "seed", "--ssh-key", tmp_path, "-o", tmp_path / "s.iso")
    assert status == 2 and len(err) == 1 and "is a directory" in err[0]


def test_image_that_is_a_directory_says_so(capsys, tmp_path):
    status, err = run_cli(capsys, "libvirt", "--image", tmp_path)
    assert status == 2 and len(err) == 1 and "is a directory" in err[0]


@pytest.mark.parametrize("content", [b"just some text\n", b""])
def test_text_file_named_qcow2_is_not_called_raw(capsys, tmp_path, content):
    path = tmp_path / "notes.qcow2"
    path.write_bytes(content)
    status, err = run_cli(capsys, "libvirt", "--image", path)
    assert status == 2 and len(err) == 1
    assert "not a disk image qemu-img recognises" in err[0] and "raw" not in err[0]


def test_private_key_saved_as_pub_gets_a_useful_hint(capsys, tmp_path, public_key):
    private = tmp_path / "priv.pub"
    private.write_bytes(public_key.with_suffix("").read_bytes())
    status, err = run_cli(capsys, "seed", "--ssh-key", private, "-o", tmp_path / "s.iso")
    assert status == 2 and len(err) == 1
    assert "priv.pub.pub" not in err[0] and f"ssh-keygen -y -f {private}" in err[0]


@pytest.mark.parametrize("user", ["sshd", "www-data", "ubuntu", "_apt", "", "-x"])
def test_system_and_malformed_login_names_name_seed_user(capsys, tmp_path, public_key,
                                                         monkeypatch, user):
    monkeypatch.setenv("SEED_USER", user)
    status, err = run_cli(capsys, "seed", "--ssh-key", public_key, "-o", tmp_path / "s.iso")
    assert status == 2 and len(err) == 1
    assert err[0].startswith(f"error: SEED_USER={user} is not a usable login name")
    assert "sshd" in err[0] and "lower-case" in err[0]


def test_invalid_yaml_from_cloud_init_keeps_the_meaningful_lines():
    problems = ("Cloud config schema deprecations: \nError:\nCloud config schema errors: "
                "format-l2.c6: File x.yaml is not valid yaml. while parsing a flow sequence\n"
                '  in "<byte string>", line 2, column 6:\n    foo: [1, 2\n         ^\n'
                "expected ',' or ']', but got ':'\n")
    line = user_data.summarize_problems(problems)
    assert "\n" not in line and "line 2, column 6" in line and "not valid yaml" in line
    assert "expected ','" in line and not line.strip().endswith("^")


# SSH keys go through OpenSSH's parser, line by line.

def test_truncated_key_is_refused_with_its_line_number(capsys, tmp_path, public_key):
    key = tmp_path / "k.pub"
    key.write_text(public_key.read_text() + "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 me\n")
    status, err = run_cli(capsys, "seed", "--ssh-key", key, "-o", tmp_path / "s.iso")
    assert status == 2 and len(err) == 1 and "line 2" in err[0]


def test_rfc4716_key_gets_the_conversion_hint(capsys, tmp_path, public_key):
    converted = subprocess.run(["ssh-keygen", "-e", "-f", str(public_key)],
                               capture_output=True, text=True, check=True).stdout
    key = tmp_path / "ssh2.pub"
    key.write_text(converted)
    status, err = run_cli(capsys, "seed", "--ssh-key", key, "-o", tmp_path / "s.iso")
    assert status == 2 and len(err) == 1 and f"ssh-keygen -i -f {key} > key.pub" in err[0]


def test_bom_and_crlf_are_accepted(tmp_path, public_key):
    key = tmp_path / "win.pub"
    key.write_bytes(b"\xef\xbb\xbf" + public_key.read_bytes().replace(b"\n", b"\r\n"))
    assert seed.read_public_keys(key) == [public_key.read_text().strip()]


# Interrupting make vbox after the VDI says what is left.

def test_interrupt_after_the_vdi_says_the_ova_is_missing(image, monkeypatch, caplog):
    real = export.convert

    def convert(source, target, fmt, options=()):
        if fmt == "vmdk":
            raise KeyboardInterrupt
        return real(source, target, fmt, options)

    monkeypatch.setattr(export, "convert", convert)
    with pytest.raises(KeyboardInterrupt):
        vbox.export_image(export.inspect(image), cpus=2, memory_mib=4096)
    assert "the OVA was not written" in caplog.text
    assert not image.with_suffix(".ova").exists()


def test_help_lists_the_export_variables():
    result = subprocess.run(["make", "-s", "-C", str(ROOT), "help"], capture_output=True,
                            text=True, check=True)
    for name in ("VM_NAME=", "LIBVIRT_NETWORK=", "OUTPUT_DIR=", "SEED=", "SSH_KEY=",
                 "SEED_USER=", "ASK_PASSWORD=", "PASSWORD_FILE=", "ALLOWED_HOSTS=",
                 "PIP_PACKAGES=", "USER_DATA=", "IMAGE=", "CPUS=", "MEMORY=", "ACCEL="):
        assert name in result.stdout, name


def test_libvirt_names_come_from_vm_name_and_libvirt_network(tmp_path, image, monkeypatch):
    monkeypatch.setenv("NAME", "my-laptop")
    monkeypatch.setenv("NETWORK", "wrong")
    monkeypatch.setenv("VM_NAME", "tracking")
    monkeypatch.setenv("LIBVIRT_NETWORK", "lan")
    target = tmp_path / "d.xml"
    assert cli.main(["libvirt", "--image", str(image), "-o", str(target)]) == 0
    text = target.read_text()
    assert "<name>tracking</name>" in text and 'network="lan"' in text
    assert "my-laptop" not in text and "wrong" not in text


def test_libvirt_writes_into_output_dir(tmp_path, image, monkeypatch):
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path / "xml"))
    assert cli.main(["libvirt", "--image", str(image)]) == 0
    assert (tmp_path / "xml" / f"{image.stem}.xml").is_file()
    assert not image.with_suffix(".xml").exists()


def test_an_unexpected_os_error_is_one_line(capsys, monkeypatch):
    def fail(args):
        raise PermissionError(13, "Permission denied", "/somewhere")

    monkeypatch.setattr(cli, "_cmd_profiles", fail)
    status, err = run_cli(capsys, "profiles")
    assert status == 2 and len(err) == 1 and "/somewhere" in err[0]


@pytest.mark.parametrize("command", ["libvirt", "vbox"])
def test_read_only_file_system_is_one_line(capsys, image, monkeypatch, command):
    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(export.tempfile, "mkstemp", read_only)
    status, err = run_cli(capsys, command, "--image", image)
    assert status == 2 and len(err) == 1, err
    assert "Read-only file system" in err[0] and "OUTPUT_DIR=" in err[0]
    assert files_under(image.parent) == ["manifest.json", image.name]


@pytest.mark.parametrize("port", ['"5000"', "null", "0", "true"])
def test_manifest_with_a_bad_port_is_one_line(capsys, image, port):
    (image.parent / "manifest.json").write_text(f'{{"profile": "debian-12", "mlflow_port": {port}}}')
    status, err = run_cli(capsys, "libvirt", "--image", image)
    assert status == 2 and len(err) == 1 and "mlflow_port" in err[0]


def test_user_data_from_a_template_with_invalid_yaml_names_the_line(capsys, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setattr(user_data.render, "custom_user_data",
                        lambda profile, server, keys, settings: "#cloud-config\nfoo: [1, 2\nbar: x\n")
    target = tmp_path / "ud"
    status, err = run_cli(capsys, "user-data", "--profile", "debian-12", "-o", target)
    assert status == 2 and len(err) == 1
    assert "not valid yaml" in err[0] and "line 2, column 6" in err[0]
    assert "/tmp/" not in err[0] and not err[0].endswith("^")
    assert not target.exists()


@pytest.mark.parametrize("name", ["a/b", "a b", "<x>", "-dash", "x" * 64])
def test_libvirt_refuses_a_vm_name_libvirt_or_a_shell_would_trip_on(capsys, image, name):
    status, err = run_cli(capsys, "libvirt", "--image", image, f"--name={name}")
    assert status == 2 and err == [
        f"error: VM_NAME={name} is not a domain name: use letters, digits, . _ and -, "
        "starting with a letter or digit"]
    assert not image.with_suffix(".xml").exists()


def test_a_pipe_given_as_a_file_is_named_as_such(capsys, tmp_path):
    pipe = tmp_path / "key.pub"
    os.mkfifo(pipe)
    status, err = run_cli(capsys, "seed", "--ssh-key", str(pipe), "--output",
                          str(tmp_path / "seed.iso"))
    assert status == 2 and err == [f"error: {pipe} is a device or a pipe, not a file: "
                                   "give a regular file"]
    assert not (tmp_path / "seed.iso").exists()
