"""The MLflow server of a booted image, seen from the host and from inside."""

from __future__ import annotations

import uuid
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient

from mlflow_vm.vm import VM

STATE = "/var/lib/mlflow"
DATABASE = f"{STATE}/mlflow.db"
ARTIFACTS = f"{STATE}/artifacts"


def sql(host, query: str) -> str:
    """Run ``query`` on the guest's database with sqlite3, as the tutorial does."""
    result = host.run(f"sudo sqlite3 -readonly {DATABASE} \"{query}\"")
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def hello_world_run(vm: VM) -> str:
    """Log the tutorial's hello-world run from the host; return its run id."""
    mlflow.set_tracking_uri(vm.url)
    mlflow.set_experiment("Default")
    with mlflow.start_run() as run:
        mlflow.log_param("param1", 5)
        mlflow.log_metric("metric1", 0.85)
        mlflow.set_tag("tag1", "example")
    return run.info.run_id


def test_health_endpoint_answers(vm: VM) -> None:
    response = requests.get(f"{vm.url}/health", timeout=30)
    assert response.status_code == 200
    assert response.text.strip() == "OK"


def test_server_reports_the_profile_mlflow_version(vm: VM, profile) -> None:
    response = requests.get(f"{vm.url}/version", timeout=30)
    assert response.status_code == 200
    assert response.text.strip() == profile.mlflow_version


def test_mlflow_service_is_enabled_and_running_as_mlflow(host) -> None:
    service = host.service("mlflow")
    assert service.is_enabled
    assert service.is_running
    main_pid = host.check_output("systemctl show -p MainPID --value mlflow")
    assert host.check_output(f"ps -o user= -p {main_pid}") == "mlflow"


def test_server_listens_on_all_interfaces_at_the_configured_port(host) -> None:
    assert host.socket("tcp://0.0.0.0:5000").is_listening


def test_request_naming_the_vm_by_dns_name_is_served(vm: VM) -> None:
    response = requests.get(
        f"{vm.url}/api/2.0/mlflow/experiments/search",
        params={"max_results": 1},
        headers={"Host": "mlflow.example.com:5000"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def test_hello_world_run_is_searchable_through_the_api(vm: VM, hello_world_run: str) -> None:
    run = MlflowClient(vm.url).get_run(hello_world_run)
    assert run.data.params == {"param1": "5"}
    assert run.data.metrics == {"metric1": 0.85}
    assert run.data.tags["tag1"] == "example"


def test_hello_world_run_is_in_the_guest_database(host, hello_world_run: str) -> None:
    experiment = sql(
        host,
        "SELECT e.name FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
        f"WHERE r.run_uuid = '{hello_world_run}'",
    )
    assert experiment == "Default"
    assert sql(host, f"SELECT key, value FROM params WHERE run_uuid = '{hello_world_run}'") \
        == "param1|5"
    assert sql(host, f"SELECT key, value FROM metrics WHERE run_uuid = '{hello_world_run}'") \
        == "metric1|0.85"
    assert "tag1|example" in sql(
        host, f"SELECT key, value FROM tags WHERE run_uuid = '{hello_world_run}'"
    ).splitlines()


def test_artifact_logged_from_the_host_lands_in_the_artifact_root(
    vm: VM, host, hello_world_run: str, tmp_path: Path
) -> None:
    payload = f"artifact {uuid.uuid4()}\n".encode()
    source = tmp_path / "hello.txt"
    source.write_bytes(payload)
    client = MlflowClient(vm.url)
    client.log_artifact(hello_world_run, str(source))

    stored = host.check_output(
        f"sudo find {ARTIFACTS} -path '*{hello_world_run}*' -name hello.txt"
    )
    assert stored, f"hello.txt is not under {ARTIFACTS}"
    assert host.file(stored).content == payload

    downloaded = Path(client.download_artifacts(hello_world_run, "hello.txt", str(tmp_path / "d")))
    assert downloaded.read_bytes() == payload


def test_database_file_is_owned_by_mlflow_and_not_world_readable(host) -> None:
    database = host.file(DATABASE)
    assert database.exists
    assert database.user == "mlflow"
    assert database.mode & 0o007 == 0


def test_artifact_root_is_owned_by_mlflow_and_not_world_writable(host) -> None:
    root = host.file(ARTIFACTS)
    assert root.is_directory
    assert root.user == "mlflow"
    assert root.mode & 0o002 == 0


def test_database_holds_mlflow_tables(host) -> None:
    tables = set(sql(host, "SELECT name FROM sqlite_master WHERE type = 'table'").split())
    assert {"experiments", "runs", "params", "metrics", "tags", "alembic_version"} <= tables
