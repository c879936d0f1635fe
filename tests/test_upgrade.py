"""`mlflowctl upgrade`: venv naming shared with the install script, switching,
and going back on failure, run on the host against the rendered script."""

import hashlib
import os
import subprocess

import pytest

from mlflow_vm import profiles
from test_install_script import _function
from test_mlflowctl import ctl  # noqa: F401  (the fixture)
from test_render import rendered

LOCK = b"mlflow==3.17.2 \\\n    --hash=sha256:" + b"a" * 64 + b"\n"
OLDER = b"mlflow==3.1.4 \\\n    --hash=sha256:" + b"b" * 64 + b"\n"
SETTINGS = {"MLFLOW_PORT": "5000", "MLFLOW_HOST": "0.0.0.0",
            "MLFLOW_BACKEND_STORE_URI": "sqlite:////var/lib/mlflow/mlflow.db",
            "MLFLOW_ARTIFACTS_DESTINATION": "/var/lib/mlflow/artifacts"}


def _venv(path, lock):
    """A folder that looks like a finished venv installed from ``lock``."""
    (path / "bin").mkdir(parents=True)
    (path / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (path / "requirements.txt").write_bytes(lock)
    return path


@pytest.fixture
def opt(ctl, tmp_path, monkeypatch):  # noqa: F811
    """/opt with the image's venv linked from /opt/mlflow, as root, with the
    service calls recorded instead of made."""
    opt = tmp_path / "opt"
    opt.mkdir()
    monkeypatch.setattr(ctl, "VENV", opt / "mlflow")
    current = _venv(ctl.venv_for(LOCK), LOCK)
    os.symlink(current, opt / "mlflow")
    monkeypatch.setattr(ctl.os, "geteuid", lambda: 0)
    monkeypatch.setattr(ctl, "read_settings", lambda: dict(SETTINGS))
    monkeypatch.setattr(ctl, "client_urls", lambda settings: ["http://127.0.0.1:5000"])
    calls = []
    monkeypatch.setattr(ctl, "run", lambda *command, **kw: calls.append(command[1:]))
    monkeypatch.setattr(ctl, "take_backup", lambda folder, settings: tmp_path / "backup")
    monkeypatch.setattr(ctl, "sqlite_file", lambda uri: tmp_path)  # exists
    monkeypatch.setattr(ctl, "build_venv", lambda target, lock, extra: _venv(
        target, lock.read_bytes()))
    return opt, calls


def test_the_install_script_names_its_venv_as_mlflowctl_does(ctl, tmp_path):  # noqa: F811
    profile = profiles.load_all()["debian-12"]
    script = rendered("debian-12")["packer/debian-12/files/install-mlflow.sh"]
    src = tmp_path / "src"
    src.mkdir()
    lock = profile.requirements_file.read_bytes()
    (src / "requirements.txt").write_bytes(lock)
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/bin/sh\nmkdir -p "$3/bin"\nprintf "#!/bin/sh\\n" >"$3/bin/pip"\n'
                           'chmod +x "$3/bin/pip"\nln -s /bin/true "$3/bin/python"\n')
    fake_python.chmod(0o755)
    venv = tmp_path / "opt" / "mlflow"
    venv.parent.mkdir()
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c",
         f"step() {{ :; }}\nsrc={src} venv={venv} python={fake_python}\n"
         + _function(script, "install_venv") + "install_venv\n"],
        check=True, capture_output=True, text=True)
    digest = hashlib.sha256(lock).hexdigest()[:8]
    assert os.readlink(venv) == str(venv.parent / f"mlflow-{profile.mlflow_version}-{digest}")
    assert venv.resolve().name == ctl.venv_for(lock).name


@pytest.mark.parametrize("content, expected", [
    (b"mlflow==3.17.2\n", "is not hash-locked"),
    (b"numpy==2.0 \\\n    --hash=sha256:" + b"c" * 64 + b"\n", "pins no mlflow==VERSION"),
])
def test_a_lock_that_is_not_one_is_refused_before_anything_changes(
        ctl, opt, tmp_path, capsys, content, expected):  # noqa: F811
    lock = tmp_path / "lock.txt"
    lock.write_bytes(content)
    before = os.readlink(opt[0] / "mlflow")
    assert ctl.main(["upgrade", str(lock)]) == 2
    assert expected in capsys.readouterr().err
    assert os.readlink(opt[0] / "mlflow") == before and opt[1] == []


