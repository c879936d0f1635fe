"""The backend store: a SQLite file the tutorial's sqlite3 commands can read."""

from __future__ import annotations

from guest import DATABASE, VENV, sql

# alembic's head revision of the MLflow installed in the guest.
HEAD_REVISION = (
    "import mlflow.store.db.utils as u; from alembic.script import ScriptDirectory; "
    "print(ScriptDirectory.from_config(u._get_alembic_config('sqlite://')).get_current_head())"
)


def test_database_file_is_at_the_configured_path(host) -> None:
    with host.sudo():
        assert host.file(DATABASE).is_file
    uri = host.check_output("sudo grep ^MLFLOW_BACKEND_STORE_URI= /etc/mlflow/mlflow.env")
    assert uri == f"MLFLOW_BACKEND_STORE_URI=sqlite:///{DATABASE}"


def test_database_file_is_owned_by_mlflow_and_not_world_readable(host) -> None:
    with host.sudo():
        database = host.file(DATABASE)
        assert database.user == "mlflow"
        assert database.mode & 0o007 == 0


def test_database_holds_mlflow_tables(host) -> None:
    tables = set(sql(host, "SELECT name FROM sqlite_master WHERE type = 'table'").split())
    assert {"experiments", "runs", "params", "metrics", "tags", "alembic_version"} <= tables


def test_schema_is_at_the_head_revision_of_the_installed_mlflow(host) -> None:
    head = host.check_output(f'{VENV}/bin/python -c "{HEAD_REVISION}"')
    assert sql(host, "SELECT version_num FROM alembic_version") == head


def test_database_uses_write_ahead_logging(host) -> None:
    assert sql(host, "PRAGMA journal_mode") == "wal"


def test_hello_world_run_is_in_the_guest_database(host, hello_world_run: str) -> None:
    run = f"WHERE run_uuid = '{hello_world_run}'"
    experiment = sql(
        host,
        "SELECT e.name FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
        f"WHERE r.run_uuid = '{hello_world_run}'",
    )
    assert experiment == "Default"
    assert sql(host, f"SELECT key, value FROM params {run}") == "param1|5"
    assert sql(host, f"SELECT key, value FROM metrics {run}") == "metric1|0.85"
    assert "tag1|example" in sql(host, f"SELECT key, value FROM tags {run}").splitlines()
