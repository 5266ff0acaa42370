"""AWS IoT Core messaging through a real MQTT broker (Mosquitto, on a free loopback port):
a component using the AWS IoT Device SDK v2 (awsiotsdk) publishes with PublishToIoTCore and a
paho-mqtt client receives; paho publishes and the component's SubscribeToIoTCore stream
receives. QoS 1 messages published while the broker is down are delivered in order once it is
back, also when the host is killed with SIGKILL and restarted in between."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

paho = pytest.importorskip("paho.mqtt.client")

HERE = Path(__file__).parent / "mqtt_components"
NAME = "com.lambkin.conformance.IotCore"
VERSION = "1.0.0"
DEADLINE = 60.0
OFFLINE_BATCH = int(os.environ.get("LAMBKIN_MQTT_BATCH", "50"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(predicate, what: str, details=lambda: ""):
    deadline = time.monotonic() + DEADLINE
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {DEADLINE:.0f}s\n{details()}")
        time.sleep(0.02)


class Broker:
    """Mosquitto with on-disk persistence, so a persistent subscriber's session and queued
    QoS 1 messages survive the broker being stopped and started again."""

    def __init__(self, base: Path):
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        data = base / "data"
        data.mkdir()
        self.conf = base / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # Run as root, Mosquitto would switch to its own user, which cannot write here.
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {data}/\n"
            "max_queued_messages 10000\n"
        )

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        log = open(self.base / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)

        def accepting():
            if self.proc.poll() is not None:
                pytest.fail("mosquitto exited:\n" + self.log())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        until(accepting, "mosquitto accepting connections", self.log)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def log(self) -> str:
        path = self.base / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


class Subscriber:
    """A paho-mqtt client with a persistent session subscribed to lambkin/up/# at QoS 1."""

    def __init__(self, port: int):
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                                  client_id="lambkin-conformance-sub", clean_session=False)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        until(self.subscribed.is_set, "the paho subscription")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe("lambkin/up/#", qos=1)

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.messages.append((message.topic, message.payload))

    def batch(self, name: str) -> list[int]:
        with self.lock:
            return [json.loads(p)["seq"] for t, p in self.messages if t == f"lambkin/up/{name}"]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    result = []
    for pid in found:
        try:
            os.getpgid(pid)
            result.append(pid)
        except ProcessLookupError:
            pass
    return result


