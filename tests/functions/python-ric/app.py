"""Conformance fixture: a Python handler run by an unmodified awslambdaric.

Event protocol shared by every fixture (see tests/functions/README.md):
  {"action": "echo", ...} or no action  -> the event unchanged
  {"action": "error", "message": M}     -> raise FixtureError(M)
  {"action": "sleep", "seconds": N}     -> sleep N seconds, return {"slept": N}
  {"action": "crash", "code": N}        -> exit the process with status N
  {"action": "context"}                 -> client context, function name, remaining time
  {"action": "log", "message": M}       -> print M to stdout, return {"logged": true}
"""

import os
import sys
import time


class FixtureError(Exception):
    pass


def _client_context(context):
    cc = getattr(context, "client_context", None)
    if cc is None:
        return None
    client = getattr(cc, "client", None)
    if client is not None and not isinstance(client, dict):
        client = {
            key: getattr(client, key, None)
            for key in (
                "installation_id",
                "app_title",
                "app_version_name",
                "app_version_code",
                "app_package_name",
            )
        }
    return {
        "client": client,
        "custom": getattr(cc, "custom", None),
        "env": getattr(cc, "env", None),
    }


def handler(event, context):
    action = event.get("action", "echo") if isinstance(event, dict) else "echo"
    if action == "error":
        raise FixtureError(event.get("message", "error"))
    if action == "sleep":
        seconds = float(event.get("seconds", 0))
        time.sleep(seconds)
        return {"slept": event.get("seconds", 0)}
    if action == "crash":
        sys.stdout.flush()
        os._exit(int(event.get("code", 1)))
    if action == "context":
        return {
            "client_context": _client_context(context),
            "function_name": context.function_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "request_id": context.aws_request_id,
            "env": {k: v for k, v in os.environ.items() if k.startswith("FIXTURE_")},
        }
    if action == "log":
        print(event.get("message", ""), flush=True)
        return {"logged": True}
    return event
