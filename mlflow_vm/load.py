"""Load an MLflow tracking server with concurrent writers and count lost writes.

Each client thread has its own pooled HTTP session and, until the time is up,
creates a run and logs a parameter, a metric, a batch of both, then ends the
run, all through MLflow's REST API. Every write the server acknowledges
(HTTP 200) goes into a ledger; afterwards each run is read back and any
acknowledged parameter or metric step the server no longer has counts as a
lost row. Nothing here is a test: it returns figures for a table.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter

LOG = logging.getLogger(__name__)
API = "/api/2.0/mlflow"
LOCKED = "database is locked"
# Metric steps one run's log_batch call writes.
BATCH_STEPS = 3


def percentile(values: Iterable[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` in [0, 1]); 0 when empty."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class RunRecord:
    """What the server acknowledged for one run: params and metric steps."""

    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, dict[int, float]] = field(default_factory=dict)


@dataclass
class StoredRun:
    """What the server returns for one run when it is read back."""

    params: dict[str, str]
    metrics: dict[str, dict[int, float]]


class Ledger:
    """Thread-safe record of acknowledged writes, and of every request's outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs: dict[str, RunRecord] = {}
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()

    def request(self, seconds: float, error: str | None) -> None:
        """Record one request's latency and, if it failed, why."""
        with self._lock:
            self.latencies.append(seconds)
            if error is not None:
                self.errors[error] += 1

    def run_created(self, run_id: str) -> None:
        """Record a run the server created."""
        with self._lock:
            self.runs.setdefault(run_id, RunRecord())

    def params(self, run_id: str, params: dict[str, str]) -> None:
        """Record acknowledged parameters of a run."""
        with self._lock:
            self.runs.setdefault(run_id, RunRecord()).params.update(params)

    def metric(self, run_id: str, key: str, step: int, value: float) -> None:
        """Record an acknowledged metric value of a run at ``step``."""
        with self._lock:
            record = self.runs.setdefault(run_id, RunRecord())
            record.metrics.setdefault(key, {})[step] = value

    def wait_for_runs(self, count: int, timeout: float = 300) -> None:
        """Wait until ``count`` runs are acknowledged; TimeoutError if they are not."""
        deadline = time.monotonic() + timeout
        while len(self.runs) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.runs)} runs acknowledged, not {count}, "
                                   f"within {timeout:.0f} s")
            time.sleep(1)

    def acknowledged_rows(self) -> int:
        """How many params and metric steps the server acknowledged."""
        return sum(len(r.params) + sum(len(s) for s in r.metrics.values())
                   for r in self.runs.values())


def lost_rows(expected: RunRecord, stored: StoredRun | None) -> int:
    """Acknowledged params and metric steps of one run missing from ``stored``
    (or stored with another value); all of them when the run is gone."""
    lost = 0
    for key, value in expected.params.items():
        if stored is None or stored.params.get(key) != value:
            lost += 1
    for key, steps in expected.metrics.items():
        found = stored.metrics.get(key, {}) if stored else {}
        lost += sum(1 for step, value in steps.items() if found.get(step) != value)
    return lost


@dataclass
class Result:
    """Figures of one load run."""

    clients: int
    duration: float
    requests: int
    errors: int
    locked: int
    error_kinds: dict[str, int]
    p50: float
    p99: float
    acknowledged: int
    lost: int
    unverified: int

    @property
    def rate(self) -> float:
        """Requests per second, failed ones included."""
        return self.requests / self.duration if self.duration else 0.0


def _session(clients: int) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(clients, 1))
    session.mount("http://", adapter)
    return session


def _error_kind(status: int, text: str) -> str:
    if LOCKED in text:
        return LOCKED
    return f"HTTP {status}"


