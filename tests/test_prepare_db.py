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
    monkeypatch.setattr(prepare_db, "upgrade_schema", ran.append)
    assert prepare_db.main() == 1
    assert ran == []
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "schema f00dfeedbeef is newer than MLflow" in record.getMessage()


def test_a_current_schema_is_left_alone_and_an_older_one_upgraded(
        prepare_db, tmp_path, monkeypatch):
    known, head = prepare_db.migrations()
    older = sorted(known - {head})[0]
    ran = []
    monkeypatch.setattr(prepare_db, "upgrade_schema", ran.append)
    uris = []
    for revision in (head, older):
        folder = tmp_path / revision
        folder.mkdir()
        uris.append(_store(folder, revision))
        monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", uris[-1])
        assert prepare_db.main() == 0
    assert ran == [uris[1]]


def test_an_older_schema_is_upgraded_to_the_head_without_the_uri_on_a_command_line(
        prepare_db, tmp_path, monkeypatch):
    import sqlalchemy
    from alembic import command
    from mlflow.store.tracking.dbmodels.initial_models import Base

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    engine = sqlalchemy.create_engine(uri)
    Base.metadata.create_all(engine)
    engine.dispose()
    script = ScriptDirectory.from_config(_get_alembic_config(uri))
    older = list(script.walk_revisions())[-5].revision
    command.upgrade(_get_alembic_config(uri), older)
    started = []
    monkeypatch.setattr("subprocess.Popen.__init__",
                        lambda self, *a, **k: started.append(a) or 1 / 0)
    prepare_db.upgrade_schema(uri)
    assert started == []
    with sqlalchemy.create_engine(uri).begin() as conn:
        assert conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")
                            ).scalar() == script.get_current_head()
