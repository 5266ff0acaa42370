"""The cost of extensions and of telemetry on the invoke path: one host, three copies of the
benchmark's Rust echo (tests/functions/rust-fixture): alone, with one external extension that
does nothing but take INVOKE and SHUTDOWN, and with the same extension subscribed to the
Telemetry API as the `lambda-extension` crate subscribes by default (HTTP). Each is measured by
`lambkin-bench load` (sequential p50 over 2,000 invokes, then invocations/s at concurrency 8),
in turns, in the same run.

    python3 bench/telemetry/measure.py --lambkin L --bench B --bootstrap BOOT --extension EXT \
        [--before OLD_LAMBKIN] [--turns N]

(the binaries as built by `cargo build --release -p lambkin -p lambkin-bench
-p lambkin-fixture-rust -p lambkin-fixture-telemetry-extension`). With `--before`, a second
host runs that binary (an older build kept aside) and each turn measures the three variants on
both hosts, one after the other, so a change is compared with what it replaces under the same
load."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "conformance"))
from support import ROLE, lambda_client, wait_active, zip_files  # noqa: E402


def start_host(lambkin: str, root: Path) -> tuple[subprocess.Popen, str]:
    host = subprocess.Popen(
        [lambkin, "run", "--root", str(root), "--listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    addr_file = root / "state" / "api.addr"
    deadline = time.monotonic() + 30
    while not (addr_file.is_file() and re.fullmatch(r"127\.0\.0\.1:\d+", addr_file.read_text().strip() or "x")):
        if time.monotonic() > deadline or host.poll() is not None:
            host.kill()
            sys.exit(f"the host {lambkin} did not start")
        time.sleep(0.05)
    return host, addr_file.read_text().strip()


def deploy(root: Path, addr: str, base: Path, args: argparse.Namespace) -> list[str]:
    """Creates the three variants on one host; returns their names."""
    client = lambda_client(root, f"http://{addr}")
    code = zip_files({"bootstrap": Path(args.bootstrap)}, base / "echo.zip", {"bootstrap": 0o755})
    layer = client.publish_layer_version(
        LayerName="extension",
        Content={"ZipFile": zip_files(
            {"extensions/extension": Path(args.extension)}, base / "layer.zip",
            {"extensions/extension": 0o755})},
    )["LayerVersionArn"]
    variants = {
        "echo": ([], {}),
        "echo-extension": ([layer], {"TELEMETRY": "off"}),
        "echo-telemetry": ([layer], {}),
    }
    for name, (layers, env) in variants.items():
        client.create_function(
            FunctionName=name, Runtime="provided.al2023", Role=ROLE, Handler="bootstrap",
            Code={"ZipFile": code}, Layers=layers, Timeout=10,
            Environment={"Variables": env},
        )
        wait_active(client, name)
    return list(variants)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lambkin", required=True)
    p.add_argument("--before", help="an older lambkin binary, measured in the same turns")
    p.add_argument("--bench", required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--extension", required=True)
    p.add_argument("--turns", type=int, default=2)
    p.add_argument("--seconds", type=int, default=3)
    args = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="lambkin-telemetry-bench-"))
    base.chmod(0o755)
    builds = [("before", args.before)] if args.before else []
    builds.append(("after" if args.before else "", args.lambkin))
    hosts: list[tuple[str, subprocess.Popen, Path, str]] = []
    try:
        for label, binary in builds:
            root = base / (label or "root")
            host, addr = start_host(binary, root)
            hosts.append((label, host, root, addr))
        runs: list[tuple[str, Path, str, str]] = []
        for label, _, root, addr in hosts:
            for name in deploy(root, addr, base / (label or "root"), args):
                runs.append((f"{name} ({label})" if label else name, root, addr, name))
        results: dict[str, list[tuple[float, float]]] = {r[0]: [] for r in runs}
        for _ in range(args.turns):
            for title, root, addr, name in runs:
                out = subprocess.run(
                    [args.bench, "load", f"http://{addr}/2015-03-31/functions/{name}/invocations",
                     "--root", str(root), "--concurrency", "8", "--seconds", str(args.seconds),
                     "--invokes", "2000"],
                    check=True, capture_output=True, text=True,
                ).stdout
                p50 = float(re.search(r"sequential: p50 (\d+) ", out).group(1))
                rate = float(re.search(r"concurrency 8: (\d+) invocations/s", out).group(1))
                results[title].append((p50, rate))
                print(f"{title}: {out.strip()}", flush=True)
        print("\n| variant | sequential p50 (µs, median of turns) (turns) | invocations/s, concurrency 8 (turns) |")
        print("|---|---:|---:|")
        for title, measured in results.items():
            p50s = [r[0] for r in measured]
            rates = [r[1] for r in measured]
            print(f"| {title} | {sorted(p50s)[len(p50s) // 2]:.0f} ({', '.join(f'{v:.0f}' for v in p50s)})"
                  f" | {sorted(rates)[len(rates) // 2]:.0f} ({', '.join(f'{v:.0f}' for v in rates)}) |")
    finally:
        for _, host, _, _ in hosts:
            host.terminate()
            try:
                host.wait(timeout=10)
            except subprocess.TimeoutExpired:
                host.kill()


if __name__ == "__main__":
    main()
