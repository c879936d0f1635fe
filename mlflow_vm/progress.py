"""Announce the steps a user waits on, and how long each took."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

LOG = logging.getLogger("mlflow_vm")


def format_seconds(seconds: float) -> str:
    """Render a duration the way people read it: 42 s, 3 min 05 s."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


@contextmanager
def step(name: str) -> Iterator[None]:
    """Log ``name`` when it starts and its duration when it ends or fails."""
    LOG.info("==> %s", name)
    start = time.monotonic()
    try:
        yield
    except BaseException:
        LOG.error("==> %s failed after %s", name, format_seconds(time.monotonic() - start))
        raise
    LOG.info("==> %s: done in %s", name, format_seconds(time.monotonic() - start))
