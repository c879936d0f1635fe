"""Build an image with Packer: prepare the per-build inputs, run, record.

Each build gets a staging folder beside its output with a fresh SSH key, its
NoCloud seed and Packer's output. Only a finished build is moved to
``output/<profile>/``; a failed or interrupted one leaves nothing there.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from . import accel, base_image, render, tools, wheelhouse
from .errors import UserError
from .paths import CLOUD_INIT, OUTPUT, PACKER, ROOT, cache_dir
from .profiles import Profile
from .progress import format_seconds, step

LOG = logging.getLogger(__name__)


@dataclass
class BuildOptions:
    """What a user may change about one build."""

    port: int = 5000
    base_image: str = ""
    base_image_checksum: str = ""
    ca_certificates: Path | None = None
    keep_ca_certificates: bool = False
    pip_index_url: str = ""
    use_wheelhouse: bool = True
    cpus: int = 2
    memory: int = 2048


SSH_PORT = 22
PACKER_STOP_SECONDS = 30
CHECKSUM = re.compile(r"^(sha256:[0-9a-fA-F]{64}|file:.+)$")


def validate_port(value: str | int) -> int:
    """Return ``value`` as a TCP port number or fail with a clear line."""
    text = str(value)
    port = int(text) if re.fullmatch(r"[0-9]{1,5}", text) else -1
    if not 1 <= port <= 65535:
        raise UserError(f"PORT={value} is not a TCP port; use a number from 1 to 65535")
    if port == SSH_PORT:
        raise UserError(f"PORT={port} is the VM's SSH port; choose another one")
    return port


def read_ca_certificates(path: Path) -> str:
    """Return the PEM text of ``path`` or say how to get PEM from it."""
    if not path.is_file():
        raise UserError(f"CA_CERTIFICATES={path}: no such file")
    try:
        pem = path.read_text()
    except UnicodeDecodeError:
        pem = ""
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise UserError(
            f"CA_CERTIFICATES={path} holds no PEM certificate; convert a DER file with "
            f"`openssl x509 -inform der -in {path} -out ca.pem`"
        )
    return pem


def _check_options(options: BuildOptions) -> None:
    """Refuse bad options before any slow step starts."""
    validate_port(options.port)
    if options.base_image_checksum and not CHECKSUM.match(options.base_image_checksum):
        raise UserError(
            f"BASE_IMAGE_CHECKSUM={options.base_image_checksum} must be "
            "sha256:<64 hex digits> or file:<path or URL of a SHA256SUMS file>"
        )
    if options.ca_certificates is not None:
        read_ca_certificates(options.ca_certificates)


def packer_version() -> tuple[int, int]:
    """The installed Packer's major and minor version."""
    out = subprocess.run(["packer", "version"], capture_output=True, text=True).stdout
    match = re.search(r"(\d+)\.(\d+)", out)
    if not match:
        raise UserError(f"cannot tell the Packer version from {out.strip()!r}")
    return int(match.group(1)), int(match.group(2))


def _template_dir(profile: Profile, staging: Path) -> Path:
    """The folder to hand to ``packer build``, fit for the installed Packer."""
    folder = PACKER / profile.name
    if packer_version() >= (1, 7):
        subprocess.run(["packer", "init", str(folder)], check=True, cwd=ROOT)
        return folder
    # Packer 1.6 has the qemu builder built in and rejects required_plugins.
    legacy = staging / "packer"
    legacy.mkdir()
    for path in folder.glob("*.pkr.hcl"):
        if path.name != "plugins.pkr.hcl":
            shutil.copy2(path, legacy / path.name)
    return legacy


def _base_image_inputs(profile: Profile, options: BuildOptions) -> tuple[str, str]:
    """Resolve the base image and its checksum; check local files.

    A local image is checked here and handed to Packer with its exact
    ``sha256:`` checksum, which the build manifest then records.
    """
    url = options.base_image or profile.base_image.url
    checksum = options.base_image_checksum
    is_url = re.match(r"^[a-z]+://", url) is not None
    if is_url and options.base_image and not checksum:
        # The publisher's SHA256SUMS sits beside the image, as on mirrors.
        checksum = f"file:{url.rsplit('/', 1)[0]}/SHA256SUMS"
    if not is_url:
        path = Path(url) if Path(url).is_absolute() else ROOT / url
        if path.is_dir():
            raise UserError(f"BASE_IMAGE={path} is a directory; name the image file")
        if not path.is_file():
            hint = (
                f"run `make base DISTRO={profile.name}`"
                if profile.base_image.is_local and not options.base_image
                else "check BASE_IMAGE"
            )
            raise UserError(f"base image {path} does not exist: {hint}")
        if not checksum:
            checksum = (
                profile.base_image.checksum
                if not options.base_image
                else f"file:{path.parent / 'SHA256SUMS'}"
            )
        if checksum.startswith("file:") and not Path(checksum[5:]).is_absolute():
            checksum = f"file:{ROOT / checksum[5:]}"
        own = profile.base_image.is_local and not options.base_image
        digest = base_image.verify(path, checksum, rebuild_hint=own)
        return str(path), f"sha256:{digest}"
    return url, checksum or profile.base_image.checksum


