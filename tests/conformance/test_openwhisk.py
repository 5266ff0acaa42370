"""OpenWhisk actions with the real `openwhisk` npm client (the JavaScript library OpenWhisk
users script with), unmodified, pointed at the host's `/api/v1` with the key the host made in
ROOT/state/openwhisk.auth. Each test drives the client through openwhisk/driver.js."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import OPENWHISK_KIND_LAYER, OPENWHISK_LAYERED_KIND
from support import unique_name, zip_files

HERE = Path(__file__).parent / "openwhisk"
DEADLINE = 30.0
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z (stdout|stderr): ")
# The host's instance limit for an action's function (openwhisk::MAX_INSTANCES).
MAX_INSTANCES = 8

NODE_GREETING = """
function main(params) {
  console.log('greeting', params.name);
  console.error('to stderr');
  return { greeting: `Hello, ${params.name}!`, place: params.place,
           activation: process.env.__OW_ACTIVATION_ID, action: process.env.__OW_ACTION_NAME,
           namespace: process.env.__OW_NAMESPACE, apiHost: process.env.__OW_API_HOST,
           hasKey: (process.env.__OW_API_KEY || '').includes(':'),
           deadline: Number(process.env.__OW_DEADLINE) };
}
"""

PYTHON_COUNT = """
def main(params):
    print("counting", params.get("n"))
    return {"n": params.get("n", 0) + params.get("step", 1), "greeting": params.get("greeting")}
