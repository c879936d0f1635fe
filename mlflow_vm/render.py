"""Render the Jinja templates into the committed Packer and cloud-init files.

Everything a profile produces is rendered in memory first, so a template
error leaves the files on disk as they were. ``check`` compares the files on
disk with a fresh rendering; it is what keeps the committed files honest.
"""

from __future__ import annotations

import base64
import gzip
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from . import profiles as profiles_mod
from .errors import UserError
from .paths import CLOUD_INIT, PACKER, ROOT, TEMPLATES, UV_REQUIREMENTS
from .profiles import Profile

LOG = logging.getLogger(__name__)

# Files installed in the guest: rendered name -> template.
GUEST_FILES = {
    "install-mlflow.sh": "files/install-mlflow.sh.j2",
    "mlflow-server": "files/mlflow-server.sh.j2",
    "mlflow-prepare-db": "files/mlflow-prepare-db.py.j2",
    "mlflow.service": "files/mlflow.service.j2",
    "mlflow.env": "files/mlflow.env.j2",
    "mlflowctl": "files/mlflowctl.py.j2",
    "mlflow-motd": "files/mlflow-motd.sh.j2",
    "mlflow-backup.service": "files/mlflow-backup.service.j2",
    "mlflow-backup.timer": "files/mlflow-backup.timer.j2",
    "mlflow-settings.service": "files/mlflow-settings.service.j2",
}
BUILD_ONLY_FILES = {"cleanup-image.sh": "files/cleanup-image.sh.j2"}
EXECUTABLES = {"install-mlflow.sh", "mlflow-server", "cleanup-image.sh", "mlflowctl",
               "mlflow-motd"}
PACKER_FILES = ("plugins", "variables", "source", "build")

# Defaults of the server in every image; mlflow.env changes them per VM.
SERVER = {
    "host": "0.0.0.0",
    "port": 5000,
    "allowed_hosts": "*",
    "workers": "auto",
    "request_timeout": 600,
    "extra_pip_packages": "",
}
GUEST_PATHS = {
    "venv": "/opt/mlflow",
    "state": "/var/lib/mlflow",
    "config": "/etc/mlflow",
    "libexec": "/usr/local/libexec/mlflow",
    "install": "/var/tmp/mlflow-install",
}
# The daily backup of every image: systemd calendar and backups kept.
BACKUP = {"schedule": "daily", "keep": 7}
BUILD = {"disk_size": "8G", "ssh_timeout": "20m"}


@dataclass(frozen=True)
class Rendered:
    """One output file: where it goes and what it holds."""

    path: Path
    content: str

    @property
    def mode(self) -> int:
        """File mode: scripts are executable."""
        return 0o755 if self.path.name in EXECUTABLES else 0o644


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        # Shell's ${#array[@]} would open a Jinja comment.
        comment_start_string="{##",
        comment_end_string="##}",
    )
    env.filters["gzip_b64"] = _compress
    return env


