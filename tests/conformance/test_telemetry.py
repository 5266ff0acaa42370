"""The Telemetry API with an extension we did not write the client of: one built on the
`lambda-extension` crate (tests/functions/telemetry-extension), in a layer, beside a Python
function invoked through boto3. It gets every INVOKE, the SHUTDOWN when its instance is reaped
or the host stops, and `platform.start`, `platform.runtimeDone` and `platform.report` records whose request ids and
durations are those of the function's REPORT lines; the function's own lines arrive as
`function` records."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import support
from support import ROLE, invoke, unique_name, wait_active, wait_for, zip_files

HANDLER = b"""
def handler(event, context):
    print("telemetry says %s" % context.aws_request_id, flush=True)
    return "ok"
"""

REPORT = re.compile(r"REPORT RequestId: (\S+)\tDuration: ([0-9.]+) ms\tBilled Duration: (\d+) ms")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def test_a_lambda_extension_crate_subscriber_sees_what_the_report_lines_say(
    lambda_client, host, fixture_zip, device_dir, tmp_path
):
    shared = device_dir("telemetry")
    shared.chmod(0o777)
    log = shared / "extension.log"
    layer = lambda_client.publish_layer_version(
        LayerName=unique_name("conf-telemetry"), Content={"ZipFile": fixture_zip("telemetry-extension")}
    )
    name = unique_name("conf-telemetry")
    lambda_client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": zip_files({"app.py": HANDLER}, tmp_path / "app.zip")},
        Layers=[layer["LayerVersionArn"]],
        Timeout=10,
        Environment={"Variables": {"EXTENSION_LOG": str(log), "TELEMETRY_PORT": str(free_port())}},
    )
    wait_active(lambda_client, name)
    ids = []
    for _ in range(3):
        result = invoke(lambda_client, name)
        assert result.function_error is None, result.payload
        assert result.json() == "ok"
        ids.append(result.request_id)

    def reports() -> dict[str, tuple[str, str]]:
        found = {}
        for line in lines(host.log_path(name)):
            m = REPORT.search(line)
            if m:
                found[m.group(1)] = (m.group(2), m.group(3))
        return found

    def seen():
        got = lines(log)
        done = all(any(l.startswith(f"report {i} ") for l in got) for i in ids)
        return got if done and all(i in reports() for i in ids) else None

    got = wait_for(seen, 15, "the extension's report records")
    for request_id in ids:
        assert f"INVOKE {request_id}" in got, got
        assert f"start {request_id}" in got, got
        assert f"runtimeDone {request_id} Success" in got, got
        duration, billed = reports()[request_id]
        report = next(l for l in got if l.startswith(f"report {request_id} "))
        assert report.split()[2:4] == [duration, billed], (report, duration, billed)
        assert f"function telemetry says {request_id}" in got, got

    # Deleting the function reaps its instance: the extension gets SHUTDOWN.
    lambda_client.delete_function(FunctionName=name)
    wait_for(lambda: "SHUTDOWN spindown" in lines(log), 15, "SHUTDOWN")
    lambda_client.delete_layer_version(LayerName=layer["LayerArn"].rsplit(":", 1)[1], VersionNumber=1)


def test_the_extension_gets_shutdown_when_the_host_stops(own_host, fixture_zip, device_dir, tmp_path):
    client = support.lambda_client(own_host.root, own_host.endpoint, retries={"total_max_attempts": 1})
    shared = device_dir("telemetry-stop")
    shared.chmod(0o777)
    log = shared / "extension.log"
    layer = client.publish_layer_version(
        LayerName="telemetry", Content={"ZipFile": fixture_zip("telemetry-extension")}
    )
    client.create_function(
        FunctionName="observed",
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": zip_files({"app.py": HANDLER}, tmp_path / "app.zip")},
        Layers=[layer["LayerVersionArn"]],
        Environment={"Variables": {"EXTENSION_LOG": str(log), "TELEMETRY_PORT": str(free_port())}},
    )
    wait_active(client, "observed")
    result = invoke(client, "observed")
    assert result.function_error is None, result.payload
    wait_for(lambda: f"INVOKE {result.request_id}" in lines(log), 15, "the INVOKE")
    # The instance is idle, not reaped: the host's stop is what ends it.
    assert not any(l.startswith("SHUTDOWN") for l in lines(log)), lines(log)
    own_host.stop()
    assert [l for l in lines(log) if l.startswith("SHUTDOWN")] == ["SHUTDOWN spindown"], lines(log)