"""


class Whisk:
    """The npm client as a function: steps in, results out."""

    def __init__(self, host, auth: str | None = None):
        self.host = host
        self.auth = auth or (host.root / "state" / "openwhisk.auth").read_text().strip()

    def run(self, *steps) -> list:
        node_modules = HERE / "node_modules"
        if not (node_modules / "openwhisk").is_dir():
            pytest.fail("tests/conformance/openwhisk/node_modules is missing: run scripts/install-test-deps")
        env = dict(os.environ, OW_APIHOST=self.host.endpoint, OW_AUTH=self.auth)
        result = subprocess.run(
            ["node", str(HERE / "driver.js")], input=json.dumps(list(steps)), env=env,
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def one(self, method: str, options: dict):
        (out,) = self.run([method, options])
        assert "ok" in out, f"{method} {options.get('name')}: {out['error']}"
        return out["ok"]

    def fails(self, method: str, options: dict) -> dict:
        (out,) = self.run([method, options])
        assert "error" in out, f"{method} succeeded: {out['ok']}"
        return out["error"]

    def create(self, name: str, code: str, kind: str, **extra) -> dict:
        return self.one("actions.create", {"name": name, "action": code, "kind": kind, **extra})

    def activation(self, activation_id: str) -> dict:
        """The record, once it exists (a non-blocking invoke's is written when it ends)."""
        deadline = time.monotonic() + DEADLINE
        while True:
            (out,) = self.run(["activations.get", {"name": activation_id}])
            if "ok" in out:
                return out["ok"]
            assert out["error"]["statusCode"] == 404, out
            assert time.monotonic() < deadline, f"no activation {activation_id}"
            time.sleep(0.2)


@pytest.fixture
def whisk(host) -> Whisk:
    return Whisk(host)


def response(record: dict) -> tuple:
    r = record["response"]
    return r["status"], r["statusCode"], r["success"]


def annotation(record: dict, key: str):
    return next((a["value"] for a in record["annotations"] if a["key"] == key), None)


def test_node_and_python_actions_with_default_parameters(whisk, host, lambda_client, lambkin_bin):
    node, py = unique_name("ow-node"), unique_name("ow-py")
    created = whisk.create(node, NODE_GREETING, "nodejs:20",
                           params={"name": "default", "place": "edge"})
    assert created["exec"]["kind"] == "nodejs:20" and created["version"] == "0.0.1"
    assert {"key": "place", "value": "edge"} in created["parameters"]
    whisk.create(py, PYTHON_COUNT, "python:3", params={"step": 10})

    # Blocking, the result only: the invoke's parameters over the defaults.
    result = whisk.one("actions.invoke", {"name": node, "blocking": True, "result": True,
                                          "params": {"name": "device"}})
    assert result["greeting"] == "Hello, device!" and result["place"] == "edge"
    assert result["action"].endswith(f"/{node}") and result["hasKey"]
    assert result["apiHost"] == host.endpoint
    assert result["deadline"] > time.time() * 1000
    assert whisk.one("actions.invoke", {"name": py, "blocking": True, "result": True,
                                        "params": {"n": 1}})["n"] == 11

    # Blocking, the whole record; then the same record, its logs and result by id.
    record = whisk.one("actions.invoke", {"name": node, "blocking": True, "params": {"name": "x"}})
    assert response(record) == ("success", 0, True)
    activation_id = record["activationId"]
    assert re.fullmatch(r"[0-9a-f]{32}", activation_id)
    assert record["response"]["result"]["activation"] == activation_id
    assert record["end"] - record["start"] == record["duration"] >= 0
    assert annotation(record, "kind") == "nodejs:20"
    assert annotation(record, "path").endswith(f"/{node}")
    assert annotation(record, "limits")["timeout"] == 60000
    assert isinstance(annotation(record, "waitTime"), int)
    assert all(LOG_LINE.match(line) for line in record["logs"]), record["logs"]
    assert any(line.endswith("stdout: greeting x") for line in record["logs"])
    assert any(line.endswith("stderr: to stderr") for line in record["logs"])
    assert whisk.one("activations.get", {"name": activation_id}) == record
    assert whisk.one("activations.logs", {"name": activation_id})["logs"] == record["logs"]
    assert whisk.one("activations.result", {"name": activation_id})["result"] == \
        record["response"]["result"]

    # Non-blocking: 202 and the id at once; the record once it has run.
    accepted = whisk.one("actions.invoke", {"name": py, "params": {"n": 5}})
    assert set(accepted) == {"activationId"}
    later = whisk.activation(accepted["activationId"])
    assert response(later) == ("success", 0, True) and later["response"]["result"]["n"] == 15
    assert any(line.endswith("stdout: counting 5") for line in later["logs"])
    listed = whisk.one("activations.list", {"name": py, "limit": 5})
    assert listed[0]["activationId"] == accepted["activationId"]
    assert {a["name"] for a in listed} == {py}
    assert whisk.one("activations.list", {"name": py, "count": True}) == {"activations": 2}

    # The same actions, seen through the Lambda API (action NAME is function ow-NAME) and
    # listed by `lambkin list`.
    config = lambda_client.get_function(FunctionName=f"ow-{node}")["Configuration"]
    assert config["Runtime"] == "nodejs20.x"
    assert config["Handler"] == "__openwhisk_adapter.handler"
    assert f"ow-{py}" in {f["FunctionName"] for f in lambda_client.list_functions()["Functions"]}
    lambda_result = lambda_client.invoke(FunctionName=f"ow-{node}",
                                         Payload=json.dumps({"value": {"name": "lambda"}}))
    assert json.loads(lambda_result["Payload"].read())["returned"]["greeting"] == "Hello, lambda!"
    listed = subprocess.run([str(lambkin_bin), "list", "--root", str(host.root)],
                            capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(node + " "))
    assert row.split()[1:3] == ["0.0.1", "openwhisk"] and f"Lambda ow-{node}" in row


def test_update_and_delete(whisk, lambda_client):
    name = unique_name("ow-upd")
    whisk.create(name, "function main() { return { v: 1 } }", "nodejs:20")
    assert whisk.one("actions.invoke", {"name": name, "blocking": True, "result": True}) == {"v": 1}
    updated = whisk.one("actions.update", {"name": name, "action": "def main(p):\n    return {'v': 2}\n",
                                           "kind": "python:3.11", "limits": {"timeout": 5000}})
    assert updated["version"] == "0.0.2" and updated["limits"]["timeout"] == 5000
    assert whisk.one("actions.invoke", {"name": name, "blocking": True, "result": True}) == {"v": 2}
    fetched = whisk.one("actions.get", {"name": name})
    assert fetched["exec"]["kind"] == "python:3.11" and "code" in fetched["exec"]
    assert "code" not in whisk.one("actions.get", {"name": name, "code": False})["exec"]
    assert name in [a["name"] for a in whisk.one("actions.list", {"limit": 200})]

    whisk.one("actions.delete", {"name": name})
    assert whisk.fails("actions.get", {"name": name})["statusCode"] == 404
    assert whisk.fails("actions.invoke", {"name": name, "blocking": True})["statusCode"] == 404
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function(FunctionName=f"ow-{name}")


def test_sequence_of_a_node_and_a_python_action(whisk):
    node, py, seq = unique_name("ow-s1"), unique_name("ow-s2"), unique_name("ow-seq")
    whisk.create(node, "function main(p) { return { n: p.n * 2, greeting: 'hi' } }", "nodejs:20")
    whisk.create(py, PYTHON_COUNT, "python:3")
    whisk.one("actions.create", {"name": seq, "sequence": [f"/_/{node}", f"/_/{py}"]})
    record = whisk.one("actions.invoke", {"name": seq, "blocking": True, "params": {"n": 4}})
    assert response(record) == ("success", 0, True)
    assert record["response"]["result"] == {"n": 9, "greeting": "hi"}
    assert annotation(record, "kind") == "sequence"
    first, second = (whisk.activation(i) for i in record["logs"])
    assert (first["name"], second["name"]) == (node, py)


def invoke_record(whisk: Whisk, name: str) -> dict:
    """A blocking invoke that did not succeed answers 502 with the record."""
    error = whisk.fails("actions.invoke", {"name": name, "blocking": True})
    assert error["statusCode"] == 502, error
    return error["body"]


def test_errors_as_openwhisk_reports_them(whisk):
    cases = {
        "throws": ("nodejs:20", "function main() { throw new Error('boom') }",
                   "action developer error", 2, "An error has occurred: Error: boom"),
        "errs": ("nodejs:20", "function main() { return { error: 'no such thing' } }",
                 "application error", 1, "no such thing"),
        "rejects": ("nodejs:20", "async function main() { return Promise.reject({ reason: 7 }) }",
                    "application error", 1, {"reason": 7}),
        "raises": ("python:3", "def main(p):\n    raise ValueError('bad value')\n",
                   "application error", 1, "bad value"),
        "slow": ("nodejs:20", "function main() { return new Promise(r => setTimeout(r, 10000)) }",
                 "action developer error", 2,
                 "The action exceeded its time limits of 1000 milliseconds."),
        "exits": ("nodejs:20", "function main() { process.exit(3) }",
                  "action developer error", 2,
                  "The action did not produce a valid response and exited unexpectedly."),
    }
    names = {}
    for case, (kind, code, *_rest) in cases.items():
        names[case] = unique_name(f"ow-{case}")
        whisk.create(names[case], code, kind, limits={"timeout": 1000})
    for case, (_kind, _code, status, code, error) in cases.items():
        record = invoke_record(whisk, names[case])
        assert response(record) == (status, code, False), case
        assert record["response"]["result"] == {"error": error}, case
        assert annotation(record, "timeout") is (case == "slow"), case
    # The instance that exited is replaced: the action runs again.
    again = invoke_record(whisk, names["errs"])
    assert again["response"]["statusCode"] == 1


def test_bad_input_is_refused_and_nothing_is_half_created(whisk, host, lambda_client):
    before_actions = {a["name"] for a in whisk.one("actions.list", {"limit": 200})}
    before_functions = {f["FunctionName"] for f in lambda_client.list_functions()["Functions"]}
    bad = unique_name("ow-bad")
    unknown = whisk.fails("actions.create", {"name": bad, "action": "x", "kind": "java:8"})
    assert unknown["statusCode"] == 400
    assert "The specified runtime 'java:8' is not supported" in unknown["body"]["error"]
    syntax = whisk.fails("actions.create", {"name": bad, "action": "function main( {", "kind": "nodejs:20"})
    assert syntax["statusCode"] == 400 and "SyntaxError" in syntax["body"]["error"]
    pysyntax = whisk.fails("actions.create", {"name": bad, "action": "def main(:\n", "kind": "python:3"})
    assert pysyntax["statusCode"] == 400 and "SyntaxError" in pysyntax["body"]["error"]
    no_main = whisk.fails("actions.create", {"name": bad, "action": "function other() {}", "kind": "nodejs:20"})
    assert no_main["statusCode"] == 400
    assert "Action entrypoint 'main' is not a function." in no_main["body"]["error"]
    missing = whisk.fails("actions.create", {"name": bad, "sequence": [f"/_/{unique_name('nothing')}"]})
    assert missing["statusCode"] == 400 and "Sequence component does not exist" in missing["body"]["error"]
    assert whisk.fails("actions.get", {"name": bad})["statusCode"] == 404

    # An update with broken code keeps the action as it was.
    good = unique_name("ow-good")
    whisk.create(good, "function main() { return { ok: true } }", "nodejs:20")
    whisk.fails("actions.update", {"name": good, "action": "function main( {", "kind": "nodejs:20"})
    assert whisk.one("actions.get", {"name": good})["version"] == "0.0.1"
    assert whisk.one("actions.invoke", {"name": good, "blocking": True, "result": True}) == {"ok": True}
    # Creating over an existing action without overwrite is a conflict.
    assert whisk.fails("actions.create", {"name": good, "action": "function main() {}",
                                          "kind": "nodejs:20"})["statusCode"] == 409

    after_actions = {a["name"] for a in whisk.one("actions.list", {"limit": 200})}
    after_functions = {f["FunctionName"] for f in lambda_client.list_functions()["Functions"]}
    assert after_actions - before_actions == {good}
    assert after_functions - before_functions == {f"ow-{good}"}, "no scratch function left behind"


def test_wrong_key_is_401_as_openwhisk_answers(host, whisk):
    uuid = whisk.auth.split(":")[0]
    wrong = Whisk(host, auth=f"{uuid}:{'x' * 64}")
    error = wrong.fails("actions.list", {})
    assert error["statusCode"] == 401
    assert error["body"]["error"] == "The supplied authentication is invalid"
    assert re.fullmatch(r"[0-9a-f]+", error["body"]["code"])
    # No credentials at all, and a browser's request with the right key.
    url = f"{host.endpoint}/api/v1/namespaces/_/actions"
    with pytest.raises(urllib.error.HTTPError) as none:
        urllib.request.urlopen(url, timeout=10)
    assert none.value.code == 401
    assert none.value.headers["WWW-Authenticate"] == 'Basic realm="whisk rest service"'
    import base64
    token = base64.b64encode(whisk.auth.encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}",
                                                   "Origin": "http://evil.example"})
    with pytest.raises(urllib.error.HTTPError) as browser:
        urllib.request.urlopen(request, timeout=10)
    assert browser.value.code == 403
    assert "access-control-allow-origin" not in {k.lower() for k in browser.value.headers}


