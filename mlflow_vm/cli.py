"""Command line of the image builder; the Makefile's targets call it."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import re
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

from . import (accel, base_image, benchmark, build, export, libvirt, lint, load, load_compare,
               lock, profiles, render, seed, settings, tools, user_data, vbox)
from .errors import UserError
from .paths import OUTPUT

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


def _positive(name: str, value: str, limit: int) -> int:
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= limit:
        raise UserError(f"{name}={value} is not a whole number between 1 and {limit}")
    return int(value)


def _loopback_url(value: str) -> str:
    """Load goes to this machine only: refuse any other address."""
    parsed = urlsplit(value)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme != "http" or parsed.hostname != "127.0.0.1" or not port:
        raise UserError(f"--url {value} is not http://127.0.0.1:PORT: "
                        "the load benchmark only aims at this machine")
    return value


def _cmd_load(args: argparse.Namespace) -> int:
    clients = _positive("CLIENTS", args.clients, 256)
    duration = _positive("DURATION", args.duration, 3600)
    if args.url:
        url = _loopback_url(args.url)
        if not load.answers(url):
            raise UserError(f"nothing answers at {url.rstrip('/')}/health: "
                            "start the server, or check the port")
        results = {url: load.run(url, clients, float(duration))}
    else:
        for item in args.set:
            if "=" not in item:
                raise UserError(f"--set {item} is not KEY=VALUE")
        if args.backend_uri:
            ctl = settings.mlflowctl(profiles.get(args.profile))
            problem = ctl.validate("MLFLOW_BACKEND_STORE_URI", args.backend_uri)
            if problem:
                raise UserError(f"BACKEND_URI: {problem}")
        image = _image(args.image, args.profile)
        if args.backend_uri:
            results = load_compare.run_backends(image.path, image.guest_port, clients,
                                                float(duration), args.backend_uri)
        else:
            results = load_compare.run(image.path, image.guest_port, clients,
                                       float(duration), args.set)
    for line in load.table(results):
        print(line)
    return 0


def _cmd_accel(args: argparse.Namespace) -> int:
    print(accel.detect())
    return 0


def _number(name: str, value: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise UserError(f"{name}={value} is not a whole number")
    return int(value)


ISO9660_MAGIC = b"CD001"
ISO9660_OFFSET = 0x8001


def _seed_iso(value: str) -> Path | None:
    """The seed ISO libvirt attaches: SEED=, else output/seed.iso when it exists."""
    if not value:
        default = OUTPUT / "seed.iso"
        return default.resolve() if default.is_file() else None
    path = Path(value).expanduser().resolve()
    export.require_file(path,
                        f"SEED={value} is a directory: name the seed ISO file, "
                        "e.g. SEED=output/seed.iso",
                        f"seed {path} does not exist: make it with `make seed`")
    try:
        with path.open("rb") as handle:
            handle.seek(ISO9660_OFFSET)
            magic = handle.read(len(ISO9660_MAGIC))
    except OSError as exc:
        raise UserError(f"cannot read seed {path}: {exc.strerror}") from None
    if magic != ISO9660_MAGIC:
        raise UserError(f"SEED={value} is not an ISO 9660 image: give the ISO "
                        "`make seed` wrote (SEED=output/seed.iso)")
    return path


def _image(value: str, profile: str) -> export.Image:
    path = Path(value) if value else OUTPUT / profile / f"mlflow-{profile}.qcow2"
    return export.inspect(path)


def _cmd_libvirt(args: argparse.Namespace) -> int:
    image = _image(args.image, args.profile)
    cpus, memory = _number("CPUS", args.cpus), _number("MEMORY", args.memory)
    export.check_resources(cpus, memory)
    kvm = (accel.requested() or "kvm") == "kvm"
    seed_iso = _seed_iso(args.seed)
    if args.name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", args.name):
        raise UserError(f"VM_NAME={args.name} is not a domain name: use letters, digits, "
                        ". _ and -, starting with a letter or digit")
    domain = libvirt.Domain(name=args.name or image.name, disk=image.path, cpus=cpus,
                            memory_mib=memory, seed=seed_iso, network=args.network or "default",
                            kvm=kvm)
    if args.output:
        target = Path(args.output).expanduser()
    elif args.output_dir:
        target = Path(args.output_dir).expanduser() / f"{image.name}.xml"
    else:
        target = image.path.with_suffix(".xml")
    with export.atomic_path(target, "OUTPUT_DIR") as tmp:
        tmp.write_bytes(libvirt.domain_xml(domain))
    LOG.info("Wrote %s", target)
    LOG.info("Define and start it:\n  virsh define %s && virsh start %s", target, domain.name)
    LOG.info("Or create the same VM with virt-install:\n  %s",
             libvirt.virt_install_command(domain))
    LOG.info("Then: virsh domifaddr %s, and open http://ADDRESS:%d/", domain.name,
             image.guest_port)
    return 0


def _cmd_vbox(args: argparse.Namespace) -> int:
    image = _image(args.image, args.profile)
    outputs = vbox.export_image(image, _number("CPUS", args.cpus), _number("MEMORY", args.memory),
                                Path(args.output_dir).expanduser() if args.output_dir else None)
    LOG.info("Import and start it (SSH on 127.0.0.1:%d, MLflow on 127.0.0.1:%d):",
             vbox.SSH_HOST_PORT, image.guest_port)
    for line in vbox.import_commands(image, outputs.ova):
        LOG.info("  %s", line)
    return 0


def _read_password(prompt: str) -> str:
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise UserError("no password was typed (end of input); run the command again, "
                        "or use PASSWORD_FILE=FILE") from None


def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        path = Path(args.password_file).expanduser()
        export.require_file(path,
                            f"PASSWORD_FILE={path} is a directory: name the file whose "
                            "first line is the password",
                            f"password file {path} does not exist")
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            raise UserError(f"cannot read the password file {path} as text") from None
        return seed.hash_password(lines[0] if lines else "")
    ask = args.ask_password or _flag("ASK_PASSWORD", os.environ.get("ASK_PASSWORD", ""), False)
    if not ask:
        return ""
    if not sys.stdin.isatty():
        raise UserError("ASK_PASSWORD needs a terminal; use PASSWORD_FILE=FILE instead")
    first = _read_password(f"Console password for {args.user}: ")
    if first != _read_password("Again: "):
        raise UserError("the two passwords differ; run the command again")
    return seed.hash_password(first)


def _settings(args: argparse.Namespace, profile: profiles.Profile | None = None) -> str:
    """The checked server settings of --settings (SETTINGS), or nothing."""
    if not args.settings:
        return ""
    return settings.read(Path(args.settings).expanduser(), profile or profiles.get(args.profile))


def _cmd_seed(args: argparse.Namespace) -> int:
    tools.require(("xorriso", "ssh-keygen", "openssl"))
    user = seed.check_user(args.user)
    key_path = Path(args.ssh_key).expanduser() if args.ssh_key else seed.default_ssh_key()
    keys = seed.read_public_keys(key_path)
    password_hash = _password(args)
    if not args.output:
        raise UserError("SEED= is empty: name the ISO to write, e.g. SEED=output/seed.iso")
    target = Path(args.output).expanduser()
    settings = _settings(args)
    instance_id = seed.write_login_seed(target, user, keys, password_hash,
                                        settings=settings)
    LOG.info("Wrote %s (instance-id %s): user %s, SSH key %s%s%s", target, instance_id, user,
             key_path, ", console password set" if password_hash else "",
             ", server settings (readable by you only)" if settings else "")
    LOG.info("Attach it to the VM as a CD-ROM before its first boot, then: ssh %s@ADDRESS", user)
    return 0


def _cmd_user_data(args: argparse.Namespace) -> int:
    profile = profiles.get(args.profile)
    key_files = [Path(path).expanduser() for path in args.ssh_key]
    if not key_files:
        named = os.environ.get("SSH_KEY", "")
        if named:
            key_files = [Path(named).expanduser()]
        elif seed.default_ssh_key().is_file():
            key_files = [seed.default_ssh_key()]
    keys = [key for path in key_files for key in seed.read_public_keys(path)]
    packages = args.pip_package or os.environ.get("PIP_PACKAGES", "").split()
    if not args.output:
        raise UserError("USER_DATA= is empty: name the file to write, e.g. USER_DATA=my-user-data")
    target = Path(args.output).expanduser()
    size = user_data.write(profile, target, args.port, args.allowed_hosts, packages, keys,
                           _settings(args, profile))
    LOG.info("Wrote %s (%d bytes, cloud-init schema: valid)", target, size)
    if size > user_data.WARN_SIZE:
        LOG.warning("It is over 32 KiB: some clouds refuse that much user-data")
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

    cmd = sub.add_parser("load", help="load an image's MLflow and the tutorial's server with "
                         "concurrent writers; count lost writes")
    _profile_arg(cmd)
    cmd.add_argument("--image", default=os.environ.get("IMAGE", ""),
                     help="image to boot once for both servers "
                     "(default output/<profile>/mlflow-<profile>.qcow2)")
    cmd.add_argument("--url", default="",
                     help="load a server already running at http://127.0.0.1:PORT instead")
    cmd.add_argument("--clients", default=os.environ.get("CLIENTS") or "32",
                     help="concurrent client threads (default 32)")
    cmd.add_argument("--duration", default=os.environ.get("DURATION") or "60",
                     help="seconds of load per server (default 60)")
    cmd.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="add this mlflow.env setting in the VM before measuring "
                     "(repeatable)")
    cmd.add_argument("--backend-uri", default=os.environ.get("BACKEND_URI", ""),
                     help="instead of the tutorial's server, measure the service on SQLite "
                     "and then on this database (a URI the VM can reach, e.g. "
                     "postgresql://mlflow:PASSWORD@10.0.2.2:5432/mlflow for the host's "
                     "loopback)")
    cmd.set_defaults(func=_cmd_load)

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

    def settings_args(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--settings", default=env("SETTINGS", ""),
                         help="file of KEY=VALUE server settings (database, bucket, "
                         "authentication) applied at the first boot, checked first")

    def resources(cmd: argparse.ArgumentParser) -> None:
        _profile_arg(cmd)
        cmd.add_argument("--image", default=env("IMAGE", ""),
                         help="qcow2 image (default output/<profile>/mlflow-<profile>.qcow2)")
        cmd.add_argument("--cpus", default=env("CPUS") or str(export.DEFAULT_CPUS),
                         help="virtual CPUs")
        cmd.add_argument("--memory", default=env("MEMORY") or str(export.DEFAULT_MEMORY_MIB),
                         help="memory in MiB")

    cmd = sub.add_parser("libvirt", help="write a libvirt domain XML for a built image")
    resources(cmd)
    cmd.add_argument("--seed", default=env("SEED", ""), help="seed ISO to attach as a CD-ROM")
    cmd.add_argument("--name", default=env("VM_NAME", ""),
                     help="domain name (default: image name)")
    cmd.add_argument("--network", default=env("LIBVIRT_NETWORK") or "default",
                     help="libvirt network (default: default)")
    cmd.add_argument("--output-dir", default=env("OUTPUT_DIR", ""),
                     help="folder for the XML (default: beside the image)")
    cmd.add_argument("-o", "--output", default="",
                     help="XML file to write (default: beside the image, .xml)")
    cmd.set_defaults(func=_cmd_libvirt)

    cmd = sub.add_parser("vbox", help="convert a built image to VDI and an OVA for VirtualBox")
    resources(cmd)
    cmd.add_argument("--output-dir", default=env("OUTPUT_DIR", ""),
                     help="folder for the VDI and OVA (default: beside the image)")
    cmd.set_defaults(func=_cmd_vbox)

    cmd = sub.add_parser("seed", help="write a NoCloud seed ISO that creates a login user")
    cmd.add_argument("--ssh-key", default=env("SSH_KEY", ""),
                     help="SSH public key file (default: ~/.ssh/id_ed25519.pub, "
                     "id_ecdsa.pub or id_rsa.pub, the first that exists)")
    cmd.add_argument("--user", default=env("SEED_USER", seed.DEFAULT_USER),
                     help=f"login name (default {seed.DEFAULT_USER})")
    cmd.add_argument("--ask-password", action="store_true",
                     help="prompt for a console password (stored hashed)")
    cmd.add_argument("--password-file", default=env("PASSWORD_FILE", ""),
                     help="read the console password from the first line of FILE")
    cmd.add_argument("-o", "--output", default=env("SEED") or str(OUTPUT / "seed.iso"),
                     help="ISO to write (default output/seed.iso)")
    settings_args(cmd)
    _profile_arg(cmd)
    cmd.set_defaults(func=_cmd_seed)

    cmd = sub.add_parser("user-data", help="write cloud VM user-data with your settings")
    _profile_arg(cmd)
    cmd.add_argument("--port", default=env("PORT") or "5000", help="MLflow port")
    cmd.add_argument("--allowed-hosts", default=env("ALLOWED_HOSTS", "*"),
                     help="Host headers served, comma-separated (default *)")
    cmd.add_argument("--pip-package", action="append", default=[],
                     help="extra package for the server's venv (repeatable; not hash-checked)")
    cmd.add_argument("--ssh-key", action="append", default=[],
                     help="SSH public key file for the default user (repeatable)")
    cmd.add_argument("-o", "--output", default=env("USER_DATA", ""),
                     help="file to write (USER_DATA)")
    settings_args(cmd)
    cmd.set_defaults(func=_cmd_user_data)
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
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot use{where}: {exc.strerror or exc}; check the path and its "
              "permissions, or choose another", file=sys.stderr)
        return 2
