"""AWS IoT Core messaging through a real MQTT broker (Mosquitto, on a free loopback port):
a component using the AWS IoT Device SDK v2 (awsiotsdk) publishes with PublishToIoTCore and a
paho-mqtt client receives; paho publishes and the component's SubscribeToIoTCore stream
receives. QoS 1 messages published while the broker is down are delivered in order once it is
back, also when the host is killed with SIGKILL and restarted in between. A retained message
over the host's size limit neither ends its connection at every reconnect nor holds up the
next ones. Everything runs with the host speaking MQTT 5 and MQTT 3.1.1 (`[mqtt] version`).

Over mqtts://, Mosquitto's TLS listener requires a client certificate (certificates made here
with the openssl command, as AWS IoT Core's mutual TLS): the round trip works with the right
CA, certificate and key; a wrong CA is refused with a clear log line while the host keeps
running; missing or bad PEM files are configuration errors naming the file."""

from __future__ import annotations

import getpass
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from support import component_python, until

import paho.mqtt.client as paho  # noqa: E402

HERE = Path(__file__).parent / "mqtt_components"
NAME = "com.lambkin.conformance.IotCore"
VERSION = "1.0.0"
OFFLINE_BATCH = int(os.environ.get("LAMBKIN_MQTT_BATCH", "1000"))
EXIT_CONFIG = 78


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Certificates:
    """A CA, a server certificate for 127.0.0.1 and a device (client) certificate it signed,
    and a second CA that signed neither: made with the openssl command, EC P-256 keys in
    PKCS #8 PEM files as AWS IoT Core hands them out."""

    def __init__(self, base: Path):
        base.mkdir()
        self.base = base
        self.ca, ca_key = self._ca("ca")
        self.wrong_ca, _ = self._ca("wrong-ca")
        self.server_cert, self.server_key = self._leaf(
            "server", self.ca, ca_key, "subjectAltName=IP:127.0.0.1\n"
            "extendedKeyUsage=serverAuth\n")
        self.cert, self.key = self._leaf("device", self.ca, ca_key,
                                         "extendedKeyUsage=clientAuth\n")

    def _openssl(self, *args: str) -> None:
        result = subprocess.run(["openssl", *args], cwd=self.base, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr

    def _ca(self, name: str) -> tuple[Path, Path]:
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                      "-keyout", f"{name}.key", "-out", f"{name}.pem",
                      "-subj", f"/CN=Lambkin conformance {name}",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return self.base / f"{name}.pem", self.base / f"{name}.key"

    def _leaf(self, name: str, ca: Path, ca_key: Path, extensions: str) -> tuple[Path, Path]:
        (self.base / f"{name}.ext").write_text("basicConstraints=CA:FALSE\n" + extensions)
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                      "-subj", f"/CN=lambkin-{name}")
        self._openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca), "-CAkey",
                      str(ca_key), "-CAcreateserial", "-days", "2", "-out", f"{name}.pem",
                      "-extfile", f"{name}.ext")
        return self.base / f"{name}.pem", self.base / f"{name}.key"

    def configure(self, client) -> None:
        """Makes a paho client present the device certificate and trust the CA."""
        client.tls_set(ca_certs=str(self.ca), certfile=str(self.cert), keyfile=str(self.key))

    def mqtt_lines(self, port: int, ca: Path | None = None, client_auth: bool = True) -> str:
        """The [mqtt] lines of a host connecting with these files."""
        lines = f'url = "mqtts://127.0.0.1:{port}"\nca = "{ca or self.ca}"\n'
        if client_auth:
            lines += f'cert = "{self.cert}"\nkey = "{self.key}"\n'
        return lines


