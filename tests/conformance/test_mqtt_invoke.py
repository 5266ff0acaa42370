"""Invoke over MQTT through a real MQTT 5 broker (Mosquitto, on a free loopback port), with
paho-mqtt as the caller: a request published to lambkin/THING/functions/NAME/invoke with a
Response Topic and Correlation Data is answered on that topic with the function's result and
the same correlation data. A function not in `[mqtt_invoke] functions` is refused with an
error answer, and so are an unknown function and a payload a JSON function cannot take; a
function's own error is marked as one; a request without a response topic is logged and
dropped, and the host goes on answering. MQTT 3.1.1 has no request/response: the
configuration refuses `[mqtt_invoke]` with `version = "mqtt3"`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from support import device_python, lambda_client, until, zip_files

paho = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from test_mqtt import Broker  # noqa: E402  (after the skip above)
from test_mqtt import Host as MqttHost  # noqa: E402

THING = "conformance-thing"
ALLOWED = ["echo", "fails", "ghost", "big"]
EXIT_CONFIG = 78

ECHO = b"""def handler(event, context):
    return {"echo": event, "function": context.function_name}
"""
FAILS = b"""def handler(event, context):
    raise ValueError("no good: " + str(event.get("why")))
"""
BIG = b"""def handler(event, context):
    return {"blob": "x" * event["size"]}
"""
# The host's [mqtt] max_message_size_bytes when not set.
MAX_MESSAGE = 128 * 1024


class Caller:
    """paho-mqtt, MQTT 5: sends requests and collects the answers on its response topic."""

    def __init__(self, port: int):
        self.reply_topic = f"replies/{uuid.uuid4().hex}"
        self.answers: list = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                                  client_id="lambkin-conformance-caller", protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(self.reply_topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        until(self.subscribed.is_set, "the caller's subscription")

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.answers.append(message)

    def send(self, function: str, payload: bytes, correlation: bytes | None,
             reply: bool = True, reply_topic: str | None = None, qos: int = 1) -> None:
        properties = Properties(PacketTypes.PUBLISH)
        if reply:
            properties.ResponseTopic = reply_topic or self.reply_topic
        if correlation is not None:
            properties.CorrelationData = correlation
        info = self.client.publish(f"lambkin/{THING}/functions/{function}/invoke", payload,
                                   qos=qos, properties=properties)
        info.wait_for_publish(30)

    def answer(self, correlation: bytes, host, timeout: float = 60.0) -> "paho.MQTTMessage":
        def found():
            with self.lock:
                return next((m for m in self.answers
                             if getattr(m.properties, "CorrelationData", None) == correlation),
                            None)
        return until(found, f"the answer to {correlation!r}", host.output, timeout=timeout)

    def invoke(self, function: str, payload: bytes, host) -> tuple[dict, str | None]:
        """Sends a request and returns its answer's JSON and its `lambkin-error` (or None)."""
        correlation = uuid.uuid4().bytes
        self.send(function, payload, correlation)
        message = self.answer(correlation, host)
        assert message.topic == self.reply_topic
        user = dict(getattr(message.properties, "UserProperty", []) or [])
        return json.loads(message.payload), user.get("lambkin-error")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Host(MqttHost):
    def __init__(self, binary: Path, base: Path, broker_port: int):
        super().__init__(
            binary, base, f'url = "mqtt://127.0.0.1:{broker_port}"\n',
            tables=(f"[lambda]\npython = {json.dumps(str(device_python()))}\n"
                    f"[mqtt_invoke]\nfunctions = {json.dumps(ALLOWED)}\n"))


@pytest.fixture(scope="module")
def setup(lambkin_bin, device_dir):
    base = device_dir("mqtt-invoke")
    broker_dir = base / "broker"
    broker_dir.mkdir()
    broker = Broker(broker_dir)
    broker.start()
    host = Host(lambkin_bin, base, broker.port)
    host.start()
    endpoint = "http://" + (host.root / "state" / "api.addr").read_text().strip()
    client = lambda_client(host.root, endpoint)
    # "secret" runs the same code as "echo", and is not in the allow-list.
    for name, code in [("echo", ECHO), ("fails", FAILS), ("secret", ECHO), ("big", BIG)]:
        client.create_function(
            FunctionName=name, Runtime="python3.12", Handler="app.handler",
            Role="arn:aws:iam::000000000000:role/x",
            Code={"ZipFile": zip_files({"app.py": code}, base / f"{name}.zip")})
    caller = Caller(broker.port)
    # The host subscribes once connected: a first request may find no subscription yet.
    def answered():
        correlation = uuid.uuid4().bytes
        caller.send("echo", b"{}", correlation)
        try:
            return caller.answer(correlation, host, timeout=2) is not None
        except pytest.fail.Exception:
            return False
    until(answered, "a first answer", host.output, timeout=120)
    yield caller, host
    caller.close()
    host.stop()
    broker.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_a_request_is_answered_on_its_response_topic_with_its_correlation_data(setup):
    caller, host = setup
    body, error = caller.invoke("echo", json.dumps({"n": 7}).encode(), host)
    assert error is None
    assert body == {"echo": {"n": 7}, "function": "echo"}
    # Each answer finds its request by its correlation data, however many are in flight.
    correlations = [f"c{i}".encode() for i in range(20)]
    for i, c in enumerate(correlations):
        caller.send("echo", json.dumps({"i": i}).encode(), c)
    for i, c in enumerate(correlations):
        assert json.loads(caller.answer(c, host).payload)["echo"] == {"i": i}


