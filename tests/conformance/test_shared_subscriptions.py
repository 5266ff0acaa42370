"""Shared subscriptions through a real MQTT 5 broker (Mosquitto, on a free loopback port):
three hosts run the same Lambda component, whose IOT_CORE trigger names the shared group
`$share/workers/lambkin/jobs/+`, so the broker splits the topic's messages between them.
paho-mqtt (MQTT 5) publishes 3,000 QoS 1 messages; each must be processed at least once,
and by all three hosts between them. One host is killed with SIGKILL mid-stream and started
again on its root: no message is lost, since a host acknowledges a message to the broker only
once it has stored it as an Event invocation (what it stored runs after the restart; what it
had not acknowledged, the broker sends again). Duplicates are allowed (at least once),
counted and printed.

Mosquitto 2.0.11 sends a client past its receive maximum when the client also sends a
Maximum Packet Size, as the host does: a stream much longer than a trigger's queue of waiting
messages must still be run whole (what the host left unacknowledged is sent again after the
reconnect it makes once the queue is empty)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from support import device_python, until, zip_files

paho = pytest.importorskip("paho.mqtt.client")

from test_mqtt import Broker  # noqa: E402  (after the skip above)
from test_mqtt import Host as MqttHost  # noqa: E402

HERE = Path(__file__).parent / "mqtt_trigger"
NAME = "com.lambkin.conformance.SharedWorker"
VERSION = "1.0.0"
FILTER = "$share/workers/lambkin/jobs/+"
MESSAGES = 3000
# The host killed, and after how many messages; it is started again after `DOWN_FOR` more.
KILLED, KILL_AT, DOWN_FOR = 1, 1000, 500
DEADLINE = 180.0

# Writes each event's id and the topic it came on (the client context's subject, also for an
# event stored before a restart and run after it) to $OUT, one line per invocation. The few
# milliseconds of work
# keep a backlog of stored invocations on every host while the stream comes in, so the host
# killed has accepted messages it has not run yet.
HANDLER = b"""import os
import time


def handler(event, context):
    time.sleep(0.003)
    subject = context.client_context.custom["subject"]
    with open(os.environ["OUT"], "a") as f:
        f.write(str(event["id"]) + " " + subject + "\\n")
    return {}
