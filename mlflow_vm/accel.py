"""Choose the QEMU accelerator: KVM when it really works, TCG otherwise.

A /dev/kvm node is not enough: nested or restricted hosts expose one while
the CPU lacks vmx/svm, and QEMU then aborts or the guest hangs. So KVM is
chosen only when the CPU flags allow it and a firmware boot makes progress.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from .errors import UserError

LOG = logging.getLogger(__name__)
ACCELERATORS = ("kvm", "tcg")


def _cpu_has_virtualization(cpuinfo: str) -> bool:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"vmx", "svm"})
    return False


def _firmware_boots_under_kvm(seconds: float = 10.0) -> bool:
    """Boot QEMU's firmware under KVM and watch its debug port for output."""
    with tempfile.TemporaryDirectory(prefix="mlflow-vm-kvm-") as tmp:
        log = Path(tmp) / "firmware.log"
        proc = subprocess.Popen(
            [
                "qemu-system-x86_64", "-accel", "kvm", "-cpu", "host",
                "-m", "64", "-nodefaults", "-display", "none",
                "-chardev", f"file,id=fw,path={log}",
                "-device", "isa-debugcon,iobase=0x402,chardev=fw",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and proc.poll() is None:
                if log.exists() and log.stat().st_size > 0:
                    return True
                time.sleep(0.2)
            return False
        finally:
            proc.kill()
            proc.wait()


def requested() -> str:
    """The accelerator ``ACCEL`` in the environment names, checked; empty if unset."""
    forced = os.environ.get("ACCEL", "").strip()
    if forced and forced not in ACCELERATORS:
        raise UserError(f"ACCEL={forced} is not supported; use {' or '.join(ACCELERATORS)}")
    return forced


@lru_cache(maxsize=1)
def detect() -> str:
    """Return the accelerator to use; ``ACCEL`` in the environment overrides it."""
    forced = requested()
    if forced:
        LOG.info("Accelerator %s (set by ACCEL)", forced)
        return forced

    reason = ""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        reason = "/dev/kvm is missing or not accessible"
    elif not _cpu_has_virtualization(Path("/proc/cpuinfo").read_text()):
        reason = "the CPU has no vmx/svm flag"
    elif not _firmware_boots_under_kvm():
        reason = "a test boot under KVM made no progress"
    if reason:
        LOG.info("Accelerator tcg (software emulation, slow): %s", reason)
        return "tcg"
    LOG.info("Accelerator kvm")
    return "kvm"


def qemu_args(accel: str) -> list[str]:
    """QEMU's accelerator and CPU arguments for ``accel``."""
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]