class Host:
    def __init__(self, binary: Path, base: Path, broker_port: int):
        self.binary = binary
        self.base = base
        self.root = base / "root"
        (self.root / "state").mkdir(parents=True)
        (self.root / "config.toml").write_text(
            'thing_name = "conformance-thing"\n'
            "[mqtt]\n"
            f'url = "mqtt://127.0.0.1:{broker_port}"\n'
            "reconnect_min_ms = 50\n"
            "reconnect_max_ms = 200\n"
        )
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        addr = self.root / "state" / "api.addr"
        addr.unlink(missing_ok=True)
        out = open(self.base / f"host-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(
            [str(self.binary), "run", "--root", str(self.root), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")})

        def ready():
            if self.proc.poll() is not None:
                pytest.fail(f"host exited with {self.proc.returncode}\n{self.output()}")
            return addr.is_file()

        until(ready, "the host writing api.addr", self.output)

    def kill(self) -> None:
        """SIGKILL to the host. Its components' shells die with it (parent-death signal), but
        not what they started, so the test ends those process groups itself, as an init
        system would when the host's service is killed."""
        assert self.proc is not None
        groups = {os.getpgid(pid) for pid in descendants(self.proc.pid)}
        groups.discard(os.getpgid(self.proc.pid))
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def output(self) -> str:
        logs = [p.read_text(errors="replace")[-6000:] for p in sorted(self.base.glob("host-*.log"))]
        component = self.root / "logs" / f"{NAME}.log"
        if component.exists():
            logs.append(component.read_text(errors="replace")[-4000:])
        return "\n---\n".join(logs)

    @property
    def work(self) -> Path:
        return self.root / "work" / NAME


@pytest.fixture(scope="module")
def setup(lambkin_bin, tmp_path_factory):
    base = tmp_path_factory.mktemp("mqtt")
    broker_dir = base / "broker"
    broker_dir.mkdir()
    broker = Broker(broker_dir)
    broker.start()
    subscriber = Subscriber(broker.port)
    host = Host(lambkin_bin, base, broker.port)
    host.start()
    recipes, artifacts = base / "recipes", base / "artifacts"
    recipes.mkdir()
    d = artifacts / NAME / VERSION
    d.mkdir(parents=True)
    shutil.copy(HERE / "iot_component.py", d / "iot_component.py")
    recipe = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": NAME,
        "ComponentVersion": VERSION,
        "ComponentConfiguration": {"DefaultConfiguration": {"accessControl": {
            "aws.greengrass.ipc.mqttproxy": {f"{NAME}:mqtt:1": {
                "operations": ["aws.greengrass#PublishToIoTCore",
                               "aws.greengrass#SubscribeToIoTCore"],
                "resources": ["lambkin/*"]}}}}},
        "Manifests": [{
            "Platform": {"os": "linux"},
            "Lifecycle": {"Run": f"{sys.executable} -u {{artifacts:path}}/iot_component.py"},
            "Artifacts": [{"URI": "s3://conformance/iot_component.py"}],
        }],
    }
    (recipes / f"{NAME}-{VERSION}.json").write_text(json.dumps(recipe))
    result = subprocess.run(
        [str(lambkin_bin), "deploy", "--root", str(host.root), "-r", str(recipes),
         "-a", str(artifacts), "-m", f"{NAME}={VERSION}"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr + host.output()
    until(lambda: (host.work / "subscribed").exists(), "the component's subscription",
          host.output)
    yield broker, subscriber, host
    subscriber.close()
    host.stop()
    broker.stop()


def publish_batch(host: Host, name: str, count: int) -> None:
    (host.work / f"go-{name}").write_text(str(count))
    done = host.work / f"done-{name}"
    until(done.exists, f"the component publishing batch {name}", host.output)
    assert json.loads(done.read_text())["errors"] == []


def check_in_order(subscriber: Subscriber, name: str, count: int, host: Host) -> int:
    """Waits for every message of the batch; returns how many arrived twice or more."""
    start = time.monotonic()
    until(lambda: set(subscriber.batch(name)) >= set(range(count)),
          f"all {count} messages of batch {name} at the subscriber",
          lambda: f"got {subscriber.batch(name)}\n{host.output()}")
    seqs = subscriber.batch(name)
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == list(range(count)), seqs
    duplicates = len(seqs) - count
    print(f"batch {name}: {count} messages, {duplicates} duplicates, "
          f"all in {time.monotonic() - start:.2f}s")
    return duplicates


def test_publish_reaches_a_paho_subscriber(setup):
    broker, subscriber, host = setup
    publish_batch(host, "online", 5)
    assert check_in_order(subscriber, "online", 5, host) == 0


def test_subscribe_to_iot_core_streams_broker_messages(setup):
    broker, subscriber, host = setup
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="lambkin-conformance-pub")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    try:
        for i in range(3):
            publisher.publish(f"lambkin/down/{i}", json.dumps({"i": i}), qos=1).wait_for_publish(30)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
    received = host.work / "received.jsonl"

    def lines():
        return received.read_text().splitlines() if received.exists() else []

    until(lambda: len(lines()) >= 3, "3 messages at the component", host.output)
    # The SDK runs stream callbacks on a thread pool: the file's order is not the delivery's.
    got = sorted((json.loads(line) for line in lines()), key=lambda m: m["topic"])
    assert got == [{"topic": f"lambkin/down/{i}", "payload": json.dumps({"i": i})}
                   for i in range(3)]


def test_qos1_published_offline_arrives_in_order_when_the_broker_returns(setup):
    broker, subscriber, host = setup
    broker.stop()
    publish_batch(host, "offline", OFFLINE_BATCH)
    broker.start()
    duplicates = check_in_order(subscriber, "offline", OFFLINE_BATCH, host)
    assert duplicates <= OFFLINE_BATCH


def test_qos1_spooled_survives_sigkill_of_the_host(setup):
    broker, subscriber, host = setup
    broker.stop()
    publish_batch(host, "crash", OFFLINE_BATCH)
    host.kill()
    host.start()
    broker.start()
    duplicates = check_in_order(subscriber, "crash", OFFLINE_BATCH, host)
    assert duplicates <= OFFLINE_BATCH
    # The component restarted with the host and did not publish the batch again: every
    # duplicate is the spool's at-least-once resend of the message in flight.
    assert duplicates <= 1