"""


class Host(MqttHost):
    """A host of the group: its own MQTT client id, a Python for the function's user."""

    def __init__(self, binary: Path, base: Path, broker_port: int, index: int):
        super().__init__(
            binary, base,
            f'url = "mqtt://127.0.0.1:{broker_port}"\nclient_id = "lambkin-worker-{index}"\n',
            tables=f"[lambda]\npython = {json.dumps(str(device_python()))}\n",
            component=NAME)
        self.out = base / "out" / "ids.txt"
        self.out.parent.mkdir()
        self.out.parent.chmod(0o777)

    def deploy(self, lambkin_bin: Path, max_queue: int = 1000) -> None:
        recipes, artifacts = self.base / "recipes", self.base / "artifacts"
        recipes.mkdir()
        d = artifacts / NAME / VERSION
        d.mkdir(parents=True)
        code = zip_files({"handler.py": HANDLER}, d / "lambda-artifact.zip")
        recipe = json.loads((HERE / "recipe.json").read_text())
        recipe["ComponentName"] = NAME
        recipe["Manifests"][0]["Artifacts"][0]["Digest"] = base64.b64encode(
            hashlib.sha256(code).digest()).decode()
        config = recipe["ComponentConfiguration"]["DefaultConfiguration"]
        config["pubsubTopics"] = {"0": {"topic": FILTER, "type": "IOT_CORE"}}
        config["lambdaExecutionParameters"]["EnvironmentVariables"] = {"OUT": str(self.out)}
        config["maxInstancesCount"] = 1
        config["maxQueueSize"] = max_queue
        config["accessControl"] = {}
        (recipes / f"{NAME}-{VERSION}.json").write_text(json.dumps(recipe))
        result = subprocess.run(
            [str(lambkin_bin), "deploy", "--root", str(self.root), "-r", str(recipes),
             "-a", str(artifacts), "-m", f"{NAME}={VERSION}"],
            capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr + self.output()

    def lines(self) -> list[tuple[str, str]]:
        if not self.out.exists():
            return []
        return [tuple(line.split(" ", 1)) for line in self.out.read_text().splitlines()
                if " " in line]

    def ids(self) -> list[str]:
        return [i for i, _ in self.lines()]


class Publisher:
    """paho-mqtt, MQTT 5: QoS 1 publishes, each waited for (the broker's PUBACK)."""

    def __init__(self, port: int):
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                                  client_id="lambkin-conformance-publisher",
                                  protocol=paho.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        until(self.client.is_connected, "the publisher's connection")

    def publish(self, event: dict) -> None:
        info = self.client.publish(f"lambkin/jobs/{event['id']}", json.dumps(event), qos=1)
        info.wait_for_publish(30)
        assert info.is_published(), event

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def group(lambkin_bin, device_dir):
    base = device_dir("shared")
    broker_dir = base / "broker"
    broker_dir.mkdir()
    broker = Broker(broker_dir)
    broker.start()
    hosts = []
    for i in range(3):
        host_dir = base / f"host{i}"
        host_dir.mkdir()
        host_dir.chmod(0o755)
        host = Host(lambkin_bin, host_dir, broker.port, i)
        hosts.append(host)
        host.start()
        host.deploy(lambkin_bin)
    publisher = Publisher(broker.port)
    yield broker, hosts, publisher
    publisher.close()
    for host in hosts:
        host.stop()
    broker.stop()
    shutil.rmtree(base, ignore_errors=True)


def details(broker, hosts) -> str:
    return "\n=====\n".join([h.output() for h in hosts] + [broker.log()[-4000:]])


def test_three_hosts_split_a_shared_group_and_a_killed_one_loses_nothing(group):
    broker, hosts, publisher = group

    # Every host's subscription is in the group once each has run a warm-up message (the
    # broker hands them round in turn); before that, a message could find a smaller group.
    warmups = iter(range(10**6))
    def all_subscribed():
        publisher.publish({"id": f"w{next(warmups)}"})
        return all(any(i.startswith("w") for i in h.ids()) for h in hosts)
    until(all_subscribed, "a warm-up message run by every host", lambda: details(broker, hosts))

    start = time.monotonic()
    killed = hosts[KILLED]
    for n in range(MESSAGES):
        if n == KILL_AT:
            killed.kill()
        if n == KILL_AT + DOWN_FOR:
            killed.start()
        publisher.publish({"id": n})
    published = time.monotonic() - start

    expected = {str(n) for n in range(MESSAGES)}

    def seen() -> Counter:
        counts = Counter()
        for h in hosts:
            counts.update(i for i in h.ids() if not i.startswith("w"))
        return counts

    def complete():
        return expected <= set(seen())

    until(complete, f"every one of the {MESSAGES} messages run",
          lambda: f"missing: {sorted(expected - set(seen()), key=int)[:50]}\n"
                  + details(broker, hosts),
          timeout=DEADLINE)
    took = time.monotonic() - start
    counts = seen()
    per_host = [len([i for i in h.ids() if not i.startswith("w")]) for h in hosts]
    duplicates = sum(c - 1 for c in counts.values())
    print(f"{MESSAGES} messages published in {published:.1f}s, all run within {took:.1f}s; "
          f"runs per host {per_host}; duplicates {duplicates} "
          f"({sorted(i for i, c in counts.items() if c > 1)[:20]}…); host {KILLED} killed "
          f"after {KILL_AT} and started again after {KILL_AT + DOWN_FOR}")
    assert set(counts) == expected
    # Every run had its message's topic, those stored before the kill and run after it too.
    for h in hosts:
        for i, subject in h.lines():
            assert subject == f"lambkin/jobs/{i}", (i, subject)
    # Spread: the broker handed every host a fair part (round robin gives a third each).
    for i, n in enumerate(per_host):
        assert n >= MESSAGES // 10, f"host {i} ran only {n} messages: {per_host}"


# More than the 1,024 messages a trigger keeps waiting, arriving faster than they run.
FLOOD = 2500


@pytest.fixture
def lone_host(lambkin_bin, device_dir):
    base = device_dir("flood")
    broker_dir = base / "broker"
    broker_dir.mkdir()
    broker = Broker(broker_dir)
    broker.start()
    host_dir = base / "host"
    host_dir.mkdir()
    host_dir.chmod(0o755)
    host = Host(lambkin_bin, host_dir, broker.port, 0)
    host.start()
    host.deploy(lambkin_bin, max_queue=10)
    publisher = Publisher(broker.port)
    yield broker, host, publisher
    publisher.close()
    host.stop()
    broker.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_a_broker_sending_past_the_receive_maximum_loses_nothing(lone_host):
    broker, host, publisher = lone_host
    warmups = iter(range(10**6))
    def subscribed():
        publisher.publish({"id": f"w{next(warmups)}"})
        return any(i.startswith("w") for i in host.ids())
    until(subscribed, "a warm-up message run", host.output)
    for n in range(FLOOD):
        publisher.publish({"id": n})
    expected = {str(n) for n in range(FLOOD)}
    until(lambda: expected <= set(host.ids()), f"every one of the {FLOOD} messages run",
          lambda: f"missing {len(expected - set(host.ids()))}\n" + host.output(),
          timeout=DEADLINE)
    runs = [i for i in host.ids() if not i.startswith("w")]
    print(f"{FLOOD} messages run, {len(runs) - FLOOD} duplicates; reconnections to resend: "
          f"{host.output().count('reconnecting to the MQTT broker')}")
