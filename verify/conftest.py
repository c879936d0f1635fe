"""Boot the image under test once per install path and hand it to the tests.

Two install paths lead to the same server, and the same tests check both:

- ``image``: the built qcow2 (``--image``), booted as a throwaway overlay;
- ``user-data``: the profile's plain base image booted with the standalone
  ``cloud-init/<profile>/user-data``, as a cloud VM would be. The host serves
  the locked wheels to it, so this path needs no package index;
- ``vdi`` and ``vmdk``: the image converted for VirtualBox by the ``vbox``
  command (the VDI, and the VMDK inside the OVA), booted with a seed made by
  the ``seed`` command. They run every test but the disruptive ones, which
  the qcow2 already runs on the same file system.

``no-seed`` (in ``--install``) selects one more boot: the image with no seed
CD and no serial port, which must still serve ``/health`` in bounded time.

Each path boots one VM for all its tests, and the VM is powered off at the
end whatever happened, Ctrl-C and SIGTERM included. Its serial console is
kept in ``output/logs/verify-<path>-serial.log``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import testinfra

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlflow_vm import profiles, seed, wheelhouse  # noqa: E402
from mlflow_vm.errors import UserError  # noqa: E402
from mlflow_vm.paths import CLOUD_INIT, OUTPUT  # noqa: E402
from mlflow_vm.vm import LOGIN, VM, BootOptions  # noqa: E402

PROFILE_KEY = pytest.StashKey[profiles.Profile]()
INSTALL_PATHS = ("image", "user-data", "vdi", "vmdk")
CONVERTED = ("vdi", "vmdk")
SELECTABLE = (*INSTALL_PATHS, "no-seed")
# Installing MLflow at first boot takes many minutes on an emulated CPU.
FIRST_BOOT_INSTALL_TIMEOUT = 2400


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """Treat SIGTERM like Ctrl-C, so the VM fixtures still power off and clean up."""
    signal.signal(signal.SIGTERM, _interrupt)
    config.addinivalue_line("markers", "disruptive: restarts or reboots the VM; runs last")
    config.addinivalue_line("markers", "image_only: checks the built image file itself")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--image", help="qcow2 image to boot and verify")
    parser.addoption("--profile", help="profile the image was built from "
                     "(default: the one its manifest.json names)")
    parser.addoption("--base-image", help="base image for the user-data path "
                     "(default: the profile's own, when the project builds it)")
    parser.addoption("--install", default=",".join(SELECTABLE),
                     help="install paths to verify, comma-separated: " + ",".join(SELECTABLE))


def _image_format(path: Path) -> str:
    result = subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                            capture_output=True, text=True)
    return json.loads(result.stdout).get("format", "") if result.returncode == 0 else ""


def _read_manifest(image: Path) -> dict:
    path = image.parent / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _refuse(message: str) -> None:
    """Stop before any VM boots, with one line that says what to do."""
    raise pytest.UsageError(message)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Check --image and --profile once, before any VM boots."""
    config = session.config
    given_profile = config.getoption("--profile")
    if given_profile:
        try:
            profiles.get(given_profile)
        except UserError as exc:
            _refuse(str(exc))
    value = config.getoption("--image")
    if not value:
        _refuse("verify needs --image PATH.qcow2 (make verify IMAGE=...)")
    image = Path(value)
    if image.is_dir():
        _refuse(f"{image} is a directory: give the image file, e.g. "
                "output/debian-12/mlflow-debian-12.qcow2")
    if not image.is_file():
        _refuse(f"image {image} does not exist: build it with `make image`")
    if _image_format(image) != "qcow2":
        _refuse(f"{image} is not a qcow2 image")
    built_from = _read_manifest(image).get("profile")
    name = given_profile or built_from
    if not name:
        _refuse(f"no manifest.json beside {image}: name its profile with "
                    "UBUNTU=... or DISTRO=...")
    config.stash[PROFILE_KEY] = profiles.get(name)
    if built_from and name != built_from:
        _refuse(f"{image} was built from {built_from}, not {name}")
    unknown = set(config.getoption("--install").split(",")) - set(SELECTABLE)
    if unknown:
        _refuse(f"unknown install path {', '.join(sorted(unknown))}: choose from "
                f"{','.join(SELECTABLE)}")
    base = config.getoption("--base-image")
    if base and not Path(base).is_file():
        _refuse(f"base image {base} (--base-image) does not exist: give the path of "
                "the plain cloud image the user-data path boots")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep each install path's tests together, its disruptive ones last."""
    def key(item: pytest.Item) -> tuple[int, bool]:
        params = getattr(item, "callspec", None)
        install = params.params.get("install", "") if params else ""
        order = INSTALL_PATHS.index(install) if install in INSTALL_PATHS else -1
        return order, item.get_closest_marker("disruptive") is not None

    items.sort(key=key)