def test_an_answer_goes_at_the_requests_qos(setup):
    # Answers are published directly, at the request's QoS (the caller subscribes at QoS 1,
    # so an answer arrives at the QoS it was published with).
    caller, host = setup
    for qos in (0, 1, 0, 1):
        correlation = uuid.uuid4().bytes
        caller.send("echo", json.dumps({"qos": qos}).encode(), correlation, qos=qos)
        message = caller.answer(correlation, host)
        assert message.qos == qos, (qos, message.qos)
        assert json.loads(message.payload)["echo"] == {"qos": qos}


def test_a_function_error_is_marked_as_one(setup):
    caller, host = setup
    body, error = caller.invoke("fails", json.dumps({"why": "test"}).encode(), host)
    assert error == "Unhandled"
    assert body["errorType"] == "ValueError"
    assert "no good: test" in body["errorMessage"]


def test_an_answer_larger_than_the_broker_takes_is_an_error_answer(setup):
    # The requester is answered, with the size and the limit, rather than left waiting.
    caller, host = setup
    body, error = caller.invoke("big", json.dumps({"size": 200_000}).encode(), host)
    assert error == "Function.ResponseSizeTooLarge", body
    assert body["errorType"] == "Function.ResponseSizeTooLarge"
    assert f"({MAX_MESSAGE} bytes" in body["errorMessage"], body
    size = re.search(r"\((\d+) bytes\)", body["errorMessage"])
    assert size and int(size.group(1)) > 200_000, body
    # One under the limit is answered as it is.
    body, error = caller.invoke("big", json.dumps({"size": 1000}).encode(), host)
    assert error is None and body == {"blob": "x" * 1000}


def test_a_function_not_on_the_allow_list_is_refused_with_an_error_answer(setup):
    caller, host = setup
    body, error = caller.invoke("secret", b"{}", host)
    assert error == "AccessDeniedException"
    assert body["errorType"] == "AccessDeniedException"
    assert "[mqtt_invoke] functions" in body["errorMessage"]
    # It never ran.
    log = host.root / "logs" / "secret.log"
    assert not log.exists() or "START" not in log.read_text()


def test_malformed_requests_get_errors_and_nothing_crashes(setup):
    caller, host = setup
    body, error = caller.invoke("ghost", b"{}", host)
    assert error == "ResourceNotFoundException", body
    assert "ghost" in body["errorMessage"]

    body, error = caller.invoke("echo", b"not json {", host)
    assert error == "InvalidRequestContentException", body

    # No response topic: nothing to answer; the host says so in its log and goes on.
    caller.send("echo", b'{"lost": true}', b"no-reply", reply=False)
    until(lambda: "has no response topic" in host.output(), "the log line about the request",
          host.output)
    body, error = caller.invoke("echo", b'{"after": 1}', host)
    assert error is None and body["echo"] == {"after": 1}
    with caller.lock:
        assert not [m for m in caller.answers
                    if getattr(m.properties, "CorrelationData", None) == b"no-reply"]
    assert host.proc.poll() is None


def test_a_response_topic_the_host_will_not_publish_to_runs_nothing(setup):
    # A requester may not make the host publish its answer as another device's request, on a
    # broker's $ topic, or on a filter: such a request is dropped before the function runs.
    caller, host = setup
    log = host.root / "logs" / "echo.log"
    starts = lambda: log.read_text().count("START RequestId")
    before = starts()
    refused = [f"lambkin/other-device/functions/echo/invoke", "$SYS/lambkin", "replies/#"]
    for topic in refused:
        caller.send("echo", b'{"relayed": true}', topic.encode(), reply_topic=topic)
    until(lambda: host.output().count("names a response topic that is refused") >= len(refused),
          "the log lines about the refused response topics", host.output)
    body, error = caller.invoke("echo", b'{"after": 2}', host)
    assert error is None and body["echo"] == {"after": 2}
    # The function's log lines reach its file just after the answer.
    until(lambda: starts() > before, "the START line of the invocation after them", log.read_text)
    assert starts() == before + 1, log.read_text()


def test_mqtt_3_gets_a_clear_refusal(lambkin_bin, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[mqtt_invoke]\nfunctions = ["echo"]\n'
                      '[mqtt]\nurl = "mqtt://127.0.0.1:1883"\nversion = "mqtt3"\n')
    result = subprocess.run([str(lambkin_bin), "check-config", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_CONFIG, result.stdout + result.stderr
    assert "needs MQTT 5" in result.stderr, result.stderr
