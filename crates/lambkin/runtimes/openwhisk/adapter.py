"""Lambkin's OpenWhisk adapter for ``python:*`` actions: the Lambda handler of
every Python action's function (``__openwhisk_adapter.handler``).

The host packs it with the action's code (``__openwhisk_action.py``) and entry
point (``__openwhisk_action.json``); it runs the action as OpenWhisk's Python
runtime does: the code (or a zip action's ``__main__.py``) is loaded once per
instance as the module ``main__``,
``main(params)`` returns a dict (or a list); an exception becomes
``{"error": str(exception)}`` with the traceback on stderr (an application
error, as OpenWhisk's launcher reports it).

The event is ``{"value": PARAMS, "env": {"__OW_...": ...}}`` (or
``{"check": true}``: load the code and report, run nothing). The answer is
``{"returned": V}`` or ``{"init": MESSAGE}``, with the activation's output
lines as ``logs`` (``[stream, epoch ms, text]``); output still reaches the
function's log too.
"""

import json
import os
import sys
import time
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))
_main = None


def _now_ms():
    return int(time.time() * 1000)


def _load():
    with open(os.path.join(_HERE, "__openwhisk_action.json")) as f:
        meta = json.load(f)
    entry = meta["main"]
    if meta.get("binary"):
        # A zip action: its __main__.py, with its other modules importable.
        directory = os.path.join(_HERE, "__openwhisk_action")
        sys.path.insert(0, directory)
        path = os.path.join(directory, "__main__.py")
    else:
        path = os.path.join(_HERE, "__openwhisk_action.py")
    with open(path) as f:
        code = f.read()
    namespace = {"__name__": "main__", "__file__": path}
    exec(compile(code, path, "exec"), namespace)
    found = namespace.get(entry)
    if not callable(found):
        raise Exception("Action entrypoint '%s' is not a function." % entry)
    return found


class _Tee(object):
    """A text stream that records whole lines and passes everything on."""

    def __init__(self, name, inner, lines):
        self._name = name
        self._inner = inner
        self._lines = lines
        self._partial = ""

    def write(self, text):
        text = str(text)
        self._inner.write(text)
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        now = _now_ms()
        for line in parts:
            self._lines.append([self._name, now, line])
        return len(text)

    def flush(self):
        self._inner.flush()

    def finish(self):
        if self._partial:
            self._lines.append([self._name, _now_ms(), self._partial])
            self._partial = ""

    def __getattr__(self, name):
        return getattr(self._inner, name)


def handler(event, context):
    global _main
    started = _now_ms()
    init_ms = None
    if _main is None:
        try:
            _main = _load()
            init_ms = _now_ms() - started
        except BaseException:
            return {
                "init": "Initialization has failed due to: " + traceback.format_exc(),
                "logs": [],
                "started_ms": started,
            }
    if isinstance(event, dict) and event.get("check"):
        return {"returned": {}, "logs": [], "init_ms": init_ms}
    event = event if isinstance(event, dict) else {}
    for key, value in (event.get("env") or {}).items():
        os.environ[key] = str(value)
    os.environ["__OW_DEADLINE"] = str(_now_ms() + context.get_remaining_time_in_millis())
    lines = []
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee("stdout", out, lines), _Tee("stderr", err, lines)
    try:
        try:
            result = _main(event.get("value") or {})
        except Exception as e:
            traceback.print_exc()
            result = {"error": str(e)}
    finally:
        for tee in (sys.stdout, sys.stderr):
            tee.finish()
        sys.stdout, sys.stderr = out, err
    answer = {"returned": result, "logs": lines, "started_ms": started}
    if init_ms is not None:
        answer["init_ms"] = init_ms
    return answer
