"""Invoke behaviour, for every fixture function (see tests/functions/README.md)."""

from __future__ import annotations

import json
import re
import time

import pytest
from botocore.exceptions import ClientError

from support import client_context, invoke, unique_name, wait_for

MIB = 1024 * 1024
ACCEPTED_PAYLOAD = int(5.9 * MIB)
REJECTED_PAYLOAD = int(6.1 * MIB)
REQUEST_ID = r"[0-9A-Za-z-]+"


def sized_echo_event(size: int) -> bytes:
    """A compact JSON echo event of exactly `size` bytes."""
    head, tail = b'{"action":"echo","data":"', b'"}'
    body = head + b"x" * (size - len(head) - len(tail)) + tail
    assert len(body) == size
    return body


def assert_ok(r, what: str = "invocation") -> None:
    assert r.status == 200, f"{what}: status {r.status}, payload {r.payload[:500]!r}"
    assert r.function_error is None, f"{what}: FunctionError {r.function_error}: {r.payload[:1000]!r}"


# ---------------------------------------------------------------- success ---


def test_echo(lambda_client, deployed):
    event = {"action": "echo", "n": 1, "s": "héllo ☃", "nested": {"list": [1, 2.5, None, True]}}
    r = invoke(lambda_client, deployed.name, event)
    assert_ok(r)
    assert r.json() == event


def test_echo_without_action(lambda_client, deployed):
    event = {"just": "data", "n": [1, 2, 3]}
    r = invoke(lambda_client, deployed.name, event)
    assert_ok(r)
    assert r.json() == event


# ------------------------------------------------------------ handled error ---


def test_handled_error(lambda_client, deployed):
    r = invoke(lambda_client, deployed.name, {"action": "error", "message": "boom"})
    assert r.status == 200
    assert r.function_error == "Unhandled", r.payload
    doc = r.json()
    spec = deployed.spec
    missing = spec.error_keys - doc.keys()
    assert not missing, f"error document lacks {sorted(missing)}: {doc}"
    assert doc["errorType"] == "FixtureError"
    assert doc["errorMessage"] == "boom"
    if spec.trace_key:
        trace = doc[spec.trace_key]
        assert isinstance(trace, list) and all(isinstance(line, str) for line in trace), doc
    if "requestId" in spec.error_keys:
        assert doc["requestId"] == r.request_id, (
            "the runtime's request id should be the Invoke response's x-amzn-RequestId"
        )


# ------------------------------------------------------------------ timeout ---


def test_timeout_then_recovers(lambda_client, functions, fixture_name):
    fn = functions.create(fixture_name, prefix=f"conf-timeout-{fixture_name}", timeout=1)
    # Warm an instance first, so that the time measured below is the timeout's
    # alone, not a cold start's.
    assert_ok(invoke(lambda_client, fn.name, {"action": "echo"}), "warm-up invocation")
    started = time.monotonic()
    # A sleep far longer than any slow machine needs: an answer before it ends is the timeout's.
    r = invoke(lambda_client, fn.name, {"action": "sleep", "seconds": 300})
    elapsed = time.monotonic() - started
    assert r.status == 200
    assert r.function_error == "Unhandled", r.payload
    doc = r.json()
    assert doc.get("errorType") == "Sandbox.Timedout", doc
    m = re.fullmatch(rf"RequestId: ({REQUEST_ID}) Error: Task timed out after 1\.00 seconds", doc.get("errorMessage", ""))
    assert m, doc
    assert m.group(1) == r.request_id, "errorMessage's RequestId should be the invocation's"
    assert set(doc) == {"errorType", "errorMessage"}, doc
    assert 1.0 <= elapsed < 300, f"timed-out invocation took {elapsed:.2f}s"

    after = invoke(lambda_client, fn.name, {"action": "echo", "after": "timeout"})
    assert_ok(after, "invocation after a timeout")
    assert after.json() == {"action": "echo", "after": "timeout"}


def test_sleep_within_timeout(lambda_client, deployed):
    r = invoke(lambda_client, deployed.name, {"action": "sleep", "seconds": 0.2})
    assert_ok(r)
    assert r.json() == {"slept": 0.2}


# -------------------------------------------------------------------- crash ---


def test_crash_then_recovers(lambda_client, functions, fixture_name):
    fn = functions.create(fixture_name, prefix=f"conf-crash-{fixture_name}")
    warm = invoke(lambda_client, fn.name, {"action": "echo", "before": "crash"})
    assert_ok(warm, "invocation before the crash")

    r = invoke(lambda_client, fn.name, {"action": "crash", "code": 42})
    assert r.status == 200
    assert r.function_error == "Unhandled", r.payload
    doc = r.json()
    assert doc.get("errorType") == "Runtime.ExitError", doc
    m = re.fullmatch(
        rf"RequestId: ({REQUEST_ID}) Error: Runtime exited with error: exit status 42",
        doc.get("errorMessage", ""),
    )
    assert m, doc
    assert m.group(1) == r.request_id, "errorMessage's RequestId should be the invocation's"

    after = invoke(lambda_client, fn.name, {"action": "echo", "after": "crash"})
    assert_ok(after, "invocation after a crash")
    assert after.json() == {"action": "echo", "after": "crash"}


# ----------------------------------------------------------- client context ---


