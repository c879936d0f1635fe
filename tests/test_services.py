"""The host-side PostgreSQL and S3 servers of the VM tests, checked on the host.

A guest reaches them at 10.0.2.2, which QEMU forwards to 127.0.0.1: they must
take the credentials they hand out, listen on 127.0.0.1 and nowhere else,
and come back with their data after a restart.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from verify import services

MAKE_DEPS = "run `make deps`, which installs it"


def _postgres_missing() -> str | None:
    """Why a PostgreSQL server cannot run here, or None when it can."""
    if services.find_postgres() is None:
        return f"PostgreSQL is not installed under {services.POSTGRES_ROOT}: {MAKE_DEPS}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(services.POSTGRES_OS_USER)
        except KeyError:
            return f"there is no {services.POSTGRES_OS_USER!r} user: {MAKE_DEPS}"
    return None


def _listen_addresses(port: int) -> set[str]:
    """The addresses with a TCP socket listening on ``port``, from /proc/net."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)
                # The kernel prints each 32-bit word in host (little-endian) order.
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(str(ipaddress.ip_address(words)))
    return found


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with services.scratch_dir() as path:
        yield path


@pytest.fixture(scope="module")
def postgres(scratch: Path) -> Iterator[services.Postgres]:
    reason = _postgres_missing()
    if reason:
        pytest.skip(reason)
    with services.postgres_server(scratch) as server:
        yield server


@pytest.fixture(scope="module")
def s3(scratch: Path) -> Iterator[services.S3]:
    pytest.importorskip("moto.server", reason=f"moto is not installed: {MAKE_DEPS}")
    with services.s3_server(scratch) as server:
        yield server


def test_the_mlflow_role_logs_in_over_loopback_and_owns_its_database(postgres):
    assert postgres.query("SELECT current_user, current_database()") == "mlflow|mlflow"
    owner = postgres.query(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'mlflow'")
    assert owner == "mlflow"
    postgres.query("CREATE TABLE owned (id int); DROP TABLE owned")


def test_a_wrong_password_is_refused(postgres):
    with pytest.raises(services.ServiceError, match="password authentication failed"):
        postgres.query("SELECT 1", password="not-" + postgres.password)


def test_postgres_listens_on_loopback_only(postgres):
    assert _listen_addresses(postgres.port) == {"127.0.0.1"}


def test_the_uri_is_the_one_the_guest_uses(postgres):
    assert postgres.uri("10.0.2.2") == (
        f"postgresql+psycopg2://mlflow:{postgres.password}@10.0.2.2:{postgres.port}/mlflow")


def test_stop_makes_the_database_unreachable_and_start_brings_its_data_back(postgres):
    table = f"kept_{uuid.uuid4().hex[:8]}"
    postgres.query(f"CREATE TABLE {table} (value text); INSERT INTO {table} VALUES ('kept')")
    postgres.stop()
    try:
        assert _listen_addresses(postgres.port) == set()
        with pytest.raises(services.ServiceError, match="Connection refused"):
            postgres.query("SELECT 1")
    finally:
        postgres.start()
    assert postgres.query(f"SELECT value FROM {table}") == "kept"
    assert _listen_addresses(postgres.port) == {"127.0.0.1"}


def test_postgres_is_stopped_and_its_files_removed_on_exit():
    reason = _postgres_missing()
    if reason:
        pytest.skip(reason)
    with services.scratch_dir() as workdir:
        with services.postgres_server(workdir) as server:
            assert server.query("SELECT 1") == "1"
        assert _listen_addresses(server.port) == set()
        assert list(workdir.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to 'postgres'")
def test_a_workdir_the_postgres_user_cannot_enter_is_refused_clearly(tmp_path):
    if _postgres_missing():
        pytest.skip(_postgres_missing())
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(services.ServiceError, match="scratch_dir"):
        with services.postgres_server(private):
            pass
    assert list(private.iterdir()) == []


def test_s3_stores_and_lists_objects(s3):
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key="1/abc/artifacts/model.txt", Body=b"weights")
    client.put_object(Bucket=s3.bucket, Key="2/other.txt", Body=b"other")
    body = client.get_object(Bucket=s3.bucket, Key="1/abc/artifacts/model.txt")["Body"]
    assert body.read() == b"weights"
    assert s3.objects("1/") == ["1/abc/artifacts/model.txt"]
    assert set(s3.objects()) >= {"1/abc/artifacts/model.txt", "2/other.txt"}


def test_s3_has_the_artifact_bucket_and_the_guest_endpoint(s3):
    assert s3.bucket == "mlflow-artifacts"
    buckets = [bucket["Name"] for bucket in s3.client().list_buckets()["Buckets"]]
    assert buckets == ["mlflow-artifacts"]
    assert s3.endpoint("10.0.2.2") == f"http://10.0.2.2:{s3.port}"


def test_s3_listens_on_loopback_only(s3):
    assert _listen_addresses(s3.port) == {"127.0.0.1"}
