"""Throwaway PostgreSQL and S3 servers on the host, for the VM tests.

A guest on QEMU user networking reaches ``10.0.2.2:PORT``, which QEMU
forwards to the host's ``127.0.0.1:PORT``. Both servers here listen on
127.0.0.1 only, on a free port, and keep everything they write inside the
folder they are given; each is stopped on exit, whatever happened, and
PostgreSQL's files are removed (moto keeps only its log there).

- :func:`postgres_server`: a cluster of Debian's ``postgresql`` package with
  a role and a database ``mlflow`` behind a password. When the tests run as
  root, the server runs as the package's ``postgres`` user, because initdb
  refuses root: its folder must then be reachable by that user, which
  :func:`scratch_dir` gives.
- :func:`s3_server`: moto's standalone S3 server with a bucket
  ``mlflow-artifacts``.
"""

from __future__ import annotations

import ctypes
import http.client
import logging
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_vm.vm import free_port

LOG = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
POSTGRES_ROOT = Path("/usr/lib/postgresql")
POSTGRES_OS_USER = "postgres"
DATABASE = "mlflow"
BUCKET = "mlflow-artifacts"
S3_ACCESS_KEY = "mlflow-test-access-key"
S3_REGION = "us-east-1"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
COMMAND_TIMEOUT = 120.0


class ServiceError(RuntimeError):
    """A test service could not be set up, started, stopped or queried."""


@contextmanager
def scratch_dir(prefix: str = "mlflow-vm-services-") -> Iterator[Path]:
    """A new folder in the system's temp folder, removed on exit.

    Unlike pytest's ``tmp_path`` (under a folder only its owner may enter),
    other users may pass through it (mode 0711), so a server that runs as
    ``postgres`` can reach its own files inside.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        path.chmod(0o711)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without the caller's libpq settings, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(extra)
    return env


def _run(command: Sequence[str], *, what: str, **kwargs: Any) -> str:
    """Run ``command``; its stdout, or a ServiceError naming ``what`` failed."""
    kwargs.setdefault("timeout", COMMAND_TIMEOUT)
    try:
        result = subprocess.run(
            list(command), capture_output=True, text=True, check=False, **kwargs
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ServiceError(f"{what} failed: {err}") from err
    if result.returncode != 0:
        raise ServiceError(
            f"{what} failed (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()}"
        )
    return result.stdout


def _wait_until(
    ready: Callable[[], bool], *, what: str, log: Path, timeout: float = READY_TIMEOUT
) -> None:
    """Poll ``ready()`` until it is true, or raise with the tail of ``log``."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise ServiceError(
                f"{what} did not accept connections within {timeout:.0f} s; "
                f"end of {log}:\n{_tail(log)}"
            )
        time.sleep(0.2)


def _answers_http(port: int) -> bool:
    """Whether an HTTP server on 127.0.0.1:``port`` answers a request in time."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


# PostgreSQL ---------------------------------------------------------------


def find_postgres() -> Path | None:
    """The bin folder of the newest PostgreSQL server installed, if any."""
    majors = [
        path.parent
        for path in POSTGRES_ROOT.glob("*/bin/initdb")
        if path.parent.parent.name.replace(".", "").isdigit()
    ]
    if not majors:
        return None

    def version(bindir: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in bindir.parent.name.split("."))

    return max(majors, key=version)


def _server_account() -> tuple[str, list[str]]:
    """The OS user the server runs as, and the prefix that runs a command as it."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name, []
    try:
        pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError as err:
        raise ServiceError(
            f"there is no {POSTGRES_OS_USER!r} user to run PostgreSQL as "
            "(Debian's postgresql package creates it): run `make deps`"
        ) from err
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return POSTGRES_OS_USER, [runuser, "-u", POSTGRES_OS_USER, "--"]


