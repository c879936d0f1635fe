"""mlflowctl's logic, run on the host against the rendered script."""

import importlib.machinery
import importlib.util
import json
import os
import sys

import pytest

from mlflow_vm.paths import PACKER


@pytest.fixture(scope="module")
def ctl():
    path = PACKER / "debian-12" / "files" / "mlflowctl"
    loader = importlib.machinery.SourceFileLoader("mlflowctl", str(path))
    spec = importlib.util.spec_from_loader("mlflowctl", loader)
    module = importlib.util.module_from_spec(spec)
    # dataclasses looks the module up by name while it is created.
    sys.modules["mlflowctl"] = module
    loader.exec_module(module)
    yield module
    del sys.modules["mlflowctl"]


@pytest.mark.parametrize("profile", ["debian-12", "ubuntu-22.04", "ubuntu-24.04"])
def test_the_shipped_settings_pass_mlflowctl_validation(ctl, profile):
    settings = ctl.parse_env((PACKER / profile / "files" / "mlflow.env").read_text())
    assert settings["MLFLOW_PORT"] == "5000"
    assert ctl.validate_all(settings) == []


@pytest.mark.parametrize("key, value, expected", [
    ("MLFLOW_PORT", "abc", "TCP port between 1 and 65535"),
    ("MLFLOW_PORT", "70000", "TCP port between 1 and 65535"),
    ("MLFLOW_PORT", "22", "other than 22"),
    ("MLFLOW_HOST", "example.com", "IP address"),
    ("MLFLOW_WORKERS", "0", "between 1 and 64"),
    ("MLFLOW_BACKEND_STORE_URI", "redis://localhost/0", "database URI"),
    ("MLFLOW_BACKEND_STORE_URI", "sqlite:///relative.db", "four slashes"),
    ("MLFLOW_ARTIFACTS_DESTINATION", "relative/dir", "absolute folder"),
    ("MLFLOW_SERVER_ALLOWED_HOSTS", "a, b", "without spaces"),
    ("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "yes", "true or false"),
    ("lower_case", "1", "not a setting name"),
])
def test_bad_settings_are_refused_with_what_to_use(ctl, key, value, expected):
    assert expected in ctl.validate(key, value)


@pytest.mark.parametrize("key, value", [
    ("MLFLOW_PORT", "8080"),
    ("MLFLOW_HOST", "::"),
    ("MLFLOW_WORKERS", "auto"),
    ("MLFLOW_BACKEND_STORE_URI", "postgresql+psycopg2://u:p@127.0.0.1:5432/mlflow"),
    ("MLFLOW_ARTIFACTS_DESTINATION", "s3://bucket/mlflow"),
    ("MLFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9000"),
])
def test_good_settings_pass(ctl, key, value):
    assert ctl.validate(key, value) is None


def test_a_settings_file_missing_the_port_is_named(ctl):
    settings = {"MLFLOW_HOST": "0.0.0.0", "MLFLOW_BACKEND_STORE_URI": "sqlite:////x.db",
                "MLFLOW_ARTIFACTS_DESTINATION": "/srv/a"}
    assert ctl.validate_all(settings) == ["MLFLOW_PORT is missing"]


def test_changes_keep_comments_and_order_and_append_new_keys(ctl):
    text = "# port\nMLFLOW_PORT=5000\n# host\nMLFLOW_HOST=0.0.0.0\n"
    result = ctl.updated_env(text, {"MLFLOW_PORT": "5001", "EXTRA": "x"})
    assert result == "# port\nMLFLOW_PORT=5001\n# host\nMLFLOW_HOST=0.0.0.0\nEXTRA=x\n"


def test_database_passwords_are_hidden(ctl):
    assert ctl.redact("postgresql://mlflow:s3cret@db:5432/m") == "postgresql://mlflow:***@db:5432/m"
    assert ctl.redact("sqlite:////var/lib/mlflow/mlflow.db") == "sqlite:////var/lib/mlflow/mlflow.db"


def _chain(policy="accept"):
    return {"chain": {"family": "inet", "table": "filter", "name": "input",
                      "hook": "input", "policy": policy}}


def _rule(port, verdict):
    match = {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                       "right": port}}
    return {"rule": {"family": "inet", "table": "filter", "chain": "input",
                     "expr": [match, {verdict: None}]}}


def test_an_nftables_drop_rule_on_the_port_is_found(ctl):
    ruleset = {"nftables": [_chain(), _rule(5000, "drop")]}
    assert ctl.nft_blocks(ruleset, 5000) == [
        "nftables chain inet filter input has a rule that drops TCP port 5000"]
    assert ctl.nft_blocks(ruleset, 5001) == []


def test_a_default_drop_policy_blocks_unless_the_port_is_accepted(ctl):
    assert "drops by default" in ctl.nft_blocks({"nftables": [_chain("drop")]}, 5000)[0]
    accepted = {"nftables": [_chain("drop"), _rule({"set": [22, 5000]}, "accept")]}
    assert ctl.nft_blocks(accepted, 5000) == []
    ranged = {"nftables": [_chain("drop"), _rule({"set": [{"range": [4000, 6000]}]}, "accept")]}
    assert ctl.nft_blocks(ranged, 5000) == []


