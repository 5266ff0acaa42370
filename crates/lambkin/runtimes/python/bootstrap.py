"""Lambkin's built-in runtime client for the ``python3.x`` Lambda runtimes.

The host writes this file to disk and starts it as ``python3 -u bootstrap.py``
with the working directory set to ``$LAMBDA_TASK_ROOT``. It loads the handler
named by ``_HANDLER``, then serves invocations from the Lambda Runtime API
2018-06-01 at ``$AWS_LAMBDA_RUNTIME_API`` until the API goes away.

Behaviour follows the public Python runtime client (awslambdaric): the
``LambdaContext`` attributes, the ``Runtime.*`` init error types, the error
payload ``{"errorMessage", "errorType", "requestId", "stackTrace"}`` and the
root-logger format. Lambkin-specific: ``LAMBKIN_PAYLOAD_ENCODING=binary``
hands the handler the event as ``bytes``, and in ``json`` mode a body that is
not JSON reaches the handler as a string instead of failing the invocation.

Standard library only; runs on Python 3.8 and later.
"""

import decimal
import http.client
import importlib
import json
import logging
import os
import socket
import sys
import time
import traceback
import urllib.parse

API_VERSION = "2018-06-01"
USER_AGENT = "lambkin-python/%d.%d.%d" % sys.version_info[:3]
# The file name this module's code objects carry, to tell the runtime's own
# frames from user code in tracebacks.
THIS_FILE = (lambda: None).__code__.co_filename

# Error types of the public runtime clients, so callers and tools that match
# on them keep working.
MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
UNMARSHAL_ERROR = "Runtime.UnmarshalError"
MARSHAL_ERROR = "Runtime.MarshalError"
CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"


class Fault(Exception):
    """A failure the runtime reports with a ``Runtime.*`` error type."""

    def __init__(self, error_type, message, stack_trace=None):
        Exception.__init__(self, message)
        self.error_type = error_type
        self.message = message
        self.stack_trace = stack_trace


class RuntimeApiGone(Exception):
    """The Runtime API is unreachable or failed: the host is gone."""


# --------------------------------------------------------------------------
# Runtime API client


def _quote(request_id):
    return urllib.parse.quote(request_id, safe="")


def _header_value(text):
    # The error type header is free text, but it must stay one valid header
    # line whatever a user-defined exception class is called.
    cleaned = "".join(ch for ch in text if " " <= ch <= "~")[:256]
    return cleaned or "Unhandled"


class RuntimeApi(object):
    """One persistent keep-alive HTTP/1.1 connection to the Runtime API.

    The connection has no timeout: ``/next`` blocks for as long as the host
    has no event, and Runtime API clients must not time it out.
    """

    def __init__(self, address):
        # Real Lambda gives ``host:port``; also accept a ``http://host:port/prefix``
        # form, as some emulators pass (awslambdaric tolerates it too).
        prefix = ""
        if "://" in address:
            address = address.split("://", 1)[1]
        if "/" in address:
            address, prefix = address.split("/", 1)
            prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.base = "%s/%s/runtime" % (prefix, API_VERSION)
        self.conn = http.client.HTTPConnection(address)

    def _connect(self):
        self.conn.connect()
        # Request headers and body go out in separate writes; without
        # TCP_NODELAY, Nagle plus delayed ACKs can stall each POST by ~40 ms.
        try:
            self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def _roundtrip(self, method, path, body=None, headers=()):
        """Send one request, return ``(status, headers, body)``.

        A keep-alive connection the server has closed while idle shows up as
        a reset or an empty reply on reuse; reconnect and send once more then.
        A failure on a fresh connection means the host is gone.
        """
        for attempt in (0, 1):
            reused = self.conn.sock is not None
            try:
                if not reused:
                    self._connect()
                self.conn.putrequest(method, path, skip_accept_encoding=True)
                self.conn.putheader("User-Agent", USER_AGENT)
                for name, value in headers:
                    self.conn.putheader(name, value)
                if body is not None:
                    self.conn.putheader("Content-Length", str(len(body)))
                self.conn.endheaders(body)
                response = self.conn.getresponse()
                data = response.read()
                return response.status, response.msg, data
            except (http.client.HTTPException, OSError) as e:
                self.conn.close()
                if attempt == 0 and reused:
                    continue
                raise RuntimeApiGone("%s %s: %s" % (method, path, e))

    def _post(self, path, body, headers):
        status, _, data = self._roundtrip("POST", self.base + path, body, headers)
        if status >= 500:
            raise RuntimeApiGone("POST %s: HTTP %d %r" % (path, status, data[:200]))
        if status >= 300:
            # 400/403/413: the host refused this answer (stale id, too large)
            # and settles the invocation itself; keep serving.
            sys.stderr.write(
                "lambkin runtime: POST %s answered HTTP %d: %s\n"
                % (path, status, data[:200].decode("utf-8", "replace"))
            )

    def next(self):
        status, headers, body = self._roundtrip("GET", self.base + "/invocation/next")
        if status != 200:
            raise RuntimeApiGone(
                "GET /invocation/next: HTTP %d %r" % (status, body[:200])
            )
        return headers, body

    def post_response(self, request_id, body, content_type):
        self._post(
            "/invocation/%s/response" % _quote(request_id),
            body,
            (("Content-Type", content_type),),
        )

    def post_error(self, request_id, error):
        self._post(
            "/invocation/%s/error" % _quote(request_id),
            to_json(error).encode("utf-8"),
            (
                ("Content-Type", "application/json"),
                ("Lambda-Runtime-Function-Error-Type", _header_value(error["errorType"])),
            ),
        )

    def post_init_error(self, error):
        self._post(
            "/init/error",
            to_json(error).encode("utf-8"),
            (
                ("Content-Type", "application/json"),
                ("Lambda-Runtime-Function-Error-Type", _header_value(error["errorType"])),
            ),
        )


