"""`/metrics` read by Prometheus's own Python client (prometheus_client's parsers for the text
format 0.0.4 and for OpenMetrics) and checked by its own linter (`promtool check metrics`),
on a host connected to a real MQTT broker (Mosquitto) with
a component that publishes and subscribes through Greengrass IPC (awsiotsdk).

After a known number of invocations, function errors, timeouts and throttles, the counters
and the histograms' counts are exactly those numbers; the component's MQTT messages and bytes
are exactly what it published and received. Without the token (or with a wrong one) the
answer is 401 and says nothing of the metrics; a browser's cross-site request is refused.
`lambkin top --once` shows the functions and the component from the same numbers. A Lambda
component triggered by an IOT_CORE topic counts what reached it as received and what its
handler published over IPC as sent, to the byte."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from support import PACKAGES, REPO, ROLE, lambda_client, signed_request, until, wait_active, zip_files

from prometheus_client import parser  # noqa: E402
from prometheus_client.openmetrics import parser as openmetrics_parser  # noqa: E402

import test_mqtt  # noqa: E402  (the broker, host and IPC component of the MQTT tests)
import test_mqtt_trigger  # noqa: E402  (the Lambda component an IOT_CORE topic triggers)

HANDLER = b'''import os
import time


def handler(event, context):
    action = event.get("action", "ok")
    if action == "fail":
        raise RuntimeError("failing on purpose")
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "wait":
        deadline = time.monotonic() + 50
        while not os.path.exists(event["gate"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    return {"ok": True}
'''

OK, FAILED, TIMED_OUT = 5, 3, 2
THROTTLED = 2


class Device:
    def __init__(self, broker, host, base: Path):
        self.broker = broker
        self.host = host
        self.base = base

    @property
    def addr(self) -> str:
        return (self.host.root / "state" / "api.addr").read_text().strip()

    @property
    def token(self) -> str:
        return (self.host.root / "state" / "metrics.token").read_text().strip()

    def get(self, headers: dict[str, str] | None = None) -> tuple:
        request = urllib.request.Request(f"http://{self.addr}/metrics", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode()

    def scrape(self, accept: str | None = None) -> tuple:
        headers = {"Authorization": f"Bearer {self.token}"}
        if accept:
            headers["Accept"] = accept
        status, response_headers, body = self.get(headers)
        assert status == 200, body
        return response_headers, body

    def samples(self) -> list:
        """Every sample, as prometheus_client's text-format parser reads the scrape."""
        _, body = self.scrape()
        return [s for family in parser.text_string_to_metric_families(body)
                for s in family.samples]

    def value(self, name: str, **labels) -> float | None:
        return sample_value(self.samples(), name, **labels)


