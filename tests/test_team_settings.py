"""Team settings: a database server, an S3 bucket, authentication; checked by
mlflowctl before the server starts, given at first boot or with `set --from`,
and handed to MLflow without a secret on a command line."""

import os
import stat
import subprocess

import pytest

from mlflow_vm.paths import PACKER
from test_mlflowctl import ctl  # noqa: F401  (the fixture)

SHIPPED = (PACKER / "debian-12" / "files" / "mlflow.env").read_text()
PASSWORD = "correct horse battery"
S3 = {"MLFLOW_ARTIFACTS_DESTINATION": "s3://mlflow-artifacts/team",
      "MLFLOW_S3_ENDPOINT_URL": "http://10.0.2.2:9000",
      "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t/KEY+value"}


def _problems(ctl, **changes):  # noqa: F811
    return ctl.validate_all({**ctl.parse_env(SHIPPED), **changes})


def test_the_shipped_settings_leave_authentication_off_and_need_no_password(ctl):  # noqa: F811
    settings = ctl.parse_env(SHIPPED)
    assert settings["MLFLOW_AUTH"] == "false" and settings["MLFLOW_AUTH_ADMIN_PASSWORD"] == ""
    assert ctl.validate_all(settings) == []


def test_a_team_configuration_passes(ctl):  # noqa: F811
    assert _problems(ctl, MLFLOW_BACKEND_STORE_URI="postgresql://mlflow:pw@10.0.2.2:5432/mlflow",
                     MLFLOW_AUTH="true", MLFLOW_AUTH_ADMIN_PASSWORD="x" * 12,
                     MLFLOW_AUTH_DATABASE_URI="postgresql://mlflow:pw@10.0.2.2:5432/auth",
                     **S3) == []
    assert _problems(ctl, MLFLOW_BACKEND_STORE_URI="mysql+pymysql://u:p@db:3306/mlflow") == []