def test_fifty_concurrent_blocking_invokes_within_the_instance_limit(whisk, host):
    name = unique_name("ow-burst")
    whisk.create(name, "function main(p) { return new Promise(r => setTimeout(() => r({ i: p.i }), 50)) }",
                 "nodejs:20")
    (results,) = whisk.run({"parallel": 50, "step": ["actions.invoke",
                                                      {"name": name, "blocking": True, "params": {"i": 1}}]})
    failures = [r for r in results if "ok" not in r or r["ok"]["response"]["statusCode"] != 0]
    assert not failures, failures[:3]
    assert len({r["ok"]["activationId"] for r in results}) == 50
    instances = host.function_processes(f"ow-{name}")
    assert 1 <= len(instances) <= MAX_INSTANCES, instances


WEB_ACTION = """
function main(params) {
  if (params.__ow_path === '/teapot') {
    return { statusCode: 418, headers: { 'x-kind': 'teapot' }, body: 'short and stout' };
  }
  if (params.fail) return { error: { statusCode: 400, body: 'refused: ' + params.fail } };
  return { statusCode: 200, headers: { 'content-type': 'application/json' },
           body: { method: params.__ow_method, path: params.__ow_path, who: params.who,
                   greeting: params.greeting, agent: params.__ow_headers['user-agent'] } };
}
"""


