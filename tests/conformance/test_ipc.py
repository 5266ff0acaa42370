"""Greengrass IPC with the real AWS IoT Device SDK v2 for Python (awsiotsdk): two generic
components, deployed with `lambkin deploy`, whose Run steps use GreengrassCoreIPCClientV2
unmodified. One subscribes and records what it receives; the other publishes."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import component_python, until

HERE = Path(__file__).parent / "ipc_components"
SUB = "com.lambkin.conformance.IpcSubscriber"
PUB = "com.lambkin.conformance.IpcPublisher"
VERSION = "1.0.0"


def recipe(name: str, script: str, args: str, access: dict, config: dict) -> dict:
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": VERSION,
        "ComponentConfiguration": {
            "DefaultConfiguration": {"accessControl": access, **config}
        },
        "Manifests": [{
            "Platform": {"os": "linux"},
            "Lifecycle": {"Run": f"{component_python()} -u {{artifacts:path}}/{script} {args}"},
            "Artifacts": [{"URI": f"s3://conformance/{script}"}],
        }],
    }


def pubsub_policy(name: str, operations: list[str], resources: list[str]) -> dict:
    return {"aws.greengrass.ipc.pubsub": {
        f"{name}:pubsub:1": {"operations": operations, "resources": resources}}}


def component_logs(host) -> str:
    return "\n".join(
        (host.root / "logs" / f"{n}.log").read_text(errors="replace")
        for n in (SUB, PUB) if (host.root / "logs" / f"{n}.log").exists())


def wait_for(path: Path, what: str, host) -> None:
    until(path.exists, f"{what}: {path} appearing", lambda: component_logs(host))


def received(path: Path, count: int, host) -> list[dict]:
    def lines():
        return path.read_text().splitlines() if path.exists() else []

    until(lambda: len(lines()) >= count, f"{count} messages arriving", lambda: str(lines()))
    return [json.loads(line) for line in lines()]


@pytest.fixture(scope="module")
def ipc_components(host, lambkin_bin, tmp_path_factory):
    base = tmp_path_factory.mktemp("ipc")
    recipes, artifacts = base / "recipes", base / "artifacts"
    recipes.mkdir()
    for name, script in ((SUB, "subscriber.py"), (PUB, "publisher.py")):
        d = artifacts / name / VERSION
        d.mkdir(parents=True)
        shutil.copy(HERE / script, d / script)
    (recipes / f"{SUB}-{VERSION}.json").write_text(json.dumps(recipe(
        SUB, "subscriber.py", "",
        pubsub_policy(SUB, ["aws.greengrass#SubscribeToTopic", "aws.greengrass#PublishToTopic"],
                      ["test/ipc"]),
        {"greeting": "hello", "nested": {"n": 1}})))
    (recipes / f"{PUB}-{VERSION}.json").write_text(json.dumps(recipe(
        PUB, "publisher.py", SUB,
        pubsub_policy(PUB, ["aws.greengrass#PublishToTopic"], ["test/*"]), {})))
    result = subprocess.run(
        [str(lambkin_bin), "deploy", "--root", str(host.root), "-r", str(recipes),
         "-a", str(artifacts), "-m", f"{SUB}={VERSION}", "-m", f"{PUB}={VERSION}"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    yield host.root / "work"
    subprocess.run(
        [str(lambkin_bin), "deploy", "--root", str(host.root), "--remove", SUB,
         "--remove", PUB], capture_output=True, text=True, timeout=120)


def test_publish_and_subscribe_json_and_binary(ipc_components, host):
    wait_for(ipc_components / PUB / "published", "the publisher", host)
    messages = received(ipc_components / SUB / "received.jsonl", 3, host)
    assert {"kind": "json", "message": {"hello": "world", "n": 1}, "topic": "test/ipc"} in messages
    assert {"kind": "binary", "message": base64.b64encode(b"\x00\x01binary\xff").decode(),
            "topic": "test/ipc"} in messages
    # The publisher's two messages arrive in the order they were sent.
    from_publisher = [m for m in messages if m["message"] != base64.b64encode(b"self").decode()]
    assert [m["kind"] for m in from_publisher] == ["json", "binary"]


def test_configuration_state_and_authorization(ipc_components, host):
    results_file = ipc_components / SUB / "results.json"
    wait_for(results_file, "the subscriber's results", host)
    results = json.loads(results_file.read_text())
    assert results["get"] == {"n": 1}
    assert results["leaf"] == {"greeting": "hello"}
    assert results["event"] == ["nested", "n"]
    assert results["after"] == {"n": 2}
    assert results["state"] == "ok"
    assert results["denied"] == "UnauthorizedError"
    assert results["denied_message"] == (
        f"Principal {SUB} is not authorized to perform "
        "aws.greengrass.ipc.pubsub:aws.greengrass#PublishToTopic on resource forbidden/x")
    # RECEIVE_ALL_MESSAGES: its own message comes back to it.
    messages = received(ipc_components / SUB / "received.jsonl", 3, host)
    assert {"kind": "binary", "message": base64.b64encode(b"self").decode(),
            "topic": "test/ipc"} in messages


def test_wrong_token_is_access_denied(ipc_components, host):
    """A client with a token the host never gave out: AccessDeniedError, as with the nucleus."""
    probe = (
        "from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2\n"
        "try:\n"
        "    GreengrassCoreIPCClientV2()\n"
        "    print('connected')\n"
        "except Exception as e:\n"
        "    print(type(e).__name__)\n"
    )
    env = dict(os.environ)
    env["SVCUID"] = "WRONGTOKEN"
    env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"] = str(host.root / "ipc.socket")
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == "AccessDeniedError", result.stdout + result.stderr


# --------------------------------------------------------------------------
# The Node SDK (aws-iot-device-sdk-v2) in a component.
# --------------------------------------------------------------------------

NODE = "com.lambkin.conformance.IpcNode"
NODE_MODULES = Path(__file__).parent / "node-ipc" / "node_modules"


@pytest.fixture(scope="module")
def node_component(host, lambkin_bin, tmp_path_factory):
    if not (NODE_MODULES / "aws-iot-device-sdk-v2").is_dir():
        pytest.fail("tests/conformance/node-ipc/node_modules is missing: run scripts/install-test-deps")
    base = tmp_path_factory.mktemp("ipc-node")
    recipes, artifacts = base / "recipes", base / "artifacts"
    recipes.mkdir()
    d = artifacts / NODE / VERSION
    d.mkdir(parents=True)
    shutil.copy(HERE / "node_component.js", d / "node_component.js")
    r = recipe(NODE, "node_component.js", "",
               pubsub_policy(NODE, ["*"], ["test/node"]), {"nested": {"n": 1}})
    r["Manifests"][0]["Lifecycle"]["Run"] = (
        f"NODE_PATH={NODE_MODULES} exec node {{artifacts:path}}/node_component.js")
    (recipes / f"{NODE}-{VERSION}.json").write_text(json.dumps(r))
    result = subprocess.run(
        [str(lambkin_bin), "deploy", "--root", str(host.root), "-r", str(recipes),
         "-a", str(artifacts), "-m", f"{NODE}={VERSION}"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    yield host.root / "work" / NODE
    subprocess.run([str(lambkin_bin), "deploy", "--root", str(host.root), "--remove", NODE],
                   capture_output=True, text=True, timeout=120)


def test_node_sdk_component(node_component, host):
    results_file = node_component / "results.json"
    log = host.root / "logs" / f"{NODE}.log"
    until(results_file.exists, "the Node component's results",
          lambda: log.read_text(errors="replace") if log.exists() else "")
    results = json.loads(results_file.read_text())
    assert results["messages"] == [
        {"kind": "json", "message": {"hello": "node"}, "topic": "test/node"},
        {"kind": "binary", "message": base64.b64encode(b"\x00\x01\xff").decode(),
         "topic": "test/node"},
    ]
    assert results["get"] == {"n": 1}
    assert results["event"] == ["nested", "n"]
    assert results["after"] == {"n": 2}
    assert results["state"] == "ok"
    assert results["denied"] == "RpcError"
    assert results["denied_message"] == (
        f"Principal {NODE} is not authorized to perform "
        "aws.greengrass.ipc.pubsub:aws.greengrass#PublishToTopic on resource forbidden/x")


# --------------------------------------------------------------------------
# Component and deployment operations (aws.greengrass.Cli's), and token validation.
# --------------------------------------------------------------------------

MANAGER = "com.lambkin.conformance.IpcManager"
TARGET = "com.lambkin.conformance.IpcTarget"
STREAM_MANAGER = "aws.greengrass.StreamManager"
GATED = "com.lambkin.conformance.Gated"
CLI_OPERATIONS = [
    "aws.greengrass#ListComponents", "aws.greengrass#GetComponentDetails",
    "aws.greengrass#RestartComponent", "aws.greengrass#StopComponent",
    "aws.greengrass#CreateLocalDeployment", "aws.greengrass#GetLocalDeploymentStatus",
    "aws.greengrass#ListLocalDeployments",
]


def lambkin_list(lambkin_bin: Path, host) -> dict[str, dict]:
    out = subprocess.run([str(lambkin_bin), "list", "--json", "--root", str(host.root)],
                         capture_output=True, text=True, timeout=60, check=True)
    return {c["name"]: c for c in json.loads(out.stdout)}


@pytest.fixture(scope="module")
def managed(host, lambkin_bin, tmp_path_factory):
    base = tmp_path_factory.mktemp("ipc-manage")
    recipes, artifacts = base / "recipes", base / "artifacts"
    recipes.mkdir()
    for name, script in ((MANAGER, "manager.py"), (STREAM_MANAGER, "token_validator.py")):
        d = artifacts / name / VERSION
        d.mkdir(parents=True)
        shutil.copy(HERE / script, d / script)
    cli_policy = {"aws.greengrass.Cli": {f"{MANAGER}:cli:1": {
        "operations": CLI_OPERATIONS, "resources": ["*"]}}}
    target = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": TARGET,
        "ComponentVersion": VERSION,
        "ComponentConfiguration": {"DefaultConfiguration": {"greeting": "hello"}},
        "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {
            "Run": "echo \"$$ {configuration:/greeting}\" >> runs.txt; exec sleep 600"}}],
    }
    (recipes / f"{TARGET}-{VERSION}.json").write_text(json.dumps(target))
    # A component whose install waits for a gate file the manager writes once its
    # CreateLocalDeployment has been answered (the deployment still running).
    gated_recipes = base / "gated-recipes"
    gated_recipes.mkdir()
    gate = host.root / "work" / MANAGER / "gate"
    (gated_recipes / f"{GATED}-{VERSION}.json").write_text(json.dumps({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": GATED,
        "ComponentVersion": VERSION,
        "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {
            "Install": {"Script": f"while [ ! -e {gate} ]; do sleep 0.1; done", "Timeout": 60},
            "Run": "exec sleep 600"}}],
    }))
    (recipes / f"{MANAGER}-{VERSION}.json").write_text(json.dumps(recipe(
        MANAGER, "manager.py", f"{TARGET} {gated_recipes}", cli_policy, {})))
    (recipes / f"{STREAM_MANAGER}-{VERSION}.json").write_text(json.dumps(recipe(
        STREAM_MANAGER, "token_validator.py", MANAGER, {}, {})))
    result = subprocess.run(
        [str(lambkin_bin), "deploy", "--root", str(host.root), "-r", str(recipes),
         "-a", str(artifacts), "-m", f"{TARGET}={VERSION}", "-m", f"{MANAGER}={VERSION}",
         "-m", f"{STREAM_MANAGER}={VERSION}"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    yield host.root / "work"
    subprocess.run(
        [str(lambkin_bin), "deploy", "--root", str(host.root), "--remove", MANAGER,
         "--remove", TARGET, "--remove", STREAM_MANAGER, "--remove", GATED],
        capture_output=True, text=True, timeout=120)


def manager_logs(host) -> str:
    return "\n".join(
        (host.root / "logs" / f"{n}.log").read_text(errors="replace")
        for n in (MANAGER, TARGET, STREAM_MANAGER) if (host.root / "logs" / f"{n}.log").exists())


def test_component_and_deployment_operations_with_the_real_sdk(managed, host, lambkin_bin):
    """ListComponents, GetComponentDetails, RestartComponent, CreateLocalDeployment,
    GetLocalDeploymentStatus and StopComponent from awsiotsdk act on the device: the
    restart and the deployment start the target again (with the deployed configuration),
    the stop leaves it FINISHED."""
    results_file = managed / MANAGER / "results.json"
    until(results_file.exists, "the manager's results", lambda: manager_logs(host))
    results = json.loads(results_file.read_text())
    assert {MANAGER, TARGET, STREAM_MANAGER} <= set(results["listed"]), results
    assert results["details"] == {"name": TARGET, "version": VERSION, "state": "RUNNING",
                                  "greeting": "hello"}
    assert results["details_unknown"] == "ResourceNotFoundError"
    assert results["restart"] == "SUCCEEDED"
    assert results["deployment_id"]
    assert results["deployment_status"] == "SUCCEEDED"
    assert results["deployment_details"] == {"detailed": "SUCCESSFUL", "stack": None,
                                             "types": None, "cause": None}, results
    refused = results["refused_details"]
    assert refused["detailed"] == "FAILED_NO_STATE_CHANGE", results
    assert refused["stack"] == ["DEPLOYMENT_FAILURE", "NO_AVAILABLE_COMPONENT_VERSION",
                                "COMPONENT_VERSION_REQUIREMENTS_NOT_MET"], results
    assert refused["types"] == ["REQUEST_ERROR"], results
    assert "no recipe for com.example.NoSuch@1.0.0" in refused["cause"], results
    assert results["refused_listed_stack"] == refused["stack"], results
    # CreateLocalDeployment answers once the deployment is accepted, as the nucleus does: the
    # gated one was still waiting (its install holds until the manager, answered, opens it).
    assert results["gated_when_answered"] in ("QUEUED", "IN_PROGRESS"), results
    assert results["gated_status"] == "SUCCEEDED", results
    assert results["deployment_unknown"] == "ResourceNotFoundError"
    assert results["stop"] == "SUCCEEDED"
    # What the calls did, seen from outside: three starts (deployment, restart, the
    # deployed configuration), each its own process, and the target stopped.
    runs = (managed / TARGET / "runs.txt").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in runs] == ["hello", "hello", "deployed"], runs
    assert len({line.split(" ", 1)[0] for line in runs}) == 3, runs
    until(lambda: lambkin_list(lambkin_bin, host)[TARGET]["state"] == "FINISHED",
          "the target FINISHED after StopComponent", lambda: str(lambkin_list(lambkin_bin, host)))


def test_validate_authorization_token_is_for_stream_manager_only(managed, host):
    """ValidateAuthorizationToken: another component is refused; the component named
    aws.greengrass.StreamManager gets isValid for a token the host gave out and
    InvalidTokenError for one it did not."""
    manager = json.loads(until(lambda: (managed / MANAGER / "results.json").exists()
                               and (managed / MANAGER / "results.json").read_text(),
                               "the manager's results", lambda: manager_logs(host)))
    assert manager["validate_as_other"] == "UnauthorizedError"
    results_file = managed / STREAM_MANAGER / "results.json"
    until(results_file.exists, "the validator's results", lambda: manager_logs(host))
    assert json.loads(results_file.read_text()) == {"valid": True, "unknown": "InvalidTokenError"}
