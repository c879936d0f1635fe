"""Boot a built image once and load, on the same VM, its service and then the
tutorial's one-command server, for a side-by-side table; or the service on
its SQLite store and then on a database server.

The tutorial's server is its exact command (``mlflow server
--backend-store-uri sqlite:///database/mlflow.db --default-artifact-root
file:mlruns --host 0.0.0.0 --port 5000``) run by hand by the login user in
``~/mlflow-experiments``, with the image's MLflow, once the image's own
service is stopped: same port, same forward, same CPUs. Telemetry is off for
both, so the guest sends nothing anywhere.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from pathlib import Path

from . import load
from .errors import UserError
from .vm import VM, BootOptions

LOG = logging.getLogger(__name__)
OURS = "image service"
TUTORIAL = "tutorial command"
TUTORIAL_DIR = "mlflow-experiments"
SETTINGS = "/etc/mlflow/mlflow.env"


def tutorial_command(venv: str, port: int) -> str:
    """The shell line that starts the tutorial's server in the background, as the
    login user, in the folder the tutorial uses."""
    server = (f"{venv}/bin/mlflow server --backend-store-uri sqlite:///database/mlflow.db "
              f"--default-artifact-root=file:mlruns --host 0.0.0.0 --port {port}")
    # Only the server goes to the background, its output to a file, so the
    # SSH session that starts it ends at once.
    return (f"mkdir -p ~/{TUTORIAL_DIR}/database && cd ~/{TUTORIAL_DIR} && "
            "(MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true "
            f"nohup {server} > server.log 2>&1 < /dev/null &) && echo started")


def run(image: Path, port: int, clients: int, duration: float,
        settings: list[str] | None = None, venv: str = "/opt/mlflow") -> dict[str, load.Result]:
    """Measure the image's service, then the tutorial's server, on one VM.
    ``settings`` (KEY=VALUE) are appended to mlflow.env first, to measure a
    setting before baking it into an image."""
    results: dict[str, load.Result] = {}
    with VM(image, BootOptions(guest_port=port)) as machine:
        machine.wait_for_ssh()
        machine.wait_for_http("/health")
        if settings:
            # Appended lines win over earlier ones in a systemd EnvironmentFile;
            # this works on images older than mlflowctl too.
            words = " ".join(shlex.quote(item) for item in settings)
            applied = machine.ssh(f"printf '%s\\n' {words} | sudo tee -a {SETTINGS} >/dev/null"
                                  " && sudo systemctl restart mlflow", timeout=600)
            if applied.returncode != 0:
                raise RuntimeError(f"could not apply {words}: {applied.stderr.strip()}")
            LOG.info("Applied %s; waiting for the server to restart", words)
            machine.wait_for_http("/health")
        LOG.info("Measuring %s", OURS)
        results[OURS] = load.run(machine.url, clients, duration)
        for line in load.table({OURS: results[OURS]}):
            LOG.info("%s", line)

        stopped = machine.ssh("sudo systemctl stop mlflow", timeout=180)
        if stopped.returncode != 0:
            raise RuntimeError(f"could not stop mlflow.service: {stopped.stderr.strip()}")
        started = machine.ssh(f"bash -c {shlex.quote(tutorial_command(venv, port))}")
        if started.returncode != 0:
            raise RuntimeError(f"could not start the tutorial's server: {started.stderr.strip()}")
        machine.wait_for_http("/health")
        LOG.info("Measuring %s", TUTORIAL)
        results[TUTORIAL] = load.run(machine.url, clients, duration)
    return results


def run_backends(image: Path, port: int, clients: int, duration: float,
                 backend_uri: str) -> dict[str, load.Result]:
    """Measure the image's service on its SQLite store, then on the database at
    ``backend_uri`` (as the guest reaches it), on one VM. The URI reaches the
    guest through SSH's stdin and ``mlflowctl set --from``, never a command line."""
    results: dict[str, load.Result] = {}
    with VM(image, BootOptions(guest_port=port)) as machine:
        machine.wait_for_ssh()
        machine.wait_for_http("/health")
        LOG.info("Measuring the service on SQLite")
        results["SQLite"] = load.run(machine.url, clients, duration)
        for line in load.table({"SQLite": results["SQLite"]}):
            LOG.info("%s", line)
        moved = subprocess.run(
            machine.ssh_command("sudo install -m 0600 /dev/stdin /var/tmp/backend.env && "
                                "sudo mlflowctl set --from /var/tmp/backend.env; status=$?; "
                                "sudo rm -f /var/tmp/backend.env; exit $status"),
            input=f"MLFLOW_BACKEND_STORE_URI={backend_uri}\n", text=True,
            capture_output=True, timeout=1200)
        if moved.returncode != 0:
            raise UserError(f"the VM refused BACKEND_URI: {moved.stderr.strip()}")
        machine.wait_for_http("/health")
        name = backend_uri.split(":", 1)[0].split("+", 1)[0]
        LOG.info("Measuring the service on %s", name)
        results[name] = load.run(machine.url, clients, duration)
    return results