def sample_value(samples, name: str, **labels) -> float | None:
    found = [s.value for s in samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


@pytest.fixture(scope="module")
def device(lambkin_bin, device_dir):
    base = device_dir("metrics")
    broker_dir = base / "broker"
    broker_dir.mkdir()
    broker = test_mqtt.Broker(broker_dir)
    broker.start()
    host = test_mqtt.Host(lambkin_bin, base, f'url = "mqtt://127.0.0.1:{broker.port}"\n')
    host.start()
    try:
        test_mqtt.deploy_component(lambkin_bin, base, host)
        yield Device(broker, host, base)
    finally:
        host.stop()
        broker.stop()


def create_function(device: Device, name: str, timeout: int, greengrass: dict) -> None:
    code = zip_files({"app.py": HANDLER}, device.base / f"{name}.zip")
    body = json.dumps({
        "FunctionName": name, "Runtime": "python3.11", "Role": ROLE, "Handler": "app.handler",
        "Timeout": timeout, "Code": {"ZipFile": base64.b64encode(code).decode()},
        "Greengrass": {"Pinned": False, **greengrass},
    }).encode()
    request = signed_request(device.host.root, "POST",
                             f"http://{device.addr}/2015-03-31/functions", body,
                             {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 201
    wait_active(client(device), name)


def client(device: Device):
    return lambda_client(device.host.root, f"http://{device.addr}",
                         retries={"total_max_attempts": 1}, read_timeout=60)


def invoke(device: Device, name: str, event: dict) -> dict:
    return client(device).invoke(FunctionName=name, Payload=json.dumps(event).encode())


@pytest.fixture(scope="module")
def exercised(device):
    """`steady` ran OK successes, FAILED function errors and TIMED_OUT timeouts; `narrow`
    (one instance, a queue of one) ran two invocations and refused THROTTLED."""
    create_function(device, "steady", 1, {})
    for _ in range(OK):
        assert "FunctionError" not in invoke(device, "steady", {})
    for _ in range(FAILED):
        assert invoke(device, "steady", {"action": "fail"})["FunctionError"] == "Unhandled"
    for _ in range(TIMED_OUT):
        response = invoke(device, "steady", {"action": "sleep", "seconds": 10})
        assert response["FunctionError"] == "Unhandled"
        assert b"Sandbox.Timedout" in response["Payload"].read()

    create_function(device, "narrow", 30, {"MaxInstancesCount": 1, "MaxQueueSize": 1})
    gate_dir = device.base / "gate"
    gate_dir.mkdir()
    gate_dir.chmod(0o755)
    gate = gate_dir / "open"
    results = {}

    def call(key, event):
        results[key] = invoke(device, "narrow", event)

    running = threading.Thread(target=call, args=("running", {"action": "wait", "gate": str(gate)}))
    running.start()
    until(lambda: device.value("lambkin_function_instances_busy", function="narrow") == 1,
          "narrow's instance busy")
    queued = threading.Thread(target=call, args=("queued", {}))
    queued.start()
    until(lambda: device.value("lambkin_function_queue_depth", function="narrow") == 1,
          "an invocation queued for narrow")
    for _ in range(THROTTLED):
        with pytest.raises(ClientError) as refused:
            invoke(device, "narrow", {})
        assert refused.value.response["Error"]["Code"] == "TooManyRequestsException"
    gate.touch()
    running.join(60)
    queued.join(60)
    assert set(results) == {"running", "queued"}
    assert all("FunctionError" not in r for r in results.values()), results
    return device


def test_counters_and_histograms_equal_what_happened(exercised):
    samples = exercised.samples()

    def v(name, **labels):
        return sample_value(samples, name, **labels)

    invocations = "lambkin_function_invocations_total"
    assert v(invocations, function="steady", outcome="success") == OK
    assert v(invocations, function="steady", outcome="function_error") == FAILED
    assert v(invocations, function="steady", outcome="timeout") == TIMED_OUT
    assert v(invocations, function="steady", outcome="throttled") == 0
    ran = OK + FAILED + TIMED_OUT
    assert v("lambkin_function_duration_seconds_count", function="steady") == ran
    assert v("lambkin_function_duration_seconds_bucket", function="steady", le="+Inf") == ran
    # The timeouts (1 s) took at least 1 s each; the rest took less.
    assert v("lambkin_function_duration_seconds_bucket", function="steady", le="0.5") == OK + FAILED
    assert v("lambkin_function_duration_seconds_sum", function="steady") >= TIMED_OUT
    # The first invocation started the instance; a timeout kills it, so the second timeout
    # started another.
    assert v("lambkin_function_cold_starts_total", function="steady") == 2
    assert v("lambkin_function_init_duration_seconds_count", function="steady") == 2

    assert v(invocations, function="narrow", outcome="success") == 2
    assert v(invocations, function="narrow", outcome="throttled") == THROTTLED
    assert v(invocations, function="narrow", outcome="function_error") == 0
    assert v("lambkin_function_duration_seconds_count", function="narrow") == 2
    assert v("lambkin_function_queue_depth", function="narrow") == 0
    assert v("lambkin_function_instances_busy", function="narrow") == 0
    assert v("lambkin_function_instances_idle", function="narrow") == 1


def test_component_mqtt_traffic_is_counted_exactly(device):
    component = test_mqtt.NAME
    before = device.samples()

    def counted(samples, what):
        return sample_value(samples, f"lambkin_mqtt_{what}_total", component=component) or 0

    test_mqtt.publish_batch(device.host, "metrics", 4)
    test_mqtt.publish_down(device.broker, device.host, tag="metrics")
    after = device.samples()
    sent = [json.dumps({"batch": "metrics", "seq": i}).encode() for i in range(4)]
    received = [json.dumps({"i": i}).encode() for i in range(3)]
    assert counted(after, "sent_messages") - counted(before, "sent_messages") == len(sent)
    assert counted(after, "sent_bytes") - counted(before, "sent_bytes") == sum(map(len, sent))
    assert counted(after, "received_messages") - counted(before, "received_messages") == 3
    assert (counted(after, "received_bytes") - counted(before, "received_bytes")
            == sum(map(len, received)))
    assert sample_value(after, "lambkin_mqtt_connected") == 1
    assert sample_value(after, "lambkin_ipc_connections") >= 1
    assert sample_value(after, "lambkin_component_state", component=component,
                        state="RUNNING") == 1
    assert sample_value(after, "lambkin_deployments_total", outcome="succeeded") == 1


def test_openmetrics_when_the_scraper_asks_for_it(exercised):
    headers, body = exercised.scrape(
        "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5")
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    families = {f.name: f for f in openmetrics_parser.text_string_to_metric_families(body)}
    invocations = families["lambkin_function_invocations"]
    assert invocations.type == "counter"
    assert sample_value(invocations.samples, "lambkin_function_invocations_total",
                        function="steady", outcome="function_error") == FAILED
    duration = families["lambkin_function_duration_seconds"]
    assert duration.type == "histogram"
    assert sample_value(duration.samples, "lambkin_function_duration_seconds_count",
                        function="narrow") == 2
    text_headers, _ = exercised.scrape()
    assert text_headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


# scripts/install-test-deps extracts it from Debian's prometheus package.
PROMTOOL = next((str(p) for p in [REPO / ".venv" / "tools" / "bin" / "promtool"] if p.is_file()),
                shutil.which("promtool"))


def promtool(body: str) -> subprocess.CompletedProcess:
    """`promtool check metrics` on a scrape: exit 0 when it parses and lints clean, 3 when it
    parses with lint problems (one per line), 1 when it cannot parse it."""
    assert PROMTOOL is not None, "no promtool: scripts/install-test-deps installs it"
    return subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                          text=True, timeout=60)


def test_promtool_checks_the_scrape(exercised):
    """Prometheus's own linter takes the text format without a problem, after a workload that
    filled every family (functions, histograms, throttles, a component, the broker)."""
    _, body = exercised.scrape()
    assert 'lambkin_function_duration_seconds_bucket{function="steady"' in body
    assert "lambkin_mqtt_sent_messages_total{" in body
    checked = promtool(body)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == "", checked.stdout + checked.stderr


def test_promtool_reads_the_openmetrics_scrape(exercised):
    """promtool parses only the text format 0.0.4. OpenMetrics parses in it too, and its one
    difference shows: OpenMetrics names a counter's family without `_total` (`# TYPE
    lambkin_deployments counter`, samples `lambkin_deployments_total`), which the text format
    reads as samples without help. Those are the only problems it names: one per counter
    family with samples, nothing else."""
    _, body = exercised.scrape("application/openmetrics-text; version=1.0.0")
    assert body.endswith("# EOF\n")
    checked = promtool(body)
    # 1 would be a scrape it cannot parse.
    assert checked.returncode in (0, 3), checked.stdout + checked.stderr
    counters = {name for name in re.findall(r"^# TYPE (\S+) counter$", body, re.M)
                if re.search(rf"^{name}_total[{{ ]", body, re.M)}
    assert "lambkin_function_invocations" in counters, body
    problems = sorted((checked.stdout + checked.stderr).splitlines())
    assert problems == sorted(f"{name}_total no help text" for name in counters), problems


def test_without_the_token_nothing_is_told(exercised):
    token_file = exercised.host.root / "state" / "metrics.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    for headers in ({}, {"Authorization": "Bearer wrong"},
                    {"Authorization": f"Basic {exercised.token}"}):
        status, response_headers, body = exercised.get(headers)
        assert status == 401, (headers, body)
        assert response_headers.get("WWW-Authenticate", "").startswith("Bearer")
        assert "lambkin_" not in body and "steady" not in body, body
    good = {"Authorization": f"Bearer {exercised.token}"}
    for browser in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        status, _, body = exercised.get({**good, **browser})
        assert status == 403, (browser, body)
        assert "lambkin_" not in body and "steady" not in body, body
    status, _, _ = exercised.get({**good, "Sec-Fetch-Site": "same-origin"})
    assert status == 200


def test_top_once_shows_the_functions_and_the_component(exercised, lambkin_bin):
    result = subprocess.run([str(lambkin_bin), "top", "--once", "--root", str(exercised.host.root)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    frame = result.stdout
    assert "\x1b" not in frame
    steady = next(line for line in frame.splitlines() if line.startswith("steady "))
    columns = steady.split()
    # FUNCTION INVOKES RATE/s ERRORS TIMEOUTS THROTTLED ...
    assert columns[1] == str(OK + FAILED + TIMED_OUT), frame
    assert columns[3:6] == [str(FAILED), str(TIMED_OUT), "0"], frame
    narrow = next(line for line in frame.splitlines() if line.startswith("narrow "))
    assert narrow.split()[5] == str(THROTTLED), frame
    component = next(line for line in frame.splitlines() if line.startswith(test_mqtt.NAME))
    assert "RUNNING" in component, frame
    assert "MQTT connected" in frame


def test_restarts_and_local_pubsub_are_counted(exercised, lambkin_bin):
    """Last on this host: it restarts the IoT Core component."""
    component = test_mqtt.NAME
    root = str(exercised.host.root)
    before = exercised.samples()
    for _ in range(2):
        published = subprocess.run([str(lambkin_bin), "pub", "metrics/local", '{"n": 1}',
                                    "--root", root], capture_output=True, text=True, timeout=60)
        assert published.returncode == 0, published.stderr
    restarted = subprocess.run([str(lambkin_bin), "restart", component, "--root", root],
                               capture_output=True, text=True, timeout=60)
    assert restarted.returncode == 0, restarted.stderr

    def after():
        samples = exercised.samples()
        running = sample_value(samples, "lambkin_component_state", component=component,
                               state="RUNNING") == 1
        return samples if running and sample_value(
            samples, "lambkin_component_restarts_total", component=component) == 1 else None

    samples = until(after, "the component running again after one restart",
                    exercised.host.output)
    assert sample_value(samples, "lambkin_component_errors_total", component=component) == 0
    assert (sample_value(samples, "lambkin_pubsub_messages_total")
            - sample_value(before, "lambkin_pubsub_messages_total")) == 2


def test_a_crashing_component_counts_its_errors_and_restarts(exercised, lambkin_bin):
    """A component that fails once `go` exists: three errors, two restarts between them, then
    BROKEN (counted as the third error's, not a fourth)."""
    name = "com.lambkin.conformance.Crasher"
    go = exercised.base / "crasher-go"
    recipes = exercised.base / "crasher-recipes"
    recipes.mkdir()
    (recipes / f"{name}-1.0.0.json").write_text(json.dumps({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": "1.0.0",
        "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {
            "Run": f"while [ ! -f '{go}' ]; do sleep 0.01; done; exit 1"}}],
    }))
    deployed = subprocess.run(
        [str(lambkin_bin), "deploy", "--root", str(exercised.host.root), "-r", str(recipes),
         "-m", f"{name}=1.0.0"], capture_output=True, text=True, timeout=120)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    go.touch()

    def broken():
        samples = exercised.samples()
        return samples if sample_value(samples, "lambkin_component_state", component=name,
                                       state="BROKEN") == 1 else None

    samples = until(broken, "the component BROKEN", exercised.host.output)
    assert sample_value(samples, "lambkin_component_errors_total", component=name) == 3
    assert sample_value(samples, "lambkin_component_restarts_total", component=name) == 2
    assert sample_value(samples, "lambkin_deployments_total", outcome="succeeded") == 2
    assert sample_value(samples, "lambkin_deployments_total", outcome="failed") == 0