def fetch(url: str, data: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_web_action_over_plain_http(whisk, host):
    name, private = unique_name("ow-web"), unique_name("ow-private")
    whisk.create(name, WEB_ACTION, "nodejs:20", params={"greeting": "hi"},
                 annotations={"web-export": True})
    whisk.create(private, "function main() { return {} }", "nodejs:20")
    base = f"{host.endpoint}/api/v1/web/_/default"

    status, headers, body = fetch(f"{base}/{name}/some/path?who=plain", headers={"User-Agent": "probe"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"method": "get", "path": "/some/path", "who": "plain",
                                "greeting": "hi", "agent": "probe"}
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-openwhisk-activation-id"])
    status, _, body = fetch(f"{base}/{name}.json", data=json.dumps({"who": "posted"}).encode(),
                            headers={"Content-Type": "application/json"})
    assert status == 200 and json.loads(body)["body"]["method"] == "post"
    assert json.loads(body)["body"]["who"] == "posted"
    status, headers, body = fetch(f"{base}/{name}.http/teapot")
    assert (status, headers["x-kind"], body) == (418, "teapot", b"short and stout")
    status, _, body = fetch(f"{base}/{name}?fail=no")
    assert (status, body) == (400, b"refused: no")

    # Not a web action, or not there: 404. A web page's request: refused, no CORS.
    assert fetch(f"{base}/{private}")[0] == 404
    assert fetch(f"{base}/{unique_name('nothing')}")[0] == 404
    status, headers, _ = fetch(f"{base}/{name}", headers={"Origin": "http://evil.example"})
    assert status == 403 and not any(k.lower().startswith("access-control") for k in headers)
    assert fetch(f"{base}/{name}", headers={"Sec-Fetch-Site": "cross-site"})[0] == 403


def wait_for_activation_of(whisk: Whisk, action: str, predicate) -> dict:
    """The newest activation of `action` whose record satisfies `predicate`."""
    deadline = time.monotonic() + DEADLINE
    while True:
        for summary in whisk.one("activations.list", {"name": action, "limit": 10}):
            record = whisk.one("activations.get", {"name": summary["activationId"]})
            if predicate(record):
                return record
        assert time.monotonic() < deadline, f"no matching activation of {action}"
        time.sleep(0.2)


def test_trigger_and_rule_fired_through_the_api_and_by_a_pubsub_message(whisk, host, lambkin_bin):
    action, trigger, rule = unique_name("ow-echo"), unique_name("ow-trig"), unique_name("ow-rule")
    topic = f"openwhisk/{trigger}/reading"
    whisk.create(action, "function main(p) { return { got: p } }", "nodejs:20")
    created = whisk.one("triggers.create", {"name": trigger, "trigger": {
        "parameters": [{"key": "source", "value": "trigger-default"}],
        "annotations": [{"key": "lambkin-pubsub-topic", "value": f"openwhisk/{trigger}/+"}]}})
    assert created["name"] == trigger
    made = whisk.one("rules.create", {"name": rule, "trigger": trigger, "action": action})
    assert made["status"] == "active" and made["action"]["name"] == action

    # Through the API: the trigger's activation names the action's.
    fired = whisk.one("triggers.invoke", {"name": trigger, "params": {"value": 1}})
    trigger_record = whisk.activation(fired["activationId"])
    (outcome,) = [json.loads(line) for line in trigger_record["logs"]]
    assert outcome["success"] and outcome["action"].endswith(f"/{action}")
    action_record = whisk.activation(outcome["activationId"])
    assert action_record["response"]["result"]["got"] == {"source": "trigger-default", "value": 1}

    # Through local pub/sub: a message on a matching topic fires it.
    published = subprocess.run([str(lambkin_bin), "pub", topic, json.dumps({"celsius": 21.5}),
                                "--root", str(host.root)], capture_output=True, text=True, timeout=30)
    assert published.returncode == 0, published.stderr
    record = wait_for_activation_of(
        whisk, action, lambda r: r["response"]["result"]["got"].get("celsius") == 21.5)
    assert record["response"]["result"]["got"] == {"source": "trigger-default", "celsius": 21.5,
                                                   "topic": topic}

    # A disabled rule fires nothing: OpenWhisk answers 204, the client an empty result.
    whisk.one("rules.disable", {"name": rule})
    assert whisk.one("rules.get", {"name": rule})["status"] == "inactive"
    assert "activationId" not in (whisk.one("triggers.invoke", {"name": trigger}) or {})
    # A rule naming a missing action is refused; deleting works.
    missing = whisk.fails("rules.create", {"name": unique_name("ow-rule"), "trigger": trigger,
                                           "action": unique_name("nothing")})
    assert missing["statusCode"] == 400 and "does not exist" in missing["body"]["error"]
    whisk.one("rules.delete", {"name": rule})
    whisk.one("triggers.delete", {"name": trigger})
    assert whisk.fails("triggers.get", {"name": trigger})["statusCode"] == 404


ACTIONLOOP_SCRIPT = """#!/bin/sh
# ActionLoop: one JSON line per activation on stdin, the result as one line on fd 3.
count=0
while read -r line; do
  count=$((count + 1))
  echo "activation $count"
  echo "{\\"count\\": $count, \\"pid\\": $$}" >&3
done
"""

ACTIONLOOP_PYTHON = """#!/usr/bin/env python3
import json, os, sys
out = os.fdopen(3, "w")
seen = []
for line in sys.stdin:
    message = json.loads(line)
    seen.append(message["value"].get("word"))
    print("heard", seen[-1], file=sys.stderr, flush=True)
    out.write(json.dumps({"seen": seen, "activation": message["activation_id"],
                          "action": message["action_name"]}) + "\\n")
    out.flush()
"""


def test_native_actionloop_action_keeps_state_between_warm_activations(whisk):
    import base64
    import io
    import zipfile
    script, zipped = unique_name("ow-native"), unique_name("ow-native-zip")
    whisk.one("actions.create", {"name": script, "action": {
        "exec": {"kind": "blackbox", "image": "openwhisk/dockerskeleton", "code": ACTIONLOOP_SCRIPT}}})
    first = whisk.one("actions.invoke", {"name": script, "blocking": True})
    second = whisk.one("actions.invoke", {"name": script, "blocking": True})
    assert response(first) == response(second) == ("success", 0, True)
    assert first["response"]["result"]["count"] == 1
    assert second["response"]["result"] == {"count": 2, "pid": first["response"]["result"]["pid"]}
    assert [l.split(": ", 1)[1] for l in second["logs"]] == ["activation 2"]

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("exec")
        info.external_attr = 0o755 << 16
        z.writestr(info, ACTIONLOOP_PYTHON)
    whisk.one("actions.create", {"name": zipped, "action": {"exec": {
        "kind": "blackbox", "binary": True, "code": base64.b64encode(buf.getvalue()).decode()}}})
    whisk.one("actions.invoke", {"name": zipped, "blocking": True, "params": {"word": "one"}})
    record = whisk.one("actions.invoke", {"name": zipped, "blocking": True, "params": {"word": "two"}})
    result = record["response"]["result"]
    assert result["seen"] == ["one", "two"] and result["activation"] == record["activationId"]
    assert result["action"].endswith(f"/{zipped}")
    assert record["logs"][-1].endswith("stderr: heard two")

    # An image this host cannot run, or a script without #!, is refused.
    image = whisk.fails("actions.create", {"name": unique_name("ow-img"), "action": {
        "exec": {"kind": "blackbox", "image": "someone/runtime:1", "code": ACTIONLOOP_SCRIPT}}})
    assert image["statusCode"] == 400 and "runs no container images" in image["body"]["error"]


def test_trigger_bound_to_an_iot_core_topic(lambkin_bin, device_dir):
    """A broker (Mosquitto) and a host with [mqtt]: a paho message on the trigger's topic
    fires it, and its rule runs the action with the message as parameters."""
    import paho.mqtt.client as paho
    from test_mqtt import Broker, until
    from test_mqtt import Host as MqttHost

    base = device_dir("openwhisk-mqtt")
    (base / "broker").mkdir()
    broker = Broker(base / "broker")
    broker.start()
    host = MqttHost(lambkin_bin, base / "host", f'url = "mqtt://127.0.0.1:{broker.port}"\n')
    publisher = None
    try:
        host.start()
        host.endpoint = f"http://{(host.root / 'state' / 'api.addr').read_text().strip()}"
        whisk = Whisk(host)
        action, trigger, rule = "echo", "reading", "on-reading"
        whisk.create(action, "function main(p) { return { got: p } }", "nodejs:20")
        whisk.one("triggers.create", {"name": trigger, "trigger": {
            "annotations": [{"key": "lambkin-iotcore-topic", "value": "sensors/+/reading"}]}})
        whisk.one("rules.create", {"name": rule, "trigger": trigger, "action": action})

        publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="ow-conformance-pub")
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        found = []

        def fired():
            # Published again until it arrives: the host's subscription may not be made yet.
            publisher.publish("sensors/kitchen/reading", json.dumps({"celsius": 19}), qos=1)
            found[:] = [a for a in whisk.one("activations.list", {"name": action, "limit": 5})]
            return bool(found)

        until(fired, "an activation of the action fired by an MQTT message", host.output)
        record = whisk.activation(found[-1]["activationId"])
        assert record["response"]["result"]["got"] == {"celsius": 19,
                                                       "topic": "sensors/kitchen/reading"}
    finally:
        if publisher is not None:
            publisher.loop_stop()
            publisher.disconnect()
        host.stop()
        broker.stop()


def zipped(files: dict[str, str]) -> str:
    import base64
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return base64.b64encode(buf.getvalue()).decode()


def test_zip_actions_in_node_and_python(whisk):
    node, py = unique_name("ow-zip-node"), unique_name("ow-zip-py")
    whisk.one("actions.create", {"name": node, "action": {"exec": {
        "kind": "nodejs:20", "binary": True, "main": "greet", "code": zipped({
            "package.json": json.dumps({"name": "greeter", "main": "lib/greeter.js"}),
            "lib/greeter.js": "const word = require('./word');\n"
                              "exports.greet = (p) => ({ text: `${word} ${p.name}` });\n",
            "lib/word.js": "module.exports = 'hello';\n"})}}})
    assert whisk.one("actions.invoke", {"name": node, "blocking": True, "result": True,
                                        "params": {"name": "zip"}}) == {"text": "hello zip"}
    whisk.one("actions.create", {"name": py, "action": {"exec": {
        "kind": "python:3", "binary": True, "code": zipped({
            "__main__.py": "import helper\n\ndef main(p):\n    return {'twice': helper.twice(p['n'])}\n",
            "helper.py": "def twice(n):\n    return 2 * n\n"})}}})
    assert whisk.one("actions.invoke", {"name": py, "blocking": True, "result": True,
                                        "params": {"n": 21}}) == {"twice": 42}
    assert whisk.one("actions.get", {"name": py})["exec"]["binary"] is True

    # A zip without its entry file is refused with the reason.
    missing = whisk.fails("actions.create", {"name": unique_name("ow-zip-bad"), "action": {"exec": {
        "kind": "python:3", "binary": True, "code": zipped({"other.py": "x = 1\n"})}}})
    assert missing["statusCode"] == 400 and "__main__.py" in missing["body"]["error"]


def test_a_kind_backed_by_a_layer(whisk, lambda_client, tmp_path):
    """The session host's `nodejs:layered` kind names a layer: refused, naming it, until it is
    published (with boto3); then an action of the kind requires the library the layer
    carries, as the proposal's "nodejs:10" -> layer ARN."""
    name = unique_name("ow-layered")
    code = ("const greeter = require('greeter');\n"
            "function main(params) { return { text: greeter.greet(params.name) }; }\n")
    refused = whisk.fails("actions.create", {"name": name, "action": code,
                                             "kind": OPENWHISK_LAYERED_KIND})
    assert refused["statusCode"] == 400, refused
    assert f":layer:{OPENWHISK_KIND_LAYER}:1 does not exist" in refused["body"]["error"], refused
    assert whisk.fails("actions.get", {"name": name})["statusCode"] == 404

    layer = zip_files(
        {"nodejs/node_modules/greeter/index.js":
             b"exports.greet = (name) => `hello ${name}, from the layer`;\n"},
        tmp_path / "greeter.zip",
    )
    published = lambda_client.publish_layer_version(
        LayerName=OPENWHISK_KIND_LAYER, Content={"ZipFile": layer},
        CompatibleRuntimes=["nodejs20.x"])
    assert published["Version"] == 1

    created = whisk.create(name, code, OPENWHISK_LAYERED_KIND)
    assert created["exec"]["kind"] == OPENWHISK_LAYERED_KIND
    result = whisk.one("actions.invoke", {"name": name, "blocking": True, "result": True,
                                          "params": {"name": "device"}})
    assert result == {"text": "hello device, from the layer"}
    layers = lambda_client.get_function(FunctionName=f"ow-{name}")["Configuration"]["Layers"]
    assert [l["Arn"] for l in layers] == [published["LayerVersionArn"]]
