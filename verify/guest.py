"""Where the server keeps its state in the guest, and how tests read it."""

from __future__ import annotations

STATE = "/var/lib/mlflow"
DATABASE = f"{STATE}/mlflow.db"
ARTIFACTS = f"{STATE}/artifacts"
VENV = "/opt/mlflow"
SETTINGS = "/etc/mlflow/mlflow.env"


def sql(host, query: str) -> str:
    """Run ``query`` on the guest's database with sqlite3, as the tutorial does."""
    result = host.run(f'sudo sqlite3 -readonly {DATABASE} "{query}"')
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def setting(host, key: str) -> str:
    """The value of ``key`` in the guest's mlflow.env."""
    for line in host.check_output(f"sudo cat {SETTINGS}").splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1]
    raise KeyError(key)
