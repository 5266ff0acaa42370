"""Fixtures of the conformance suite: one Lambkin host per session, the fixture
functions' zips (built once per session), boto3 and AWS CLI clients.

Environment:
  LAMBKIN_BIN   host binary (default: debug/lambkin in cargo's target directory:
                $CARGO_TARGET_DIR, else target/ at the repo root)
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

import engine
import support
from support import (
    FIXTURE_NAMES,
    FIXTURES,
    FUNCTIONS,
    REGION,
    REPO,
    ROLE,
    VENV,
    WHEELHOUSE,
    FixtureSpec,
    unique_name,
    wait_active,
    zip_dir,
    zip_files,
)

HOST_START_TIMEOUT = 30.0
HOST_STOP_TIMEOUT = 30.0


# --------------------------------------------------------------------------
# Processes: make this process a child subreaper, so that a process the host
# leaves behind is re-parented to us when the host exits and can be found.
# --------------------------------------------------------------------------

PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _proc_stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, pgid, state) of a live process, None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    return int(fields[1]), int(fields[2]), fields[0]


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def function_processes(host_pid: int, function_name: str) -> list[int]:
    """The host's descendants that run the given function (by the
    AWS_LAMBDA_FUNCTION_NAME in their environment)."""
    wanted = f"AWS_LAMBDA_FUNCTION_NAME={function_name}".encode()
    found = []
    for pid in _descendants(host_pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted in environ and _alive(pid):
            found.append(pid)
    return found


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        st = _proc_stat(pid)
        if st is not None:
            children.setdefault(st[0], []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    st = _proc_stat(pid)
    return st is not None and st[2] != "Z"


def _reap_zombie_children() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# --------------------------------------------------------------------------
# The host
# --------------------------------------------------------------------------


@dataclass
class Host:
    root: Path
    proc: subprocess.Popen
    addr: str
    stdout_path: Path
    stderr_path: Path
    # The test process's children when this host started (other hosts, brokers): not its
    # processes, though they share its parent.
    siblings: frozenset[int] = frozenset()

    @property
    def endpoint(self) -> str:
        return f"http://{self.addr}"

    def function_processes(self, function_name: str) -> list[int]:
        return function_processes(self.proc.pid, function_name)

    def log_path(self, function_name: str) -> Path:
        return self.root / "logs" / f"{function_name}.log"

    def stop(self) -> None:
        """SIGTERM, then the checks of a clean stop: status 0 and no process left behind."""
        _stop_host(self, _become_subreaper())

    def output(self) -> str:
        out = self.stdout_path.read_text(errors="replace")
        err = self.stderr_path.read_text(errors="replace")
        return f"--- host stdout ---\n{out[-8000:]}\n--- host stderr ---\n{err[-8000:]}"


def _host_binary() -> Path:
    env = os.environ.get("LAMBKIN_BIN")
    target = Path(os.environ.get("CARGO_TARGET_DIR") or "target")
    path = Path(env) if env else target / "debug" / "lambkin"
    if not path.is_absolute():
        path = REPO / path
    if not path.is_file():
        pytest.fail(
            f"host binary {path} not found: build it with `cargo build -p lambkin` "
            "or point LAMBKIN_BIN at it",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def lambkin_bin() -> Path:
    """The host binary, for client commands such as `lambkin deploy`."""
    return _host_binary()


# The OpenWhisk kind the session host backs with a layer, and the layer's name.
OPENWHISK_LAYERED_KIND = "nodejs:layered"
OPENWHISK_KIND_LAYER = "conformance-ow-kind"


@pytest.fixture(scope="session")
def device_dir():
    """Makes directories for hosts' roots that every user may pass through, as a device's
    `/greengrass/v2`: components and functions run as ggc_user, which could not reach a root
    under pytest's own temporary directory (pytest keeps it 0700)."""
    base = Path(tempfile.mkdtemp(prefix="lambkin-conformance-"))
    base.chmod(0o755)
    counter = itertools.count()

    def make(name: str) -> Path:
        path = base / f"{name}{next(counter)}"
        path.mkdir()
        path.chmod(0o755)
        return path

    yield make
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def container_engine():
    """A real container engine (podman serving the Docker API, runc, a local registry) for
    the session, started at the first test that needs it; everything it made is removed at
    the end. Skipped, saying why, where it cannot run (not root, packages missing), and
    failed instead under LAMBKIN_REQUIRE_ROOT_TESTS=1."""
    why = engine.missing()
    if why:
        engine.skip_or_fail(why)
    e = engine.Engine()
    try:
        e.start()
    except Exception as err:
        e.stop()
        pytest.fail(f"the container engine did not start: {err}", pytrace=False)
    yield e
    e.stop()