def _write_seed(profile: Profile, staging: Path, options: BuildOptions) -> list[str]:
    """Write the build's NoCloud seed; return its files for Packer's cd_files."""
    seed = staging / "seed"
    seed.mkdir()
    source = CLOUD_INIT / profile.name / "build"
    shutil.copy2(source / "user-data", seed / "user-data")
    public_key = (staging / "build_key.pub").read_text().strip()
    meta = (source / "meta-data").read_text()
    (seed / "meta-data").write_text(f"{meta}public-keys:\n  - {public_key}\n")

    vendor = "#cloud-config\n"
    if options.ca_certificates:
        pem = read_ca_certificates(options.ca_certificates)
        indented = "\n".join(f"      {line}" for line in pem.strip().splitlines())
        vendor += f"ca_certs:\n  trusted:\n    - |\n{indented}\n"
    else:
        vendor += "{}\n"
    (seed / "vendor-data").write_text(vendor)
    return [str(seed / name) for name in ("user-data", "meta-data", "vendor-data")]


def _stop_packer(proc: subprocess.Popen[str], log: TextIO) -> None:
    """Interrupt Packer and its VM; kill them if they do not stop soon.

    Packer waits for a running provisioner command before it acts on an
    interrupt, which can take minutes; the staging folder is removed anyway.
    """
    LOG.info("Stopping Packer and its VM")
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.stdout is not None
    drain = threading.Thread(target=lambda: log.writelines(proc.stdout), daemon=True)
    drain.start()
    try:
        proc.wait(timeout=PACKER_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _run_packer(command: list[str], log_path: Path) -> None:
    """Run Packer, echoing its lines with the elapsed time, logging them all."""
    LOG.info("Packer log: %s", log_path)
    start = time.monotonic()
    env = {**os.environ, "PACKER_CACHE_DIR": str(cache_dir() / "packer")}
    # Packer and the QEMU it starts get a process group of their own, so an
    # interrupt can stop both, whatever state Packer is in.
    with log_path.open("w") as log, subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                stamp = format_seconds(time.monotonic() - start)
                LOG.info("[%10s] %s", stamp, line.rstrip())
            proc.wait()
        except BaseException:
            _stop_packer(proc, log)
            raise
    if proc.returncode != 0:
        raise UserError(f"packer build failed (exit {proc.returncode}); see {log_path}")


def _relative(location: str) -> str:
    """A path inside the repository as seen from its top; anything else as is."""
    path = Path(location)
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else location


def _image_facts(image: Path) -> dict[str, int]:
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(image)],
            capture_output=True, text=True, check=True,
        ).stdout
    )
    return {"virtual_size": info["virtual-size"], "file_size": image.stat().st_size}


def _write_manifest(profile: Profile, folder: Path, facts: dict[str, object]) -> None:
    image = folder / f"{profile.image_name}.qcow2"
    manifest = {
        "profile": profile.name,
        "image": image.name,
        # Packer's checksum post-processor already hashed the image.
        "sha256": base_image.expected_checksum(image, folder / "SHA256SUMS"),
        "python_version": profile.python_version,
        "mlflow_version": profile.mlflow_version,
        **facts,
        **_image_facts(image),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _publish(staging_output: Path, final: Path) -> None:
    """Replace ``final`` with the finished build in two renames."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging_output.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def build(profile: Profile, options: BuildOptions) -> Path:
    """Build the image of ``profile``; return the folder that holds it."""
    tools.require(tools.BUILD)
    _check_options(options)
    chosen_accel = accel.detect()
    edited = render.edited_by_hand()
    if edited:
        raise UserError(
            f"{edited[0].relative_to(ROOT)} was edited by hand: make the change in "
            "templates/ instead (`make render` discards the edit)"
        )
    stale = render.check()
    if stale:
        LOG.info("Rendering templates: %s", "; ".join(stale))
        render.write()

    if profile.base_image.is_local and not options.base_image:
        base_image.build(profile)
    url, checksum = _base_image_inputs(profile, options)
    wheels = ""
    if options.use_wheelhouse:
        with step(f"filling the wheelhouse for Python {profile.python_version}"):
            wheels = str(wheelhouse.fill(profile))

    OUTPUT.mkdir(exist_ok=True)
    logs = OUTPUT / "logs"
    logs.mkdir(exist_ok=True)
    final = OUTPUT / profile.name
    staging = OUTPUT / f".{profile.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    started = time.monotonic()
    try:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mlflow-image-build",
             "-f", str(staging / "build_key")],
            check=True,
        )
        seed_files = _write_seed(profile, staging, options)
        template = _template_dir(profile, staging)
        image_dir = staging / "image"
        variables = {
            "base_image_url": url,
            "base_image_checksum": checksum,
            "accelerator": chosen_accel,
            "cpus": options.cpus,
            "memory": options.memory,
            "mlflow_port": options.port,
            "pip_index_url": options.pip_index_url,
            "wheelhouse": wheels,
            "ssh_private_key_file": str(staging / "build_key"),
            "seed_files": json.dumps(seed_files),
            "output_directory": str(image_dir),
            "serial_log": str(logs / f"{profile.name}-build-serial.log"),
            "keep_ca_certificates": str(options.keep_ca_certificates).lower(),
        }
        command = ["packer", "build", "-color=false"]
        for key, value in variables.items():
            command += ["-var", f"{key}={value}"]
        command.append(str(template))
        with step(f"building the {profile.name} image with Packer ({chosen_accel})"):
            _run_packer(command, logs / f"{profile.name}-build.log")

        _write_manifest(
            profile,
            image_dir,
            {
                "base_image": _relative(url),
                "base_image_checksum": checksum,
                "accelerator": chosen_accel,
                "mlflow_port": options.port,
                "build_seconds": round(time.monotonic() - started),
                "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )
        _publish(image_dir, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    LOG.info("Image ready: %s", final / f"{profile.image_name}.qcow2")
    return final
