"""The MLflow web UI, opened in a real browser through the forwarded port.

A headless Chromium (Debian's package) renders the experiment page; the
test reads the rendered page and keeps a screenshot in output/logs/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlflow_vm.paths import OUTPUT
from mlflow_vm.vm import VM

EXPERIMENT = "verify-ui"
RUN_NAME = "browser-sees-this-run"
# The UI's JavaScript is several MB, served by an emulated CPU.
PAGE_TIMEOUT = 300


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium on this machine: `make deps` installs Debian's chromium")


def _browse(url: str, *output: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    command = [
        _chromium(), "--headless=new", "--disable-gpu", "--no-first-run",
        "--disable-dev-shm-usage", f"--user-data-dir={workdir}",
        "--window-size=1400,900", "--virtual-time-budget=60000", *output, url,
    ]
    if os.geteuid() == 0:
        command.insert(1, "--no-sandbox")
    return subprocess.run(command, capture_output=True, text=True, timeout=PAGE_TIMEOUT)


def test_browser_shows_the_logged_experiment_and_run(vm: VM, install: str, tmp_path: Path) -> None:
    client = MlflowClient(vm.url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (experiment.experiment_id if experiment
                     else client.create_experiment(EXPERIMENT))
    run = client.create_run(experiment_id, run_name=RUN_NAME)
    client.log_metric(run.info.run_id, "accuracy", 0.9)
    client.set_terminated(run.info.run_id)

    # Recent MLflow releases open an experiment on its overview, with the runs
    # list at .../runs; older ones list the runs at the experiment's address.
    pages = [f"{vm.url}/#/experiments/{experiment_id}/runs",
             f"{vm.url}/#/experiments/{experiment_id}"]
    for url in pages:
        page = _browse(url, "--dump-dom", workdir=tmp_path / "profile-dom")
        assert page.returncode == 0, page.stderr[-2000:]
        if RUN_NAME in page.stdout:
            break
    else:
        pytest.fail(f"no page of experiment {EXPERIMENT} lists run {RUN_NAME}")
    assert EXPERIMENT in page.stdout

    screenshot = OUTPUT / "logs" / f"verify-{install}-ui.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    shot = _browse(url, f"--screenshot={screenshot}", workdir=tmp_path / "profile-shot")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.stat().st_size > 10_000
