"""A mock Lambda Runtime API 2018-06-01 that records what a runtime sends.

It serves a fixed list of events on ``/next``; once they are used up it
answers ``500`` (as Lambda does when the container is going away), which
makes a correct runtime exit non-zero and ends a test case without sleeps.
"""

import http.server
import json
import threading
import time
import uuid

API = "/2018-06-01/runtime"


class Event(object):
    def __init__(self, body, headers=None, deadline_in_ms=30000, request_id=None):
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.headers = dict(headers or {})
        self.deadline_in_ms = deadline_in_ms
        self.request_id = request_id or str(uuid.uuid4())


class Record(object):
    """One request the runtime made."""

    def __init__(self, method, path, headers, body, client_port, output):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.client_port = client_port
        # What the runtime had written to stdout when this request arrived.
        self.output = output

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "%s %s %r" % (self.method, self.path, self.body[:120])


class MockRuntimeApi(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, events, drop_connection_after=()):
        http.server.ThreadingHTTPServer.__init__(self, ("127.0.0.1", 0), _Handler)
        self.events = list(events)
        self.records = []
        self.lock = threading.Lock()
        # Indexes (into records) of requests after which the server closes the
        # connection without announcing it, like an idle keep-alive timeout.
        self.drop_connection_after = set(drop_connection_after)
        # Called for each answer (/response, /error, /init/error) before the
        # server replies; returns what the runtime printed so far.
        self.output_probe = lambda: b""
        self.thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def address(self):
        return "127.0.0.1:%d" % self.server_address[1]

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()

    def answers(self):
        return [r for r in self.records if r.method == "POST"]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; keep Nagle from holding the
    # body back for the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def _reply(self, status, body, headers=()):
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self, body, output=b""):
        server = self.server
        with server.lock:
            index = len(server.records)
            server.records.append(
                Record(
                    self.command,
                    self.path,
                    dict(self.headers.items()),
                    body,
                    self.client_address[1],
                    output,
                )
            )
        return index

    def _maybe_drop(self, index):
        if index in self.server.drop_connection_after:
            self.close_connection = True

    def do_GET(self):
        if self.path != API + "/invocation/next":
            self._reply(404, {"errorType": "NotFound", "errorMessage": self.path})
            return
        index = self._record(b"")
        with self.server.lock:
            event = self.server.events.pop(0) if self.server.events else None
        if event is None:
            self._reply(
                500,
                {"errorType": "InternalServerError", "errorMessage": "no more events"},
            )
            return
        headers = [
            ("Lambda-Runtime-Aws-Request-Id", event.request_id),
            (
                "Lambda-Runtime-Deadline-Ms",
                str(int(time.time() * 1000) + event.deadline_in_ms),
            ),
            (
                "Lambda-Runtime-Invoked-Function-Arn",
                "arn:aws:lambda:us-east-1:123456789012:function:selftest",
            ),
            ("Content-Type", "application/json"),
        ]
        headers.extend(event.headers.items())
        self._reply(200, event.body, headers)
        self._maybe_drop(index)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        known = self.path == API + "/init/error" or (
            self.path.startswith(API + "/invocation/")
            and (self.path.endswith("/response") or self.path.endswith("/error"))
        )
        if not known:
            self._record(body)
            self._reply(404, {"errorType": "NotFound", "errorMessage": self.path})
            return
        index = self._record(body, self.server.output_probe())
        self._reply(202, {"status": "OK"})
        self._maybe_drop(index)
