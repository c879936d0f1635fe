"""The install script hands pip's index settings to uv; the locks leave the index to them."""

import configparser
import os
import socket
import subprocess
import sys

import yaml

from mlflow_vm import lock, seed
from mlflow_vm.paths import REQUIREMENTS, UV_REQUIREMENTS
from test_render import rendered


def _function(script: str, name: str) -> str:
    start = script.index(f"{name}() {{")
    return script[start:script.index("\n}\n", start) + 3]


def _pip_config(env: dict[str, str]) -> str:
    """What `pip config list` prints with ``env`` and no other configuration."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        env={"PATH": os.environ["PATH"], "PIP_CONFIG_FILE": os.devnull, **env},
        capture_output=True, text=True, check=True,
    ).stdout


def _uv_install(tmp_path, pip_config: str) -> list[str]:
    """Run the script's uv_install with a fake uv that prints what it was given."""
    script = rendered("debian-12")["packer/debian-12/files/install-mlflow.sh"]
    uv = tmp_path / "venv" / "bin" / "uv"
    uv.parent.mkdir(parents=True)
    uv.write_text("#!/bin/sh\nenv | grep -E '^(UV_|SSL_CERT_FILE=)' | sort\necho \"args: $*\"\n")
    uv.chmod(0o755)
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c",
         _function(script, "pip_setting") + _function(script, "uv_install")
         + f'uv_install {tmp_path} "$PIP_CONFIG_LIST" --quiet\n'],
        env={"PATH": os.environ["PATH"], "PIP_CONFIG_LIST": pip_config},
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()


def test_uv_gets_the_index_find_links_no_index_trusted_host_and_ca_bundle_given_to_pip(tmp_path):
    out = _uv_install(tmp_path, _pip_config({
        "PIP_INDEX_URL": "https://mirror.internal/simple",
        "PIP_EXTRA_INDEX_URL": "https://extra.internal/simple",
        "PIP_FIND_LINKS": "http://10.0.2.2:8090/",
        "PIP_NO_INDEX": "1",
        "PIP_TRUSTED_HOST": "10.0.2.2",
        "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
    }))
    assert out == [
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        f"UV_CACHE_DIR={tmp_path}/cache",
        "UV_DEFAULT_INDEX=https://mirror.internal/simple",
        "UV_FIND_LINKS=http://10.0.2.2:8090/",
        "UV_INDEX=https://extra.internal/simple",
        "UV_INSECURE_HOST=10.0.2.2",
        "args: pip install --no-index --quiet",
    ]


def test_uv_follows_a_pip_conf_and_pip_variables_win_over_it(tmp_path):
    # The pip.conf the tests' user-data writes to reach the host's wheelhouse,
    # as `pip config list` shows it (PIP_CONFIG_FILE alone cannot keep this
    # machine's own /etc/pip.conf out of pip's view).
    user_data = seed.with_wheelhouse("#cloud-config\n", "http://10.0.2.2:8090/")
    pip_conf = configparser.ConfigParser()
    pip_conf.read_string(yaml.safe_load(user_data)["write_files"][0]["content"])
    listed = "".join(f"global.{key}='{value}'\n" for key, value in pip_conf["global"].items())
    assert _uv_install(tmp_path / "a", listed) == [
        f"UV_CACHE_DIR={tmp_path}/a/cache",
        "UV_FIND_LINKS=http://10.0.2.2:8090/",
        "UV_INSECURE_HOST=10.0.2.2",
        "args: pip install --no-index --quiet",
    ]
    variables = _pip_config({"PIP_FIND_LINKS": "/srv/wheels", "PIP_NO_INDEX": "false"})
    assert _uv_install(tmp_path / "b", variables + listed) == [
        f"UV_CACHE_DIR={tmp_path}/b/cache",
        "UV_FIND_LINKS=/srv/wheels",
        "UV_INSECURE_HOST=10.0.2.2",
        "args: pip install --quiet",
    ]


def test_uv_without_pip_settings_uses_its_defaults(tmp_path):
    assert _uv_install(tmp_path, _pip_config({})) == [f"UV_CACHE_DIR={tmp_path}/cache",
                                                      "args: pip install --quiet"]


def test_the_guest_uv_lock_pins_the_uv_of_the_project_tools():
    pinned = lock.REQUIREMENT.match(
        next(line for line in UV_REQUIREMENTS.read_text().splitlines()
             if line.startswith("uv=="))).group(2)
    assert pinned == lock.uv_version(), "run `make lock` after changing uv in dev.txt"
    assert "--hash=sha256:" in UV_REQUIREMENTS.read_text()


def test_the_locks_leave_the_package_index_to_pip_index_url(tmp_path):
    """A mirror or private index given as PIP_INDEX_URL is the one pip asks."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    index = f"http://127.0.0.1:{port}/simple"
    for lock_file in sorted(REQUIREMENTS.glob("*.txt")):
        if lock_file.name == "dev.txt":
            continue
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
             "--retries", "0", "--timeout", "2", "-d", str(tmp_path), "-r", str(lock_file)],
            env={**os.environ, "PIP_INDEX_URL": index, "PIP_FIND_LINKS": "",
                 "PIP_NO_INDEX": "", "PIP_CONSTRAINT": "", "PIP_CONFIG_FILE": os.devnull},
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode != 0 and f"127.0.0.1:{port}" in result.stdout + result.stderr, (
            f"{lock_file.name} does not send pip to PIP_INDEX_URL")
