"""Boot an image under QEMU as a throwaway overlay, for tests and benchmarks.

The image itself is never written: the VM runs on a qcow2 overlay in a
scratch folder, with a NoCloud seed carrying an SSH key made for this boot.
SSH and the MLflow port are forwarded to free ports on 127.0.0.1 only. The
VM is powered off and its folder removed on exit, whatever happened.
"""

from __future__ import annotations

import ctypes
import json
import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import requests

from . import accel as accel_mod
from . import seed, tools
from .errors import UserError
from .progress import format_seconds

LOG = logging.getLogger(__name__)
LOGIN = "verify"


def _die_with_parent() -> None:
    """Run in QEMU's child process: the kernel kills it if its parent dies."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Writes a seed ISO at the given path that lets LOGIN in with the given key.
SeedMaker = Callable[[Path, str], None]


@dataclass
class BootOptions:
    """How to boot: the seed's user-data, the guest's MLflow port, resources,
    and where to keep the serial console once the VM is gone.

    ``make_seed`` replaces the built-in seed (``user_data`` plus a login) with
    one made elsewhere, e.g. by the ``seed`` command; ``seed=False`` boots
    with no seed CD at all and ``serial=False`` with no serial port, as a
    VirtualBox VM often is.
    """

    user_data: str = "#cloud-config\n"
    guest_port: int = 5000
    cpus: int = 2
    memory: int = 2048
    accelerator: str = ""
    keep_serial_log: Path | None = None
    make_seed: SeedMaker | None = None
    seed: bool = True
    serial: bool = True


def disk_format(image: Path) -> str:
    """The format qemu-img finds in ``image`` (qcow2, vdi, vmdk, raw)."""
    result = subprocess.run(["qemu-img", "info", "--output=json", str(image)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"{image} is not a disk image qemu-img can read")
    return str(json.loads(result.stdout)["format"])


class VM:
    """One throwaway VM; use it as a context manager."""

    def __init__(self, image: Path, options: BootOptions | None = None) -> None:
        if not image.is_file():
            raise UserError(f"image {image} does not exist: build it with `make image`")
        self.image = image.resolve()
        self.options = options or BootOptions()
        self.workdir = Path(tempfile.mkdtemp(prefix="mlflow-vm-boot-"))
        self.serial_log = self.workdir / "serial.log"
        self.key = self.workdir / "id_ed25519"
        self.ssh_port = 0
        self.http_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self._command: list[str] = []

    @property
    def url(self) -> str:
        """The MLflow server's address as seen from the host."""
        return f"http://127.0.0.1:{self.http_port}"

    def __enter__(self) -> VM:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Create the overlay and seed, then start QEMU in the background."""
        tools.require(tools.BOOT)
        overlay = self.workdir / "disk.qcow2"
        # The overlay reads the image in its own format: qcow2, or a VDI or
        # VMDK converted for VirtualBox.
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", disk_format(self.image),
             "-b", str(self.image), str(overlay)],
            check=True,
        )
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mlflow-vm-verify",
             "-f", str(self.key)],
            check=True,
        )
        public_key = self.key.with_suffix(".pub").read_text().strip()
        seed_iso = self.workdir / "seed.iso"
        if self.options.make_seed is not None:
            self.options.make_seed(seed_iso, str(self.key.with_suffix(".pub")))
        elif self.options.seed:
            seed.write_iso(
                seed_iso,
                seed.with_login(self.options.user_data, LOGIN, public_key),
                seed.meta_data(f"verify-{uuid.uuid4()}", "mlflow"),
            )
        self.ssh_port, self.http_port = free_port(), free_port()
        accel = self.options.accelerator or accel_mod.detect()
        forwards = (
            f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22,"
            f"hostfwd=tcp:127.0.0.1:{self.http_port}-:{self.options.guest_port}"
        )
        command = [
            "qemu-system-x86_64", *accel_mod.qemu_args(accel),
            "-smp", str(self.options.cpus), "-m", str(self.options.memory),
            "-nodefaults", "-display", "none", "-vga", "none",
            *(["-serial", f"file:{self.serial_log}"] if self.options.serial else []),
            "-drive", f"file={overlay},if=virtio,format=qcow2,discard=unmap",
            *(["-drive", f"file={seed_iso},media=cdrom,readonly=on"]
              if seed_iso.exists() else []),
            "-netdev", f"user,id=net0,{forwards}",
            "-device", "virtio-net-pci,netdev=net0",
        ]
        LOG.info("Booting %s (%s); serial log %s", self.image.name, accel, self.serial_log)
        self._command = command
        self._launch()

    def _launch(self) -> None:
        self.started = time.monotonic()
        with (self.workdir / "qemu.err").open("w") as errors:
            self.process = subprocess.Popen(
                self._command, stdout=subprocess.DEVNULL, stderr=errors,
                preexec_fn=_die_with_parent,
            )

    def power_cycle(self) -> None:
        """Cut the power: kill QEMU without warning the guest, then boot the same
        disk again. Whatever the guest had not written to its disk is lost, as in
        a power failure. Returns at once; wait for SSH or HTTP afterwards."""
        if self.process is None:
            raise RuntimeError("the VM is not running")
        LOG.info("Cutting the power of the VM (SIGKILL to QEMU), then powering it on")
        self.process.kill()
        self.process.wait()
        self._launch()

    def stop(self) -> None:
        """Power the VM off, keep its serial log, and remove its scratch folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.serial_log.exists() and self.options.keep_serial_log:
            self.options.keep_serial_log.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.serial_log, self.options.keep_serial_log)
            LOG.info("Serial console saved to %s", self.options.keep_serial_log)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def elapsed(self) -> float:
        """Seconds since QEMU started."""
        return time.monotonic() - self.started

    def _check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            err = (self.workdir / "qemu.err").read_text().strip()
            raise RuntimeError(f"QEMU exited: {err or 'no message'}\n{self.serial_tail()}")

    def serial_tail(self, lines: int = 40) -> str:
        """The last lines of the serial console, for failure messages."""
        if not self.serial_log.exists():
            return "(no serial output)"
        text = self.serial_log.read_text(errors="replace").splitlines()
        return "serial console, last lines:\n" + "\n".join(text[-lines:])

    def ssh_command(self, command: str) -> list[str]:
        """The ssh argument list that runs ``command`` in the guest."""
        return [
            "ssh", "-q", "-i", str(self.key), "-p", str(self.ssh_port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=10", "-o", "BatchMode=yes",
            f"{LOGIN}@127.0.0.1", command,
        ]

    def ssh(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the guest over SSH; never raises on its exit status."""
        return subprocess.run(
            self.ssh_command(command), capture_output=True, text=True, timeout=timeout
        )

    def wait_for_ssh(self, timeout: float = 600) -> float:
        """Wait until SSH logins work; return the seconds since power-on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if self.ssh("true", timeout=30).returncode == 0:
                    LOG.info("SSH up after %s", format_seconds(self.elapsed()))
                    return self.elapsed()
            except subprocess.TimeoutExpired:
                pass
            time.sleep(3)
        raise TimeoutError(f"no SSH login within {timeout:.0f} s\n{self.serial_tail()}")

    def boot_id(self) -> str:
        """The kernel's id of the current boot; it changes at each reboot."""
        return self.ssh("cat /proc/sys/kernel/random/boot_id").stdout.strip()

    def reboot(self, timeout: float = 900) -> None:
        """Reboot the guest cleanly and wait until SSH works in the new boot."""
        before = self.boot_id()
        LOG.info("Rebooting the guest")
        self.ssh("sudo systemctl reboot", timeout=60)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                current = self.boot_id()
            except subprocess.TimeoutExpired:
                current = ""
            if current and current != before:
                return
            time.sleep(5)
        raise TimeoutError(f"the guest did not come back from a reboot\n{self.serial_tail()}")

    def wait_for_http(self, path: str = "/health", timeout: float = 900) -> float:
        """Wait until the MLflow server answers ``path``; return seconds since power-on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if requests.get(self.url + path, timeout=10).status_code == 200:
                    LOG.info("MLflow answers after %s", format_seconds(self.elapsed()))
                    return self.elapsed()
            except requests.RequestException:
                pass
            time.sleep(3)
        journal = self.ssh("sudo journalctl -u mlflow --no-pager -n 40").stdout
        raise TimeoutError(
            f"MLflow did not answer {path} within {timeout:.0f} s\n"
            f"journalctl -u mlflow, last lines:\n{journal}\n{self.serial_tail()}"
        )
