"""A real container engine for the tests of Docker components: Debian's podman serving the
Docker Engine API on a socket of its own, with runc, and Debian's docker-registry (the CNCF
Distribution registry) on a loopback port. The real Docker CLI talks to it through
DOCKER_HOST, as the host's pulls and the components' `docker run` do.

Everything is private to one test session: the service's configuration (containers.conf,
storage.conf, registries.conf given through CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and
CONTAINERS_REGISTRIES_CONF), its storage, run and lock directories, the socket, the
registry's port and storage, all in a temporary directory that `stop` removes after removing
every container and image and ending both processes.

No registry outside the machine is reachable: images are made from root file systems the
tests assemble (`rootfs_tar`, `python_rootfs`) and imported with `podman import`."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from support import REPO

REQUIRE_ALL = "LAMBKIN_REQUIRE_ROOT_TESTS"
START_TIMEOUT = 60.0

CONTAINERS_CONF = """\
[containers]
# This machine's hard limits are lower than podman's defaults.
default_ulimits = ["nofile=4096:4096", "nproc=1000:1000"]

[network]
network_config_dir = "{base}/networks"

[engine]
# crun refuses to start containers on a hybrid cgroup layout; runc does not.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{base}/events.log"
# File locks under tmp_dir: the default shared-memory locks would be shared with every
# other podman on the machine.
lock_type = "file"
tmp_dir = "{base}/libpod"
"""

STORAGE_CONF = """\
[storage]
driver = "overlay"
graphroot = "{base}/storage"
runroot = "{base}/run"
"""

REGISTRIES_CONF = """\
unqualified-search-registries = []

[[registry]]
location = "127.0.0.1:{port}"
insecure = true

[[registry]]
location = "127.0.0.1:{mirror_port}"
insecure = true
"""

REGISTRY_CONF = """\
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {base}/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


def skip_or_fail(why: str) -> None:
    """Skips the calling test saying why; fails it instead where every test must run
    (LAMBKIN_REQUIRE_ROOT_TESTS=1, set by .ci/run as root)."""
    if os.environ.get(REQUIRE_ALL) == "1":
        pytest.fail(f"skipped where it must run ({REQUIRE_ALL}=1): {why}", pytrace=False)
    pytest.skip(why)


