"""The AWS Lambda Web Adapter (crates.io `lambda_web_adapter`, its `lambda-adapter` binary) as a
layer, packaged the way its documentation packages it: the binary at `extensions/lambda-adapter`
and an exec wrapper at `bootstrap`, with `AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap` and the
function's handler naming the web app's start script. The web app is a plain Python
`http.server`; boto3 invokes the function with API Gateway-shaped events (REST API and HTTP API)
and gets the app's answers back in API Gateway's response shape."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from support import REPO, ROLE, invoke, unique_name, wait_active, zip_files

ADAPTER = REPO / ".venv" / "tools" / "bin" / "lambda-adapter"

# The exec wrapper the adapter's documentation describes: the runtime's command is replaced by
# the function's handler, the web app's start script.
BOOTSTRAP = b"""#!/bin/bash
exec -- "${LAMBDA_TASK_ROOT}/${_HANDLER}"
"""

RUN_SH = b"""#!/bin/sh
exec python3 "$LAMBDA_TASK_ROOT/app.py"
"""

APP = b"""
import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit, parse_qs

class App(BaseHTTPRequestHandler):
    def answer(self):
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if url.path == "/missing":
            self.send_response(404)
            self.send_header("content-type", "text/plain")
            self.end_headers()
            self.wfile.write(b"no such page")
            return
        out = json.dumps({
            "method": self.command,
            "path": url.path,
            "query": parse_qs(url.query),
            "body": body,
            "header": self.headers.get("x-test"),
            "pid": os.getpid(),
        }).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("content-type", "application/json")
        self.send_header("x-app", "http.server")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = do_PUT = answer
    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(os.environ["AWS_LWA_PORT"])), App).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rest_api_event(method: str, path: str, query: dict[str, str], body: str | None) -> dict:
    """An API Gateway REST API (payload 1.0) proxy event."""
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {"Host": "api.example.com", "X-Test": "rest", "Content-Type": "application/json"},
        "multiValueHeaders": {
            "Host": ["api.example.com"],
            "X-Test": ["rest"],
            "Content-Type": ["application/json"],
        },
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "abcdef1234",
            "resourceId": "res123",
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "192.0.2.1", "userAgent": "pytest"},
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/prod{path}",
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": 1700000000000,
        },
        "body": body,
        "isBase64Encoded": False,
    }


def http_api_event(method: str, path: str, raw_query: str, body: str | None) -> dict:
    """An API Gateway HTTP API (payload 2.0) event."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": {"host": "api.example.com", "x-test": "http", "content-type": "application/json"},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "abcdef1234",
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.1",
                "userAgent": "pytest",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "07/Dec/2026:06:00:00 +0000",
            "timeEpoch": 1796623200000,
        },
        "body": body,
        "isBase64Encoded": False,
    }


@pytest.fixture(scope="module")
def web_app(lambda_client, tmp_path_factory):
    if not ADAPTER.is_file():
        pytest.fail(
            f"{ADAPTER} is missing: scripts/install-test-deps builds it from crates.io",
            pytrace=False,
        )
    tmp = tmp_path_factory.mktemp("lwa")
    layer_zip = zip_files(
        {"extensions/lambda-adapter": ADAPTER, "bootstrap": BOOTSTRAP},
        tmp / "layer.zip",
        modes={"extensions/lambda-adapter": 0o755, "bootstrap": 0o755},
    )
    layer = lambda_client.publish_layer_version(
        LayerName=unique_name("conf-lwa"), Content={"ZipFile": layer_zip}
    )
    name = unique_name("conf-lwa")
    lambda_client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="run.sh",
        Code={"ZipFile": zip_files({"run.sh": RUN_SH, "app.py": APP}, tmp / "app.zip", modes={"run.sh": 0o755})},
        Layers=[layer["LayerVersionArn"]],
        Timeout=15,
        Environment={
            "Variables": {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap", "AWS_LWA_PORT": str(free_port())}
        },
    )
    wait_active(lambda_client, name)
    yield name
    lambda_client.delete_function(FunctionName=name)
    lambda_client.delete_layer_version(
        LayerName=layer["LayerArn"].rsplit(":", 1)[1], VersionNumber=layer["Version"]
    )


def answer(lambda_client, name: str, event: dict) -> dict:
    result = invoke(lambda_client, name, event)
    assert result.function_error is None, result.payload
    return result.json()


def test_a_rest_api_event_reaches_the_web_app_through_the_adapter(lambda_client, web_app):
    got = answer(lambda_client, web_app, rest_api_event("GET", "/items/7", {"colour": "blue"}, None))
    assert got["statusCode"] == 200, got
    # A REST API answer may carry its headers in either map, as API Gateway reads both.
    headers = {k.lower(): v for k, v in got.get("headers", {}).items()}
    headers.update({k.lower(): ",".join(v) for k, v in got.get("multiValueHeaders", {}).items()})
    assert headers["x-app"] == "http.server", got
    assert headers["content-type"] == "application/json", got
    app = json.loads(got["body"])
    assert app["method"] == "GET"
    assert app["path"] == "/items/7"
    assert app["query"] == {"colour": ["blue"]}
    assert app["header"] == "rest"


def test_an_http_api_event_with_a_body_reaches_the_web_app(lambda_client, web_app):
    event = http_api_event("POST", "/orders", "express=1", json.dumps({"item": "tea"}))
    got = answer(lambda_client, web_app, event)
    assert got["statusCode"] == 201, got
    app = json.loads(got["body"])
    assert app["method"] == "POST"
    assert app["path"] == "/orders"
    assert app["query"] == {"express": ["1"]}
    assert json.loads(app["body"]) == {"item": "tea"}
    assert app["header"] == "http"


def test_the_app_status_and_the_same_warm_app_answer_each_event(lambda_client, web_app):
    missing = answer(lambda_client, web_app, http_api_event("GET", "/missing", "", None))
    assert missing["statusCode"] == 404, missing
    assert missing["body"] == "no such page"
    # One web app process behind the adapter serves one warm instance's invocations.
    pids = {
        json.loads(answer(lambda_client, web_app, http_api_event("GET", "/", "", None))["body"])["pid"]
        for _ in range(3)
    }
    assert len(pids) == 1, pids


# A web app whose /stream answer is chunked: it writes part i, then waits for the file
# GATE/ack-i (the test creates it once part i has arrived) before it writes part i+1.
STREAM_APP = b"""
import os, time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit, parse_qs