def _template_location(exc: BaseException, template: str) -> str:
    """Name the template file and line an error was raised from."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"templates/{exc.name or template}:{exc.lineno}"
    tb = exc.__traceback__
    location = ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            location = f"templates/{Path(filename).relative_to(TEMPLATES)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return location or f"templates/{template}"


def _compress(text: str) -> str:
    """gzip with no timestamp, then base64: the same input renders the same."""
    data = gzip.compress(text.encode(), compresslevel=9, mtime=0)
    return base64.b64encode(data).decode()


def _check_yaml(template: str, text: str) -> None:
    """Refuse a rendering that is not YAML, naming the template and the line."""
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (rendered line {mark.line + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"templates/{template} renders invalid YAML{line}: {problem}") from exc


def context(profile: Profile) -> dict[str, Any]:
    """The variables every template of ``profile`` sees."""
    return {
        "profile": {
            "name": profile.name,
            "description": profile.description,
            "ssh_username": profile.ssh_username,
        },
        "base_image": {
            "url": profile.base_image.url,
            "checksum": profile.base_image.checksum,
        },
        "python": {"version": profile.python_version},
        "mlflow": {
            "version": profile.mlflow_version,
            "server_engine": profile.mlflow_server_engine,
        },
        "apt_repository": profile.apt_repository,
        "server": SERVER,
        "backup": BACKUP,
        "paths": GUEST_PATHS,
        "build": BUILD,
        "image_name": profile.image_name,
        "requirements_file": profile.requirements_file.relative_to(ROOT).as_posix(),
        "uv_requirements_file": UV_REQUIREMENTS.relative_to(ROOT).as_posix(),
    }


def render_profile(profile: Profile) -> list[Rendered]:
    """Render every output file of ``profile`` in memory."""
    env = _environment()
    ctx = context(profile)
    current = ""
    try:
        def render(template: str, **extra: Any) -> str:
            nonlocal current
            current = template
            return env.get_template(template).render(**ctx, **extra)

        guest = {name: render(tpl) for name, tpl in GUEST_FILES.items()}
        build_only = {name: render(tpl) for name, tpl in BUILD_ONLY_FILES.items()}
        packer = {name: render(f"packer/{name}.pkr.hcl.j2") for name in PACKER_FILES}
        user_data = render("cloud-init/user-data.j2", files=guest, ssh_keys=[], settings="",
                           **_locks(profile))
        build_user_data = render("cloud-init/build-user-data.j2")
        build_meta_data = render("cloud-init/build-meta-data.j2")
    except jinja2.TemplateError as exc:
        where = _template_location(exc, current)
        raise UserError(f"{where}: {exc.message or exc}") from exc
    except FileNotFoundError as exc:
        raise UserError(f"{exc.filename} is missing; run `make lock`") from exc

    for template, text in (("cloud-init/user-data.j2", user_data),
                           ("cloud-init/build-user-data.j2", build_user_data),
                           ("cloud-init/build-meta-data.j2", build_meta_data)):
        _check_yaml(template, text)

    packer_dir = PACKER / profile.name
    cloud_dir = CLOUD_INIT / profile.name
    files = [Rendered(packer_dir / f"{n}.pkr.hcl", c) for n, c in packer.items()]
    files += [
        Rendered(packer_dir / "files" / n, c) for n, c in {**guest, **build_only}.items()
    ]
    files += [
        Rendered(cloud_dir / "user-data", user_data),
        Rendered(cloud_dir / "build" / "user-data", build_user_data),
        Rendered(cloud_dir / "build" / "meta-data", build_meta_data),
    ]
    return files


def _locks(profile: Profile) -> dict[str, str]:
    """The lock files the user-data embeds: MLflow's compressed, uv's as text."""
    return {
        "requirements_gz_b64": _compress(profile.requirements_file.read_text()),
        "uv_requirements": UV_REQUIREMENTS.read_text(),
    }


def custom_user_data(profile: Profile, server: dict[str, Any], ssh_keys: list[str],
                     settings: str = "") -> str:
    """The standalone user-data of ``profile`` with other server settings and SSH keys.

    ``server`` overrides entries of the default settings (port,
    allowed_hosts, extra_pip_packages); ``settings``, checked KEY=VALUE
    lines, are applied at the server's first start.
    """
    env = _environment()
    ctx = {**context(profile), "server": {**SERVER, **server}}
    try:
        guest = {name: env.get_template(tpl).render(**ctx) for name, tpl in GUEST_FILES.items()}
        return env.get_template("cloud-init/user-data.j2").render(
            **ctx, files=guest, ssh_keys=ssh_keys, settings=settings, **_locks(profile))
    except FileNotFoundError as exc:
        raise UserError(f"{exc.filename} is missing; run `make lock`") from exc


def render_all(names: list[str] | None = None) -> list[Rendered]:
    """Render the named profiles (all by default), all in memory."""
    profiles = profiles_mod.load_all()
    selected = [profiles_mod.get(n) for n in names] if names else list(profiles.values())
    return [item for profile in selected for item in render_profile(profile)]


def _write_atomically(item: Rendered) -> None:
    item.path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=item.path.parent, prefix=f".{item.path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(item.content)
        os.chmod(tmp, item.mode)
        os.replace(tmp, item.path)
    except BaseException:
        os.unlink(tmp)
        raise


def write(names: list[str] | None = None) -> list[Path]:
    """Render and write the files of the named profiles; return those that changed."""
    changed = []
    for item in render_all(names):
        if _differs(item):
            _write_atomically(item)
            changed.append(item.path)
    return changed


def _differs(item: Rendered) -> bool:
    if not item.path.is_file():
        return True
    if item.path.read_text() != item.content:
        return True
    return (item.path.stat().st_mode & 0o777) != item.mode


def edited_by_hand() -> list[Path]:
    """Rendered files that differ from their templates and are newer than every source.

    Such a file was changed after the last rendering, by hand: rendering again
    would silently throw that change away.
    """
    sources = [*TEMPLATES.rglob("*"), *profiles_mod.PROFILES.glob("*"),
               *(ROOT / "requirements").glob("*.txt")]
    newest = max(p.stat().st_mtime for p in sources if p.is_file())
    return [
        item.path for item in render_all()
        if item.path.is_file() and _differs(item) and item.path.stat().st_mtime > newest
    ]


def check() -> list[str]:
    """List every committed file that is not what the templates render."""
    rendered = render_all()
    expected = {item.path for item in rendered}
    problems = [
        f"{item.path.relative_to(ROOT)} differs from its template"
        for item in rendered
        if _differs(item)
    ]
    for folder in (PACKER, CLOUD_INIT):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path not in expected:
                problems.append(f"{path.relative_to(ROOT)} is not rendered by any template")
    return problems
