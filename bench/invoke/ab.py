"""Two builds of the host side by side on the invoke path, in turns: the same Rust echo
(tests/functions/rust-fixture) as the main benchmark's function (on demand, up to 64
instances), one host per build, each measured by `lambkin-bench load` in every turn:
sequential p50 over 2,000 invokes, then invocations/s and the host's CPU per invocation
(user + system of the host process, its children apart) at concurrency 1, 8 and 64, the
instances already started (a warm-up load first). Taking turns puts both builds under the
same machine load; the table gives each turn and the median.

    python3 bench/invoke/ab.py --before OLD_LAMBKIN --after NEW_LAMBKIN \\
        --bench target/release/lambkin-bench --bootstrap target/release/bootstrap [--turns 5] \\
        [--floor]

With `--floor`, the floor (`lambkin-bench floor-server`, a plain HTTP echo on the same kind of
runtime) is loaded at concurrency 64 in every turn too, and the table adds its CPU per request
and each build's CPU per invocation at 64 as a multiple of it: the machine's speed divides
out of that ratio, which is what a target "N times the floor's" is checked against.

(binaries as built by `cargo build --release -p lambkin -p lambkin-bench
-p lambkin-fixture-rust`; keep the older `lambkin` aside before building the newer one).
Standard library and the conformance venv's botocore (for signing the create call)."""

from __future__ import annotations

import argparse
import base64
import json
import re
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "conformance"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "telemetry"))
from support import ROLE, lambda_client, signed_request, wait_active, zip_files  # noqa: E402
from measure import start_host  # noqa: E402  (a host on its own root, its address once ready)

LEVELS = (1, 8, 64)