class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        url = urlsplit(self.path)
        if url.path != "/stream":
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return
        q = parse_qs(url.query)
        gate, n = q["gate"][0], int(q["n"][0])
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("x-app", "streaming")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for i in range(n):
            part = ("part-%d;" % i).encode()
            self.wfile.write(b"%x\\r\\n%s\\r\\n" % (len(part), part))
            self.wfile.flush()
            deadline = time.monotonic() + 30
            while i + 1 < n and not os.path.exists(os.path.join(gate, "ack-%d" % i)):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.005)
        self.wfile.write(b"0\\r\\n\\r\\n")
        self.wfile.flush()
    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(os.environ["AWS_LWA_PORT"])), App).serve_forever()
"""


def test_response_stream_mode_streams_through_a_streaming_url(lambda_client, tmp_path):
    """The adapter in `response_stream` mode (`AWS_LWA_INVOKE_MODE`) behind a RESPONSE_STREAM
    function URL: the web app's chunked answer reaches the client part by part."""
    import shutil
    import tempfile

    import requests

    if not ADAPTER.is_file():
        pytest.fail(f"{ADAPTER} is missing: scripts/install-test-deps builds it", pytrace=False)
    layer_zip = zip_files(
        {"extensions/lambda-adapter": ADAPTER, "bootstrap": BOOTSTRAP},
        tmp_path / "layer.zip",
        modes={"extensions/lambda-adapter": 0o755, "bootstrap": 0o755},
    )
    layer = lambda_client.publish_layer_version(
        LayerName=unique_name("conf-lwa-stream"), Content={"ZipFile": layer_zip}
    )
    name = unique_name("conf-lwa-stream")
    lambda_client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="run.sh",
        Code={"ZipFile": zip_files({"run.sh": RUN_SH, "app.py": STREAM_APP}, tmp_path / "app.zip",
                                   modes={"run.sh": 0o755})},
        Layers=[layer["LayerVersionArn"]],
        Timeout=20,
        Environment={"Variables": {
            "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
            "AWS_LWA_PORT": str(free_port()),
            "AWS_LWA_INVOKE_MODE": "response_stream",
        }},
    )
    gate = Path(tempfile.mkdtemp(prefix="lambkin-lwa-gate-"))
    os.chmod(gate, 0o777)
    try:
        wait_active(lambda_client, name)
        url = lambda_client.create_function_url_config(
            FunctionName=name, AuthType="NONE", InvokeMode="RESPONSE_STREAM"
        )["FunctionUrl"]
        parts = [f"part-{i};" for i in range(3)]
        r = requests.get(url + "stream", params={"gate": str(gate), "n": len(parts)}, stream=True, timeout=30)
        assert r.status_code == 200
        assert r.headers["x-app"] == "streaming"
        body, seen = b"", 0
        for piece in r.iter_content(chunk_size=None):
            body += piece
            while seen < len(parts) and parts[seen].encode() in body:
                (gate / f"ack-{seen}").touch()
                seen += 1
        assert body == "".join(parts).encode()
    finally:
        shutil.rmtree(gate, ignore_errors=True)
        lambda_client.delete_function(FunctionName=name)
        lambda_client.delete_layer_version(
            LayerName=layer["LayerArn"].rsplit(":", 1)[1], VersionNumber=layer["Version"]
        )