def test_a_missing_lock_is_named(ctl, opt, tmp_path, capsys):  # noqa: F811
    assert ctl.main(["upgrade", str(tmp_path / "nowhere.txt")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_lock_already_running_is_nothing_to_do(ctl, opt, tmp_path, capsys):  # noqa: F811
    lock = tmp_path / "lock.txt"
    lock.write_bytes(LOCK)
    assert ctl.main(["upgrade", str(lock)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert opt[1] == []


def test_a_venv_folder_from_an_older_install_is_refused(ctl, opt, tmp_path, capsys):  # noqa: F811
    os.unlink(opt[0] / "mlflow")
    (opt[0] / "mlflow").mkdir()
    lock = tmp_path / "lock.txt"
    lock.write_bytes(OLDER)
    assert ctl.main(["upgrade", str(lock)]) == 2
    assert "not a link to a venv" in capsys.readouterr().err


def test_a_store_mlflowctl_cannot_back_up_needs_no_backup(ctl, opt, tmp_path, capsys,
                                                          monkeypatch):  # noqa: F811
    monkeypatch.setattr(ctl, "read_settings", lambda: {
        **SETTINGS, "MLFLOW_BACKEND_STORE_URI": "postgresql://u@127.0.0.1/m"})
    monkeypatch.setattr(ctl, "sqlite_file", lambda uri: None)
    lock = tmp_path / "lock.txt"
    lock.write_bytes(OLDER)
    assert ctl.main(["upgrade", str(lock)]) == 2
    assert "--no-backup" in capsys.readouterr().err
    assert opt[1] == []


def test_an_upgrade_switches_the_link_and_keeps_one_previous_venv(
        ctl, opt, tmp_path, capsys, monkeypatch):  # noqa: F811
    opt_dir, calls = opt
    stale = _venv(opt_dir / "mlflow-2.0.0-00000000", b"mlflow==2.0.0\n")
    previous = (opt_dir / "mlflow").resolve()
    monkeypatch.setattr(ctl, "wait_until_up", lambda settings, timeout: None)
    lock = tmp_path / "lock.txt"
    lock.write_bytes(OLDER)
    assert ctl.main(["upgrade", str(lock)]) == 0
    assert (opt_dir / "mlflow").resolve() == ctl.venv_for(OLDER)
    assert previous.is_dir() and not stale.exists()
    assert calls == [("stop", "mlflow.service"), ("start", "--no-block", "mlflow.service")]
    assert "MLflow 3.17.2 -> 3.1.4: up" in capsys.readouterr().out


def test_a_server_that_does_not_come_up_goes_back_to_the_old_venv_and_the_backup(
        ctl, opt, tmp_path, capsys, monkeypatch):  # noqa: F811
    opt_dir, calls = opt
    previous = (opt_dir / "mlflow").resolve()
    monkeypatch.setattr(ctl, "wait_until_up", lambda settings, timeout: "schema too new")
    restored = []

    monkeypatch.setattr(ctl, "read_backup", lambda source: {})

    def restore(source, manifest, settings, timeout):
        restored.append((source, (opt_dir / "mlflow").resolve()))
        return None

    monkeypatch.setattr(ctl, "restore_backup", restore)
    lock = tmp_path / "lock.txt"
    lock.write_bytes(OLDER)
    assert ctl.main(["upgrade", str(lock)]) == 1
    err = capsys.readouterr().err
    assert "MLflow 3.1.4 did not come up: schema too new" in err
    assert "MLflow 3.17.2 is up again" in err
    # The backup goes back under the old MLflow, whose venv is in use again.
    assert restored == [(tmp_path / "backup", previous)]
    assert (opt_dir / "mlflow").resolve() == previous
    # The new venv stays: trying it again needs no new install.
    assert ctl.venv_for(OLDER).is_dir()


def test_a_venv_built_from_the_same_lock_is_used_again(ctl, opt, tmp_path, capsys,
                                                       monkeypatch):  # noqa: F811
    _venv(ctl.venv_for(OLDER), OLDER)
    built = []
    monkeypatch.setattr(ctl, "build_venv", lambda *args: built.append(args))
    monkeypatch.setattr(ctl, "wait_until_up", lambda settings, timeout: None)
    lock = tmp_path / "lock.txt"
    lock.write_bytes(OLDER)
    assert ctl.main(["upgrade", str(lock)]) == 0
    assert built == []
    assert "installed from the same lock before" in capsys.readouterr().out


def test_switching_replaces_the_link_in_one_rename(ctl, opt):  # noqa: F811
    opt_dir, _ = opt
    other = _venv(opt_dir / "mlflow-3.1.4-12345678", OLDER)
    ctl.switch_venv(other)
    assert os.readlink(opt_dir / "mlflow") == str(other)
    assert sorted(p.name for p in opt_dir.iterdir() if p.name.startswith(".")) == []