class Broker:
    """Mosquitto with on-disk persistence, so a persistent subscriber's session and queued
    QoS 1 messages survive the broker being stopped and started again."""

    def __init__(self, base: Path, tls: Certificates | None = None):
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        data = base / "data"
        data.mkdir()
        self.conf = base / "mosquitto.conf"
        listener = f"listener {self.port} 127.0.0.1\n"
        if tls is not None:
            listener += (f"cafile {tls.ca}\ncertfile {tls.server_cert}\n"
                         f"keyfile {tls.server_key}\nrequire_certificate true\n")
        self.conf.write_text(
            listener +
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

    def __init__(self, port: int, tls: Certificates | None = None):
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                                  client_id="lambkin-conformance-sub", clean_session=False)
        if tls is not None:
            tls.configure(self.client)
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
    def __init__(self, binary: Path, base: Path, mqtt: str, tables: str = "",
                 component: str = NAME):
        """`mqtt`: the lines of the [mqtt] table; `tables`: other tables before it;
        `component`: the component whose log `output` shows."""
        self.binary = binary
        self.base = base
        self.component = component
        self.root = base / "root"
        (self.root / "state").mkdir(parents=True)
        (self.root / "config.toml").write_text(
            'thing_name = "conformance-thing"\n'
            f"{tables}"
            "[mqtt]\n"
            f"{mqtt}"
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
        component = self.root / "logs" / f"{self.component}.log"
        if component.exists():
            logs.append(component.read_text(errors="replace")[-6000:])
        return "\n---\n".join(logs)

    @property
    def work(self) -> Path:
        return self.root / "work" / self.component


def deploy_component(lambkin_bin: Path, base: Path, host: Host) -> None:
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
            "Lifecycle": {"Run": f"{component_python()} -u {{artifacts:path}}/iot_component.py"},
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


@pytest.fixture(scope="module", params=["mqtt5", "mqtt3"])
def setup(request, lambkin_bin, device_dir):
    """Broker, paho subscriber and a host with the component, the host speaking the MQTT
    version of the parameter."""
    base = device_dir(f"mqtt-{request.param}")
    broker_dir = base / "broker"
    broker_dir.mkdir()
    broker = Broker(broker_dir)
    broker.start()
    subscriber = Subscriber(broker.port)
    host = Host(lambkin_bin, base,
                f'url = "mqtt://127.0.0.1:{broker.port}"\nversion = "{request.param}"\n')
    host.start()
    deploy_component(lambkin_bin, base, host)
    yield broker, subscriber, host
    subscriber.close()
    host.stop()
    broker.stop()


def publish_batch(host: Host, name: str, count: int) -> None:
    start = time.monotonic()
    (host.work / f"go-{name}").write_text(str(count))
    done = host.work / f"done-{name}"
    until(done.exists, f"the component publishing batch {name}", host.output)
    print(f"batch {name}: {count} messages published in {time.monotonic() - start:.2f}s")
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


def test_the_host_speaks_the_configured_protocol_version(setup, request):
    """Mosquitto logs each client's protocol: p5 is MQTT 5, p2 MQTT 3.1.1."""
    broker, _, _ = setup
    protocol = {"mqtt5": "p5", "mqtt3": "p2"}[request.node.callspec.params["setup"]]
    connects = [line for line in broker.log().splitlines() if "as conformance-thing (" in line]
    assert connects, broker.log()
    assert all(f"as conformance-thing ({protocol}," in line for line in connects), connects


def test_publish_reaches_a_paho_subscriber(setup):
    broker, subscriber, host = setup
    publish_batch(host, "online", 5)
    assert check_in_order(subscriber, "online", 5, host) == 0


def publish_down(broker: Broker, host: Host, tls: Certificates | None = None,
                 tag: str = "first") -> None:
    """paho publishes three messages under lambkin/down/TAG/; the component's
    SubscribeToIoTCore stream (lambkin/down/#) gets them."""
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="lambkin-conformance-pub")
    if tls is not None:
        tls.configure(publisher)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    try:
        for i in range(3):
            publisher.publish(f"lambkin/down/{tag}/{i}", json.dumps({"i": i}),
                              qos=1).wait_for_publish(30)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
    received = host.work / "received.jsonl"

    def lines():
        text = received.read_text() if received.exists() else ""
        return [line for line in text.splitlines()
                if json.loads(line)["topic"].startswith(f"lambkin/down/{tag}/")]

    until(lambda: len(lines()) >= 3, "3 messages at the component", host.output)
    # The SDK runs stream callbacks on a thread pool: the file's order is not the delivery's.
    got = sorted((json.loads(line) for line in lines()), key=lambda m: m["topic"])
    assert got == [{"topic": f"lambkin/down/{tag}/{i}", "payload": json.dumps({"i": i})}
                   for i in range(3)]


def test_subscribe_to_iot_core_streams_broker_messages(setup):
    broker, subscriber, host = setup
    publish_down(broker, host)


def test_mqtt5_properties_reach_the_broker_or_are_dropped_on_mqtt3(setup, request):
    """An MQTT 5 paho subscriber sees the component's user property and content type when the
    host speaks MQTT 5; on MQTT 3.1.1 the message arrives without them and the host says it
    dropped them."""
    broker, _, host = setup
    version = request.node.callspec.params["setup"]
    got: list = []
    subscribed = threading.Event()
    watcher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="lambkin-conformance-v5",
                          protocol=paho.MQTTv5)
    watcher.on_subscribe = lambda *a: subscribed.set()
    watcher.on_message = lambda client, userdata, message: got.append(message)
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe("lambkin/props/#", qos=1)
    watcher.loop_start()
    try:
        until(subscribed.is_set, "the MQTT 5 watcher's subscription")
        (host.work / f"props-{version}").write_text("")
        done = host.work / f"done-props-{version}"
        until(done.exists, "the component publishing with properties", host.output)
        assert json.loads(done.read_text())["errors"] == []
        until(lambda: got, "the message at the MQTT 5 watcher", host.output)
    finally:
        watcher.loop_stop()
        watcher.disconnect()
    properties = getattr(got[0], "properties", None)
    user = list(getattr(properties, "UserProperty", []) or [])
    content_type = getattr(properties, "ContentType", None)
    if version == "mqtt5":
        assert user == [("origin", "component")], properties
        assert content_type == "application/json", properties
    else:
        assert user == [] and content_type is None, properties
        log = "".join(p.read_text(errors="replace") for p in host.base.glob("host-*.log"))
        assert "MQTT 5 properties of published messages are dropped" in log
        assert "userProperties, contentType" in log


