"""Each profile renders with the right Python, pins, paths and port."""

import base64
import gzip
import shutil
import subprocess

import pytest
import yaml

from mlflow_vm import profiles, render
from mlflow_vm.errors import UserError
from mlflow_vm.paths import UV_REQUIREMENTS


def rendered(name):
    """The rendered files of a profile, keyed by path relative to the top."""
    return {
        item.path.relative_to(render.ROOT).as_posix(): item.content
        for item in render.render_profile(profiles.get(name))
    }


@pytest.mark.parametrize("name", ["ubuntu-22.04", "ubuntu-24.04", "debian-12"])
def test_install_script_uses_the_profile_python_and_mlflow(name):
    profile = profiles.get(name)
    script = rendered(name)[f"packer/{name}/files/install-mlflow.sh"]
    assert f"python=python{profile.python_version}\n" in script
    assert f"MLflow {profile.mlflow_version}" in script
    assert "--require-hashes" in script


def test_deadsnakes_is_added_only_on_ubuntu_22_04():
    for name in ("ubuntu-22.04", "ubuntu-24.04", "debian-12"):
        script = rendered(name)[f"packer/{name}/files/install-mlflow.sh"]
        assert ("ppa:deadsnakes/ppa" in script) == (name == "ubuntu-22.04")
        # deadsnakes ships venv support as its own package.
        assert 'apt_install "$python" "$python-venv"' in script


@pytest.mark.parametrize("name", ["ubuntu-22.04", "ubuntu-24.04", "debian-12"])
def test_settings_use_absolute_state_paths_and_default_port(name):
    env = rendered(name)[f"packer/{name}/files/mlflow.env"]
    assert "MLFLOW_BACKEND_STORE_URI=sqlite:////var/lib/mlflow/mlflow.db\n" in env
    assert "MLFLOW_ARTIFACTS_DESTINATION=/var/lib/mlflow/artifacts\n" in env
    assert "MLFLOW_HOST=0.0.0.0\n" in env
    assert "MLFLOW_PORT=5000\n" in env
    assert "MLFLOW_DISABLE_TELEMETRY=true\n" in env


def test_gunicorn_timeout_is_set_only_where_mlflow_runs_gunicorn():
    assert "MLFLOW_GUNICORN_OPTS=--timeout 600" in rendered("ubuntu-22.04")[
        "packer/ubuntu-22.04/files/mlflow.env"]
    assert "GUNICORN" not in rendered("ubuntu-24.04")["packer/ubuntu-24.04/files/mlflow.env"]


def test_unit_runs_as_mlflow_and_restarts_on_failure():
    unit = rendered("debian-12")["packer/debian-12/files/mlflow.service"]
    for line in ("User=mlflow", "Restart=on-failure",
                 "After=network-online.target mlflow-settings.service",
                 "EnvironmentFile=/etc/mlflow/mlflow.env", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ReadWritePaths=/var/lib/mlflow",
                 "RuntimeDirectoryMode=0700"):
        assert f"\n{line}\n" in unit


@pytest.mark.parametrize("name", ["ubuntu-22.04", "ubuntu-24.04", "debian-12"])
def test_every_unit_is_installed_and_the_backup_timer_enabled(name):
    files = rendered(name)
    script = files[f"packer/{name}/files/install-mlflow.sh"]
    units = [guest for guest in render.GUEST_FILES if guest.endswith((".service", ".timer"))]
    assert set(units) == {"mlflow.service", "mlflow-backup.service", "mlflow-backup.timer",
                          "mlflow-settings.service"}
    for unit in units:
        assert f'"$src/{unit}" /etc/systemd/system/{unit}' in script
    assert "systemctl enable mlflow.service mlflow-backup.timer" in script
    timer = files[f"packer/{name}/files/mlflow-backup.timer"]
    assert "\nPersistent=true\n" in timer and "\nWantedBy=timers.target\n" in timer
    service = files[f"packer/{name}/files/mlflow-backup.service"]
    assert "ExecStart=/usr/local/bin/mlflowctl backup --keep 7\n" in service


