"""Shared helpers of the conformance suite: the fixture functions' deployment
specs, zip writers, and boto3 invoke helpers."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import shlex
import stat
import sys
import sysconfig
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO / "tests" / "functions"
VENV = REPO / ".venv"
WHEELHOUSE = VENV / "wheelhouse"
ROLE = "arn:aws:iam::123456789012:role/lambkin"
REGION = "us-east-1"


@dataclass(frozen=True)
class FixtureSpec:
    """How one fixture function is deployed."""

    name: str
    runtime: str
    handler: str
    # Error document keys this runtime's client always posts for a handled error.
    error_keys: frozenset[str]
    # Key holding the stack trace (a list of strings), if the runtime posts one.
    trace_key: str | None = None


FIXTURES: dict[str, FixtureSpec] = {
    spec.name: spec
    for spec in (
        FixtureSpec(
            "python-ric",
            "provided.al2023",
            "app.handler",
            frozenset({"errorMessage", "errorType", "requestId", "stackTrace"}),
            "stackTrace",
        ),
        FixtureSpec(
            "node-ric",
            "provided.al2023",
            "index.handler",
            frozenset({"errorMessage", "errorType", "trace"}),
            "trace",
        ),
        FixtureSpec(
            "rust-fixture",
            "provided.al2023",
            "bootstrap",
            frozenset({"errorMessage", "errorType"}),
        ),
        FixtureSpec(
            "python-handler",
            "python3.11",
            "app.handler",
            frozenset({"errorMessage", "errorType", "requestId", "stackTrace"}),
            "stackTrace",
        ),
        FixtureSpec(
            "node-handler",
            "nodejs20.x",
            "index.handler",
            frozenset({"errorMessage", "errorType", "trace"}),
            "trace",
        ),
        FixtureSpec(
            "node-handler-esm",
            "nodejs20.x",
            "index.handler",
            frozenset({"errorMessage", "errorType", "trace"}),
            "trace",
        ),
    )
}
FIXTURE_NAMES = list(FIXTURES)

# --------------------------------------------------------------------------
# Python for components and functions
# --------------------------------------------------------------------------

# Components and functions run as the host's unprivileged default user (ggc_user), which
# cannot run the suite's own interpreter when that lives under root's home (a pyenv
# install: root's home is closed to other users). They run the device's Python of the same
# version instead, with the suite's packages (awsiotsdk, boto3) on PYTHONPATH, as a device
# has the SDK installed where its components' user reads it.
PACKAGES = sysconfig.get_paths()["purelib"]


def _runnable_by_anyone(path: Path) -> bool:
    """Whether every user may run `path`: the file and each directory above it, links
    followed, are searchable/executable by others."""
    real = path.resolve()
    for part in [real, *real.parents]:
        try:
            mode = part.stat().st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
    return True


def device_python() -> Path:
    """The first python3.X of this suite's version on PATH (then /usr/bin) that any user may
    run."""
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    dirs = os.environ.get("PATH", "").split(os.pathsep) + ["/usr/local/bin", "/usr/bin"]
    for d in dirs:
        candidate = Path(d) / name
        if candidate.is_file() and _runnable_by_anyone(candidate):
            return candidate
    pytest.fail(f"no {name} that other users may run: components run as ggc_user and need "
                f"one (install the system's {name})", pytrace=False)


def component_python() -> str:
    """The start of a lifecycle command running Python with the suite's packages."""
    return f"PYTHONPATH={shlex.quote(PACKAGES)} {device_python()}"


# --------------------------------------------------------------------------
# Zips of the fixture functions, built once per session
# --------------------------------------------------------------------------


