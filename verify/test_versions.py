"""The guest runs the Python and MLflow its profile and build manifest name."""

from __future__ import annotations

import pytest

from guest import VENV


def test_venv_runs_the_profile_python(host, profile) -> None:
    version = host.check_output(f"{VENV}/bin/python --version")
    assert version.startswith(f"Python {profile.python_version}.")


def test_venv_has_the_profile_mlflow(host, profile) -> None:
    assert host.pip("mlflow", pip_path=f"{VENV}/bin/pip").version == profile.mlflow_version


def test_build_manifest_records_the_versions_in_the_image(install, manifest, profile) -> None:
    if install != "image":
        pytest.skip("only a built image has a build manifest")
    assert manifest["profile"] == profile.name
    assert manifest["python_version"] == profile.python_version
    assert manifest["mlflow_version"] == profile.mlflow_version


def test_venv_is_a_link_to_one_named_for_its_release_and_lock(host, profile) -> None:
    """``mlflowctl upgrade`` builds the next venv beside this one and switches the link."""
    link = host.file(VENV)
    assert link.is_symlink
    target = link.linked_to
    assert target.startswith(f"{VENV}-{profile.mlflow_version}-")
    digest = host.check_output(f"sha256sum {target}/requirements.txt").split()[0]
    assert target == f"{VENV}-{profile.mlflow_version}-{digest[:8]}"


def test_venv_has_the_drivers_of_a_team_configuration(host) -> None:
    """PostgreSQL, MySQL and S3 settings work without installing anything."""
    imports = "import psycopg2, pymysql, boto3, flask_wtf; print('ok')"
    assert host.check_output(f'{VENV}/bin/python -c "{imports}"') == "ok"