class Client:
    """One client thread's view of the server: each call records its outcome."""

    def __init__(self, url: str, ledger: Ledger, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.ledger = ledger
        self.timeout = timeout
        self.session = _session(1)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             params: dict[str, str] | None = None) -> dict[str, Any] | None:
        """Send one request; its JSON answer on HTTP 200, else None."""
        start = time.monotonic()
        try:
            response = self.session.request(method, f"{self.url}{API}/{path}", json=body,
                                            params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            self.ledger.request(time.monotonic() - start, type(exc).__name__)
            return None
        seconds = time.monotonic() - start
        if response.status_code != 200:
            kind = _error_kind(response.status_code, response.text)
            self.ledger.request(seconds, kind)
            LOG.debug("%s %s: %s %s", method, path, response.status_code, response.text[:200])
            return None
        self.ledger.request(seconds, None)
        return response.json() if response.content else {}

    def one_run(self, experiment_id: str, worker: int, number: int) -> bool:
        """Create a run, log a param, a metric and a batch, then end it; False
        when the server did not even create the run."""
        now = int(time.time() * 1000)
        created = self.call("POST", "runs/create", {
            "experiment_id": experiment_id, "start_time": now,
            "run_name": f"load-{worker}-{number}"})
        if created is None:
            return False
        run_id = created["run"]["info"]["run_id"]
        self.ledger.run_created(run_id)
        if self.call("POST", "runs/log-parameter",
                     {"run_id": run_id, "key": "worker", "value": str(worker)}) is not None:
            self.ledger.params(run_id, {"worker": str(worker)})
        if self.call("POST", "runs/log-metric", {
                "run_id": run_id, "key": "loss", "value": 1.0, "timestamp": now,
                "step": 0}) is not None:
            self.ledger.metric(run_id, "loss", 0, 1.0)
        steps = {step: 1.0 / (step + 1) for step in range(1, BATCH_STEPS + 1)}
        batch = {
            "run_id": run_id,
            "params": [{"key": "number", "value": str(number)},
                       {"key": "batch", "value": "yes"}],
            "metrics": [{"key": "loss", "value": value, "timestamp": now, "step": step}
                        for step, value in steps.items()],
        }
        if self.call("POST", "runs/log-batch", batch) is not None:
            self.ledger.params(run_id, {"number": str(number), "batch": "yes"})
            for step, value in steps.items():
                self.ledger.metric(run_id, "loss", step, value)
        self.call("POST", "runs/update", {"run_id": run_id, "status": "FINISHED",
                                          "end_time": int(time.time() * 1000)})
        return True


def read_run(session: requests.Session, url: str, run_id: str, keys: Iterable[str],
             timeout: float) -> StoredRun | None:
    """Read a run's params and full metric histories back; None if it is gone."""
    base = url.rstrip("/") + API
    response = session.get(f"{base}/runs/get", params={"run_id": run_id}, timeout=timeout)
    if response.status_code != 200:
        if "RESOURCE_DOES_NOT_EXIST" in response.text:
            return None
        response.raise_for_status()
        raise requests.HTTPError(f"runs/get answered {response.status_code}")
    data = response.json()["run"].get("data", {})
    params = {p["key"]: p["value"] for p in data.get("params", [])}
    metrics: dict[str, dict[int, float]] = {}
    for key in keys:
        history = session.get(f"{base}/metrics/get-history",
                              params={"run_id": run_id, "metric_key": key}, timeout=timeout)
        history.raise_for_status()
        metrics[key] = {int(m.get("step", 0)): float(m["value"])
                        for m in history.json().get("metrics", [])}
    return StoredRun(params, metrics)


Reader = Callable[[str, RunRecord], "StoredRun | None"]


def count_lost(ledger: Ledger, reader: Reader, threads: int = 8) -> tuple[int, int]:
    """Read every acknowledged run back; return (lost rows, rows left unverified
    because reading them back failed)."""
    def check(item: tuple[str, RunRecord]) -> tuple[int, int]:
        run_id, record = item
        for attempt in range(3):
            try:
                return lost_rows(record, reader(run_id, record)), 0
            except requests.RequestException as exc:
                LOG.debug("reading run %s back failed (%s), attempt %d", run_id, exc, attempt)
                time.sleep(1)
        return 0, lost_rows(record, None)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        outcomes = list(pool.map(check, list(ledger.runs.items())))
    return sum(o[0] for o in outcomes), sum(o[1] for o in outcomes)


def answers(url: str, timeout: float = 30) -> bool:
    """Whether an MLflow server answers its health check at ``url``."""
    try:
        return requests.get(f"{url.rstrip('/')}/health", timeout=timeout).ok
    except requests.RequestException:
        return False


def create_experiment(url: str, timeout: float = 60) -> str:
    """Create a fresh experiment for one load run; return its id."""
    response = requests.post(f"{url.rstrip('/')}{API}/experiments/create",
                             json={"name": f"load-{uuid.uuid4().hex[:12]}"}, timeout=timeout)
    response.raise_for_status()
    return str(response.json()["experiment_id"])


@contextmanager
def writers(url: str, clients: int = 4, timeout: float = 30.0) -> Iterator[Ledger]:
    """Keep ``clients`` threads logging runs to ``url`` until the block ends; the
    ledger holds what the server acknowledged. Writers pause a second after a
    failed run, so an outage does not turn into a busy loop."""
    experiment_id = create_experiment(url, timeout)
    ledger = Ledger()
    stop = threading.Event()

    def worker(number: int) -> None:
        client = Client(url, ledger, timeout)
        count = 0
        try:
            while not stop.is_set():
                if not client.one_run(experiment_id, number, count):
                    stop.wait(1)
                count += 1
        finally:
            client.session.close()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield ledger
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout + 5)


