"""Response streaming: boto3's `invoke_with_response_stream` on a Rust `lambda_runtime`
function that streams its answer (`lambda_runtime::streaming`, `tests/functions/rust-fixture`'s
`bootstrap-stream`), and on functions that do not stream.

The function streams through the Runtime API with `Lambda-Runtime-Function-Response-Mode:
streaming`; boto3 reads `PayloadChunk` events and the final `InvokeComplete`. As in AWS, the
bytes are passed through unchanged, the `lambda_runtime` HTTP prelude included (its JSON head
and eight NUL bytes)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from support import invoke, until

DELIMITER = b"\0" * 8
MIB = 1024 * 1024


@pytest.fixture
def streamer(functions, fixture_zip):
    """A streaming function of its own (its tests break or time it out)."""
    return lambda timeout=20: functions.create(
        "rust-fixture", prefix="conf-stream", zip_bytes=fixture_zip("rust-stream"), timeout=timeout
    )


@pytest.fixture
def gate():
    """The directory the function waits in for `ack-i`: in /tmp, open to every user (the
    function may run as ggc_user, who cannot pass through pytest's own temporary directory)."""
    d = Path(tempfile.mkdtemp(prefix="lambkin-stream-gate-"))
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def body_after_prelude(data: bytes) -> bytes:
    """What follows the HTTP prelude `lambda_runtime` writes first."""
    head, sep, rest = data.partition(DELIMITER)
    assert sep, f"no prelude delimiter in {data[:200]!r}"
    json.loads(head)
    return rest


def stream(client, name: str, event: dict, on_data=lambda data: None, **kwargs):
    """Invokes with a response stream; returns (the bytes, InvokeComplete, the response).
    `on_data` sees the bytes received so far after each PayloadChunk."""
    resp = client.invoke_with_response_stream(FunctionName=name, Payload=json.dumps(event), **kwargs)
    assert resp["StatusCode"] == 200
    data = b""
    complete = None
    for ev in resp["EventStream"]:
        if "PayloadChunk" in ev:
            assert complete is None, "a PayloadChunk after InvokeComplete"
            data += ev["PayloadChunk"]["Payload"]
            on_data(data)
        elif "InvokeComplete" in ev:
            complete = ev["InvokeComplete"]
    assert complete is not None, "the stream ended without InvokeComplete"
    return data, complete, resp


def test_chunks_arrive_while_the_function_writes(lambda_client, streamer, gate):
    """The function writes chunk i+1 only once the client has received chunk i (it waits for
    `ack-i`, which the test creates when chunk i arrives): the answer flows, never gathered."""
    fn = streamer()
    chunks = [f"chunk-{i};" for i in range(4)]
    arrivals: list[float] = []

    def on_data(data: bytes) -> None:
        body = data.partition(DELIMITER)[2].decode()
        while len(arrivals) < len(chunks) and chunks[len(arrivals)] in body:
            arrivals.append(time.monotonic())
            (gate / f"ack-{len(arrivals) - 1}").touch()

    data, complete, resp = stream(
        lambda_client, fn.name, {"action": "stream", "chunks": chunks, "gate": str(gate)}, on_data,
    )
    assert complete.get("ErrorCode") is None, complete
    assert body_after_prelude(data) == "".join(chunks).encode()
    assert len(arrivals) == len(chunks)
    assert arrivals == sorted(arrivals)
    assert resp["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/vnd.amazon.eventstream"
    assert resp["ExecutedVersion"] == "$LATEST"


def test_mid_stream_error_arrives_in_invoke_complete(lambda_client, streamer):
    fn = streamer()
    data, complete, _ = stream(
        lambda_client, fn.name, {"action": "stream", "chunks": ["a;", "b;"], "error": "sensor failed"}
    )
    assert body_after_prelude(data) == b"a;b;"
    assert complete["ErrorCode"] == "Runtime.StreamError"
    assert complete["ErrorDetails"] == "sensor failed"


def test_log_tail_in_invoke_complete(lambda_client, streamer):
    fn = streamer()
    data, complete, resp = stream(
        lambda_client, fn.name, {"action": "stream", "chunks": ["x"]}, LogType="Tail"
    )
    log = base64.b64decode(complete["LogResult"]).decode()
    request_id = resp["ResponseMetadata"]["RequestId"]
    assert f"START RequestId: {request_id}" in log
    assert f"END RequestId: {request_id}" in log
    assert f"REPORT RequestId: {request_id}" in log


def test_a_function_that_does_not_stream_answers_in_one_chunk(lambda_client, streamer):
    fn = streamer()
    chunks = []
    event = {"action": "echo", "n": 1}
    resp = lambda_client.invoke_with_response_stream(FunctionName=fn.name, Payload=json.dumps(event))
    complete = None
    for ev in resp["EventStream"]:
        if "PayloadChunk" in ev:
            chunks.append(ev["PayloadChunk"]["Payload"])
        elif "InvokeComplete" in ev:
            complete = ev["InvokeComplete"]
    assert [json.loads(c) for c in chunks] == [event]
    assert complete is not None and complete.get("ErrorCode") is None


def test_every_runtime_answers_through_a_stream(lambda_client, deployed):
    event = {"action": "echo", "who": deployed.spec.name}
    data, complete, _ = stream(lambda_client, deployed.name, event)
    assert json.loads(data) == event
    assert complete.get("ErrorCode") is None
    data, complete, _ = stream(lambda_client, deployed.name, {"action": "error", "message": "no"})
    assert data == b""
    assert complete["ErrorCode"] == "FixtureError"
    assert complete["ErrorDetails"] == "no"


def test_over_the_limit(lambda_client, streamer):
    fn = streamer()
    data, complete, _ = stream(
        lambda_client, fn.name, {"action": "stream", "bytes": 21 * MIB, "chunk_bytes": 256 * 1024}
    )
    assert complete["ErrorCode"] == "Function.ResponseSizeTooLarge", complete
    assert len(data) <= 20 * MIB
    assert invoke(lambda_client, fn.name, {"action": "pid"}).function_error is None


def test_timeout_mid_stream(lambda_client, streamer):
    fn = streamer(timeout=2)
    data, complete, _ = stream(
        lambda_client, fn.name, {"action": "stream", "chunks": ["first;"], "then_sleep": 30}
    )
    assert body_after_prelude(data) == b"first;"
    assert complete["ErrorCode"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in complete["ErrorDetails"]
    assert invoke(lambda_client, fn.name, {"action": "pid"}).function_error is None


def test_client_disconnect_frees_the_instance(lambda_client, streamer, gate, host):
    """A client that goes away mid-stream does not stop the function: its answer is read and
    dropped, and the same instance serves the next invocation."""
    fn = streamer()
    pid = invoke(lambda_client, fn.name, {"action": "pid"}).json()["pid"]
    chunks = [f"c{i};" for i in range(3)]
    resp = lambda_client.invoke_with_response_stream(
        FunctionName=fn.name,
        Payload=json.dumps({"action": "stream", "chunks": chunks, "gate": str(gate)}),
    )
    request_id = resp["ResponseMetadata"]["RequestId"]
    events = iter(resp["EventStream"])
    data = b""
    while b"c0;" not in data:
        data += next(events)["PayloadChunk"]["Payload"]
    resp["EventStream"].close()
    for i in range(len(chunks)):
        (gate / f"ack-{i}").touch()
    log = host.log_path(fn.name)
    until(lambda: f"END RequestId: {request_id}" in log.read_text(errors="replace"),
          "the disconnected invocation's END line", lambda: log.read_text(errors="replace")[-2000:])
    assert invoke(lambda_client, fn.name, {"action": "pid"}).json()["pid"] == pid