def _start_host(base: Path) -> Host:
    """Starts a host on a new root under `base`, once it serves and has said where."""
    binary = _host_binary()
    root = base / "root"
    root.mkdir()
    # An OpenWhisk kind backed by a Lambda layer the OpenWhisk tests publish (test_openwhisk).
    (root / "config.toml").write_text(
        '[openwhisk.kinds]\n'
        f'"{OPENWHISK_LAYERED_KIND}" = {{ runtime = "nodejs20.x", layers = ["{OPENWHISK_KIND_LAYER}:1"] }}\n'
    )
    stdout_path = base / "host.stdout"
    stderr_path = base / "host.stderr"
    env = dict(os.environ)
    env.setdefault("RUST_BACKTRACE", "1")
    siblings = frozenset(p for p in _all_pids() if (_proc_stat(p) or (0,))[0] == os.getpid())
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [str(binary), "run", "--root", str(root), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=base,
            env=env,
            start_new_session=True,
        )
    addr_file = root / "state" / "api.addr"
    h = Host(root, proc, "", stdout_path, stderr_path, siblings)
    deadline = time.monotonic() + HOST_START_TIMEOUT
    while True:
        if addr_file.is_file():
            text = addr_file.read_text().strip()
            if re.fullmatch(r"127\.0\.0\.1:\d+", text) and not text.endswith(":0"):
                h.addr = text
                break
        if proc.poll() is not None:
            pytest.fail(
                f"host exited with status {proc.returncode} before writing {addr_file}\n"
                + h.output(),
                pytrace=False,
            )
        if time.monotonic() > deadline:
            _kill_tree(proc)
            pytest.fail(
                f"host did not write {addr_file} within {HOST_START_TIMEOUT:.0f}s\n" + h.output(),
                pytrace=False,
            )
        time.sleep(0.05)

    # The address is also announced on stdout.
    banner = f"listening on http://{h.addr}"
    deadline = time.monotonic() + 5
    while banner not in stdout_path.read_text(errors="replace"):
        if time.monotonic() > deadline:
            _kill_tree(proc)
            pytest.fail(f"host did not print {banner!r}\n" + h.output(), pytrace=False)
        time.sleep(0.05)
    return h


@pytest.fixture(scope="session")
def host(device_dir) -> Host:
    subreaper = _become_subreaper()
    h = _start_host(device_dir("host"))
    yield h
    _stop_host(h, subreaper)


@pytest.fixture
def own_host(device_dir):
    """A host of the test's own, for a test that stops it (`Host.stop`); one the test left
    running is stopped at its end, with the same checks."""
    subreaper = _become_subreaper()
    h = _start_host(device_dir("own-host"))
    yield h
    if h.proc.poll() is None:
        _stop_host(h, subreaper)


def _kill_tree(proc: subprocess.Popen) -> None:
    for pid in _descendants(proc.pid) | {proc.pid}:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(10)


def _stop_host(h: Host, subreaper: bool) -> None:
    proc = h.proc
    if proc.poll() is not None:
        pytest.fail(
            f"host died during the session with status {proc.returncode}\n" + h.output(),
            pytrace=False,
        )
    before = _descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        status = proc.wait(HOST_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        pytest.fail(
            f"host did not exit within {HOST_STOP_TIMEOUT:.0f}s of SIGTERM\n" + h.output(),
            pytrace=False,
        )

    # Nothing the host started may survive it: not its process group, not any
    # process that descended from it (re-parented to us as subreaper, or to init).
    def survivors() -> set[int]:
        alive = {pid for pid in before if _alive(pid)}
        for pid in _all_pids():
            st = _proc_stat(pid)
            if st is None or st[2] == "Z" or pid in h.siblings:
                continue
            if st[1] == proc.pid or (subreaper and st[0] == os.getpid() and pid != proc.pid):
                alive.add(pid)
        return alive

    deadline = time.monotonic() + 5
    left = survivors()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        _reap_zombie_children()
        left = survivors()
    described = [f"{pid}: {_cmdline(pid)}" for pid in sorted(left)]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in left) and time.monotonic() < deadline:
        time.sleep(0.05)
    _reap_zombie_children()
    problems = []
    if status != 0:
        problems.append(f"host exited with status {status} on SIGTERM (expected 0)")
    if described:
        problems.append("processes of the host survived it:\n  " + "\n  ".join(described))
    if problems:
        pytest.fail("\n".join(problems) + "\n" + h.output(), pytrace=False)


# --------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def lambda_client(host: Host):
    return support.lambda_client(
        host.root,
        host.endpoint,
        retries={"total_max_attempts": 1},
        connect_timeout=5,
        read_timeout=60,
    )