@pytest.fixture(scope="session")
def profile(request: pytest.FixtureRequest) -> profiles.Profile:
    """The profile the image under test was built from."""
    return request.config.stash[PROFILE_KEY]


@pytest.fixture(scope="session")
def image(request: pytest.FixtureRequest) -> Path:
    """The built image under test."""
    return Path(request.config.getoption("--image"))


@pytest.fixture(scope="session")
def manifest(image: Path) -> dict:
    """The build manifest written beside the image, empty if there is none."""
    return _read_manifest(image)


@pytest.fixture(scope="session", params=INSTALL_PATHS)
def install(request: pytest.FixtureRequest) -> str:
    """The install path under test."""
    chosen = request.config.getoption("--install").split(",")
    if request.param not in chosen:
        pytest.skip(f"install path {request.param} not selected (--install)")
    return request.param


@pytest.fixture(autouse=True)
def _converted_disks_skip_disruptive_tests(request: pytest.FixtureRequest) -> None:
    """Restart and reboot tests run on the qcow2 only; its converted copies hold
    the same file system, and each extra boot costs minutes on an emulated CPU."""
    if "install" not in request.fixturenames or not request.node.get_closest_marker(
            "disruptive"):
        return
    install_path = request.getfixturevalue("install")
    if install_path in CONVERTED:
        pytest.skip(f"disruptive tests run on the qcow2; the {install_path} disk holds the "
                    "same file system")


@pytest.fixture
def once_per_image(install: str) -> None:
    """Tests that restart the server or cut the VM's power run on the built
    image only; the other paths install the same files."""
    if install != "image":
        pytest.skip("restarting and power-cut tests run on the built image; "
                    "the other install paths install the same service")


@pytest.fixture(scope="session")
def carried_backup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A backup one VM of the session takes, kept on the host for another to restore."""
    return {"dir": tmp_path_factory.mktemp("carried-backup")}


@pytest.fixture
def boot_times() -> dict[str, tuple[float, float]]:
    """Where a test records its boot's seconds to SSH and to /health, for the summary."""
    return BOOT_TIMES


# Seconds each conversion took, for the summary.
CONVERSION_TIMES: dict[str, float] = {}