def verify(url: str, ledger: Ledger, timeout: float = 60.0) -> tuple[int, int]:
    """Read every run of ``ledger`` back from ``url``: (lost rows, unverified rows)."""
    session = _session(8)
    try:
        return count_lost(ledger, lambda run_id, record: read_run(
            session, url, run_id, record.metrics, timeout))
    finally:
        session.close()


def run(url: str, clients: int = 32, duration: float = 60.0, timeout: float = 60.0) -> Result:
    """Load the server at ``url`` with ``clients`` threads for ``duration`` seconds,
    then read back every acknowledged write."""
    experiment_id = create_experiment(url, timeout)
    ledger = Ledger()
    deadline = time.monotonic() + duration

    def worker(number: int) -> None:
        client = Client(url, ledger, timeout)
        count = 0
        try:
            while time.monotonic() < deadline:
                client.one_run(experiment_id, number, count)
                count += 1
        finally:
            client.session.close()

    LOG.info("Loading %s with %d clients for %.0f s", url, clients, duration)
    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start

    LOG.info("Reading back %d runs", len(ledger.runs))
    lost, unverified = verify(url, ledger, timeout)
    errors = sum(ledger.errors.values())
    return Result(
        clients=clients, duration=elapsed, requests=len(ledger.latencies), errors=errors,
        locked=ledger.errors.get(LOCKED, 0), error_kinds=dict(ledger.errors),
        p50=percentile(ledger.latencies, 0.50), p99=percentile(ledger.latencies, 0.99),
        acknowledged=ledger.acknowledged_rows(), lost=lost, unverified=unverified,
    )


def table(results: dict[str, Result]) -> list[str]:
    """Rows of a side-by-side table of named results, with throughput ratios
    against the first result."""
    names = list(results)
    rows: list[tuple[str, list[str]]] = [
        ("clients", [str(r.clients) for r in results.values()]),
        ("duration", [f"{r.duration:.0f} s" for r in results.values()]),
        ("requests", [str(r.requests) for r in results.values()]),
        ("requests/s", [f"{r.rate:.1f}" for r in results.values()]),
        ("latency p50", [f"{r.p50 * 1000:.0f} ms" for r in results.values()]),
        ("latency p99", [f"{r.p99 * 1000:.0f} ms" for r in results.values()]),
        ("errors", [str(r.errors) for r in results.values()]),
        ("'database is locked'", [str(r.locked) for r in results.values()]),
        ("acknowledged rows", [str(r.acknowledged) for r in results.values()]),
        ("lost rows", [str(r.lost) for r in results.values()]),
        ("unverified rows", [str(r.unverified) for r in results.values()]),
    ]
    first = results[names[0]]
    if len(names) > 1:
        rows.append(("throughput ratio", ["1.00"] + [
            f"{first.rate / r.rate:.2f}" if r.rate else "inf"
            for r in list(results.values())[1:]]))
    kinds = sorted({k for r in results.values() for k in r.error_kinds})
    rows += [(f"  error: {kind}", [str(r.error_kinds.get(kind, 0)) for r in results.values()])
             for kind in kinds]
    width = max(len(label) for label, _ in rows)
    cols = [max(len(n), *(len(v[i]) for _, v in rows)) for i, n in enumerate(names)]
    lines = [f"{'':<{width}}  " + "  ".join(f"{n:>{c}}" for n, c in zip(names, cols))]
    for label, values in rows:
        lines.append(f"{label:<{width}}  " + "  ".join(f"{v:>{c}}" for v, c in zip(values, cols)))
    return lines