def test_metrics_can_be_turned_off(lambkin_bin, device_dir):
    base = device_dir("metrics-off")
    root = base / "root"
    root.mkdir()
    (root / "config.toml").write_text("[metrics]\nenabled = false\n")
    log = open(base / "host.log", "wb")
    proc = subprocess.Popen([str(lambkin_bin), "run", "--root", str(root), "--listen",
                             "127.0.0.1:0"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    try:
        addr_file = root / "state" / "api.addr"
        until(lambda: addr_file.is_file() or proc.poll() is not None, "the host starting")
        assert proc.poll() is None, (base / "host.log").read_text()
        request = urllib.request.Request(f"http://{addr_file.read_text().strip()}/metrics")
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=30)
        assert answer.value.code == 404
        assert not (root / "state" / "metrics.token").exists()
    finally:
        proc.terminate()
        proc.wait(30)


class RawDevice(test_mqtt_trigger.Device):
    """The trigger tests' paho client, keeping each result's payload size by its id."""

    def __init__(self, port: int):
        self.sizes: dict[str, int] = {}
        super().__init__(port)

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.sizes[json.loads(message.payload)["id"]] = len(message.payload)
        super()._on_message(client, userdata, message)


@pytest.fixture(scope="module")
def triggered(lambkin_bin, device_dir):
    """A host on its own broker with the Lambda component of the trigger tests."""
    base = device_dir("metrics-trigger")
    broker_dir = base / "broker"
    broker_dir.mkdir()
    broker = test_mqtt.Broker(broker_dir)
    broker.start()
    device = RawDevice(broker.port)
    host = test_mqtt_trigger.Host(lambkin_bin, base, broker.port)
    host.start()
    try:
        recipes, artifacts = base / "recipes", base / "artifacts"
        recipes.mkdir()
        name, version = test_mqtt_trigger.NAME, test_mqtt_trigger.VERSION
        d = artifacts / name / version
        d.mkdir(parents=True)
        code = zip_files({"handler.py": test_mqtt_trigger.HERE / "handler.py"},
                         d / "lambda-artifact.zip")
        recipe = json.loads((test_mqtt_trigger.HERE / "recipe.json").read_text())
        recipe["Manifests"][0]["Artifacts"][0]["Digest"] = base64.b64encode(
            hashlib.sha256(code).digest()).decode()
        recipe["ComponentConfiguration"]["DefaultConfiguration"]["lambdaExecutionParameters"][
            "EnvironmentVariables"]["PYTHONPATH"] = PACKAGES
        (recipes / f"{name}-{version}.json").write_text(json.dumps(recipe))
        host.deploy("-r", str(recipes), "-a", str(artifacts), "-m", f"{name}={version}")
        yield device, Device(broker, host, base)
    finally:
        device.close()
        host.stop()
        broker.stop()


def test_trigger_traffic_counts_as_the_lambda_components(triggered):
    device, metrics = triggered
    component = test_mqtt_trigger.NAME
    # The first request is published again until the host's broker subscription answers it.
    device.request("warmup", {"value": 1}, metrics.host)

    def settled():
        samples = metrics.samples()
        received = sample_value(samples, "lambkin_mqtt_received_messages_total",
                                component=component)
        sent = sample_value(samples, "lambkin_mqtt_sent_messages_total", component=component)
        ran = sample_value(samples, "lambkin_function_invocations_total", function=component,
                           outcome="success")
        with device.lock:
            answered = len(device.results)
        return samples if received and received == sent == ran == answered else None

    before = until(settled, "every warm-up message answered and counted")
    events = [{"id": f"m{i}", "value": i} for i in range(5)]
    for event in events:
        device.publish("lambkin/trigger/hall/in", event)
    until(lambda: all(device.answers(e["id"]) for e in events), "the batch's results",
          metrics.host.output)
    after = metrics.samples()

    def delta(name):
        labels = {"component": component}
        return (sample_value(after, name, **labels) or 0) - (sample_value(before, name, **labels) or 0)

    assert delta("lambkin_mqtt_received_messages_total") == len(events)
    assert delta("lambkin_mqtt_received_bytes_total") == sum(
        len(json.dumps(e).encode()) for e in events)
    assert delta("lambkin_mqtt_sent_messages_total") == len(events)
    with device.lock:
        assert delta("lambkin_mqtt_sent_bytes_total") == sum(device.sizes[e["id"]] for e in events)
