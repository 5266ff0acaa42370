"""Lambkin's OpenWhisk adapter for native actions (kind ``blackbox``): the Lambda
handler (``__openwhisk_actionloop.handler``) of every native action's
function. It speaks OpenWhisk's ActionLoop protocol
(``docs/actions-actionloop.md``) with the action's executable,
``__openwhisk_native/exec``, which the host packs beside it.

The executable is started once per instance and kept: each activation is one
JSON line on its stdin (``{"value": PARAMS, "action_name", "activation_id",
"namespace", "api_host", "api_key", "deadline", "transaction_id",
"action_version"}``), and its answer one JSON line on file descriptor 3. What
it writes to stdout and stderr before answering is the activation's log (it is
in the pipes by then: the executable wrote it first). An executable that exits
ends the instance (the activation is then a developer error, as OpenWhisk's
proxy reports it); the next activation starts a fresh one.

The answer to the host is the same as the other adapters':
``{"returned": V}`` or ``{"init": MESSAGE}``, with ``logs``.
"""

import fcntl
import json
import os
import select
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_EXEC = os.path.join(_HERE, "__openwhisk_native", "exec")
_proc = None
_result_fd = None
_buffers = {}


def _now_ms():
    return int(time.time() * 1000)


def _start():
    global _proc, _result_fd
    read_end, write_end = os.pipe()
    env = dict(os.environ)
    # The executable gets the pipe's write end as its file descriptor 3 (and only there).
    _proc = subprocess.Popen(
        ["/bin/sh", "-c", 'exec "$0" 3>&%d %d>&-' % (write_end, write_end), _EXEC],
        cwd=os.path.dirname(_EXEC),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(write_end,),
        env=env,
    )
    os.close(write_end)
    _result_fd = read_end
    for stream in (_proc.stdout, _proc.stderr):
        fd = stream.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    _buffers.clear()
    _buffers[_proc.stdout.fileno()] = b""
    _buffers[_proc.stderr.fileno()] = b""
    _buffers[read_end] = b""


def _drain(lines, final):
    """Reads what stdout and stderr hold now into ``lines`` (whole lines; the rest too if
    ``final``), passing it on to this process's own streams."""
    for name, stream, mirror in (
        ("stdout", _proc.stdout, sys.stdout),
        ("stderr", _proc.stderr, sys.stderr),
    ):
        fd = stream.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            _buffers[fd] += chunk
            mirror.write(chunk.decode("utf-8", "replace"))
        *whole, rest = _buffers[fd].split(b"\n")
        now = _now_ms()
        for line in whole:
            lines.append([name, now, line.decode("utf-8", "replace")])
        _buffers[fd] = rest
        if final and rest:
            lines.append([name, now, rest.decode("utf-8", "replace")])
            _buffers[fd] = b""
    sys.stdout.flush()
    sys.stderr.flush()


def _read_result(lines):
    """The next line on fd 3, gathering output meanwhile; None if the executable ended."""
    watched = [_result_fd, _proc.stdout.fileno(), _proc.stderr.fileno()]
    while True:
        if b"\n" in _buffers[_result_fd]:
            line, rest = _buffers[_result_fd].split(b"\n", 1)
            _buffers[_result_fd] = rest
            return line
        ready, _, _ = select.select(watched, [], [])
        if _result_fd in ready:
            chunk = os.read(_result_fd, 65536)
            if not chunk:
                return None
            _buffers[_result_fd] += chunk
        _drain(lines, False)


def handler(event, context):
    started = _now_ms()
    init_ms = None
    if _proc is None or _proc.poll() is not None:
        try:
            _start()
            init_ms = _now_ms() - started
        except OSError as e:
            return {"init": "Initialization has failed due to: %s" % e, "logs": [],
                    "started_ms": started}
    if isinstance(event, dict) and event.get("check"):
        return {"returned": {}, "logs": [], "init_ms": init_ms}
    event = event if isinstance(event, dict) else {}
    message = {"value": event.get("value") or {}}
    for key, value in (event.get("env") or {}).items():
        if key.startswith("__OW_"):
            message[key[len("__OW_"):].lower()] = value
    message["deadline"] = str(_now_ms() + context.get_remaining_time_in_millis())
    lines = []
    try:
        _proc.stdin.write((json.dumps(message) + "\n").encode("utf-8"))
        _proc.stdin.flush()
    except OSError:
        pass
    line = _read_result(lines)
    _drain(lines, line is None)
    if line is None:
        # The executable ended: so does this instance, and the host reports it.
        sys.stdout.flush()
        os._exit(1)
    try:
        result = json.loads(line.decode("utf-8"))
    except ValueError:
        return {"threw": "The action did not produce a valid JSON or JSON Array response: %s"
                % line.decode("utf-8", "replace"), "logs": lines, "started_ms": started}
    answer = {"returned": result, "logs": lines, "started_ms": started}
    if init_ms is not None:
        answer["init_ms"] = init_ms
    return answer