@dataclass
class AwsCli:
    endpoint: str
    env: dict[str, str]
    cwd: Path

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [
            str(VENV / "bin" / "aws"),
            *args,
            "--endpoint-url",
            self.endpoint,
            "--region",
            REGION,
            "--output",
            "json",
        ]
        proc = subprocess.run(
            cmd,
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"`aws {' '.join(args)}` exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}",
                pytrace=False,
            )
        return proc

    def json(self, *args: str) -> dict:
        out = self.run(*args).stdout
        return json.loads(out) if out.strip() else {}


@pytest.fixture(scope="session")
def aws_cli(host: Host, tmp_path_factory: pytest.TempPathFactory) -> AwsCli:
    if not (VENV / "bin" / "aws").is_file():
        pytest.fail("the AWS CLI is not in .venv: run scripts/install-test-deps", pytrace=False)
    home = tmp_path_factory.mktemp("aws-cli")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") and key not in ("PYTHONPATH", "PYTHONHOME")
    }
    env.update(
        {
            "HOME": str(home),
            # As `lambkin credentials` says: the host's own key file and profile.
            "AWS_SHARED_CREDENTIALS_FILE": str(support.credentials_file(host.root)),
            "AWS_PROFILE": support.PROFILE,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(home / "config"),
            "AWS_PAGER": "",
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_RETRY_MODE": "standard",
        }
    )
    return AwsCli(host.endpoint, env, home)