@pytest.mark.parametrize("changes, expected", [
    ({"MLFLOW_BACKEND_STORE_URI": "redis://localhost/0"}, "a database URI"),
    ({"MLFLOW_BACKEND_STORE_URI": "mysql://u:p@db/mlflow"}, "mysql+pymysql://"),
    ({"MLFLOW_BACKEND_STORE_URI": "mssql://u:p@db/mlflow"}, "a database URI"),
    ({"MLFLOW_ARTIFACTS_DESTINATION": "s3://mlflow-artifacts/team"},
     "an S3 artifact root needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    ({**S3, "AWS_SECRET_ACCESS_KEY": ""}, "needs AWS_SECRET_ACCESS_KEY"),
    ({"MLFLOW_ARTIFACTS_DESTINATION": "gs://bucket"}, "s3://BUCKET/PREFIX"),
    ({**S3, "MLFLOW_S3_ENDPOINT_URL": "10.0.2.2:9000"}, "http:// or https://"),
    ({"MLFLOW_AUTH": "true"}, "12 characters or more"),
    ({"MLFLOW_AUTH": "true", "MLFLOW_AUTH_ADMIN_PASSWORD": "password1234"},
     "12 characters or more"),
    ({"MLFLOW_AUTH": "yes"}, "true or false"),
    ({"MLFLOW_AUTH_DEFAULT_PERMISSION": "ALL"}, "READ, EDIT, MANAGE or NO_PERMISSIONS"),
    ({"MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": "app.example.com"}, "origins"),
    ({"MLFLOW_BACKEND_STORE_URI": "mysql+pymysql://mlflow:p@ss@127.0.0.1/db"},
     "percent-encode"),
    ({"MLFLOW_BACKEND_STORE_URI": "postgresql://mlflow:pw@db:notaport/m"}, "numeric port"),
    ({"MLFLOW_BACKEND_STORE_URI": "postgresql://mlflow:a#b@db:5432/m"}, "percent-encode"),
    ({"MLFLOW_AUTH_ADMIN_PASSWORD": '"quoted-password"'}, "without quotes"),
    ({"MLFLOW_S3_ENDPOINT_URL": "https://minio:9000   # not AWS"}, "trailing # comment"),
    ({"AWS_ACCESS_KEY_ID": "with\\backslash"}, "backslashes"),
])
def test_bad_team_settings_are_refused_with_what_to_use(ctl, changes, expected):  # noqa: F811
    problems = _problems(ctl, **changes)
    assert problems and expected in problems[0]


def test_a_refused_secret_is_never_repeated(ctl):  # noqa: F811
    [problem] = _problems(ctl, MLFLOW_AUTH="true", MLFLOW_AUTH_ADMIN_PASSWORD="tooshort99")
    assert "tooshort99" not in problem
    problem = ctl.validate("MLFLOW_BACKEND_STORE_URI", "redis://u:hunter2@db/0")
    assert "hunter2" not in problem and "***" in problem
    problem = ctl.validate("MLFLOW_BACKEND_STORE_URI", "mysql://u:p@ssSECRET@127.0.0.1/db")
    assert "SECRET" not in problem


def test_a_settings_file_that_is_not_utf8_or_starts_with_a_bom(ctl, tmp_path):  # noqa: F811
    latin = tmp_path / "latin.env"
    latin.write_bytes("MLFLOW_AUTH_ADMIN_PASSWORD=p\xe9ssword-long\n".encode("latin-1"))
    with pytest.raises(ctl.Refused, match="is not UTF-8 text"):
        ctl.read_settings_file(latin)
    bom = tmp_path / "bom.env"
    bom.write_bytes("MLFLOW_PORT=5001\r\n".encode("utf-8-sig"))
    assert ctl.read_settings_file(bom) == {"MLFLOW_PORT": "5001"}


def test_extra_packages_cannot_be_set_where_nothing_installs_them(ctl):  # noqa: F811
    with pytest.raises(ctl.Refused, match="PIP_PACKAGES= to `make user-data`"):
        ctl.checked_changes(SHIPPED, {"MLFLOW_EXTRA_PIP_PACKAGES": "psutil"})


def test_doctor_names_a_database_uri_without_a_usable_port_instead_of_failing(ctl):  # noqa: F811
    [problem] = ctl._unreachable("backend store", "postgresql://u:pw@db:notaport/m")
    assert "no usable host and port" in problem and "pw" not in problem


@pytest.fixture
def etc(ctl, tmp_path, monkeypatch):  # noqa: F811
    """/etc/mlflow with the shipped settings, as root."""
    config = tmp_path / "mlflow.env"
    config.write_text(SHIPPED)
    monkeypatch.setattr(ctl, "CONFIG", config)
    monkeypatch.setattr(ctl, "PENDING", tmp_path / "mlflow.env.pending")
    monkeypatch.setattr(ctl, "REFUSED", tmp_path / "mlflow.env.refused")
    monkeypatch.setattr(ctl.os, "geteuid", lambda: 0)
    monkeypatch.setattr(ctl, "write_config", lambda text, path=None: config.write_text(text))
    return tmp_path


def test_settings_given_at_first_boot_are_merged_and_the_file_goes(ctl, etc, capsys):  # noqa: F811
    (etc / "mlflow.env.pending").write_text(
        "# team\nMLFLOW_AUTH=true\nMLFLOW_AUTH_ADMIN_PASSWORD=" + PASSWORD + "\n")
    assert ctl.main(["apply"]) == 0
    settings = ctl.parse_env((etc / "mlflow.env").read_text())
    assert settings["MLFLOW_AUTH"] == "true"
    assert settings["MLFLOW_AUTH_ADMIN_PASSWORD"] == PASSWORD
    assert not (etc / "mlflow.env.pending").exists()
    assert (etc / "mlflow.env.previous").read_text() == SHIPPED
    assert PASSWORD not in capsys.readouterr().out


def test_bad_settings_given_at_first_boot_are_refused_whole_and_kept_root_only(
        ctl, etc, capsys):  # noqa: F811
    (etc / "mlflow.env.pending").write_text(
        "MLFLOW_BACKEND_STORE_URI=postgresql://u:p@10.0.2.2/m\n"
        "MLFLOW_ARTIFACTS_DESTINATION=s3://mlflow-artifacts\n")
    assert ctl.main(["apply"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "keeps its previous ones" in err
    assert "needs AWS_ACCESS_KEY_ID" in err and "set --from" in err
    assert (etc / "mlflow.env").read_text() == SHIPPED
    refused = etc / "mlflow.env.refused"
    assert stat.S_IMODE(refused.stat().st_mode) == 0o600
    assert not (etc / "mlflow.env.pending").exists()


def test_a_misspelt_key_at_first_boot_is_refused(ctl, etc, capsys):  # noqa: F811
    (etc / "mlflow.env.pending").write_text("MLFLOW_BACKEND_STORE_URL=sqlite:////x.db\n")
    assert ctl.main(["apply"]) == 2
    assert "MLFLOW_BACKEND_STORE_URL is not a setting" in capsys.readouterr().err


def test_nothing_pending_is_nothing_to_do(ctl, etc):  # noqa: F811
    assert ctl.main(["apply"]) == 0
    assert (etc / "mlflow.env").read_text() == SHIPPED


def test_set_reads_secrets_from_a_file(ctl, etc, tmp_path, capsys):  # noqa: F811
    source = tmp_path / "team.env"
    source.write_text("MLFLOW_AUTH=true\nMLFLOW_AUTH_ADMIN_PASSWORD=" + PASSWORD + "\n")
    assert ctl.main(["set", "--from", str(source), "--no-restart"]) == 0
    assert ctl.parse_env((etc / "mlflow.env").read_text())["MLFLOW_AUTH"] == "true"
    assert PASSWORD not in capsys.readouterr().out
    source.write_text("this line has no equals sign\n")
    assert ctl.main(["set", "--from", str(source), "--no-restart"]) == 2
    assert "line 1 of" in capsys.readouterr().err


def _server(tmp_path, env):
    """Run the rendered mlflow-server with a fake mlflow that prints what it got."""
    script = (PACKER / "debian-12" / "files" / "mlflow-server").read_text()
    fake = tmp_path / "mlflow"
    fake.write_text('#!/bin/sh\necho "args: $*"\nenv | grep -E "^MLFLOW_(BACKEND|ARTIFACTS|AUTH_CONFIG|FLASK)" '
                    '| sort\n[ -n "$MLFLOW_AUTH_CONFIG_PATH" ] && cat "$MLFLOW_AUTH_CONFIG_PATH"\n'
                    'exit 0\n')
    fake.chmod(0o755)
    runtime = tmp_path / "run"
    runtime.mkdir(exist_ok=True)
    settings = {**{k: v for k, v in
                   ((line.split("=", 1)) for line in SHIPPED.splitlines()
                    if line and not line.startswith("#"))}, **env}
    return subprocess.run(
        ["bash", "-c", script.replace("/opt/mlflow/bin/mlflow", str(fake)).replace(
            "/var/lib/mlflow/flask-secret-key", str(tmp_path / "flask-secret-key"))],
        env={"PATH": os.environ["PATH"], "RUNTIME_DIRECTORY": str(runtime), **settings},
        capture_output=True, text=True, check=True).stdout, runtime


def test_no_store_uri_or_password_reaches_the_command_line(tmp_path):
    uri = "postgresql://mlflow:pg%25secret@10.0.2.2:5432/mlflow"
    out, runtime = _server(tmp_path, {
        "MLFLOW_BACKEND_STORE_URI": uri, "MLFLOW_AUTH": "true",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "100%-not-guessable",
        "MLFLOW_AUTH_DATABASE_URI": uri})
    args = next(line for line in out.splitlines() if line.startswith("args: "))
    assert "secret" not in args and "guessable" not in args
    assert "--app-name basic-auth" in args
    assert f"MLFLOW_BACKEND_STORE_URI={uri}" in out
    assert "MLFLOW_ARTIFACTS_DESTINATION=/var/lib/mlflow/artifacts" in out
    ini = runtime / "basic_auth.ini"
    assert stat.S_IMODE(ini.stat().st_mode) == 0o600
    import configparser
    parser = configparser.ConfigParser()
    parser.read(ini)
    assert parser["mlflow"]["admin_password"] == "100%-not-guessable"
    assert parser["mlflow"]["database_uri"] == uri
    assert parser["mlflow"]["default_permission"] == "READ"
    # A CSRF key made once for the VM, kept root- and mlflow-only, given through the environment.
    key = (tmp_path / "flask-secret-key").read_text()
    assert len(key) == 64 and stat.S_IMODE((tmp_path / "flask-secret-key").stat().st_mode) == 0o600
    assert f"MLFLOW_FLASK_SERVER_SECRET_KEY={key}" in out and key not in args
    again, _ = _server(tmp_path, {
        "MLFLOW_AUTH": "true", "MLFLOW_AUTH_ADMIN_PASSWORD": "100%-not-guessable"})
    assert f"MLFLOW_FLASK_SERVER_SECRET_KEY={key}" in again


def test_without_authentication_no_auth_app_and_no_ini(tmp_path):
    out, runtime = _server(tmp_path, {})
    assert "--app-name" not in out
    assert list(runtime.iterdir()) == []


def test_user_data_carries_checked_settings_in_a_root_only_file(capsys, tmp_path):
    import yaml

    from test_input_edges import run_cli

    team = tmp_path / "team.env"
    team.write_text(f"# the team's server\nMLFLOW_AUTH=true\nMLFLOW_AUTH_ADMIN_PASSWORD={PASSWORD}\n")
    target = tmp_path / "user-data"
    status, _ = run_cli(capsys, "user-data", "--profile", "debian-12", "--settings", team,
                        "-o", target)
    assert status == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    [entry] = [f for f in yaml.safe_load(target.read_text())["write_files"]
               if f["path"] == "/etc/mlflow/mlflow.env.pending"]
    assert entry["permissions"] == "0600" and entry["owner"] == "root:root"
    assert entry["content"] == f"MLFLOW_AUTH=true\nMLFLOW_AUTH_ADMIN_PASSWORD={PASSWORD}\n"


@pytest.mark.parametrize("content, expected", [
    ("MLFLOW_AUTH=true\n", "needs MLFLOW_AUTH_ADMIN_PASSWORD"),
    ("MLFLOW_ARTIFACTS_DESTINATION=s3://bucket\n", "needs AWS_ACCESS_KEY_ID"),
    ("MLFLOW_BACKEND_STORE_URI=oracle://db\n", "a database URI"),
    ("just words\n", "line 1 of"),
    ("# only a comment\n", "sets nothing"),
])
def test_bad_settings_stop_user_data_and_seed_before_anything_is_written(
        capsys, tmp_path, content, expected):
    from test_input_edges import run_cli

    team = tmp_path / "team.env"
    team.write_text(content)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    for command, target in (("user-data", tmp_path / "user-data"), ("seed", tmp_path / "s.iso")):
        status, err = run_cli(capsys, command, "--profile", "debian-12", "--settings", team,
                              "--ssh-key", key.with_suffix(".pub"), "-o", target)
        assert status == 2 and len(err) == 1
        assert err[0].startswith(f"error: SETTINGS={team}: ") and expected in err[0]
        assert not target.exists()


def test_a_seed_with_settings_hands_them_to_cloud_init_and_only_its_owner_reads_it(tmp_path):
    import yaml

    from mlflow_vm import seed

    text = seed.login_user_data("mlflow-admin", ["ssh-ed25519 AAAA me@host"], "",
                                f"MLFLOW_AUTH=true\nMLFLOW_AUTH_ADMIN_PASSWORD={PASSWORD}\n")
    config = yaml.safe_load(text)
    assert config["write_files"] == [{
        "path": "/etc/mlflow/mlflow.env.pending", "owner": "root:root", "permissions": "0600",
        "content": f"MLFLOW_AUTH=true\nMLFLOW_AUTH_ADMIN_PASSWORD={PASSWORD}\n"}]
    assert "write_files" not in yaml.safe_load(seed.login_user_data("u", ["k"]))


def test_status_says_whether_clients_log_in_without_showing_the_password(ctl, capsys):  # noqa: F811
    info = {
        "service": {"state": "active", "sub_state": "running", "enabled": True,
                    "uptime_seconds": 61, "restarts": 0},
        "health": "ok", "port": 5000, "urls": ["http://10.0.2.15:5000/"],
        "versions": {"mlflow": "3.17.2", "python": "3.11.2"},
        "backend_store": {"uri": ctl.redact("postgresql://mlflow:pw-db@10.0.2.2/mlflow")},
        "artifact_root": {"location": "s3://mlflow-artifacts/team"},
        "authentication": {"enabled": True, "admin": "admin",
                           "users": ctl.redact("postgresql://mlflow:pw-db@10.0.2.2/auth")},
        "disk": {"free": 1 << 30, "total": 4 << 30}, "port_held_by": [], "recent_errors": [],
    }
    ctl.print_status(info)
    out = capsys.readouterr().out
    assert "Login:          required; admin user admin, users in postgresql://mlflow:***@" in out
    assert "pw-db" not in out


def test_the_port_comes_from_port_not_from_the_settings(capsys, tmp_path):
    from test_input_edges import run_cli

    team = tmp_path / "team.env"
    team.write_text("MLFLOW_PORT=9090\n")
    target = tmp_path / "user-data"
    status, err = run_cli(capsys, "user-data", "--profile", "debian-12", "--port", "8080",
                          "--settings", team, "-o", target)
    assert status == 2 and "give the port as PORT=" in err[0]
    assert not target.exists()
