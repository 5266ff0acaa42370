"""The REPORT line's `Max Memory Used`: the instance's peak resident memory, as Lambda reports
it (a lifetime peak: it never goes down), read after each invocation, so a peak reached and
given back within one invocation shows in that invocation's REPORT."""

from __future__ import annotations

import re

from support import ROLE, invoke, unique_name, wait_active, zip_files

HANDLER = b'''
def handler(event, context):
    mib = event.get("touch_mib", 0)
    if mib:
        block = bytearray(b"\\x01") * (mib * 1024 * 1024)
        del block
    return {"touched_mib": mib}
'''


def max_memory_used(log: str, request_id: str) -> int:
    m = re.search(rf"^REPORT RequestId: {re.escape(request_id)}\t.*\tMax Memory Used: (\d+) MB", log, re.M)
    assert m, log
    return int(m.group(1))


def test_a_peak_given_back_within_an_invocation_is_reported(lambda_client, host):
    name = unique_name("report-memory")
    code = zip_files({"app.py": HANDLER}, host.root.parent / f"{name}.zip")
    lambda_client.create_function(
        FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": code}, Timeout=30, MemorySize=1024,
    )
    wait_active(lambda_client, name)

    def report(event) -> int:
        r = invoke(lambda_client, name, event, LogType="Tail")
        assert r.status == 200 and r.function_error is None, r.payload
        return max_memory_used(r.log, r.request_id)

    baseline = report({})
    assert 0 < baseline < 150, baseline
    # Well within a second of the last reading, and with the memory already given back by
    # the time the invocation ends: only the peak shows it.
    grown = report({"touch_mib": 200})
    assert grown >= baseline + 190, (baseline, grown)
    assert report({}) >= grown