# --------------------------------------------------------------------------
# JSON


def _json_default(obj):
    # boto3's DynamoDB layer hands out Decimal; awslambdaric serialises it as a
    # number, so do the same (integral values as int, the rest as float).
    if isinstance(obj, decimal.Decimal):
        if obj.is_finite() and obj == obj.to_integral_value():
            return int(obj)
        return float(obj)
    raise TypeError(
        "Object of type %s is not JSON serializable" % type(obj).__name__
    )


_encoder = json.JSONEncoder(default=_json_default)


def to_json(obj):
    return _encoder.encode(obj)


def decode_event(body, binary):
    if binary:
        return body
    if not body:
        # awslambdaric fails an empty JSON body the same way.
        raise Fault(
            UNMARSHAL_ERROR,
            "Unable to unmarshal input: Expecting value: line 1 column 1 (char 0)",
        )
    try:
        return json.loads(body)
    except ValueError:
        # Lambkin extension: non-JSON payloads (e.g. plain-text messages)
        # reach the handler as a string rather than failing the invocation.
        return body.decode("utf-8", "replace")


def encode_result(result):
    """Return ``(body, content_type)`` for a handler's return value."""
    if isinstance(result, (bytes, bytearray)):
        return bytes(result), "application/octet-stream"
    try:
        return to_json(result).encode("utf-8"), "application/json"
    except Exception as e:
        raise Fault(MARSHAL_ERROR, "Unable to marshal response: %s" % e)


# --------------------------------------------------------------------------
# Context object (attribute names of awslambdaric's LambdaContext)


class CognitoIdentity(object):
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, fields):
        self.cognito_identity_id = fields.get("cognitoIdentityId")
        self.cognito_identity_pool_id = fields.get("cognitoIdentityPoolId")

    def __repr__(self):
        return "CognitoIdentity([cognito_identity_id=%s,cognito_identity_pool_id=%s])" % (
            self.cognito_identity_id,
            self.cognito_identity_pool_id,
        )


class Client(object):
    __slots__ = (
        "installation_id",
        "app_title",
        "app_version_name",
        "app_version_code",
        "app_package_name",
    )

    def __init__(self, fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))

    def __repr__(self):
        return "Client([%s])" % ",".join(
            "%s=%s" % (name, getattr(self, name)) for name in self.__slots__
        )


class ClientContext(object):
    __slots__ = ("custom", "env", "client")

    def __init__(self, fields):
        self.custom = fields.get("custom")
        self.env = fields.get("env")
        client = fields.get("client")
        self.client = Client(client) if isinstance(client, dict) else client

    def __repr__(self):
        return "ClientContext([custom=%s,env=%s,client=%s])" % (
            self.custom,
            self.env,
            self.client,
        )


# Read once: the environment of the runtime process does not change between
# invocations.
_FUNCTION_NAME = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
_FUNCTION_VERSION = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
_MEMORY_SIZE = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
_LOG_GROUP_NAME = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
_LOG_STREAM_NAME = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")