@pytest.mark.parametrize("name", ["ubuntu-22.04", "ubuntu-24.04", "debian-12"])
def test_standalone_user_data_carries_the_same_files_and_lock(name):
    files = rendered(name)
    config = yaml.safe_load(files[f"cloud-init/{name}/user-data"])
    written = {entry["path"].rsplit("/", 1)[1]: entry for entry in config["write_files"]}
    locks = {"requirements.txt": profiles.get(name).requirements_file.read_text(),
             "uv-requirements.txt": UV_REQUIREMENTS.read_text()}
    for guest_file in [*render.GUEST_FILES, *locks]:
        entry = written[guest_file]
        content = entry["content"]
        if entry.get("encoding") == "gz+b64":
            content = gzip.decompress(base64.b64decode(content)).decode()
        expected = locks.get(guest_file) or files[f"packer/{name}/files/{guest_file}"]
        assert content == expected, guest_file
    assert config["runcmd"] == [[
        "sh", "-c", "/var/tmp/mlflow-install/install-mlflow.sh /var/tmp/mlflow-install"
        " && rm -rf /var/tmp/mlflow-install"]]


def test_packer_build_uses_the_profile_lock_file():
    build = rendered("ubuntu-22.04")["packer/ubuntu-22.04/build.pkr.hcl"]
    assert '"requirements/mlflow-py3.9.txt"' in build


def test_committed_files_match_the_templates():
    assert render.check() == []


def test_undefined_variable_names_the_template_and_line(tmp_path, monkeypatch):
    for relative in [*render.GUEST_FILES.values(), *render.BUILD_ONLY_FILES.values()]:
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((render.TEMPLATES / relative).read_text())
    (tmp_path / "files/mlflow.env.j2").write_text("A=1\nB={{ no_such_setting }}\n")
    monkeypatch.setattr(render, "TEMPLATES", tmp_path)
    with pytest.raises(UserError) as excinfo:
        render.render_profile(profiles.get("debian-12"))
    assert "mlflow.env.j2:2" in str(excinfo.value)
    assert "no_such_setting" in str(excinfo.value)


def test_a_template_rendering_invalid_yaml_is_refused(tmp_path, monkeypatch):
    for template in ["cloud-init/user-data.j2", "cloud-init/build-user-data.j2",
                     "cloud-init/build-meta-data.j2", "packer", "files"]:
        source = render.TEMPLATES / template
        if source.is_dir():
            shutil.copytree(source, tmp_path / template)
        else:
            (tmp_path / template).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, tmp_path / template)
    broken = tmp_path / "cloud-init/user-data.j2"
    broken.write_text(broken.read_text() + "  - : broken: [\n")
    monkeypatch.setattr(render, "TEMPLATES", tmp_path)
    with pytest.raises(UserError) as excinfo:
        render.render_profile(profiles.get("debian-12"))
    assert str(excinfo.value).startswith("templates/cloud-init/user-data.j2 renders invalid YAML")


def test_template_error_leaves_committed_files_untouched(tmp_path, monkeypatch):
    before = {p: p.read_text() for p in (render.PACKER / "debian-12").rglob("*") if p.is_file()}
    monkeypatch.setattr(render, "TEMPLATES", tmp_path)
    with pytest.raises(UserError):
        render.write(["debian-12"])
    after = {p: p.read_text() for p in (render.PACKER / "debian-12").rglob("*") if p.is_file()}
    assert before == after


@pytest.mark.parametrize("name", ["ubuntu-22.04", "ubuntu-24.04", "debian-12"])
def test_image_runs_cloud_init_with_the_none_datasource_when_no_seed_exists(name, tmp_path):
    script = rendered(name)[f"packer/{name}/files/cleanup-image.sh"]
    assert "echo 'policy: search,found=all,maybe=none,notfound=enabled' " \
        ">/etc/cloud/ds-identify.cfg" in script
    start = script.index("cat >/etc/cloud/cloud.cfg.d/95-mlflow-image.cfg <<'EOF'\n")
    body = script[script.index("\n", start) + 1:script.index("\nEOF\n", start)]
    config = yaml.safe_load(body)
    assert config["datasource_list"][-1] == "None"
    assert "Ec2" not in config["datasource_list"]
    snippet = tmp_path / "95-mlflow-image.cfg"
    snippet.write_text("#cloud-config\n" + body + "\n")
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(snippet)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