def test_client_context(lambda_client, deployed):
    custom = {"tenant": "t-42", "trace": "abc-123", "unicode": "ü"}
    r = invoke(lambda_client, deployed.name, {"action": "context"}, ClientContext=client_context(custom))
    assert_ok(r)
    doc = r.json()
    assert isinstance(doc.get("client_context"), dict), doc
    assert doc["client_context"].get("custom") == custom, doc
    assert doc["function_name"] == deployed.name
    assert 0 < doc["remaining_ms"] <= deployed.timeout * 1000, doc
    assert doc["env"].get("FIXTURE_COLOR") == "shared", doc


# ----------------------------------------------------------------- log tail ---


def test_log_tail(lambda_client, deployed, host):
    message = f"conformance-log-line {unique_name(deployed.spec.name)}"
    r = invoke(lambda_client, deployed.name, {"action": "log", "message": message}, LogType="Tail")
    assert_ok(r)
    assert r.json() == {"logged": True}
    log = r.log
    assert log is not None, "LogType=Tail answered without LogResult"
    rid = re.escape(r.request_id)
    assert re.search(rf"^START RequestId: {rid}\b", log, re.M), log
    assert message in log, log
    assert re.search(rf"^END RequestId: {rid}\b", log, re.M), log
    assert re.search(rf"^REPORT RequestId: {rid}\s+Duration: [0-9.]+ ms", log, re.M), log
    assert log.index("START RequestId") < log.index(message) < log.index("END RequestId") < log.index("REPORT RequestId")

    # The same lines reach the function's log file.
    wait_for(
        lambda: host.log_path(deployed.name).is_file() and message in host.log_path(deployed.name).read_text(errors="replace"),
        10,
        f"{message!r} in {host.log_path(deployed.name)}",
    )


def test_log_tail_is_last_4kb(lambda_client, deployed):
    message = "L" * 3000 + " " + "M" * 3000
    r = invoke(lambda_client, deployed.name, {"action": "log", "message": message}, LogType="Tail")
    assert_ok(r)
    assert r.log is not None
    assert len(r.log.encode()) <= 4096, f"LogResult decodes to {len(r.log.encode())} bytes"
    assert re.search(rf"REPORT RequestId: {re.escape(r.request_id)}", r.log), r.log[-600:]
    assert "M" * 1000 in r.log


def test_no_log_without_tail(lambda_client, deployed):
    r = invoke(lambda_client, deployed.name, {"action": "log", "message": "quiet"})
    assert_ok(r)
    assert r.log is None


# ----------------------------------------------------------------- payloads ---


def test_payload_5_9_mib_both_ways(lambda_client, deployed):
    body = sized_echo_event(ACCEPTED_PAYLOAD)
    r = invoke(lambda_client, deployed.name, payload=body)
    assert_ok(r)
    assert len(r.payload) >= ACCEPTED_PAYLOAD
    assert json.loads(r.payload) == json.loads(body)


def test_payload_6_1_mib_rejected(lambda_client, deployed):
    body = sized_echo_event(REJECTED_PAYLOAD)
    with pytest.raises(ClientError) as info:
        lambda_client.invoke(FunctionName=deployed.name, Payload=body)
    err = info.value.response
    assert err["Error"]["Code"] == "RequestTooLargeException", err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 413, err
    # The host is still serving that function.
    r = invoke(lambda_client, deployed.name, {"action": "echo", "after": "too-large"})
    assert_ok(r)


# ------------------------------------------------------- invocation types ---


def test_event_invocation(lambda_client, deployed, host):
    message = f"conformance-event {unique_name(deployed.spec.name)}"
    r = invoke(lambda_client, deployed.name, {"action": "log", "message": message}, InvocationType="Event")
    assert r.status == 202, r.raw
    assert r.payload == b""
    path = host.log_path(deployed.name)
    wait_for(
        lambda: path.is_file() and message in path.read_text(errors="replace"),
        20,
        f"the Event invocation's line {message!r} in {path}",
    )


def test_dry_run(lambda_client, functions, fixture_name, host):
    fn = functions.create(fixture_name, prefix=f"conf-dryrun-{fixture_name}")
    assert_ok(invoke(lambda_client, fn.name, {"action": "echo"}), "warm-up invocation")
    runtimes = sorted(host.function_processes(fn.name))
    assert runtimes, "the warm instance's processes"
    r = invoke(lambda_client, fn.name, {"action": "crash", "code": 3}, InvocationType="DryRun")
    assert r.status == 204, r.raw
    assert r.payload == b""
    # DryRun ran nothing: the crash would have ended the warm instance, whose processes
    # answer the next invocation unchanged, and its exit would be in the function's log.
    after = invoke(lambda_client, fn.name, {"action": "echo"})
    assert_ok(after)
    assert sorted(host.function_processes(fn.name)) == runtimes
    path = host.log_path(fn.name)
    log = path.read_text(errors="replace") if path.is_file() else ""
    assert "exit status 3" not in log, log


def test_unknown_function(lambda_client):
    with pytest.raises(ClientError) as info:
        lambda_client.invoke(FunctionName="conf-no-such-function", Payload=b"{}")
    err = info.value.response
    assert err["Error"]["Code"] == "ResourceNotFoundException", err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 404, err