def missing() -> str | None:
    """Why no engine can run here, or None."""
    if os.geteuid() != 0:
        return "a rootful container engine needs root"
    absent = [exe for exe in ("podman", "runc", "docker", "docker-registry") if not shutil.which(exe)]
    if absent:
        return (f"no {', '.join(absent)} on PATH (scripts/install-test-deps installs podman, "
                "runc, docker-registry, busybox-static and podman-docker from Debian)")
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Engine:
    """A running podman service and registry; `docker(...)` is the real Docker CLI on it."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="lambkin-engine-"))
        self.socket = self.base / "podman.sock"
        self.docker_host = f"unix://{self.socket}"
        self.registry_port = 0
        self.registry_log = self.base / "registry.log"
        self.service_log = self.base / "service.log"
        self._registry: subprocess.Popen | None = None
        self._service: subprocess.Popen | None = None
        self.mirror: TamperingMirror | None = None
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(self.base / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.base / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.base / "registries.conf"),
            "DOCKER_HOST": self.docker_host,
            # Read by podman-docker's `docker` (podman), where it is the Docker CLI.
            "CONTAINER_HOST": self.docker_host,
        }
        # The Docker CLI's own configuration directory: nothing of the machine's.
        self.env["DOCKER_CONFIG"] = str(self.base / "docker-config")

    # ------------------------------------------------------------- start, stop ----

    def start(self) -> None:
        for d in ("networks", "libpod", "storage", "run", "registry", "docker-config"):
            (self.base / d).mkdir()
        (self.base / "containers.conf").write_text(CONTAINERS_CONF.format(base=self.base))
        (self.base / "storage.conf").write_text(STORAGE_CONF.format(base=self.base))
        (self.base / "docker-config" / "config.json").write_text("{}\n")
        self._start_registry()
        self.mirror = TamperingMirror(self.registry_port)
        (self.base / "registries.conf").write_text(
            REGISTRIES_CONF.format(port=self.registry_port, mirror_port=self.mirror.port))
        self._service = subprocess.Popen(
            ["podman", "system", "service", "--time", "0", self.docker_host],
            stdin=subprocess.DEVNULL, stdout=open(self.service_log, "wb"),
            stderr=subprocess.STDOUT, start_new_session=True,
            # The service itself is local: CONTAINER_HOST would make it a client.
            env={k: v for k, v in self.env.items() if k != "CONTAINER_HOST"})
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            info = self.docker("info", check=False)
            if info.returncode == 0:
                return
            if self._service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the podman service did not answer `docker info`: {info.stderr}\n"
                    + self.service_log.read_text(errors="replace"))
            time.sleep(0.05)

    def _start_registry(self) -> None:
        # The registry takes a port number, not a listener: a port another process takes
        # between our probe and its bind makes it exit, and a new port is tried.
        for _ in range(5):
            self.registry_port = _free_port()
            conf = self.base / "registry.yml"
            conf.write_text(REGISTRY_CONF.format(base=self.base, port=self.registry_port))
            self._registry = subprocess.Popen(
                ["docker-registry", "serve", str(conf)], stdin=subprocess.DEVNULL,
                stdout=open(self.registry_log, "ab"), stderr=subprocess.STDOUT,
                start_new_session=True)
            deadline = time.monotonic() + START_TIMEOUT
            while self._registry.poll() is None and time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(
                            f"http://127.0.0.1:{self.registry_port}/v2/", timeout=5) as r:
                        if r.status == 200:
                            return
                except (urllib.error.URLError, OSError):
                    time.sleep(0.05)
            self._end(self._registry)
        raise RuntimeError("docker-registry did not start:\n"
                           + self.registry_log.read_text(errors="replace"))

    def stop(self) -> None:
        """Removes every container and image, ends the service and the registry, unmounts
        and removes the private directory."""
        # podman itself, on the service's storage: a container outlives a service that died
        # (its conmon is no child of the service), and is removed all the same.
        local = {k: v for k, v in self.env.items() if k != "CONTAINER_HOST"}
        for args in (["rm", "--all", "--force", "--time", "0"], ["rmi", "--all", "--force"]):
            subprocess.run(["podman", *args], env=local, capture_output=True, timeout=120,
                           stdin=subprocess.DEVNULL, check=False)
        for proc in (self._service, self._registry):
            if proc is not None:
                self._end(proc)
        if self.mirror is not None:
            self.mirror.close()
        # The overlay driver mounts its directory on itself (and a container's root while
        # it runs): nothing may stay mounted under the directory removed.
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for point in sorted((m for m in mounts if m.startswith(f"{self.base}/")), reverse=True):
            subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    @staticmethod
    def _end(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    # ---------------------------------------------------------------- clients ----

    def docker(self, *args: str, check: bool = True, timeout: float = 120
               ) -> subprocess.CompletedProcess:
        """The real Docker CLI on this engine."""
        return self._run(["docker", *args], check, timeout)

    def podman(self, *args: str, check: bool = True, timeout: float = 120
               ) -> subprocess.CompletedProcess:
        """podman as a client of this engine's service (for what the Docker CLI cannot do:
        import a root file system, push to an insecure registry)."""
        return self._run(["podman", "--url", self.docker_host, *args], check, timeout)

    def _run(self, argv: list[str], check: bool, timeout: float) -> subprocess.CompletedProcess:
        result = subprocess.run(argv, capture_output=True, text=True, env=self.env,
                                timeout=timeout, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)}: exit {result.returncode}\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def registry(self, name: str) -> str:
        """`127.0.0.1:PORT/NAME` in this engine's registry."""
        return f"127.0.0.1:{self.registry_port}/{name}"

    def import_image(self, tar: Path, ref: str, *changes: str) -> str:
        """Imports a root file system tar as image `ref` (with Dockerfile-style `changes`:
        `CMD [...]`, `ENV K=V`); returns its id."""
        args = ["import"]
        for change in changes:
            args += ["--change", change]
        return self.podman(*args, str(tar), ref).stdout.strip().splitlines()[-1]

    def push(self, local: str, remote: str) -> str:
        """Pushes `local` to `remote` in the registry; returns the manifest digest the
        registry serves for it."""
        self.podman("push", "--tls-verify=false", local, remote)
        name, tag = remote.split("/", 1)[1].rsplit(":", 1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.registry_port}/v2/{name}/manifests/{tag}", method="HEAD",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                               "application/vnd.docker.distribution.manifest.v2+json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.headers["Docker-Content-Digest"]

    def manifest_requests(self, name: str) -> list[str]:
        """The registry's access log lines asking for a manifest of repository `name`."""
        wanted = f"/v2/{name}/manifests/"
        return [line for line in self.registry_log.read_text(errors="replace").splitlines()
                if wanted in line and ('"GET ' in line or '"HEAD ' in line)]

    def containers(self, *, image: str | None = None, label: str | None = None,
                   all_states: bool = False) -> list[str]:
        """Ids of the running containers (or all), of image id `image`, labelled `label`
        (`K=V`). Filtered here: the service's `ancestor` filter finds nothing."""
        ids = self.docker("ps", "-q", "--no-trunc", *(["-a"] if all_states else [])
                          ).stdout.split()
        if not ids:
            return []
        # A container that went between the two calls is not printed (and makes the
        # command fail for it alone).
        inspect = self.docker("inspect", "--format", "{{.Id}} {{.Image}} {{json .Config.Labels}}",
                              *ids, check=False).stdout
        found = []
        for line in inspect.splitlines():
            parts = line.split(" ", 2)
            if len(parts) != 3:  # a container removed while it was inspected
                continue
            cid, img, labels = parts
            labels = json.loads(labels) or {}
            if image is not None and img.removeprefix("sha256:") != image.removeprefix("sha256:"):
                continue
            if label is not None and labels.get(label.split("=", 1)[0]) != label.split("=", 1)[1]:
                continue
            found.append(cid)
        return found

    def image_present(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False).returncode == 0


