"""The service that runs MLflow, and what a client on another machine sees."""

from __future__ import annotations

import requests
from mlflow.tracking import MlflowClient

from guest import setting
from mlflow_vm.vm import VM


def test_health_endpoint_answers(vm: VM) -> None:
    response = requests.get(f"{vm.url}/health", timeout=30)
    assert response.status_code == 200
    assert response.text.strip() == "OK"


def test_version_endpoint_reports_the_profile_mlflow(vm: VM, profile) -> None:
    response = requests.get(f"{vm.url}/version", timeout=30)
    assert response.status_code == 200
    assert response.text.strip() == profile.mlflow_version


def test_web_ui_page_loads(vm: VM) -> None:
    response = requests.get(f"{vm.url}/", timeout=60)
    assert response.status_code == 200
    assert "<title>MLflow</title>" in response.text


def test_mlflow_service_is_enabled_and_active(host) -> None:
    service = host.service("mlflow")
    assert service.is_enabled
    assert service.is_running


def test_server_runs_as_the_mlflow_user_not_root(host) -> None:
    main_pid = host.check_output("systemctl show -p MainPID --value mlflow")
    assert host.check_output(f"ps -o user= -p {main_pid}") == "mlflow"
    assert host.user("mlflow").shell in ("/usr/sbin/nologin", "/sbin/nologin")


def test_server_listens_on_all_interfaces_at_the_configured_port(host) -> None:
    port = setting(host, "MLFLOW_PORT")
    assert host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_request_naming_the_vm_by_a_dns_name_is_served(vm: VM) -> None:
    response = requests.get(
        f"{vm.url}/api/2.0/mlflow/experiments/search",
        params={"max_results": 1},
        headers={"Host": "mlflow.example.com:5000"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def test_hello_world_run_is_searchable_through_the_api(vm: VM, hello_world_run: str) -> None:
    client = MlflowClient(vm.url)
    experiment = client.get_experiment_by_name("Default")
    found = client.search_runs([experiment.experiment_id], "params.param1 = '5'")
    assert hello_world_run in [run.info.run_id for run in found]
    run = client.get_run(hello_world_run)
    assert run.data.params == {"param1": "5"}
    assert run.data.metrics == {"metric1": 0.85}
    assert run.data.tags["tag1"] == "example"
