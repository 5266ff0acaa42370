"""Exercise the built-in runtime clients against a mock Runtime API.

    python3 crates/lambkin/runtimes/selftest/run.py [--python PY] [--node NODE] [-k NAME]

Each case writes a small function into a temporary task root, starts the
client the way the host does (``python3 -u bootstrap.py`` / ``node
bootstrap.js``, cwd = task root), feeds it events and checks what it posted.
Exits non-zero if any check fails. Standard library only.
"""

import argparse
import ast
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from mock_api import API, Event, MockRuntimeApi  # noqa: E402

RUNTIMES = os.path.dirname(HERE)
PY_BOOTSTRAP = os.path.join(RUNTIMES, "python", "bootstrap.py")
NODE_BOOTSTRAP = os.path.join(RUNTIMES, "node", "bootstrap.js")

OPTIONS = argparse.Namespace(python=sys.executable, node="node")


class CheckFailed(Exception):
    pass


def check(condition, message, *detail):
    if not condition:
        raise CheckFailed(message + "".join("\n    %r" % (d,) for d in detail))


def check_eq(actual, expected, what):
    check(actual == expected, "%s: expected %r, got %r" % (what, expected, actual))


# --------------------------------------------------------------------------
# Harness


class Run(object):
    def __init__(self, exit_code, records, stdout, stderr, elapsed):
        self.exit_code = exit_code
        self.records = records
        self.stdout = stdout
        self.stderr = stderr
        self.elapsed = elapsed

    def answers(self):
        return [r for r in self.records if r.method == "POST"]

    def answer(self, request_id):
        found = [
            r for r in self.answers() if "/invocation/%s/" % request_id in r.path
        ]
        check(len(found) == 1, "expected one answer for %s" % request_id, self.records)
        return found[0]

    def describe(self):
        return "exit=%s\nrecords=%r\nstdout=%s\nstderr=%s" % (
            self.exit_code,
            self.records,
            self.stdout.decode("utf-8", "replace"),
            self.stderr.decode("utf-8", "replace"),
        )


def run_function(
    runtime,
    files,
    handler,
    events,
    env=None,
    api_address=None,
    drop_connection_after=(),
    timeout=20,
):
    """Start a runtime client on `files` and serve it `events`."""
    root = tempfile.mkdtemp(prefix="lambkin-selftest-")
    try:
        for name, text in files.items():
            path = os.path.join(root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)

        server = MockRuntimeApi(events, drop_connection_after).start()
        if runtime == "python":
            argv = [OPTIONS.python, "-u", PY_BOOTSTRAP]
        else:
            argv = [OPTIONS.node, NODE_BOOTSTRAP]
        environ = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "AWS_LAMBDA_RUNTIME_API": api_address or server.address,
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": root,
            "AWS_LAMBDA_FUNCTION_NAME": "selftest",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/selftest",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0123456789abcdef",
        }
        environ.update(env or {})
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=root,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

        # stdout is drained at each answer the runtime posts: whatever the
        # function printed must already be in the pipe by then.
        stdout_fd = proc.stdout.fileno()
        os.set_blocking(stdout_fd, False)
        seen = bytearray()
        seen_lock = threading.Lock()

        def probe():
            with seen_lock:
                while True:
                    try:
                        chunk = os.read(stdout_fd, 65536)
                    except BlockingIOError:
                        break
                    if not chunk:
                        break
                    seen.extend(chunk)
                return bytes(seen)

        server.output_probe = probe
        stderr = []
        reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()))
        reader.start()
        try:
            exit_code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            exit_code = "timeout"
        elapsed = time.monotonic() - started
        reader.join()
        os.set_blocking(stdout_fd, True)
        with seen_lock:
            seen.extend(proc.stdout.read())
        proc.stdout.close()
        proc.stderr.close()
        server.stop()
        return Run(exit_code, server.records, bytes(seen), stderr[0], elapsed)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def check_served_all(run, events):
    """Every event answered, then /next got 500 and the client exited non-zero."""
    check(run.exit_code != "timeout", "runtime did not exit", run.describe())
    check(
        run.exit_code != 0,
        "runtime must exit non-zero when /next answers 500",
        run.describe(),
    )
    check_eq(len(run.answers()), len(events), "number of answers")
    nexts = [r for r in run.records if r.method == "GET"]
    check_eq(len(nexts), len(events) + 1, "number of /next calls")


