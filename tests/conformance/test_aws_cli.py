"""The real AWS CLI (v1, from .venv) against the host, as a subprocess."""

from __future__ import annotations

import base64
import json

from support import ROLE, client_context, unique_name


def test_cli_full_flow(aws_cli, fixture_zip, tmp_path):
    name = unique_name("conf-cli")
    zip_path = tmp_path / "function.zip"
    zip_path.write_bytes(fixture_zip("python-handler"))
    event_path = tmp_path / "event.json"
    out_path = tmp_path / "out.json"

    created = aws_cli.json(
        "lambda", "create-function",
        "--function-name", name,
        "--runtime", "python3.11",
        "--role", ROLE,
        "--handler", "app.handler",
        "--zip-file", f"fileb://{zip_path}",
        "--timeout", "5",
        "--memory-size", "128",
        "--environment", "Variables={FIXTURE_COLOR=cli}",
    )  # fmt: skip
    try:
        assert created["FunctionName"] == name
        assert created["Runtime"] == "python3.11"

        got = aws_cli.json("lambda", "get-function", "--function-name", name)
        assert got["Configuration"]["FunctionName"] == name
        assert got["Configuration"]["Environment"]["Variables"] == {"FIXTURE_COLOR": "cli"}

        listed = aws_cli.json("lambda", "list-functions")
        assert name in [f["FunctionName"] for f in listed["Functions"]]

        # Synchronous invoke with a log tail.
        event = {"action": "log", "message": "hello from the aws cli"}
        event_path.write_text(json.dumps(event))
        meta = aws_cli.json(
            "lambda", "invoke",
            "--function-name", name,
            "--payload", f"fileb://{event_path}",
            "--log-type", "Tail",
            str(out_path),
        )  # fmt: skip
        assert meta["StatusCode"] == 200, meta
        assert "FunctionError" not in meta, meta
        assert json.loads(out_path.read_text()) == {"logged": True}
        log = base64.b64decode(meta["LogResult"]).decode()
        assert "hello from the aws cli" in log
        assert "START RequestId:" in log and "REPORT RequestId:" in log

        # Client context reaches the handler.
        event_path.write_text(json.dumps({"action": "context"}))
        meta = aws_cli.json(
            "lambda", "invoke",
            "--function-name", name,
            "--payload", f"fileb://{event_path}",
            "--client-context", client_context({"from": "cli"}),
            str(out_path),
        )  # fmt: skip
        assert meta["StatusCode"] == 200, meta
        doc = json.loads(out_path.read_text())
        assert doc["client_context"]["custom"] == {"from": "cli"}, doc
        assert doc["env"]["FIXTURE_COLOR"] == "cli", doc
        assert doc["function_name"] == name

        # Configuration and code updates.
        updated = aws_cli.json(
            "lambda", "update-function-configuration",
            "--function-name", name,
            "--timeout", "3",
            "--environment", "Variables={FIXTURE_COLOR=cli2}",
        )  # fmt: skip
        assert updated["Timeout"] == 3
        updated = aws_cli.json(
            "lambda", "update-function-code",
            "--function-name", name,
            "--zip-file", f"fileb://{zip_path}",
        )  # fmt: skip
        assert updated["FunctionName"] == name
        meta = aws_cli.json(
            "lambda", "invoke",
            "--function-name", name,
            "--payload", f"fileb://{event_path}",
            str(out_path),
        )  # fmt: skip
        assert meta["StatusCode"] == 200, meta
        doc = json.loads(out_path.read_text())
        assert doc["env"]["FIXTURE_COLOR"] == "cli2", doc
        assert doc["remaining_ms"] <= 3000, doc

        # Event and DryRun invocation types.
        meta = aws_cli.json(
            "lambda", "invoke",
            "--function-name", name,
            "--invocation-type", "Event",
            "--payload", f"fileb://{event_path}",
            str(out_path),
        )  # fmt: skip
        assert meta["StatusCode"] == 202, meta
        meta = aws_cli.json(
            "lambda", "invoke",
            "--function-name", name,
            "--invocation-type", "DryRun",
            "--payload", f"fileb://{event_path}",
            str(out_path),
        )  # fmt: skip
        assert meta["StatusCode"] == 204, meta
    finally:
        aws_cli.run("lambda", "delete-function", "--function-name", name)

    gone = aws_cli.run("lambda", "get-function", "--function-name", name, check=False)
    assert gone.returncode != 0
    assert "ResourceNotFoundException" in gone.stderr, gone.stderr


def test_cli_invoke(aws_cli, deployed, tmp_path):
    event_path = tmp_path / "event.json"
    out_path = tmp_path / "out.json"

    event = {"action": "echo", "via": "aws-cli", "n": [1, 2, 3]}
    event_path.write_text(json.dumps(event))
    meta = aws_cli.json(
        "lambda", "invoke",
        "--function-name", deployed.name,
        "--payload", f"fileb://{event_path}",
        str(out_path),
    )  # fmt: skip
    assert meta["StatusCode"] == 200, meta
    assert "FunctionError" not in meta, meta
    assert json.loads(out_path.read_text()) == event

    event_path.write_text(json.dumps({"action": "error", "message": "boom via cli"}))
    meta = aws_cli.json(
        "lambda", "invoke",
        "--function-name", deployed.name,
        "--payload", f"fileb://{event_path}",
        str(out_path),
    )  # fmt: skip
    assert meta["StatusCode"] == 200, meta
    assert meta.get("FunctionError") == "Unhandled", meta
    doc = json.loads(out_path.read_text())
    assert doc["errorType"] == "FixtureError" and doc["errorMessage"] == "boom via cli", doc


def test_cli_unknown_function(aws_cli, tmp_path):
    proc = aws_cli.run(
        "lambda", "invoke",
        "--function-name", "conf-cli-no-such-function",
        str(tmp_path / "out.json"),
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "ResourceNotFoundException" in proc.stderr, proc.stderr