class TamperingMirror:
    """The registry as a man in the middle would serve it (plain HTTP on loopback, as an
    insecure registry is reached): every request passed through, except that a manifest
    asked for by a digest in `substitutes` is answered with another digest's manifest, under
    the digest asked for."""

    def __init__(self, registry_port: int):
        self.substitutes: dict[str, str] = {}
        upstream = f"http://127.0.0.1:{registry_port}"
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _relay(self) -> None:
                path, asked = self.path, None
                head, sep, digest = path.rpartition("/manifests/")
                if sep and digest in mirror.substitutes:
                    asked, path = digest, f"{head}/manifests/{mirror.substitutes[digest]}"
                # Clients send one Accept per media type: all of them go on.
                headers = {k: ", ".join(self.headers.get_all(k) or [])
                           for k in ("Accept", "Range") if k in self.headers}
                request = urllib.request.Request(upstream + path, method=self.command,
                                                 headers=headers)
                try:
                    response = urllib.request.urlopen(request, timeout=30)
                except urllib.error.HTTPError as e:
                    response = e
                body = response.read()
                self.send_response(response.status)
                for k, v in response.headers.items():
                    if k.lower() in ("content-type", "docker-distribution-api-version"):
                        self.send_header(k, v)
                    elif k.lower() == "docker-content-digest":
                        self.send_header(k, asked or v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = _relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- images ----


def rootfs_tar(files: dict[str, Path | bytes], links: dict[str, str], dest: Path) -> Path:
    """A root file system as a tar: `files` (path in the image -> file on this machine or
    content; executables keep their mode) and symbolic `links` (path -> target)."""
    with tarfile.open(dest, "w") as tar:
        dirs: set[str] = set()

        def parents(path: str) -> None:
            parts = Path(path).parts[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)

        for path, source in sorted(files.items()):
            path = path.lstrip("/")
            parents(path)
            if isinstance(source, bytes):
                info = tarfile.TarInfo(path)
                info.size, info.mode = len(source), 0o755
                tar.addfile(info, io.BytesIO(source))
            else:
                tar.add(source, arcname=path, recursive=False)
        for path, target in sorted(links.items()):
            path = path.lstrip("/")
            parents(path)
            info = tarfile.TarInfo(path)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return dest


def busybox_rootfs(dest: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A root file system of Debian's static busybox (busybox-static): sh, sleep, cat ..."""
    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        skip_or_fail("no /bin/busybox (scripts/install-test-deps installs busybox-static)")
    links = {f"/bin/{cmd}": "busybox" for cmd in ("sh", "sleep", "cat", "echo", "env", "ls")}
    return rootfs_tar({"/bin/busybox": busybox, **(extra or {})}, links, dest)


# Parts of the standard library a container's program never imports: left out to keep the
# image small.
_STDLIB_SKIPPED = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3",
                   "pydoc_data", "site-packages", "dist-packages", "unittest", "distutils"}
# The site-packages the container's program imports (awsiotsdk and boto3 with what they need).
_PACKAGES = ("awsiot", "awscrt", "boto3", "botocore", "s3transfer", "jmespath", "urllib3",
             "dateutil", "six.py")


def _ldd(paths: list[Path]) -> set[Path]:
    """The shared libraries `paths` load (ldd), the dynamic loader included."""
    libs: set[Path] = set()
    result = subprocess.run(["ldd", *map(str, paths)], capture_output=True, text=True)
    for line in result.stdout.splitlines():
        line = line.strip()
        if line.endswith(":"):  # the header of each file's list
            continue
        target = line.split("=>", 1)[1].strip() if "=>" in line else line
        first = target.split(" (", 1)[0].strip()
        if first.startswith("/"):
            libs.add(Path(first))
    return libs


def python_rootfs(cache: Path, program: dict[str, bytes]) -> Path:
    """A root file system with this suite's Python interpreter, its standard library, the
    shared libraries they load (found with ldd) and the site-packages of awsiotsdk and boto3
    from the suite's venv, at the paths they have here, plus `program` (path -> content).
    Kept in `cache` under a hash of what went in, so a later session reuses it."""
    interpreter = Path(os.path.realpath(sys.executable))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dynload = Path(sysconfig.get_paths()["platstdlib"]) / "lib-dynload"
    site = Path(sysconfig.get_paths()["purelib"])
    files: dict[str, Path | bytes] = {str(interpreter): interpreter}
    for path in stdlib.rglob("*"):
        rel = path.relative_to(stdlib)
        if (rel.parts[0] in _STDLIB_SKIPPED or rel.parts[0].startswith("config-")
                or ".opt-" in path.name or path.is_dir() or path.is_symlink()):
            continue
        files[str(path)] = path
    for path in dynload.glob("*.so"):
        if not path.name.startswith(("_tkinter", "_test", "xx")):
            files[str(path)] = path
    # awscrt's native module lies next to its package.
    for top in [*(site / p for p in _PACKAGES), *site.glob("_awscrt*.so")]:
        paths = [top] if top.is_file() else top.rglob("*")
        for path in paths:
            if path.is_dir() or path.is_symlink():
                continue
            rel = path.relative_to(site)
            # botocore's service models are not needed to fetch credentials.
            if rel.parts[:2] == ("botocore", "data") and len(rel.parts) > 3:
                continue
            files[f"/opt/site-packages/{rel}"] = path
    shared = [Path(p) for p in files.values() if isinstance(p, Path) and p.suffix == ".so"]
    for lib in _ldd([interpreter, *shared]):
        files[str(lib)] = Path(os.path.realpath(lib))
    files.update(program)
    fingerprint = hashlib.sha256()
    for path, source in sorted(files.items()):
        fingerprint.update(path.encode())
        if isinstance(source, bytes):
            fingerprint.update(hashlib.sha256(source).digest())
        else:
            st = source.stat()
            fingerprint.update(f"{source} {st.st_size} {st.st_mtime_ns}".encode())
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / f"python-{fingerprint.hexdigest()[:32]}.tar"
    if not dest.is_file():
        partial = dest.with_suffix(f".{os.getpid()}.partial")
        rootfs_tar(files, {}, partial)
        partial.rename(dest)
        # What an older interpreter or older packages made is not needed again.
        for old in cache.glob("python-*.tar"):
            if old != dest:
                old.unlink(missing_ok=True)
    return dest


def image_cache() -> Path:
    """Where assembled root file systems are kept between sessions: cargo's target
    directory, which the build owns and ignores."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    return target / "test-images"