def check_one_connection(run):
    ports = set(r.client_port for r in run.records)
    check(len(ports) == 1, "expected one keep-alive connection, saw %r" % ports)


def check_init_error(run, error_type, message_part=None):
    check_eq(run.exit_code, 1, "exit code after an init error")
    nexts = [r for r in run.records if r.method == "GET"]
    check_eq(len(nexts), 0, "/next calls after an init error")
    answers = run.answers()
    check_eq([r.path for r in answers], [API + "/init/error"], "posts")
    record = answers[0]
    body = record.json()
    check_eq(body.get("errorType"), error_type, "errorType")
    check_eq(
        record.headers.get("Lambda-Runtime-Function-Error-Type"),
        error_type,
        "error type header",
    )
    if message_part is not None:
        check(
            message_part in body.get("errorMessage", ""),
            "errorMessage should mention %r" % message_part,
            body,
        )
    return body


def closed_port_address():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return "127.0.0.1:%d" % port


CLIENT_CONTEXT = (
    '{"client": {"installation_id": "i-1", "app_title": "Selftest",'
    ' "app_version_name": "1.0", "app_version_code": "1", "app_package_name": "p"},'
    ' "custom": {"k": "v"}, "env": {"platform": "linux"}}'
)
COGNITO = '{"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}'
TRACE = "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"


# --------------------------------------------------------------------------
# Python cases

PY_APP = r'''
import decimal
import logging
import os

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def echo(event, context):
    print("print-marker-" + context.aws_request_id)
    logger.info("log-marker")
    cc = context.client_context
    return {
        "event": event,
        "event_type": type(event).__name__,
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "custom": cc.custom if cc else None,
        "env": cc.env if cc else None,
        "app_title": cc.client.app_title if cc else None,
        "identity_id": context.identity.cognito_identity_id,
        "identity_pool_id": context.identity.cognito_identity_pool_id,
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
    }


def boom(event, context):
    helper(event)


def helper(event):
    raise ValueError("boom %s" % event["n"])


def reverse(event, context):
    assert isinstance(event, bytes), type(event)
    return bytes(reversed(event))


def unserialisable(event, context):
    return {"x": object()}


def decimals(event, context):
    return {"i": decimal.Decimal("2"), "f": decimal.Decimal("1.5")}


def weird(event, context):
    raise type("Odd\nName", (Exception,), {})("odd")


not_a_function_but_present = None
'''


