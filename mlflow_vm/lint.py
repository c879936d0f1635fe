"""Static checks of everything rendered: each one runs the tool of its field."""

from __future__ import annotations

import ast
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import base_image, build, hcl_check, profiles, render, tools
from .paths import CLOUD_INIT, PACKER, ROOT, SCRIPTS

LOG = logging.getLogger(__name__)

Check = Callable[[], list[str]]


def _run(command: list[str], **kwargs: object) -> list[str]:
    """Run a tool; return its output as problems when it fails or complains."""
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, **kwargs)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        return [f"{' '.join(command[:3])}: {output or 'failed'}"]
    return []


def check_render() -> list[str]:
    """The committed files are exactly what the templates render."""
    return [f"{p} (run `make render`)" for p in render.check()]


def check_hcl() -> list[str]:
    """python-hcl2 reads every template and finds the promised structure."""
    return [p for name in profiles.load_all() for p in hcl_check.check_profile(name)]


def check_packer_fmt() -> list[str]:
    """Every template is laid out as `packer fmt` leaves it."""
    return [p for name in profiles.load_all()
            for p in _run(["packer", "fmt", "-check", "-diff", f"packer/{name}"])]


def check_packer_validate() -> list[str]:
    """`packer validate` accepts each template with stand-in per-build inputs.

    The base image is a local stand-in: validation reads the checksum file,
    and the publishers' servers may be out of reach.
    """
    problems = []
    for name, profile in profiles.load_all().items():
        with tempfile.TemporaryDirectory(prefix="mlflow-vm-validate-") as tmp:
            staging = Path(tmp)
            image = staging / "base.qcow2"
            image.write_bytes(b"")
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "",
                            "-f", str(staging / "key")], check=True)
            seed = staging / "user-data"
            seed.write_text("#cloud-config\n")
            template = build._template_dir(profile, staging)
            command = [
                "packer", "validate",
                "-var", f"base_image_url={image}",
                "-var", f"base_image_checksum=sha256:{base_image.sha256(image)}",
                "-var", f"ssh_private_key_file={staging / 'key'}",
                "-var", f'seed_files=["{seed}"]',
                "-var", f"output_directory={staging / 'output'}",
                str(template),
            ]
            problems += [f"{name}: {p}" for p in _run(command)]
    return problems


def check_cloud_init_schema() -> list[str]:
    """`cloud-init schema` accepts every user-data file."""
    return [p for path in sorted(CLOUD_INIT.rglob("user-data"))
            for p in _run(["cloud-init", "schema", "--config-file", str(path)])]


def check_systemd_units() -> list[str]:
    """`systemd-analyze verify` accepts every unit, with its programs in place."""
    problems = []
    for files in sorted(PACKER.glob("*/files")):
        units = sorted([*files.glob("*.service"), *files.glob("*.timer")])
        with tempfile.TemporaryDirectory(prefix="mlflow-vm-unit-") as tmp:
            root = Path(tmp)
            shutil.copytree(
                "/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True
            )
            installed = root / "etc/systemd/system"
            installed.mkdir(parents=True)
            for unit in units:
                _place_programs(root, unit)
                shutil.copy2(unit, installed / unit.name)
            result = subprocess.run(
                ["systemd-analyze", "verify", f"--root={root}",
                 *(str(installed / unit.name) for unit in units)],
                capture_output=True, text=True,
            )
            output = (result.stdout + result.stderr).strip()
            if result.returncode != 0 or output:
                problems.append(f"{files.relative_to(ROOT)}: {output}")
    return problems


def _place_programs(root: Path, unit: Path) -> None:
    """Create empty executables under ``root`` for the programs ``unit`` runs."""
    for line in unit.read_text().splitlines():
        words = line.split("=", 1)[1].split() if "=" in line else []
        if line.startswith(("ExecStart=", "ExecStartPre=")) and words:
            # Prefixes such as + (run with full privileges) are not the path.
            program = root / words[0].lstrip("+-@!:").lstrip("/")
            program.parent.mkdir(parents=True, exist_ok=True)
            program.touch(mode=0o755)


def check_shellcheck() -> list[str]:
    """shellcheck finds nothing in the scripts."""
    scripts = sorted(
        {*PACKER.glob("*/files/*.sh"), *PACKER.glob("*/files/mlflow-server"),
         *PACKER.glob("*/files/mlflow-motd"),
         *SCRIPTS.glob("*.sh"), ROOT / ".ci" / "run"}
    )
    existing = [str(p.relative_to(ROOT)) for p in scripts if p.is_file()]
    return _run(["shellcheck", *existing])


def check_python_scripts() -> list[str]:
    """The Python scripts installed in the guest parse with the oldest guest Python."""
    oldest = min(tuple(map(int, p.python_version.split("."))) for p in
                 profiles.load_all().values())
    problems = []
    scripts = [*PACKER.glob("*/files/mlflow-prepare-db"), *PACKER.glob("*/files/mlflowctl")]
    for script in sorted(scripts):
        try:
            ast.parse(script.read_text(), str(script), feature_version=oldest[:2])
        except SyntaxError as exc:
            problems.append(f"{script.relative_to(ROOT)}:{exc.lineno}: {exc.msg}")
    return problems


CHECKS: dict[str, Check] = {
    "rendered files in sync": check_render,
    "Packer structure (python-hcl2)": check_hcl,
    "packer fmt": check_packer_fmt,
    "packer validate": check_packer_validate,
    "cloud-init schema": check_cloud_init_schema,
    "systemd-analyze verify": check_systemd_units,
    "shellcheck": check_shellcheck,
    "guest Python scripts compile": check_python_scripts,
}


def run_all() -> int:
    """Run every check; return the number that failed."""
    tools.require(tools.LINT)
    failed = 0
    for name, check in CHECKS.items():
        problems = check()
        LOG.info("%-32s %s", name, "ok" if not problems else "FAILED")
        for problem in problems:
            LOG.error("  %s", problem)
        failed += bool(problems)
    return failed
