"""mlflow-prepare-db tells a current, an older and a too new schema apart
without importing MLflow."""

import importlib.machinery
import importlib.util

import pytest
from alembic.script import ScriptDirectory
from mlflow.store.db.utils import _get_alembic_config

from mlflow_vm.paths import PACKER


@pytest.fixture(scope="module")
def prepare_db():
    path = PACKER / "debian-12" / "files" / "mlflow-prepare-db"
    loader = importlib.machinery.SourceFileLoader("mlflow_prepare_db", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def test_revisions_and_head_match_alembic(prepare_db):
    script = ScriptDirectory.from_config(_get_alembic_config("sqlite://"))
    known, head = prepare_db.migrations()
    assert head == script.get_current_head()
    assert known == {revision.revision for revision in script.walk_revisions()}


def _store(tmp_path, revision):
    import sqlite3

    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    return f"sqlite:///{db}"


def test_a_schema_newer_than_the_installed_mlflow_is_refused_in_one_line(
        prepare_db, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", _store(tmp_path, "f00dfeedbeef"))
    ran = []
    monkeypatch.setattr(prepare_db.subprocess, "run", lambda *a, **k: ran.append(a))
    assert prepare_db.main() == 1
    assert ran == []
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "schema f00dfeedbeef is newer than MLflow" in record.getMessage()


def test_a_current_schema_is_left_alone_and_an_older_one_upgraded(
        prepare_db, tmp_path, monkeypatch):
    known, head = prepare_db.migrations()
    older = sorted(known - {head})[0]
    ran = []
    monkeypatch.setattr(prepare_db.subprocess, "run",
                        lambda command, **k: ran.append(command[1:3]) or
                        prepare_db.subprocess.CompletedProcess(command, 0))
    for revision in (head, older):
        folder = tmp_path / revision
        folder.mkdir()
        monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", _store(folder, revision))
        assert prepare_db.main() == 0
    assert ran == [["db", "upgrade"]]


def test_schema_version_of_a_fresh_and_of_a_versioned_store(prepare_db, tmp_path):
    import sqlite3

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    assert prepare_db.schema_version(uri) is None
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('abc123')")
    assert prepare_db.schema_version(uri) == "abc123"