def py_echo():
    events = [
        Event(
            {"a": 1},
            {
                "Lambda-Runtime-Client-Context": CLIENT_CONTEXT,
                "Lambda-Runtime-Cognito-Identity": COGNITO,
                "Lambda-Runtime-Trace-Id": TRACE,
            },
        ),
        Event(b'"just a string"'),
        Event(b"not json at all"),
    ]
    run = run_function("python", {"app.py": PY_APP}, "app.echo", events)
    check_served_all(run, events)
    check_one_connection(run)

    first = run.answer(events[0].request_id)
    check_eq(first.path, API + "/invocation/%s/response" % events[0].request_id, "path")
    check_eq(first.headers.get("Content-Type"), "application/json", "content type")
    out = first.json()
    check_eq(out["event"], {"a": 1}, "event")
    check_eq(out["aws_request_id"], events[0].request_id, "aws_request_id")
    check_eq(out["function_name"], "selftest", "function_name")
    check_eq(out["function_version"], "$LATEST", "function_version")
    check_eq(
        out["invoked_function_arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:selftest",
        "invoked_function_arn",
    )
    check_eq(out["memory_limit_in_mb"], "128", "memory_limit_in_mb")
    check_eq(out["log_group_name"], "/aws/lambda/selftest", "log_group_name")
    check_eq(
        out["log_stream_name"], "2026/01/01/[$LATEST]0123456789abcdef", "log_stream_name"
    )
    check(0 < out["remaining"] <= 30000, "remaining time in (0, 30000]", out["remaining"])
    check_eq(out["custom"], {"k": "v"}, "client_context.custom")
    check_eq(out["env"], {"platform": "linux"}, "client_context.env")
    check_eq(out["app_title"], "Selftest", "client_context.client.app_title")
    check_eq(out["identity_id"], "id-1", "identity.cognito_identity_id")
    check_eq(out["identity_pool_id"], "pool-1", "identity.cognito_identity_pool_id")
    check_eq(out["trace"], TRACE, "_X_AMZN_TRACE_ID")

    # Output reached the pipe before the answer was posted.
    check(
        b"print-marker-" + events[0].request_id.encode() in first.output,
        "print() output must be in the pipe before the response",
        first.output,
    )
    log_line = [l for l in first.output.splitlines() if l.endswith(b"log-marker")]
    check(len(log_line) == 1, "logging output before the response", first.output)
    fields = log_line[0].split(b"\t")
    check_eq(fields[0], b"[INFO]", "log level field")
    check(fields[1].endswith(b"Z"), "log time is UTC", fields)
    check_eq(fields[2], events[0].request_id.encode(), "log request id field")

    second = run.answer(events[1].request_id).json()
    check_eq(second["event"], "just a string", "JSON string event")
    check_eq(second["custom"], None, "client_context absent")
    check_eq(second["identity_id"], None, "identity absent")
    check_eq(second["trace"], None, "_X_AMZN_TRACE_ID cleared")
    third = run.answer(events[2].request_id).json()
    check_eq(third["event"], "not json at all", "non-JSON body as a string")
    check_eq(third["event_type"], "str", "non-JSON body type")
    check(b"runtime API gone" in run.stderr, "says why it exits", run.stderr)


def py_errors():
    events = [Event({"n": 7}), Event(b"")]
    run = run_function("python", {"app.py": PY_APP}, "app.boom", events)
    check_served_all(run, events)
    record = run.answer(events[0].request_id)
    check_eq(record.path, API + "/invocation/%s/error" % events[0].request_id, "path")
    check_eq(record.headers.get("Lambda-Runtime-Function-Error-Type"), "ValueError", "header")
    body = record.json()
    check_eq(
        sorted(body), ["errorMessage", "errorType", "requestId", "stackTrace"], "keys"
    )
    check_eq(body["errorType"], "ValueError", "errorType")
    check_eq(body["errorMessage"], "boom 7", "errorMessage")
    check_eq(body["requestId"], events[0].request_id, "requestId")
    trace = body["stackTrace"]
    check(len(trace) == 2, "two user frames", trace)
    check('app.py", line' in trace[0] and "in boom" in trace[0], "first frame", trace)
    check("in helper" in trace[1], "second frame", trace)
    check(not any("bootstrap.py" in t for t in trace), "no runtime frames", trace)
    check(b"[ERROR] ValueError: boom 7" in record.output, "error logged", record.output)

    # An empty body fails as in awslambdaric.
    empty = run.answer(events[1].request_id)
    check(empty.path.endswith("/error"), "empty body is an error", empty)
    check_eq(empty.json()["errorType"], "Runtime.UnmarshalError", "empty body errorType")


def py_weird_error_type():
    events = [Event({})]
    run = run_function("python", {"app.py": PY_APP}, "app.weird", events)
    check_served_all(run, events)
    record = run.answer(events[0].request_id)
    check_eq(record.json()["errorType"], "Odd\nName", "errorType")
    check_eq(record.headers.get("Lambda-Runtime-Function-Error-Type"), "OddName", "header")


def py_marshal():
    events = [Event({}), Event({})]
    run = run_function("python", {"app.py": PY_APP}, "app.unserialisable", events[:1])
    check_served_all(run, events[:1])
    body = run.answer(events[0].request_id).json()
    check_eq(body["errorType"], "Runtime.MarshalError", "errorType")
    check("not JSON serializable" in body["errorMessage"], "message", body)

    run = run_function("python", {"app.py": PY_APP}, "app.decimals", events[1:])
    check_served_all(run, events[1:])
    check_eq(run.answer(events[1].request_id).json(), {"i": 2, "f": 1.5}, "Decimal result")


def py_binary():
    events = [Event(b"\x00\x01\xfeabc\xff"), Event(b"")]
    run = run_function(
        "python",
        {"app.py": PY_APP},
        "app.reverse",
        events,
        env={"LAMBKIN_PAYLOAD_ENCODING": "binary"},
    )
    check_served_all(run, events)
    record = run.answer(events[0].request_id)
    check(record.path.endswith("/response"), "response", record)
    check_eq(record.body, b"\xffcba\xfe\x01\x00", "raw bytes result")
    check_eq(record.headers.get("Content-Type"), "application/octet-stream", "content type")
    check_eq(run.answer(events[1].request_id).body, b"", "empty bytes event")


def py_handler_paths():
    handler = "def handler(event, context):\n    return {'where': __name__}\n"
    files = {"src/app.py": handler, "pkg/__init__.py": "", "pkg/mod.py": handler}
    for spec, module in (("src/app.handler", "src.app"), ("pkg.mod.handler", "pkg.mod")):
        events = [Event({})]
        run = run_function("python", files, spec, events)
        check_served_all(run, events)
        check_eq(run.answer(events[0].request_id).json(), {"where": module}, spec)


def py_init_errors():
    files = {
        "app.py": PY_APP,
        "broken_import.py": "import does_not_exist_anywhere\n",
        "broken_syntax.py": "def handler(event, context)\n    return 1\n",
        "raises.py": "raise RuntimeError('at import')\n",
    }
    cases = [
        ("nosuchmodule.handler", "Runtime.ImportModuleError", "Unable to import module 'nosuchmodule'"),
        ("broken_import.handler", "Runtime.ImportModuleError", "does_not_exist_anywhere"),
        ("app.no_such_function", "Runtime.HandlerNotFound", "Handler 'no_such_function' missing on module 'app'"),
        ("app", "Runtime.MalformedHandlerName", "Bad handler 'app'"),
        ("broken_syntax.handler", "Runtime.UserCodeSyntaxError", "Syntax error in module 'broken_syntax'"),
        ("sys.handler", "Runtime.BuiltInModuleConflict", "sys"),
        ("raises.handler", "RuntimeError", "at import"),
    ]
    for spec, error_type, message in cases:
        run = run_function("python", files, spec, [Event({})])
        try:
            body = check_init_error(run, error_type, message)
            check_eq(
                sorted(body),
                ["errorMessage", "errorType", "requestId", "stackTrace"],
                "init error keys",
            )
            if spec == "raises.handler":
                # The trace starts in user code, not in the import machinery.
                check("raises.py" in body["stackTrace"][0], "user frame first", body)
        except CheckFailed as e:
            raise CheckFailed("%s: %s\n%s" % (spec, e, run.describe()))


def py_reconnect():
    events = [Event({"a": 1}), Event({"a": 2}), Event({"a": 3})]
    # Close the connection after the first answer (record 1) without telling.
    run = run_function(
        "python", {"app.py": PY_APP}, "app.echo", events, drop_connection_after={1}
    )
    check_served_all(run, events)
    for event in events:
        check(run.answer(event.request_id).path.endswith("/response"), "answered", run.records)
    check(len(set(r.client_port for r in run.records)) == 2, "reconnected once", run.records)


def py_unreachable():
    run = run_function(
        "python", {"app.py": PY_APP}, "app.echo", [], api_address=closed_port_address()
    )
    check(run.exit_code not in (0, "timeout"), "exit non-zero", run.describe())


def py_syntax_38():
    with open(PY_BOOTSTRAP) as f:
        source = f.read()
    # Rejects syntax newer than 3.8 (match statements, parenthesised context
    # managers...); library calls are covered by running the cases on 3.8.
    ast.parse(source, PY_BOOTSTRAP, feature_version=(3, 8))


# --------------------------------------------------------------------------
# Node cases

NODE_INDEX = r"""
'use strict';
exports.echo = async (event, context) => {
  console.log('log-marker');
  return {
    event,
    eventType: typeof event,
    awsRequestId: context.awsRequestId,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    invokedFunctionArn: context.invokedFunctionArn,
    memoryLimitInMB: context.memoryLimitInMB,
    logGroupName: context.logGroupName,
    logStreamName: context.logStreamName,
    remaining: context.getRemainingTimeInMillis(),
    clientContext: context.clientContext === undefined ? 'undefined' : context.clientContext,
    identity: context.identity === undefined ? 'undefined' : context.identity,
    waits: context.callbackWaitsForEmptyEventLoop,
    trace: process.env._X_AMZN_TRACE_ID === undefined ? 'undefined' : process.env._X_AMZN_TRACE_ID,
  };
};

// One entry point, many handler styles, picked by event.style.
const styles = {
  callback: (event, context, callback) => setTimeout(() => callback(null, { style: 'callback' }), 5),
  waits: (event, context, callback) => {
    callback(null, 'waited');
    setTimeout(() => console.log('timer-fired'), 50);
  },
  nowait: (event, context, callback) => {
    context.callbackWaitsForEmptyEventLoop = false;
    setTimeout(() => {}, 60000);
    callback(null, 'no-wait');
  },
  succeed: (event, context) => { context.succeed({ style: 'succeed' }); },
  done: (event, context) => { context.done(null, 'done'); },
  fail: (event, context) => { context.fail(new Error('failed')); },
  failEmpty: (event, context) => { context.fail(); },
  callbackError: (event, context, callback) => { callback('plain string'); },
  first: (event, context, callback) => { callback(null, 'first'); callback(null, 'second'); },
  asyncThrow: async () => { null.nope; },
  syncThrow: () => { throw new RangeError('sync'); },
  silent: () => {},
  promise: () => Promise.resolve({ style: 'promise' }),
  buffer: async () => Buffer.from([0, 1, 2, 255]),
  undef: async () => undefined,
  circular: async () => { const o = {}; o.o = o; return o; },
  weirdName: () => { const e = new Error('odd'); e.name = 'Odd\nName\u00e9'; throw e; },
};
exports.dispatch = (event, context, callback) => styles[event.style](event, context, callback);

exports.nested = { fn: async () => 'nested' };
exports.notAFunction = 42;
exports.crash = () => { setTimeout(() => { throw new Error('crash in timer'); }, 5); };
exports.rawBinary = async (event) => {
  if (!Buffer.isBuffer(event)) throw new Error('not a Buffer');
  return Buffer.from(event).reverse();
};
exports.neverSettles = async () => new Promise(() => {});
"""


def node_echo():
    events = [
        Event(
            {"a": 1},
            {
                "Lambda-Runtime-Client-Context": CLIENT_CONTEXT,
                "Lambda-Runtime-Cognito-Identity": COGNITO,
                "Lambda-Runtime-Trace-Id": TRACE,
            },
        ),
        Event(b"not json at all"),
    ]
    run = run_function("node", {"index.js": NODE_INDEX}, "index.echo", events)
    check_served_all(run, events)
    check_one_connection(run)
    first = run.answer(events[0].request_id)
    check(first.path.endswith("/response"), "response", first)
    check_eq(first.headers.get("Content-Type"), "application/json", "content type")
    out = first.json()
    check_eq(out["event"], {"a": 1}, "event")
    check_eq(out["awsRequestId"], events[0].request_id, "awsRequestId")
    check_eq(out["functionName"], "selftest", "functionName")
    check_eq(out["functionVersion"], "$LATEST", "functionVersion")
    check_eq(
        out["invokedFunctionArn"],
        "arn:aws:lambda:us-east-1:123456789012:function:selftest",
        "invokedFunctionArn",
    )
    check_eq(out["memoryLimitInMB"], "128", "memoryLimitInMB")
    check_eq(out["logGroupName"], "/aws/lambda/selftest", "logGroupName")
    check_eq(out["logStreamName"], "2026/01/01/[$LATEST]0123456789abcdef", "logStreamName")
    check(0 < out["remaining"] <= 30000, "remaining in (0, 30000]", out["remaining"])
    # The real client exposes the parsed JSON as sent: lower-case keys.
    check_eq(out["clientContext"]["custom"], {"k": "v"}, "clientContext.custom")
    check_eq(out["clientContext"]["env"], {"platform": "linux"}, "clientContext.env")
    check_eq(out["clientContext"]["client"]["app_title"], "Selftest", "clientContext.client")
    check_eq(out["identity"]["cognitoIdentityId"], "id-1", "identity")
    check_eq(out["waits"], True, "callbackWaitsForEmptyEventLoop default")
    check_eq(out["trace"], TRACE, "_X_AMZN_TRACE_ID")
    lines = [l for l in first.output.splitlines() if l.endswith(b"log-marker")]
    check(len(lines) == 1, "console.log output before the response", first.output)
    fields = lines[0].split(b"\t")
    check(fields[0].endswith(b"Z"), "ISO time", fields)
    check_eq(fields[1:3], [events[0].request_id.encode(), b"INFO"], "log fields")

    second = run.answer(events[1].request_id).json()
    check_eq(second["event"], "not json at all", "non-JSON body as a string")
    check_eq(second["clientContext"], "undefined", "clientContext absent")
    check_eq(second["trace"], "undefined", "_X_AMZN_TRACE_ID cleared")
    check(b"runtime API gone" in run.stderr, "says why it exits", run.stderr)


def node_styles():
    styles = [
        "callback", "waits", "succeed", "done", "fail", "failEmpty", "callbackError",
        "first", "asyncThrow", "syncThrow", "silent", "promise", "buffer", "undef",
        "circular", "weirdName", "nowait",
    ]
    events = [Event({"style": s}) for s in styles]
    run = run_function("node", {"index.js": NODE_INDEX}, "index.dispatch", events)
    check_served_all(run, events)
    check_one_connection(run)
    check(run.elapsed < 15, "nowait must not wait for its 60 s timer", run.elapsed)
    got = dict((s, run.answer(e.request_id)) for s, e in zip(styles, events))

    def ok(style, expected):
        record = got[style]
        check(record.path.endswith("/response"), "%s: response" % style, record)
        check_eq(record.json(), expected, style)

    def err(style, error_type, message):
        record = got[style]
        check(record.path.endswith("/error"), "%s: error" % style, record)
        body = record.json()
        check_eq(sorted(body), ["errorMessage", "errorType", "trace"], "%s keys" % style)
        check_eq(body["errorType"], error_type, "%s errorType" % style)
        check_eq(body["errorMessage"], message, "%s errorMessage" % style)
        check_eq(
            record.headers.get("Lambda-Runtime-Function-Error-Type"),
            error_type,
            "%s header" % style,
        )
        return body

    ok("callback", {"style": "callback"})
    ok("waits", "waited")
    check(b"timer-fired" in got["waits"].output, "callback waits for the event loop", got["waits"].output)
    ok("nowait", "no-wait")
    ok("succeed", {"style": "succeed"})
    ok("done", "done")
    body = err("fail", "Error", "failed")
    check(body["trace"][0] == "Error: failed", "trace starts with the error", body)
    err("failEmpty", "string", "handled")
    err("callbackError", "string", "plain string")
    ok("first", "first")
    err("asyncThrow", "TypeError", "Cannot read properties of null (reading 'nope')")
    err("syncThrow", "RangeError", "sync")
    ok("silent", None)
    ok("promise", {"style": "promise"})
    check_eq(got["buffer"].body, b"\x00\x01\x02\xff", "Buffer result")
    check_eq(got["buffer"].headers.get("Content-Type"), "application/octet-stream", "Buffer type")
    ok("undef", None)
    err("circular", "Error", "Unable to stringify response body")
    record = got["weirdName"]
    check_eq(record.json()["errorType"], "Odd\nName\u00e9", "weirdName errorType")
    check_eq(record.headers.get("Lambda-Runtime-Function-Error-Type"), "OddName", "header")
    check(b"Invoke Error" in got["fail"].output, "errors are logged", got["fail"].output)


def node_modules():
    esm = (
        "const ready = await Promise.resolve('esm');\n"
        "export const handler = async (event) => ({ kind: ready, event });\n"
    )
    cjs = "exports.handler = async (event) => ({ kind: 'cjs', event });\n"
    cases = [
        ({"index.mjs": esm}, "index.handler", "esm"),
        ({"index.cjs": cjs}, "index.handler", "cjs"),
        ({"src/index.js": cjs}, "src/index.handler", "cjs"),
        (
            {"package.json": '{"type": "module"}', "app.js": esm},
            "app.handler",
            "esm",
        ),
        ({"index.js": NODE_INDEX}, "index.nested.fn", None),
    ]
    for files, spec, kind in cases:
        events = [Event({"n": 1})]
        run = run_function("node", files, spec, events)
        try:
            check_served_all(run, events)
            out = run.answer(events[0].request_id).json()
            expected = {"kind": kind, "event": {"n": 1}} if kind else "nested"
            check_eq(out, expected, spec)
        except CheckFailed as e:
            raise CheckFailed("%s: %s\n%s" % (spec, e, run.describe()))


def node_binary():
    events = [Event(b"\x00\x01\xfeabc\xff")]
    run = run_function(
        "node",
        {"index.js": NODE_INDEX},
        "index.rawBinary",
        events,
        env={"LAMBKIN_PAYLOAD_ENCODING": "binary"},
    )
    check_served_all(run, events)
    record = run.answer(events[0].request_id)
    check(record.path.endswith("/response"), "response", record)
    check_eq(record.body, b"\xffcba\xfe\x01\x00", "Buffer result")
    check_eq(record.headers.get("Content-Type"), "application/octet-stream", "content type")


def node_empty_body():
    events = [Event(b"")]
    run = run_function("node", {"index.js": NODE_INDEX}, "index.echo", events)
    check_served_all(run, events)
    body = run.answer(events[0].request_id).json()
    # As in the real client: JSON.parse('') fails the invocation.
    check_eq(body["errorType"], "SyntaxError", "empty body errorType")


def node_init_errors():
    files = {
        "index.js": NODE_INDEX,
        "broken.js": "exports.handler = async (event) => {\n",
        "needsdep.js": "require('does-not-exist-anywhere');\n",
        "throws.js": "throw new TypeError('at load');\n",
    }
    cases = [
        ("missing.handler", "Runtime.ImportModuleError", "Cannot find module 'missing'"),
        ("needsdep.handler", "Runtime.ImportModuleError", "does-not-exist-anywhere"),
        ("index.nothere", "Runtime.HandlerNotFound", "index.nothere is undefined or not exported"),
        ("index.notAFunction", "Runtime.HandlerNotFound", "index.notAFunction is not a function"),
        ("index", "Runtime.MalformedHandlerName", "Bad handler"),
        ("../index.echo", "Runtime.MalformedHandlerName", "not a valid handler name"),
        ("broken.handler", "Runtime.UserCodeSyntaxError", "SyntaxError"),
        ("throws.handler", "TypeError", "at load"),
    ]
    for spec, error_type, message in cases:
        run = run_function("node", files, spec, [Event({})])
        try:
            body = check_init_error(run, error_type, message)
            check_eq(sorted(body), ["errorMessage", "errorType", "trace"], "init error keys")
        except CheckFailed as e:
            raise CheckFailed("%s: %s\n%s" % (spec, e, run.describe()))


def node_crash():
    events = [Event({}), Event({})]
    run = run_function("node", {"index.js": NODE_INDEX}, "index.crash", events)
    check_eq(run.exit_code, 129, "exit code after an uncaught exception")
    answers = run.answers()
    check_eq(len(answers), 1, "one answer")
    body = answers[0].json()
    check(answers[0].path.endswith("/invocation/%s/error" % events[0].request_id), "error", answers)
    check_eq(body["errorMessage"], "crash in timer", "errorMessage")


def node_never_settles():
    events = [Event({})]
    run = run_function("node", {"index.js": NODE_INDEX}, "index.neverSettles", events)
    check_served_all(run, events)
    body = run.answer(events[0].request_id).json()
    check_eq(body["errorType"], "Runtime.NodeJsExit", "errorType")


def node_reconnect():
    events = [Event({"a": 1}), Event({"a": 2}), Event({"a": 3})]
    run = run_function(
        "node", {"index.js": NODE_INDEX}, "index.echo", events, drop_connection_after={1}
    )
    check_served_all(run, events)
    for event in events:
        check(run.answer(event.request_id).path.endswith("/response"), "answered", run.records)
    check(len(set(r.client_port for r in run.records)) == 2, "reconnected once", run.records)


def node_unreachable():
    run = run_function(
        "node", {"index.js": NODE_INDEX}, "index.echo", [], api_address=closed_port_address()
    )
    check(run.exit_code not in (0, "timeout"), "exit non-zero", run.describe())


CASES = [
    py_syntax_38,
    py_echo,
    py_errors,
    py_weird_error_type,
    py_marshal,
    py_binary,
    py_handler_paths,
    py_init_errors,
    py_reconnect,
    py_unreachable,
    node_echo,
    node_styles,
    node_modules,
    node_binary,
    node_empty_body,
    node_init_errors,
    node_crash,
    node_never_settles,
    node_reconnect,
    node_unreachable,
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter for bootstrap.py")
    parser.add_argument("--node", default="node", help="node binary for bootstrap.js")
    parser.add_argument("-k", dest="pattern", default="", help="run cases whose name contains this")
    args = parser.parse_args()
    OPTIONS.python = args.python
    OPTIONS.node = args.node

    passed = failed = 0
    for case in CASES:
        if args.pattern not in case.__name__:
            continue
        started = time.monotonic()
        try:
            case()
        except CheckFailed as e:
            failed += 1
            print("FAIL %s: %s" % (case.__name__, e))
        except Exception:
            failed += 1
            print("FAIL %s:\n%s" % (case.__name__, traceback.format_exc()))
        else:
            passed += 1
            print("ok   %s (%.2fs)" % (case.__name__, time.monotonic() - started))
    print("selftest: %d passed, %d failed" % (passed, failed))
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
