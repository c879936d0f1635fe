"""mlflow-prepare-db tells a current schema without importing MLflow."""

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


def test_head_revision_matches_alembic(prepare_db):
    expected = ScriptDirectory.from_config(_get_alembic_config("sqlite://")).get_current_head()
    assert prepare_db.head_revision() == expected


def test_schema_version_of_a_fresh_and_of_a_versioned_store(prepare_db, tmp_path):
    import sqlite3

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    assert prepare_db.schema_version(uri) is None
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('abc123')")
    assert prepare_db.schema_version(uri) == "abc123"