def create_echo(root: Path, addr: str, bootstrap: str, base: Path) -> None:
    code = zip_files({"bootstrap": Path(bootstrap)}, base / "echo.zip", {"bootstrap": 0o755})
    body = json.dumps({
        "FunctionName": "echo", "Runtime": "provided.al2023", "Role": ROLE, "Handler": "bootstrap",
        "Code": {"ZipFile": base64.b64encode(code).decode()}, "Timeout": 30,
        "Greengrass": {"Pinned": False, "MaxInstancesCount": 64, "MaxIdleTimeInSeconds": 600},
    }).encode()
    request = signed_request(root, "POST", f"http://{addr}/2015-03-31/functions", body,
                             {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
    wait_active(lambda_client(root, f"http://{addr}"), "echo")


def load(bench: str, addr: str, pid: int, root: Path, *args: str) -> str:
    out = subprocess.run(
        [bench, "load", f"http://{addr}/2015-03-31/functions/echo/invocations",
         "--pid", str(pid), "--root", str(root), *args],
        capture_output=True, text=True, check=True,
    )
    return out.stdout


def measure(bench: str, addr: str, pid: int, root: Path) -> dict[str, float]:
    got: dict[str, float] = {}
    seq = load(bench, addr, pid, root, "--seconds", "0", "--invokes", "2000")
    got["p50"] = float(re.search(r"p50 (\d+) µs", seq).group(1))
    for c in LEVELS:
        out = load(bench, addr, pid, root, "--concurrency", str(c), "--seconds", "3", "--invokes", "0")
        m = re.search(r"(\d+) invocations/s, (\d+) errors, CPU per invoke: (\d+) µs", out)
        if not m or m.group(2) != "0":
            sys.exit(f"concurrency {c}: {out}")
        got[f"rate{c}"] = float(m.group(1))
        got[f"cpu{c}"] = float(m.group(3))
    return got


def start_floor(bench: str) -> tuple[subprocess.Popen, str]:
    floor = subprocess.Popen([bench, "floor-server"], stdout=subprocess.PIPE, text=True)
    line = floor.stdout.readline() if floor.stdout else ""
    m = re.match(r"listening on http://(\S+)", line)
    if not m:
        floor.kill()
        sys.exit(f"the floor did not start: {line!r}")
    return floor, m.group(1)


def measure_floor(bench: str, addr: str, pid: int) -> float:
    out = subprocess.run(
        [bench, "load", f"http://{addr}/echo", "--pid", str(pid), "--concurrency", "64",
         "--seconds", "3", "--invokes", "0"],
        capture_output=True, text=True, check=True,
    ).stdout
    m = re.search(r"(\d+) invocations/s, (\d+) errors, CPU per invoke: (\d+) µs", out)
    if not m or m.group(2) != "0":
        sys.exit(f"floor: {out}")
    return float(m.group(3))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True)
    p.add_argument("--after", required=True)
    p.add_argument("--bench", required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--turns", type=int, default=5)
    p.add_argument("--floor", action="store_true",
                   help="also load the floor at concurrency 64 in every turn")
    args = p.parse_args()
    builds = {"before": args.before, "after": args.after}
    hosts = {}
    floor = None
    floor_cpu: list[float] = []
    with tempfile.TemporaryDirectory(prefix="lambkin-invoke-ab-") as tmp:
        # The functions' user passes through it to the roots.
        Path(tmp).chmod(0o755)
        try:
            for name, lambkin in builds.items():
                root = Path(tmp) / name / "root"
                root.parent.mkdir(parents=True)
                host, addr = start_host(lambkin, root)
                hosts[name] = (host, addr, root)
                create_echo(root, addr, args.bootstrap, root.parent)
                # Warm: every instance the concurrency-64 runs use is started before any turn.
                warm = load(args.bench, addr, host.pid, root, "--concurrency", "64", "--seconds", "2", "--invokes", "0")
                if " 0 errors" not in warm:
                    sys.exit(f"{name}: the warm-up load failed: {warm}")
            if args.floor:
                floor = start_floor(args.bench)
            turns: dict[str, list[dict[str, float]]] = {name: [] for name in builds}
            for turn in range(args.turns):
                for name, (host, addr, root) in hosts.items():
                    turns[name].append(measure(args.bench, addr, host.pid, root))
                    print(f"turn {turn + 1} {name}: {turns[name][-1]}", file=sys.stderr)
                if floor:
                    floor_cpu.append(measure_floor(args.bench, floor[1], floor[0].pid))
                    for name in builds:
                        turns[name][-1]["floor64"] = turns[name][-1]["cpu64"] / floor_cpu[-1]
                    print(f"turn {turn + 1} floor: {floor_cpu[-1]}", file=sys.stderr)
        finally:
            if floor:
                floor[0].terminate()
                floor[0].wait(timeout=30)
            for host, _, _ in hosts.values():
                host.terminate()
                host.wait(timeout=30)
    rows = [("sequential p50 (µs)", "p50")]
    for c in LEVELS:
        rows.append((f"invocations/s, concurrency {c}", f"rate{c}"))
        rows.append((f"host CPU per invocation, concurrency {c} (µs)", f"cpu{c}"))
    if floor_cpu:
        rows.append(("… at concurrency 64, as a multiple of the floor's", "floor64"))
    print(f"| {args.turns} turns, median (each turn) | before | after | after / before |")
    print("|---|---:|---:|---:|")
    for label, key in rows:
        values = {name: [t[key] for t in turns[name]] for name in builds}
        med = {name: statistics.median(v) for name, v in values.items()}
        digits = 1 if key == "floor64" else 0
        each = {name: ", ".join(f"{x:.{digits}f}" for x in v) for name, v in values.items()}
        ratio = med["after"] / med["before"] if med["before"] else float("nan")
        print(f"| {label} | {med['before']:,.{digits}f} ({each['before']}) | "
              f"{med['after']:,.{digits}f} ({each['after']}) | {ratio:.2f} |")
    if floor_cpu:
        each = ", ".join(f"{x:.0f}" for x in floor_cpu)
        print(f"\nThe floor's CPU per request at concurrency 64 (µs): "
              f"{statistics.median(floor_cpu):.0f} ({each}).")
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    print(f"\nMachine load at the end: {' '.join(loadavg)}.")


if __name__ == "__main__":
    main()