def zip_dir(src: Path, dest: Path, skip: Callable[[Path], bool] = lambda p: False) -> bytes:
    """Zip the contents of src (keeping Unix modes) into dest; return its bytes."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
            dirnames.sort()
            base = Path(dirpath)
            dirnames[:] = [d for d in dirnames if not skip(base / d)]
            for name in sorted(filenames):
                path = base / name
                if skip(path) or not path.exists():
                    continue
                arcname = path.relative_to(src).as_posix()
                zf.write(path, arcname)
    return dest.read_bytes()


def zip_files(entries: dict[str, bytes | Path], dest: Path, modes: dict[str, int] | None = None) -> bytes:
    """Zip the given arcname -> content (bytes, or a file to read) entries."""
    modes = modes or {}
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, content in entries.items():
            data = content.read_bytes() if isinstance(content, Path) else content
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (0o100000 | modes.get(arcname, 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return dest.read_bytes()


# --------------------------------------------------------------------------
# Functions on the host
# --------------------------------------------------------------------------

_name_counter = itertools.count()


def unique_name(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_name_counter)}"


def wait_active(client, name: str, timeout: float = 60.0) -> dict:
    """Poll GetFunction until the function is Active (or has no State), as the
    function_active_v2 waiter does; return its configuration."""
    deadline = time.monotonic() + timeout
    while True:
        config = client.get_function(FunctionName=name)["Configuration"]
        state = config.get("State")
        update = config.get("LastUpdateStatus")
        if state == "Failed" or update == "Failed":
            pytest.fail(f"function {name} failed: {config.get('StateReason') or config.get('LastUpdateStatusReason')}")
        if state in (None, "Active") and update in (None, "Successful"):
            return config
        if time.monotonic() > deadline:
            pytest.fail(f"function {name} not Active after {timeout:.0f}s: {config}")
        time.sleep(0.1)


# --------------------------------------------------------------------------
# Invoking
# --------------------------------------------------------------------------


@dataclass
class Result:
    status: int
    function_error: str | None
    payload: bytes
    request_id: str
    log: str | None
    raw: dict

    def json(self):
        return json.loads(self.payload)


def invoke(client, name: str, event=None, *, payload: bytes | None = None, **kwargs) -> Result:
    if payload is None:
        payload = json.dumps(event if event is not None else {}).encode()
    resp = client.invoke(FunctionName=name, Payload=payload, **kwargs)
    body = resp["Payload"].read() if "Payload" in resp else b""
    log = resp.get("LogResult")
    return Result(
        status=resp["StatusCode"],
        function_error=resp.get("FunctionError"),
        payload=body,
        request_id=resp["ResponseMetadata"].get("RequestId", ""),
        log=base64.b64decode(log).decode(errors="replace") if log is not None else None,
        raw=resp,
    )


def client_context(custom: dict[str, str]) -> str:
    """The ClientContext parameter: base64 of the mobile SDK's JSON document."""
    doc = {
        "client": {
            "installation_id": "install-1",
            "app_title": "lambkin-conformance",
            "app_version_name": "1.0",
            "app_version_code": "1",
            "app_package_name": "dev.lambkin.conformance",
        },
        "custom": custom,
        "env": {"platform": "Linux", "locale": "en_US"},
    }
    return base64.b64encode(json.dumps(doc).encode()).decode()


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


DEADLINE = 60.0


def until(predicate: Callable[[], object], what: str, details: Callable[[], str] = lambda: "",
          timeout: float = DEADLINE):
    """Poll predicate until it returns something truthy and return that; fail naming `what`
    (and `details()`) once `timeout` seconds have passed. The suite's one way to wait."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f}s\n{details()}")
        time.sleep(0.02)


def wait_for(predicate: Callable[[], object], timeout: float, what: str):
    """As `until`, with the timeout first."""
    return until(predicate, what, timeout=timeout)


# --------------------------------------------------------------------------
# Signing: every client talks to the host as an AWS client does, with the key
# the host made at its first start (ROOT/state/credentials, profile lambkin).
# --------------------------------------------------------------------------

PROFILE = "lambkin"


def credentials_file(root: Path) -> Path:
    return root / "state" / "credentials"


def lambda_client(root: Path, endpoint: str, **config):
    """boto3's Lambda client with the host's own key, found the way a user points boto3 at
    it: the shared-credentials file and the profile (no key in code)."""
    import boto3
    import botocore.session
    from botocore.config import Config

    core = botocore.session.Session()
    core.set_config_variable("credentials_file", str(credentials_file(root)))
    core.set_config_variable("config_file", os.devnull)
    session = boto3.session.Session(botocore_session=core, profile_name=PROFILE, region_name=REGION)
    return session.client("lambda", endpoint_url=endpoint, config=Config(**config))


def signed_request(root: Path, method: str, url: str, body: bytes = b"",
                   headers: dict[str, str] | None = None):
    """A urllib request for the Lambda API, signed with the host's key by botocore's signer
    (for the calls an SDK has no method for, such as the Greengrass settings)."""
    import urllib.request

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    values = {}
    section = None
    for line in credentials_file(root).read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif section == PROFILE and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    credentials = Credentials(values["aws_access_key_id"], values["aws_secret_access_key"])
    aws = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(credentials, "lambda", REGION).add_auth(aws)
    return urllib.request.Request(url, data=body or None, method=method, headers=dict(aws.headers.items()))
