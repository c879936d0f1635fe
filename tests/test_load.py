"""The load benchmark's bookkeeping: percentiles, lost rows, its table, bad input."""

import pytest
import requests

from mlflow_vm import cli, load, load_compare


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(100, 0, -1)]
    assert load.percentile(values, 0.50) == 50.0
    assert load.percentile(values, 0.99) == 99.0
    assert load.percentile(values, 1.0) == 100.0
    assert load.percentile([0.25], 0.99) == 0.25
    assert load.percentile([], 0.5) == 0.0


def _ledger() -> load.Ledger:
    ledger = load.Ledger()
    ledger.run_created("a")
    ledger.params("a", {"worker": "1", "batch": "yes"})
    for step in range(4):
        ledger.metric("a", "loss", step, 1.0 / (step + 1))
    ledger.run_created("b")
    ledger.params("b", {"worker": "2"})
    ledger.metric("b", "loss", 0, 1.0)
    ledger.run_created("empty")
    return ledger


def test_acknowledged_rows_count_params_and_metric_steps() -> None:
    assert _ledger().acknowledged_rows() == 2 + 4 + 1 + 1


def test_lost_rows_counts_missing_and_changed_values_and_whole_runs() -> None:
    ledger = _ledger()
    stored = {
        # One param missing, one metric step missing, one with another value.
        "a": load.StoredRun({"worker": "1"}, {"loss": {0: 1.0, 1: 0.5, 3: 0.0}}),
        # Run b is gone: both its rows are lost.
        "empty": load.StoredRun({}, {}),
    }
    lost, unverified = load.count_lost(ledger, lambda run_id, record: stored.get(run_id))
    assert (lost, unverified) == (1 + 1 + 1 + 2, 0)


def test_rows_that_cannot_be_read_back_are_unverified_not_lost(monkeypatch) -> None:
    monkeypatch.setattr(load.time, "sleep", lambda seconds: None)

    def broken(run_id: str, record: load.RunRecord) -> load.StoredRun:
        if run_id == "b":
            raise requests.ConnectionError("gone")
        return load.StoredRun(record.params, record.metrics)

    assert load.count_lost(_ledger(), broken) == (0, 2)


def test_requests_and_errors_are_tallied_by_kind() -> None:
    ledger = load.Ledger()
    ledger.request(0.1, None)
    ledger.request(0.2, load.LOCKED)
    ledger.request(0.3, "HTTP 500")
    assert ledger.latencies == [0.1, 0.2, 0.3]
    assert ledger.errors == {load.LOCKED: 1, "HTTP 500": 1}
    assert load._error_kind(500, '{"message": "(sqlite3.OperationalError) database is '
                                 'locked"}') == load.LOCKED
    assert load._error_kind(503, "busy") == "HTTP 503"


def _result(rate: float, lost: int = 0) -> load.Result:
    return load.Result(clients=32, duration=10.0, requests=int(rate * 10), errors=1, locked=1,
                       error_kinds={load.LOCKED: 1}, p50=0.05, p99=0.5, acknowledged=100,
                       lost=lost, unverified=0)


def test_table_puts_servers_side_by_side_with_their_ratio() -> None:
    lines = load.table({"ours": _result(40.0), "tutorial": _result(10.0, lost=3)})
    text = "\n".join(lines)
    assert lines[0].split() == ["ours", "tutorial"]
    assert "requests/s" in text and "40.0" in text and "10.0" in text
    assert lines[[line.split("  ")[0] for line in lines].index("lost rows")].split()[-2:] == \
        ["0", "3"]
    assert "4.00" in [line for line in lines if line.startswith("throughput")][0]


@pytest.mark.parametrize("argv, message", [
    (["load", "--url", "http://127.0.0.1:5000", "--clients", "many"], "CLIENTS=many"),
    (["load", "--url", "http://127.0.0.1:5000", "--clients", "0"], "CLIENTS=0"),
    (["load", "--url", "http://127.0.0.1:5000", "--duration", "1m"], "DURATION=1m"),
    (["load", "--url", "http://10.1.2.3:5000"], "127.0.0.1"),
    (["load", "--url", "http://127.0.0.1:abc"], "127.0.0.1:PORT"),
    (["load", "--url", "http://127.0.0.1:99999"], "127.0.0.1:PORT"),
    (["load", "--url", "http://127.0.0.1:1"], "nothing answers at http://127.0.0.1:1/health"),
    (["load", "--image", "/nonexistent.qcow2"], "does not exist"),
])
def test_bad_load_input_is_one_error_line(capsys, argv, message) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_the_tutorial_server_is_started_with_the_tutorial_s_exact_arguments() -> None:
    line = load_compare.tutorial_command("/opt/mlflow", 5000)
    assert ("/opt/mlflow/bin/mlflow server --backend-store-uri sqlite:///database/mlflow.db "
            "--default-artifact-root=file:mlruns --host 0.0.0.0 --port 5000") in line
    assert "cd ~/mlflow-experiments" in line
    assert "MLFLOW_DISABLE_TELEMETRY=true" in line


def test_a_setting_to_try_must_be_key_value(capsys, tmp_path) -> None:
    image = tmp_path / "x.qcow2"
    image.write_bytes(b"")
    assert cli.main(["load", "--image", str(image), "--set", "MLFLOW_WORKERS"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --set MLFLOW_WORKERS is not KEY=VALUE"]


def test_waiting_for_runs_that_never_come_says_how_many_did():
    ledger = load.Ledger()
    ledger.run_created("a")
    with pytest.raises(TimeoutError, match="1 runs acknowledged, not 2"):
        ledger.wait_for_runs(2, timeout=0)
    ledger.wait_for_runs(1, timeout=0)


def test_a_backend_uri_the_image_would_refuse_stops_load_before_a_boot(capsys, monkeypatch):
    monkeypatch.setenv("BACKEND_URI", "redis://mlflow:hunter2@10.0.2.2/0")
    assert cli.main(["load", "--profile", "debian-12"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: BACKEND_URI: ") and "a database URI" in err
    assert "hunter2" not in err
