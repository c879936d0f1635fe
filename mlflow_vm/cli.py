"""Command line of the image builder; the Makefile's targets call it."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from . import accel, base_image, benchmark, build, lint, lock, profiles, render
from .errors import UserError

LOG = logging.getLogger("mlflow_vm")


def _profile_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", default=os.environ.get("PROFILE", "ubuntu-24.04"),
        help="profile name, e.g. ubuntu-24.04, ubuntu-22.04, debian-12",
    )


def _cmd_render(args: argparse.Namespace) -> int:
    if args.check:
        stale = render.check()
        for problem in stale:
            LOG.error("%s", problem)
        if stale:
            LOG.error("rendered files are out of date: run `make render`")
        return 1 if stale else 0
    changed = render.write()
    LOG.info("Rendered %d changed file(s)", len(changed))
    for path in changed:
        LOG.info("  %s", path)
    return 0


def _cmd_lint(args: argparse.Namespace) -> int:
    return 1 if lint.run_all() else 0


def _cmd_lock(args: argparse.Namespace) -> int:
    for path in lock.lock_all():
        LOG.info("Wrote %s", path)
    return 0


def _cmd_base(args: argparse.Namespace) -> int:
    base_image.build(profiles.get(args.profile), force=args.force)
    return 0


def _flag(name: str, value: str, default: bool) -> bool:
    """Read a yes/no setting; anything else is refused rather than guessed."""
    text = value.strip().lower()
    if not text:
        return default
    if text in ("1", "yes", "true", "on"):
        return True
    if text in ("0", "no", "false", "off"):
        return False
    raise UserError(f"{name}={value} is not yes or no")


def _cmd_build(args: argparse.Namespace) -> int:
    options = build.BuildOptions(
        port=build.validate_port(args.port),
        base_image=args.base_image,
        base_image_checksum=args.base_image_checksum,
        ca_certificates=Path(args.ca_certificates) if args.ca_certificates else None,
        keep_ca_certificates=args.keep_ca_certificates
        or _flag("KEEP_CA_CERTIFICATES", os.environ.get("KEEP_CA_CERTIFICATES", ""), False),
        pip_index_url=args.pip_index_url,
        use_wheelhouse=args.wheelhouse
        and _flag("WHEELHOUSE", os.environ.get("WHEELHOUSE", ""), True),
    )
    build.build(profiles.get(args.profile), options)
    return 0


def _cmd_profiles(args: argparse.Namespace) -> int:
    for profile in profiles.load_all().values():
        print(f"{profile.name:14} Python {profile.python_version:5} "
              f"MLflow {profile.mlflow_version:7} {profile.description}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    benchmark.print_table(benchmark.run(args.profile))
    return 0


def _cmd_accel(args: argparse.Namespace) -> int:
    print(accel.detect())
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m mlflow_vm``."""
    top = argparse.ArgumentParser(prog="python -m mlflow_vm", description=__doc__)
    top.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = top.add_subparsers(dest="command", required=True)

    cmd = sub.add_parser("render", help="render templates into packer/ and cloud-init/")
    cmd.add_argument("--check", action="store_true", help="only check they are in sync")
    cmd.set_defaults(func=_cmd_render)

    sub.add_parser("lint", help="run every static check").set_defaults(func=_cmd_lint)
    sub.add_parser("lock", help="regenerate the hash-locked requirements").set_defaults(
        func=_cmd_lock)
    sub.add_parser("profiles", help="list the profiles").set_defaults(func=_cmd_profiles)
    sub.add_parser("accel", help="print the accelerator builds will use").set_defaults(
        func=_cmd_accel)

    cmd = sub.add_parser("bench", help="measure build and boot times and image sizes")
    cmd.add_argument("--profile", default="debian-12", help="profile to measure")
    cmd.set_defaults(func=_cmd_bench)

    cmd = sub.add_parser("base", help="build a profile's own base image")
    _profile_arg(cmd)
    cmd.add_argument("--force", action="store_true", help="rebuild even if present")
    cmd.set_defaults(func=_cmd_base)

    env = os.environ.get
    cmd = sub.add_parser("build", help="build a profile's image with Packer")
    _profile_arg(cmd)
    cmd.add_argument("--port", default=env("PORT") or "5000", help="MLflow port")
    cmd.add_argument("--base-image", default=env("BASE_IMAGE", ""),
                     help="path or URL of the base image, instead of the profile's")
    cmd.add_argument("--base-image-checksum", default=env("BASE_IMAGE_CHECKSUM", ""),
                     help="sha256:<hex> or file:<SHA256SUMS> of --base-image")
    cmd.add_argument("--ca-certificates", default=env("CA_CERTIFICATES", ""),
                     help="PEM file of extra CA certificates trusted during the build")
    cmd.add_argument("--keep-ca-certificates", action="store_true",
                     help="leave those certificates in the image")
    cmd.add_argument("--pip-index-url", default=env("PIP_INDEX_URL", ""),
                     help="package index for pip in the build VM")
    cmd.add_argument("--no-wheelhouse", dest="wheelhouse", action="store_false",
                     help="let the build VM download wheels itself")
    cmd.set_defaults(func=_cmd_build)
    return top


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit status 2."""
    args = parser().parse_args(argv)
    # A terminated build cleans up like an interrupted one.
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
    )
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was left half-written", file=sys.stderr)
        return 130