def test_qos1_published_offline_arrives_in_order_when_the_broker_returns(setup):
    broker, subscriber, host = setup
    broker.stop()
    publish_batch(host, "offline", OFFLINE_BATCH)
    broker.start()
    duplicates = check_in_order(subscriber, "offline", OFFLINE_BATCH, host)
    assert duplicates <= OFFLINE_BATCH


def test_subscriptions_are_made_again_after_the_broker_returns(setup):
    """The broker, restarted here, forgets the host's subscription (clean session): the
    component's stream gets messages again only if the host subscribed anew."""
    broker, subscriber, host = setup
    publish_down(broker, host, tag="before-restart")
    broker.stop()
    broker.start()
    # Messages published before the host is back are lost (nobody subscribed): probes go out
    # until one arrives, which needs the new subscription; then the real batch.
    received = host.work / "received.jsonl"
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="lambkin-conformance-probe")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    probes = itertools.count()
    next_probe = 0.0

    def probe_arrived():
        nonlocal next_probe
        text = received.read_text() if received.exists() else ""
        if "lambkin/down/probe/" in text:
            return True
        if time.monotonic() >= next_probe:
            next_probe = time.monotonic() + 0.2
            publisher.publish(f"lambkin/down/probe/{next(probes)}", "{}",
                              qos=1).wait_for_publish(30)
        return False

    try:
        until(probe_arrived, "a message at the component after the broker's restart",
              lambda: host.output() + broker.log())
    finally:
        publisher.loop_stop()
        publisher.disconnect()
    publish_down(broker, host, tag="after-restart")


def retain(broker: Broker, topic: str, payload: bytes) -> None:
    """paho publishes `payload` retained on `topic` (an empty payload clears it)."""
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="lambkin-conformance-big")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    try:
        publisher.publish(topic, payload, qos=1, retain=True).wait_for_publish(30)
    finally:
        publisher.loop_stop()
        publisher.disconnect()


def test_an_oversized_retained_message_neither_drops_the_connection_nor_blocks_others(
        setup, request):
    """A retained message over the host's max_message_size_bytes (128 KiB by default) on a
    topic it subscribes to comes back at every subscription. On MQTT 5 the host tells the
    broker its limit and the broker never sends it; on MQTT 3.1.1 nothing can, so the host
    takes it and drops it with a warning. Either way the connection made after the broker's
    restart stays up (no reconnect after reconnect) and the next messages arrive."""
    broker, _, host = setup
    version = request.node.callspec.params["setup"]
    big = "lambkin/down/big/retained"
    retain(broker, big, b"x" * (256 * 1024))
    try:
        # A fresh connection and subscription: the broker hands the retained message over.
        broker.stop()
        seen = len(broker.log().splitlines())
        broker.start()
        # Until the host has subscribed again, a message finds no subscriber: publish until
        # one arrives.
        received = host.work / "received.jsonl"

        def arrived():
            retain(broker, "lambkin/down/after-big/probe", b"{}")
            text = received.read_text() if received.exists() else ""
            return "lambkin/down/after-big/probe" in text

        until(arrived, "a message after the oversized one at the component", host.output)
        connects = [line for line in broker.log().splitlines()[seen:]
                    if "as conformance-thing (" in line]
        assert 1 <= len(connects) <= 2, connects
        if version == "mqtt3":
            log = "".join(p.read_text(errors="replace") for p in host.base.glob("host-*.log"))
            assert "over max_message_size_bytes; dropped" in log, host.output()
    finally:
        retain(broker, big, b"")
        retain(broker, "lambkin/down/after-big/probe", b"")


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


@pytest.fixture(scope="module")
def tls_setup(lambkin_bin, device_dir):
    """Mosquitto's TLS listener requiring a client certificate, a paho subscriber with its
    own certificate, and a host with the component connecting over mqtts://."""
    yield from tls_device(lambkin_bin, device_dir("mqtts"), "")


@pytest.fixture(scope="module")
def tls_mqtt3_setup(lambkin_bin, device_dir):
    """As tls_setup, the host speaking MQTT 3.1.1."""
    yield from tls_device(lambkin_bin, device_dir("mqtts3"), 'version = "mqtt3"\n')