class LambdaContext(object):
    def __init__(
        self,
        request_id,
        deadline_ms,
        invoked_function_arn,
        client_context,
        identity,
        tenant_id,
    ):
        self.aws_request_id = request_id
        self.function_name = _FUNCTION_NAME
        self.function_version = _FUNCTION_VERSION
        # A string, as in awslambdaric.
        self.memory_limit_in_mb = _MEMORY_SIZE
        self.log_group_name = _LOG_GROUP_NAME
        self.log_stream_name = _LOG_STREAM_NAME
        self.invoked_function_arn = invoked_function_arn
        self.client_context = client_context
        self.identity = identity
        self.tenant_id = tenant_id
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        remaining = self._deadline_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def log(self, msg):
        sys.stdout.write(str(msg))

    def __repr__(self):
        return (
            "LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,"
            "function_name=%s,memory_limit_in_mb=%s,function_version=%s,"
            "invoked_function_arn=%s,client_context=%s,identity=%s,tenant_id=%s])"
            % (
                self.aws_request_id,
                self.log_group_name,
                self.log_stream_name,
                self.function_name,
                self.memory_limit_in_mb,
                self.function_version,
                self.invoked_function_arn,
                self.client_context,
                self.identity,
                self.tenant_id,
            )
        )


def _parse_json_header(value, name):
    try:
        parsed = json.loads(value)
    except ValueError as e:
        raise Fault(CONTEXT_UNMARSHAL_ERROR, "Unable to parse %s JSON: %s" % (name, e))
    if not isinstance(parsed, dict):
        raise Fault(
            CONTEXT_UNMARSHAL_ERROR,
            "Unable to parse %s JSON: expected an object" % name,
        )
    return parsed


def make_context(request_id, headers):
    deadline = headers.get("Lambda-Runtime-Deadline-Ms")
    try:
        deadline_ms = int(deadline)
    except (TypeError, ValueError):
        deadline_ms = 0
    # The header carries plain JSON (the Invoke API's base64 is already
    # decoded by the host).
    client_context = None
    raw = headers.get("Lambda-Runtime-Client-Context")
    if raw:
        client_context = ClientContext(_parse_json_header(raw, "Client Context"))
    identity = {}
    raw = headers.get("Lambda-Runtime-Cognito-Identity")
    if raw:
        identity = _parse_json_header(raw, "Cognito Identity")
    return LambdaContext(
        request_id,
        deadline_ms,
        headers.get("Lambda-Runtime-Invoked-Function-Arn"),
        client_context,
        CognitoIdentity(identity),
        headers.get("Lambda-Runtime-Aws-Tenant-Id"),
    )


# --------------------------------------------------------------------------
# Errors and logs


def make_error(message, error_type, stack_trace, request_id=""):
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id or "",
        "stackTrace": stack_trace or [],
    }


_IMPORTLIB_DIR = os.path.dirname(importlib.__file__) + os.sep


def _is_runtime_frame(filename):
    return (
        filename == THIS_FILE
        or filename.startswith("<frozen importlib")
        or filename.startswith(_IMPORTLIB_DIR)
    )