@pytest.fixture(scope="session")
def converted(image: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The image converted by the ``vbox`` command: its VDI, and the VMDK from its OVA."""
    folder = tmp_path_factory.mktemp("vbox")
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "mlflow_vm", "vbox", "--image", str(image),
                    "--output-dir", str(folder)], check=True, cwd=ROOT)
    CONVERSION_TIMES["vdi and ova"] = time.monotonic() - start
    ova = folder / f"{image.stem}.ova"
    with tarfile.open(ova) as archive:
        vmdk = next(m for m in archive.getmembers() if m.name.endswith(".vmdk"))
        # The "data" filter refuses odd members; older Pythons lack it.
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extract(vmdk, folder, **safe)
    return {"vdi": folder / f"{image.stem}.vdi", "vmdk": folder / vmdk.name}


def seed_command(target: Path, public_key: str) -> None:
    """Make a boot's seed with the project's own ``seed`` command."""
    subprocess.run([sys.executable, "-m", "mlflow_vm", "seed", "--ssh-key", public_key,
                    "--user", LOGIN, "-o", str(target)],
                   check=True, cwd=ROOT, capture_output=True)


# Seconds from power-on to SSH and to /health, per install path, for the summary.
BOOT_TIMES: dict[str, tuple[float, float]] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how long each install path took to serve, and their ratio."""
    if not BOOT_TIMES:
        return
    terminalreporter.section("boot times")
    for install, (ssh, health) in BOOT_TIMES.items():
        login = f"SSH after {ssh:.0f} s, " if ssh else "no login, "
        terminalreporter.write_line(f"{install}: {login}MLflow /health after {health:.0f} s")
    for name, seconds in CONVERSION_TIMES.items():
        terminalreporter.write_line(f"conversion to {name}: {seconds:.0f} s")
    if "image" in BOOT_TIMES and "user-data" in BOOT_TIMES:
        ratio = BOOT_TIMES["user-data"][1] / BOOT_TIMES["image"][1]
        terminalreporter.write_line(
            f"a first-boot install takes {ratio:.1f} times as long to serve as the baked image"
        )


def _serial_log(name: str) -> Path:
    return OUTPUT / "logs" / f"verify-{name}-serial.log"


def _boot_built_image(image: Path, port: int, install: str = "image") -> Iterator[VM]:
    options = BootOptions(guest_port=port, keep_serial_log=_serial_log(install),
                          make_seed=seed_command if install in CONVERTED else None)
    with VM(image, options) as machine:
        ssh = machine.wait_for_ssh()
        health = machine.wait_for_http("/health")
        BOOT_TIMES[install] = (ssh, health)
        yield machine


def _boot_with_user_data(profile: profiles.Profile, base: Path) -> Iterator[VM]:
    user_data = (CLOUD_INIT / profile.name / "user-data").read_text()
    with wheelhouse.serve(wheelhouse.fill(profile)) as port:
        options = BootOptions(
            user_data=seed.with_wheelhouse(user_data, f"http://10.0.2.2:{port}/"),
            keep_serial_log=_serial_log("user-data"),
        )
        with VM(base, options) as machine:
            ssh = machine.wait_for_ssh()
            health = machine.wait_for_http("/health", timeout=FIRST_BOOT_INSTALL_TIMEOUT)
            BOOT_TIMES["user-data"] = (ssh, health)
            yield machine


@pytest.fixture(scope="session")
def vm(request: pytest.FixtureRequest, install: str, profile: profiles.Profile) -> Iterator[VM]:
    """The booted VM of the install path, with SSH up and MLflow answering."""
    if install == "image" or install in CONVERTED:
        port = request.getfixturevalue("manifest").get("mlflow_port", 5000)
        disk = (request.getfixturevalue("image") if install == "image"
                else request.getfixturevalue("converted")[install])
        yield from _boot_built_image(disk, port, install)
        return
    given = request.config.getoption("--base-image")
    base = Path(given) if given else profile.base_image.local_path()
    if not base.is_file():
        pytest.skip(
            f"the user-data path boots the plain {profile.name} base image, and there is "
            f"none at {base}: pass --base-image (the project builds only debian-12's)"
        )
    yield from _boot_with_user_data(profile, base)


@pytest.fixture(scope="session")
def host(vm: VM) -> testinfra.host.Host:
    """testinfra's view of the guest, over SSH."""
    return testinfra.get_host(
        f"ssh://verify@127.0.0.1:{vm.ssh_port}",
        ssh_identity_file=str(vm.key),
        # One SSH connection for every command: logins are slow on an emulated CPU.
        ssh_extra_args=(
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            f"-o ControlPath={vm.workdir}/ssh-%C"
        ),
    )


@pytest.fixture(scope="session")
def hello_world_run(vm: VM) -> str:
    """Log the tutorial's hello-world run from the host; return its run id."""
    mlflow.set_tracking_uri(vm.url)
    mlflow.set_experiment("Default")
    with mlflow.start_run() as run:
        mlflow.log_param("param1", 5)
        mlflow.log_metric("metric1", 0.85)
        mlflow.set_tag("tag1", "example")
    return run.info.run_id
