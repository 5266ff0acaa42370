"""The messaging round trip through a real MQTT broker (Mosquitto, on a free loopback port):
a paho-mqtt client publishes to a topic that triggers a Lambda function (a Greengrass Lambda
component, NoContainer, whose `pubsubTopics` hold an IOT_CORE topic with a wildcard); the
function's Python handler publishes its result over Greengrass IPC with the AWS IoT Device
SDK v2 (PublishToIoTCore, under the component's accessControl), and the paho client receives
it, with the topic that triggered it (the client context's subject).

The same function changes its own configuration with UpdateConfiguration: the change survives
a restart of the host, and later deployments' MERGE and RESET apply on top of it."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from support import PACKAGES, device_python, lambda_client, until, zip_files

import awsiot.greengrasscoreipc  # noqa: E402,F401  (the component's SDK must be there)
import paho.mqtt.client as paho  # noqa: E402

from test_mqtt import Broker  # noqa: E402  (after the skips above)
from test_mqtt import Host as MqttHost  # noqa: E402
from test_mqtt_invoke import ECHO, Caller  # noqa: E402

HERE = Path(__file__).parent / "mqtt_trigger"
NAME = "com.lambkin.conformance.MqttTrigger"
VERSION = "1.0.0"
DEADLINE = 60.0
# How often a request is published again until its answer arrives: the host's broker
# subscription may not be made yet right after the host (re)starts.
RESEND = 2.0


class Host(MqttHost):
    """A host with the broker configured and a Python that the function's user may run as
    the interpreter of Python functions (the function finds awsiotsdk through the PYTHONPATH
    its recipe gives it)."""

    def __init__(self, binary: Path, base: Path, broker_port: int):
        super().__init__(
            binary, base, f'url = "mqtt://127.0.0.1:{broker_port}"\n',
            tables=(f"[lambda]\npython = {json.dumps(str(device_python()))}\n"
                    '[mqtt_invoke]\nfunctions = ["echo"]\n'),
            component=NAME)

    def stop(self) -> None:
        super().stop()
        assert self.proc is None or self.proc.returncode == 0, self.output()

    def deploy(self, *args: str, succeeds: bool = True) -> str:
        result = subprocess.run(
            [str(self.binary), "deploy", "--root", str(self.root), *args],
            capture_output=True, text=True, timeout=120)
        output = result.stdout + result.stderr
        assert (result.returncode == 0) == succeeds, output + self.output()
        return output


class Device:
    """A paho-mqtt client: publishes requests to lambkin/trigger/<device>/in and collects
    the function's results from lambkin/trigger/result/#."""

    def __init__(self, port: int):
        self.results: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.ids = itertools.count()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                                  client_id="lambkin-conformance-trigger")
        self.client.on_connect = lambda c, *a: c.subscribe("lambkin/trigger/result/#", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        until(self.subscribed.is_set, "the paho subscription")

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.results.append((message.topic, json.loads(message.payload)))

    def publish(self, topic: str, event: dict) -> None:
        self.client.publish(topic, json.dumps(event), qos=1).wait_for_publish(30)

    def answers(self, request_id: str) -> list[tuple[str, dict]]:
        with self.lock:
            return [(t, r) for t, r in self.results if r.get("id") == request_id]

    def request(self, device: str, event: dict, host: Host) -> tuple[str, dict]:
        """Publishes `event` with a fresh id until its result arrives; returns the first
        (topic, result)."""
        request_id = f"r{next(self.ids)}"
        event = {**event, "id": request_id}
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            self.publish(f"lambkin/trigger/{device}/in", event)
            resend = time.monotonic() + RESEND
            while time.monotonic() < resend:
                got = self.answers(request_id)
                if got:
                    return got[0]
                time.sleep(0.02)
        pytest.fail(f"no result for {event} within {DEADLINE:.0f}s\n{host.output()}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def setup(lambkin_bin, device_dir):
    base = device_dir("mqtt-trigger")
    broker_dir = base / "broker"
    broker_dir.mkdir()
    broker = Broker(broker_dir)
    broker.start()
    device = Device(broker.port)
    host = Host(lambkin_bin, base, broker.port)
    host.start()
    recipes, artifacts = base / "recipes", base / "artifacts"
    recipes.mkdir()
    d = artifacts / NAME / VERSION
    d.mkdir(parents=True)
    code = zip_files({"handler.py": HERE / "handler.py"}, d / "lambda-artifact.zip")
    recipe = json.loads((HERE / "recipe.json").read_text())
    recipe["Manifests"][0]["Artifacts"][0]["Digest"] = base64.b64encode(
        hashlib.sha256(code).digest()).decode()
    # The SDK, where the function's user reads it.
    recipe["ComponentConfiguration"]["DefaultConfiguration"]["lambdaExecutionParameters"][
        "EnvironmentVariables"]["PYTHONPATH"] = PACKAGES
    (recipes / f"{NAME}-{VERSION}.json").write_text(json.dumps(recipe))
    host.deploy("-r", str(recipes), "-a", str(artifacts), "-m", f"{NAME}={VERSION}")
    yield device, host
    device.close()
    host.stop()
    broker.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_a_broker_message_triggers_the_function_and_its_ipc_publish_reaches_paho(setup):
    device, host = setup
    topic, result = device.request("kitchen", {"value": 21}, host)
    assert topic == "lambkin/trigger/result/kitchen"
    assert result["subject"] == "lambkin/trigger/kitchen/in"
    assert result["doubled"] == 42

    # A topic the wildcard does not match triggers nothing. The function runs one
    # invocation at a time, in arrival order: had it been triggered, its answer would come
    # before those of the batch published after it.
    device.publish("lambkin/trigger/kitchen/out", {"id": "unmatched", "value": 1})
    batch = [f"b{i}" for i in range(20)]
    start = time.monotonic()
    for i, request_id in enumerate(batch):
        device.publish("lambkin/trigger/hall/in", {"id": request_id, "value": i})
    until(lambda: all(device.answers(r) for r in batch), "the batch's results", host.output)
    print(f"{len(batch)} round trips (paho → function → IPC → paho) in "
          f"{time.monotonic() - start:.3f}s")
    assert device.answers("unmatched") == []
    with device.lock:
        order = [r["id"] for _, r in device.results if r["id"] in batch]
    assert order == batch
    for i, request_id in enumerate(batch):
        topic, result = device.answers(request_id)[0]
        assert topic == "lambkin/trigger/result/hall"
        assert result == {"id": request_id, "subject": "lambkin/trigger/hall/in",
                          "doubled": 2 * i}


def test_update_configuration_survives_a_restart_and_deployments_apply_on_top(setup):
    device, host = setup
    _, answer = device.request("config", {"op": "update", "state": {"n": 2}}, host)
    assert answer["updated"] is True
    _, answer = device.request("config", {"op": "get"}, host)
    assert answer["state"] == {"n": 2, "label": "default"}

    host.stop()
    host.start()
    _, answer = device.request("config", {"op": "get"}, host)
    assert answer["state"] == {"n": 2, "label": "default"}, "the update did not survive"

    # MERGE applies on top of the updated configuration: the update stays.
    host.deploy("-c", json.dumps({NAME: {"MERGE": {"state": {"label": "merged"}}}}))
    _, answer = device.request("config", {"op": "get"}, host)
    assert answer["state"] == {"n": 2, "label": "merged"}

    # RESET puts the updated key back to the recipe's default.
    host.deploy("-c", json.dumps({NAME: {"RESET": ["/state/n"]}}))
    _, answer = device.request("config", {"op": "get"}, host)
    assert answer["state"] == {"n": 0, "label": "merged"}

    # A deployment that fails rolls back to the configuration as updated since.
    _, answer = device.request("config", {"op": "update", "state": {"n": 7}}, host)
    assert answer["updated"] is True
    output = host.deploy("-c", json.dumps({NAME: {"MERGE": {"timeoutInSeconds": 5000}}}),
                         succeeds=False)
    assert "Timeout must be between 1 and 900 seconds" in output, output
    _, answer = device.request("config", {"op": "get"}, host)
    assert answer["state"] == {"n": 7, "label": "merged"}

    # And what the deployments and updates made is what the host starts with.
    host.stop()
    host.start()
    _, answer = device.request("config", {"op": "get"}, host)
    assert answer["state"] == {"n": 7, "label": "merged"}


def test_invoke_answers_and_spooled_messages_share_the_connection(setup, tmp_path):
    # Answers to invokes over MQTT go straight to the connection while the function's IPC
    # publishes go through the spool, both at QoS 1 on one connection: each is acknowledged
    # as its own, and neither holds up the other.
    device, host = setup
    endpoint = "http://" + (host.root / "state" / "api.addr").read_text().strip()
    lambda_client(host.root, endpoint).create_function(
        FunctionName="echo", Runtime="python3.12", Handler="app.handler",
        Role="arn:aws:iam::000000000000:role/x",
        Code={"ZipFile": zip_files({"app.py": ECHO}, tmp_path / "echo.zip")})
    caller = Caller(host_broker_port(host))
    try:
        correlations = [f"mixed-{i}".encode() for i in range(30)]
        requests = [f"mixed-r{i}" for i in range(30)]
        for i, (correlation, request_id) in enumerate(zip(correlations, requests)):
            device.publish("lambkin/trigger/mixed/in", {"id": request_id, "value": i})
            caller.send("echo", json.dumps({"i": i}).encode(), correlation)
        for i, correlation in enumerate(correlations):
            assert json.loads(caller.answer(correlation, host).payload)["echo"] == {"i": i}
        until(lambda: all(device.answers(r) for r in requests), "the spooled results",
              host.output)
    finally:
        caller.close()


def host_broker_port(host: Host) -> int:
    """The broker port in the host's configuration."""
    config = (host.root / "config.toml").read_text()
    return int(config.split("mqtt://127.0.0.1:")[1].split('"')[0])