@dataclass
class _Cluster:
    """A PostgreSQL data folder, its socket and its log, under ``root``."""

    bindir: Path
    root: Path
    port: int
    account: str
    runas: list[str]
    running: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockets(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def run(self, *command: str, what: str, **kwargs: Any) -> str:
        """Run one of the cluster's programs as the server's OS user."""
        program = str(self.bindir / command[0])
        return _run(
            [*self.runas, program, *command[1:]],
            what=what,
            cwd=self.root,
            env=_clean_env(),
            **kwargs,
        )

    def create(self) -> None:
        """Give the folders to the server's user and initialise the cluster."""
        self.sockets.mkdir(mode=0o700)
        if self.runas:
            for path in (self.root, self.sockets):
                shutil.chown(path, user=self.account, group=self.account)
        self.run(
            "initdb", "--pgdata", str(self.data), "--username", self.account,
            "--auth-local=peer", "--auth-host=scram-sha-256", "--encoding=UTF8",
            "--no-locale", "--no-sync",
            what="initdb",
        )

    def configure(self) -> None:
        """Listen on 127.0.0.1 only; password login for the mlflow role over TCP.
        Commits are flushed to disk, as on a production server, so that
        throughput figures measured against it mean something."""
        settings = {
            "listen_addresses": f"'{LOOPBACK}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.sockets}'",
            "password_encryption": "'scram-sha-256'",
            "ssl": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("".join(f"{key} = {value}\n" for key, value in settings.items()))
        (self.data / "pg_hba.conf").write_text(
            f"local all {self.account} peer\n"
            f"host all {DATABASE} {LOOPBACK}/32 scram-sha-256\n"
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections on TCP."""
        if self.running:
            return
        self.running = True
        try:
            self.run(
                "pg_ctl", "start", "--pgdata", str(self.data), "--log", str(self.log),
                "--wait", "--timeout", str(int(READY_TIMEOUT)),
                what="starting PostgreSQL",
            )
        except ServiceError as err:
            raise ServiceError(f"{err}\nend of {self.log}:\n{_tail(self.log)}") from err
        _wait_until(self._ready, what=f"PostgreSQL on port {self.port}", log=self.log)
        LOG.info("PostgreSQL listens on %s:%d (data: %s)", LOOPBACK, self.port, self.data)

    def _ready(self) -> bool:
        """Whether pg_isready finds the server accepting connections over TCP."""
        result = subprocess.run(
            [str(self.bindir / "pg_isready"), "--host", LOOPBACK, "--port", str(self.port),
             "--username", DATABASE, "--dbname", DATABASE, "--timeout", "1"],
            capture_output=True, check=False, env=_clean_env(), timeout=10,
        )
        return result.returncode == 0

    def stop(self) -> None:
        """Stop the server with a fast shutdown, or by its own PID if that fails."""
        self.running = False
        if not (self.data / "postmaster.pid").exists():
            return
        try:
            self.run(
                "pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "fast",
                "--wait", "--timeout", str(int(STOP_TIMEOUT)),
                what="stopping PostgreSQL",
            )
        except ServiceError as err:
            LOG.warning("%s; killing the server by its PID", err)
            self._kill()
        LOG.info("PostgreSQL on port %d stopped", self.port)

    def _postmaster(self) -> int | None:
        """The PID in postmaster.pid, if that process still serves this cluster."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        return pid if str(self.data).encode() in command else None

    def _kill(self) -> None:
        """Shut the postmaster down at once by its PID, then kill it if it lingers."""
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            pid = self._postmaster()
            if pid is None:
                return
            os.kill(pid, sig)
            deadline = time.monotonic() + 5
            while self._postmaster() == pid and time.monotonic() < deadline:
                time.sleep(0.1)

    def setup_sql(self, sql: str) -> None:
        """Run ``sql`` as the superuser over the cluster's own unix socket."""
        self.run(
            "psql", "--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1",
            "--host", str(self.sockets), "--port", str(self.port),
            "--username", self.account, "--dbname", "postgres",
            what="setting up the mlflow role and database",
            input=sql,
        )


@dataclass
class Postgres:
    """A running throwaway PostgreSQL server with the ``mlflow`` database."""

    port: int
    user: str
    password: str = field(repr=False)
    database: str
    _cluster: _Cluster = field(repr=False)

    def uri(self, host: str) -> str:
        """The SQLAlchemy URI MLflow uses to reach the database at ``host``."""
        return (
            f"postgresql+psycopg2://{self.user}:{self.password}"
            f"@{host}:{self.port}/{self.database}"
        )

    def create_database(self, name: str) -> str:
        """Create the database ``name``, owned by the mlflow role; return its
        URI for the host ``10.0.2.2``, as :meth:`uri` does."""
        self._cluster.setup_sql(f"CREATE DATABASE {name} OWNER {self.user};\n")
        return self.uri("10.0.2.2").rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        """Stop the server, keeping its data and port for :meth:`start`."""
        self._cluster.stop()

    def start(self) -> None:
        """Start the server again on the same port with the same data."""
        self._cluster.start()

    def query(self, sql: str, password: str | None = None) -> str:
        """Run ``sql`` with psql over TCP 127.0.0.1 as the mlflow role.

        Returns psql's unaligned, tuples-only output (``-At``) without its
        final newline. ``password`` replaces the role's own, to check that a
        wrong one is refused. Raises ServiceError with psql's message when
        the login or the statement fails.
        """
        return _run(
            [str(self._cluster.bindir / "psql"), "--no-psqlrc", "-At",
             "--set", "ON_ERROR_STOP=1", "--host", LOOPBACK, "--port", str(self.port),
             "--username", self.user, "--dbname", self.database, "--command", sql],
            what="psql",
            env=_clean_env(
                PGPASSWORD=self.password if password is None else password,
                PGCONNECT_TIMEOUT="5",
            ),
            timeout=60,
        ).rstrip("\n")


def _check_reachable(workdir: Path, runas: list[str], account: str) -> None:
    """Refuse a workdir the server's OS user cannot enter."""
    if not runas:
        return
    probe = subprocess.run(
        [*runas, "test", "-x", str(workdir)], capture_output=True, check=False, timeout=30
    )
    if probe.returncode != 0:
        raise ServiceError(
            f"the {account!r} user cannot enter {workdir}: PostgreSQL runs as that "
            "user, so give it a folder from services.scratch_dir()"
        )


@contextmanager
def postgres_server(workdir: Path) -> Iterator[Postgres]:
    """A PostgreSQL server on 127.0.0.1 with role and database ``mlflow``.

    The cluster lives in ``workdir/postgres`` and listens on a free port;
    the mlflow role logs in over TCP with a random password. The server is
    stopped and its folder removed on exit.
    """
    bindir = find_postgres()
    if bindir is None:
        raise ServiceError(
            f"no PostgreSQL server under {POSTGRES_ROOT}: run `make deps`, which installs it"
        )
    account, runas = _server_account()
    _check_reachable(workdir, runas, account)
    cluster = _Cluster(bindir, workdir / "postgres", free_port(), account, runas)
    password = secrets.token_hex(16)
    cluster.root.mkdir(mode=0o700)
    try:
        cluster.create()
        cluster.configure()
        cluster.start()
        cluster.setup_sql(
            f"CREATE ROLE {DATABASE} LOGIN PASSWORD '{password}';\n"
            f"CREATE DATABASE {DATABASE} OWNER {DATABASE};\n"
        )
        yield Postgres(cluster.port, DATABASE, password, DATABASE, cluster)
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


# S3 -----------------------------------------------------------------------


@dataclass
class S3:
    """A running moto S3 server with the bucket ``mlflow-artifacts``."""

    port: int
    bucket: str
    access_key: str
    secret_key: str = field(repr=False)

    def endpoint(self, host: str) -> str:
        """The endpoint URL that reaches the server at ``host``."""
        return f"http://{host}:{self.port}"

    def client(self) -> Any:
        """A boto3 S3 client talking to the server from the host."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint(LOOPBACK),
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=S3_REGION,
            config=Config(
                s3={"addressing_style": "path"},
                proxies={},
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 2},
            ),
        )

    def objects(self, prefix: str = "") -> list[str]:
        """The keys in the bucket that start with ``prefix``, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def _die_with_parent() -> None:
    """Run in the server's child process: the kernel kills it if its parent dies."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _start_moto(port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start moto's standalone server on 127.0.0.1:``port``, logging to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=_clean_env(), preexec_fn=_die_with_parent,
        )


def _moto_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    """Whether moto accepts connections; a ServiceError if it has exited."""
    if process.poll() is not None:
        raise ServiceError(
            f"moto's S3 server exited with code {process.returncode}; "
            f"end of {log}:\n{_tail(log)}"
        )
    return _answers_http(port)


def _stop_process(process: subprocess.Popen[bytes], what: str) -> None:
    """Terminate ``process``, then kill it if it has not exited in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        LOG.warning("%s (PID %d) ignored SIGTERM; killing it", what, process.pid)
        process.kill()
        process.wait()


@contextmanager
def s3_server(workdir: Path) -> Iterator[S3]:
    """A moto S3 server on 127.0.0.1 with the bucket ``mlflow-artifacts``.

    It listens on a free port, takes the fixed test credentials of the
    returned :class:`S3`, and logs to ``workdir/moto.log``. The server is
    stopped on exit.
    """
    port = free_port()
    log = workdir / "moto.log"
    process = _start_moto(port, log)
    try:
        _wait_until(lambda: _moto_ready(process, port, log),
                    what=f"moto's S3 server on port {port}", log=log)
        s3 = S3(port, BUCKET, S3_ACCESS_KEY, secrets.token_hex(20))
        s3.client().create_bucket(Bucket=BUCKET)
        LOG.info("moto's S3 server listens on %s:%d (log: %s)", LOOPBACK, port, log)
        yield s3
    finally:
        _stop_process(process, "moto's S3 server")
        LOG.info("moto's S3 server on port %d stopped", port)