def test_an_accept_before_a_drop_wins(ctl):
    ruleset = {"nftables": [_chain(), _rule(5000, "accept"), _rule(5000, "reject")]}
    assert ctl.nft_blocks(ruleset, 5000) == []


def _fake_proc(tmp_path, port, unit):
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    row = (f"   0: 00000000:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 "
           "00000000     0        0 424242 1 0000000000000000 100 0 0 10 0\n")
    (proc / "net" / "tcp").write_text(header + row)
    (proc / "net" / "tcp6").write_text(header)
    pid = proc / "812"
    (pid / "fd").mkdir(parents=True)
    os.symlink("socket:[424242]", pid / "fd" / "3")
    os.symlink("/dev/null", pid / "fd" / "0")
    (pid / "cmdline").write_bytes(b"python3\0-m\0http.server\0" + str(port).encode() + b"\0")
    (pid / "cgroup").write_text(f"0::/system.slice/{unit}\n")
    return proc


def test_the_process_holding_the_port_is_named(ctl, tmp_path):
    proc = _fake_proc(tmp_path, 5000, "squatter.service")
    [holder] = ctl.foreign_listeners(5000, proc)
    assert holder.describe() == "`python3 -m http.server 5000` (pid 812, unit squatter.service)"
    assert ctl.foreign_listeners(5001, proc) == []


def test_the_mlflow_service_itself_does_not_count_as_a_holder(ctl, tmp_path):
    proc = _fake_proc(tmp_path, 5000, "mlflow.service")
    assert ctl.foreign_listeners(5000, proc) == []
    assert len(ctl.listeners(5000, proc)) == 1


def test_a_refusal_is_one_line_and_exit_status_2(ctl, capsys, monkeypatch):
    monkeypatch.setattr(ctl.os, "geteuid", lambda: 1000)
    assert ctl.main(["set", "MLFLOW_PORT=5001"]) == 2
    assert capsys.readouterr().err == "mlflowctl: run it as root: sudo mlflowctl ...\n"


def test_restore_refuses_a_folder_that_is_not_a_backup(ctl, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(ctl.os, "geteuid", lambda: 0)
    assert ctl.main(["restore", str(tmp_path)]) == 2
    assert "not a backup made by `mlflowctl backup`" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"database": {"file": "mlflow.db", "sha256": "0" * 64},
         "artifacts": {"file": "artifacts.tar.gz", "sha256": "0" * 64}}))
    (tmp_path / "mlflow.db").write_bytes(b"changed")
    assert ctl.main(["restore", str(tmp_path)]) == 2
    assert "mlflow.db is missing or damaged" in capsys.readouterr().err


def test_human_sizes(ctl):
    assert [ctl.human(n) for n in (512, 1536, 5 * 2**30)] == ["512 B", "1.5 KiB", "5.0 GiB"]


def test_set_refuses_a_misspelt_setting_unless_asked_to_add_it(ctl, capsys, monkeypatch, tmp_path):
    config = tmp_path / "mlflow.env"
    config.write_text("MLFLOW_HOST=0.0.0.0\nMLFLOW_PORT=5000\n"
                      "MLFLOW_BACKEND_STORE_URI=sqlite:////x.db\n"
                      "MLFLOW_ARTIFACTS_DESTINATION=/srv/a\n")
    monkeypatch.setattr(ctl, "CONFIG", config)
    monkeypatch.setattr(ctl.os, "geteuid", lambda: 0)
    assert ctl.main(["set", "MLFLOW_PROT=8080"]) == 2
    err = capsys.readouterr().err
    assert "MLFLOW_PROT is not a setting mlflowctl knows" in err and "set --add" in err
    written = []
    monkeypatch.setattr(ctl, "write_config", lambda text, path=None: written.append(text))
    monkeypatch.setattr(ctl.shutil, "copy2", lambda *a: None)
    assert ctl.main(["set", "--add", "--no-restart", "HTTPS_PROXY=http://proxy:3128"]) == 0
    assert written and written[0].endswith("HTTPS_PROXY=http://proxy:3128\n")


def test_backup_refuses_to_fill_the_disk_and_writes_nothing(ctl, capsys, monkeypatch, tmp_path):
    state = tmp_path / "state"
    (state / "artifacts").mkdir(parents=True)
    (state / "mlflow.db").write_bytes(b"x" * 4096)
    (state / "artifacts" / "model.bin").write_bytes(b"y" * 8192)
    monkeypatch.setattr(ctl.os, "geteuid", lambda: 0)
    monkeypatch.setattr(ctl, "read_settings", lambda: {
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{state}/mlflow.db",
        "MLFLOW_ARTIFACTS_DESTINATION": str(state / "artifacts")})
    total = 100 * 2**30
    # 5 % of the disk plus the backup's 12 KiB is more than is free.
    monkeypatch.setattr(ctl.shutil, "disk_usage", lambda path: ctl.shutil._ntuple_diskusage(
        total, total - 5 * 2**30, 5 * 2**30))
    backups = tmp_path / "backups"
    assert ctl.main(["backup", "--dir", str(backups)]) == 2
    err = capsys.readouterr().err
    assert "a backup needs about 12.0 KiB" in err and "--dir" in err
    assert not backups.exists()