def tls_device(lambkin_bin, base: Path, extra_mqtt_lines: str):
    certs = Certificates(base / "certs")
    broker_dir = base / "broker"
    broker_dir.mkdir()
    broker = Broker(broker_dir, tls=certs)
    broker.start()
    subscriber = Subscriber(broker.port, tls=certs)
    host = Host(lambkin_bin, base, certs.mqtt_lines(broker.port) + extra_mqtt_lines)
    host.start()
    deploy_component(lambkin_bin, base, host)
    yield broker, subscriber, host, certs
    subscriber.close()
    host.stop()
    broker.stop()


def test_mqtts_with_a_client_certificate_round_trip(tls_setup):
    broker, subscriber, host, certs = tls_setup
    publish_batch(host, "tls", 5)
    assert check_in_order(subscriber, "tls", 5, host) == 0
    publish_down(broker, host, tls=certs)


def test_mqtts_round_trip_on_mqtt_3_1_1(tls_mqtt3_setup):
    """TLS with a client certificate, the host speaking MQTT 3.1.1 (mosquitto logs p2)."""
    broker, subscriber, host, certs = tls_mqtt3_setup
    publish_batch(host, "tls3", 5)
    assert check_in_order(subscriber, "tls3", 5, host) == 0
    publish_down(broker, host, tls=certs, tag="tls3")
    connects = [line for line in broker.log().splitlines() if "as conformance-thing (" in line]
    assert connects and all("as conformance-thing (p2," in line for line in connects), connects


def host_log(host: Host) -> str:
    path = host.base / f"host-{host.starts}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def still_serving(host: Host) -> None:
    assert host.proc is not None and host.proc.poll() is None, host.output()
    result = subprocess.run([str(host.binary), "list", "--root", str(host.root)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", ["wrong-ca", "no-client-certificate"])
def test_mqtts_refused_is_logged_and_the_host_keeps_running(case, tls_setup, lambkin_bin,
                                                             tmp_path):
    broker, _, _, certs = tls_setup
    if case == "wrong-ca":
        mqtt = certs.mqtt_lines(broker.port, ca=certs.wrong_ca)
        expected = "invalid peer certificate"
    else:
        # Mosquitto just resets the connection; the line says what is missing.
        mqtt = certs.mqtt_lines(broker.port, client_auth=False)
        expected = "mqtt.cert and mqtt.key are not set"
    host = Host(lambkin_bin, tmp_path, mqtt)
    host.start()
    try:
        line = until(lambda: next((line for line in host_log(host).splitlines()
                                   if "MQTT connection failed" in line), None),
                     "a log line saying why the MQTT connection failed", host.output)
        assert expected in line, line
        assert "MQTT connected" not in host_log(host)
        still_serving(host)
    finally:
        host.stop()


def check_config(lambkin_bin: Path, path: Path, mqtt: str) -> subprocess.CompletedProcess:
    path.write_text("[mqtt]\n" + mqtt)
    return subprocess.run([str(lambkin_bin), "check-config", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_mqtts_files_are_checked_with_the_configuration(lambkin_bin, tmp_path):
    certs = Certificates(tmp_path / "certs")
    config = tmp_path / "config.toml"
    good = check_config(lambkin_bin, config, certs.mqtt_lines(8883))
    assert good.returncode == 0, good.stdout + good.stderr

    # Relative paths are relative to the configuration file.
    missing = check_config(lambkin_bin, config,
                           'url = "mqtts://127.0.0.1"\nca = "certs/nowhere.pem"\n')
    assert missing.returncode == EXIT_CONFIG, missing.stdout + missing.stderr
    assert "mqtt.ca" in missing.stderr and str(tmp_path / "certs/nowhere.pem") in missing.stderr

    swapped = check_config(lambkin_bin, config,
                           f'url = "mqtts://127.0.0.1"\nca = "{certs.ca}"\n'
                           f'cert = "{certs.cert}"\nkey = "{certs.cert}"\n')
    assert swapped.returncode == EXIT_CONFIG, swapped.stdout + swapped.stderr
    assert "mqtt.key" in swapped.stderr and str(certs.cert) in swapped.stderr

    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    bad_ca = check_config(lambkin_bin, config,
                          f'url = "mqtts://127.0.0.1"\nca = "{not_pem}"\n')
    assert bad_ca.returncode == EXIT_CONFIG, bad_ca.stdout + bad_ca.stderr
    assert "mqtt.ca" in bad_ca.stderr and str(not_pem) in bad_ca.stderr

    # The same check stops `lambkin run` before anything starts.
    (tmp_path / "root").mkdir()
    run = subprocess.run([str(lambkin_bin), "run", "--root", str(tmp_path / "root"),
                          "--config", str(config), "--listen", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == EXIT_CONFIG, run.stdout + run.stderr
    assert "mqtt.ca" in run.stderr