def _cargo_binary(package: str, binary: str) -> Path:
    """Builds a workspace package's binary (debug) and returns its path, as cargo reports it."""
    proc = subprocess.run(
        [
            "cargo",
            "build",
            "--quiet",
            "-p",
            package,
            "--bin",
            binary,
            "--message-format=json-render-diagnostics",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    for line in proc.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            if msg["target"]["name"] == binary:
                return Path(msg["executable"])
    pytest.fail(f"cargo did not report {package}'s {binary} binary", pytrace=False)


def _skip_build_junk(path: Path) -> bool:
    return path.name in ("__pycache__", ".bin") or path.suffix == ".pyc"


class ZipBuilder:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self._cache: dict[str, bytes] = {}

    def __call__(self, name: str) -> bytes:
        if name not in self._cache:
            build = getattr(self, "_build_" + name.replace("-", "_"))
            started = time.monotonic()
            self._cache[name] = build(self.workdir / name)
            sys.stderr.write(
                f"[conformance] built {name}.zip: {len(self._cache[name])} bytes "
                f"in {time.monotonic() - started:.1f}s\n"
            )
        return self._cache[name]

    def _build_python_ric(self, out: Path) -> bytes:
        src = FUNCTIONS / "python-ric"
        if not WHEELHOUSE.is_dir():
            pytest.fail(f"{WHEELHOUSE} is missing: run scripts/install-test-deps", pytrace=False)
        pkg = out / "package"
        pkg.mkdir(parents=True)
        # What a user does: pip install --target the function's directory.
        subprocess.run(
            [
                str(VENV / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-index",
                "--find-links",
                str(WHEELHOUSE),
                "--target",
                str(pkg),
                "-r",
                str(src / "requirements.txt"),
            ],
            check=True,
        )
        for name in ("app.py", "bootstrap"):
            shutil.copy2(src / name, pkg / name)
        return zip_dir(pkg, out / "function.zip", _skip_build_junk)

    def _build_node_ric(self, out: Path) -> bytes:
        src = FUNCTIONS / "node-ric"
        addon = src / "node_modules" / "aws-lambda-ric" / "dist" / "rapid-client.node"
        if not addon.is_file():
            pytest.fail(f"{addon} is missing: run scripts/install-test-deps", pytrace=False)
        out.mkdir(parents=True)
        return zip_dir(src, out / "function.zip", _skip_build_junk)

    def _build_rust_fixture(self, out: Path) -> bytes:
        out.mkdir(parents=True)
        proc = subprocess.run(
            [
                "cargo",
                "build",
                "--quiet",
                "-p",
                "lambkin-fixture-rust",
                "--bin",
                "bootstrap",
                "--message-format=json-render-diagnostics",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        executable = None
        for line in proc.stdout.splitlines():
            msg = json.loads(line)
            if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
                if msg["target"]["name"] == "bootstrap":
                    executable = Path(msg["executable"])
        if executable is None:
            pytest.fail("cargo did not report the fixture's bootstrap binary", pytrace=False)
        binary = out / "bootstrap"
        shutil.copy2(executable, binary)
        # A debug build is ten times larger than what users ship; drop its
        # debug info (a release build would cost a longer compile).
        if shutil.which("strip"):
            subprocess.run(["strip", str(binary)], check=True)
        return zip_files({"bootstrap": binary}, out / "function.zip", {"bootstrap": 0o755})

    def _build_rust_stream(self, out: Path) -> bytes:
        """The streaming fixture (`lambda_runtime::streaming`), binary `bootstrap-stream` of
        crate `lambkin-fixture-rust`, zipped as `bootstrap`."""
        out.mkdir(parents=True)
        binary = out / "bootstrap"
        shutil.copy2(_cargo_binary("lambkin-fixture-rust", "bootstrap-stream"), binary)
        if shutil.which("strip"):
            subprocess.run(["strip", str(binary)], check=True)
        return zip_files({"bootstrap": binary}, out / "function.zip", {"bootstrap": 0o755})

    def _build_telemetry_extension(self, out: Path) -> bytes:
        """A layer whose `extensions/telemetry-extension` is built on the `lambda-extension`
        crate (tests/functions/telemetry-extension)."""
        out.mkdir(parents=True)
        binary = out / "telemetry-extension"
        shutil.copy2(_cargo_binary("lambkin-fixture-telemetry-extension", "telemetry-extension"), binary)
        if shutil.which("strip"):
            subprocess.run(["strip", str(binary)], check=True)
        return zip_files(
            {"extensions/telemetry-extension": binary},
            out / "layer.zip",
            {"extensions/telemetry-extension": 0o755},
        )

    def _build_python_handler(self, out: Path) -> bytes:
        out.mkdir(parents=True)
        return zip_files({"app.py": FUNCTIONS / "python-handler" / "app.py"}, out / "function.zip")

    def _build_node_handler(self, out: Path) -> bytes:
        out.mkdir(parents=True)
        return zip_files({"index.js": FUNCTIONS / "node-handler" / "index.js"}, out / "function.zip")

    def _build_node_handler_esm(self, out: Path) -> bytes:
        out.mkdir(parents=True)
        return zip_files({"index.mjs": FUNCTIONS / "node-handler" / "index.mjs"}, out / "function.zip")


@pytest.fixture(scope="session")
def fixture_zip(tmp_path_factory: pytest.TempPathFactory) -> ZipBuilder:
    return ZipBuilder(tmp_path_factory.mktemp("zips"))


@dataclass
class Deployed:
    name: str
    spec: FixtureSpec
    timeout: int
    environment: dict[str, str] = field(default_factory=dict)


class FunctionFactory:
    """Creates functions and deletes them when the test (or session) ends."""

    def __init__(self, client, zips: ZipBuilder):
        self.client = client
        self.zips = zips
        self.created: list[str] = []

    def create(
        self,
        fixture: str,
        *,
        prefix: str | None = None,
        timeout: int = 10,
        memory: int = 256,
        environment: dict[str, str] | None = None,
        zip_bytes: bytes | None = None,
    ) -> Deployed:
        spec = FIXTURES[fixture]
        name = unique_name(prefix or f"conf-{fixture}")
        env = {"FIXTURE_NAME": fixture, **(environment or {})}
        self.client.create_function(
            FunctionName=name,
            Runtime=spec.runtime,
            Role=ROLE,
            Handler=spec.handler,
            Code={"ZipFile": zip_bytes if zip_bytes is not None else self.zips(fixture)},
            Timeout=timeout,
            MemorySize=memory,
            Environment={"Variables": env},
        )
        self.created.append(name)
        wait_active(self.client, name)
        return Deployed(name, spec, timeout, env)

    def cleanup(self) -> None:
        for name in self.created:
            try:
                self.client.delete_function(FunctionName=name)
            except ClientError as err:
                if err.response["Error"]["Code"] != "ResourceNotFoundException":
                    raise
        self.created.clear()


@pytest.fixture
def functions(lambda_client, fixture_zip):
    factory = FunctionFactory(lambda_client, fixture_zip)
    yield factory
    factory.cleanup()


@pytest.fixture(scope="session")
def session_functions(lambda_client, fixture_zip):
    # Not cleaned up: these functions' instances are still running when the
    # host gets SIGTERM, so that its shutdown is checked with live instances.
    return FunctionFactory(lambda_client, fixture_zip)


@pytest.fixture(scope="session", params=FIXTURE_NAMES)
def deployed(request, session_functions) -> Deployed:
    """One long-lived function per fixture, shared by the tests that do not
    change or break it."""
    return session_functions.create(request.param, environment={"FIXTURE_COLOR": "shared"})


@pytest.fixture(params=FIXTURE_NAMES)
def fixture_name(request) -> str:
    """A fixture function's name, for tests that create their own functions."""
    return request.param