def error_from_exception(exc, request_id=""):
    """The §2.4 payload for an exception raised by user code."""
    tb = exc.__traceback__
    # Drop the runtime's own frames (and the import machinery's, for errors
    # raised while loading the module) so the trace starts in user code.
    while tb is not None and _is_runtime_frame(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    frames = traceback.extract_tb(tb)
    return make_error(
        str(exc), type(exc).__name__, traceback.format_list(frames), request_id
    )


def log_error(error):
    """Write an error to stdout the way awslambdaric logs it."""
    line = "[ERROR]"
    if error["errorType"]:
        line += " " + error["errorType"]
    if error["errorMessage"]:
        line += (":" if error["errorType"] else "") + " " + error["errorMessage"]
    lines = [line, "Traceback (most recent call last):"]
    for entry in error["stackTrace"]:
        lines.extend(entry.splitlines())
    sys.stdout.write("\n".join(lines) + "\n")


_current_request_id = ""


class _RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _current_request_id
        return True


class _StdoutHandler(logging.Handler):
    # Looks up sys.stdout at each record so a handler that swaps stdout
    # still gets its logs.
    def emit(self, record):
        try:
            sys.stdout.write(self.format(record))
        except Exception:
            self.handleError(record)


def setup_logging():
    """Install the root handler Lambda's Python runtime installs.

    Records print as ``[LEVEL]\\t<UTC time>Z\\t<request id>\\t<message>``.
    The root level stays WARNING unless ``AWS_LAMBDA_LOG_LEVEL`` says
    otherwise, as on Lambda.
    """
    handler = _StdoutHandler()
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
        "%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level == "TRACE":
        level = "DEBUG"
    elif level == "FATAL":
        level = "CRITICAL"
    if level in ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"):
        root.setLevel(level if level != "WARN" else "WARNING")


class _Unbuffered(object):
    """Flushes after every write (only used when started without ``-u``)."""

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def write(self, data):
        n = self._stream.write(data)
        self._stream.flush()
        return n

    def writelines(self, lines):
        self._stream.writelines(lines)
        self._stream.flush()


# --------------------------------------------------------------------------
# Handler loading


def load_handler(spec):
    """Resolve ``module.function`` the way awslambdaric does.

    The module part may be a path (``src/app``) or a dotted package path
    (``pkg.mod``); both are imported as a package path from the task root.
    """
    try:
        module_name, function_name = spec.rsplit(".", 1)
    except ValueError as e:
        raise Fault(MALFORMED_HANDLER_NAME, "Bad handler '%s': %s" % (spec, e))
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise Fault(
            BUILT_IN_MODULE_CONFLICT,
            "Cannot use built-in module %s as a handler module" % module_name,
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as e:
        raise Fault(
            IMPORT_MODULE_ERROR,
            "Unable to import module '%s': %s" % (module_name, e),
        )
    except SyntaxError as e:
        raise Fault(
            USER_CODE_SYNTAX_ERROR,
            "Syntax error in module '%s': %s" % (module_name, e),
            ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)],
        )
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise Fault(
            HANDLER_NOT_FOUND,
            "Handler '%s' missing on module '%s'" % (function_name, module_name),
        )


# --------------------------------------------------------------------------
# Main loop


def handle_one(api, handler, binary):
    global _current_request_id
    headers, body = api.next()
    request_id = headers.get("Lambda-Runtime-Aws-Request-Id", "")
    _current_request_id = request_id
    trace_id = headers.get("Lambda-Runtime-Trace-Id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)

    try:
        context = make_context(request_id, headers)
        event = decode_event(body, binary)
        result = handler(event, context)
        payload, content_type = encode_result(result)
    except Fault as fault:
        error = make_error(fault.message, fault.error_type, fault.stack_trace, request_id)
    except Exception as exc:
        error = error_from_exception(exc, request_id)
    else:
        error = None

    if error is None:
        # With -u the streams are unbuffered already; flushing again also
        # covers a handler that replaced sys.stdout. The host frames each
        # invocation's log, so output must be in the pipe before the answer.
        _flush_std_streams()
        api.post_response(request_id, payload, content_type)
    else:
        log_error(error)
        _flush_std_streams()
        api.post_error(request_id, error)


def _flush_std_streams():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def init(api):
    """Load the handler; on failure report it to /init/error and exit 1."""
    try:
        handler_spec = os.environ.get("_HANDLER") or (
            sys.argv[1] if len(sys.argv) > 1 else ""
        )
        return load_handler(handler_spec)
    except Fault as fault:
        error = make_error(fault.message, fault.error_type, fault.stack_trace)
    except Exception as exc:
        # Any other exception raised while importing the module (module-level
        # code failing): reported with the exception's class name.
        error = error_from_exception(exc)
    log_error(error)
    _flush_std_streams()
    try:
        api.post_init_error(error)
    except RuntimeApiGone as e:
        sys.stderr.write("lambkin runtime: %s\n" % e)
    sys.exit(1)


def main():
    # `python3 -u` (or PYTHONUNBUFFERED) makes the text streams write-through;
    # otherwise flush after every write.
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not getattr(stream, "write_through", False):
            setattr(sys, name, _Unbuffered(stream))

    # sys.path[0] is this script's directory; the function's code must be
    # importable instead, and the runtime itself must not be.
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    here = os.path.dirname(os.path.realpath(THIS_FILE))
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != here]
    sys.path.insert(0, task_root)

    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        sys.stderr.write("lambkin runtime: AWS_LAMBDA_RUNTIME_API is not set\n")
        sys.exit(1)
    binary = os.environ.get("LAMBKIN_PAYLOAD_ENCODING", "json").lower() == "binary"

    setup_logging()
    api = RuntimeApi(address)
    handler = init(api)
    try:
        while True:
            handle_one(api, handler, binary)
    except RuntimeApiGone as e:
        sys.stderr.write("lambkin runtime: runtime API gone: %s\n" % e)
        sys.exit(1)


if __name__ == "__main__":
    main()
