#!/usr/bin/env python3
"""The install step and the upgrade of a full root, timed (`scripts/bench install`, as root).

1. `lambkin install` on a fresh root (flags as in the README: thing name, region, an AWS IoT
   endpoint, the device's certificate, key and CA made here with openssl; the unit into a
   scratch directory, so no systemctl call), the components' default user existing; then with
   a default user and group install must create (useradd, groupadd; uninstall removes them).
2. A root with 100 functions (Python, made through the Lambda API), 100 generic components
   (one deployment) and 10,000 queued Event invocations (rows of the state database, as the
   API stores an accepted Event: function, request id, payload), its databases marked as a
   Lambkin before schema versions wrote them (user_version 0): `lambkin run` on a copy of it,
   timed from exec to ready (`ROOT/state/api.addr` written), which includes the migration,
   reading the functions, resubmitting the events and starting the components (the engine
   starts the committed set before the API opens); the same root started again once
   migrated; the older root with nothing to start (no components; its events for functions
   not defined, so kept and not run): the migration and the reading of the root alone; and
   `lambkin install` on that root.

Prints a markdown table: best, median and worst of N runs, and the median CPU time (user plus
system) of the command (with its children) or of the host up to ready (without the
components' processes), which a busy machine does not stretch. Standard library only.
"""

import argparse
import base64
import io
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zipfile

FUNCTIONS = 100
COMPONENTS = 100
EVENTS = 10_000


def run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))}: exit {out.returncode}\n{out.stdout}{out.stderr}")
    return out


def timed(cmd):
    """(seconds it took, CPU seconds it used, its children included)."""
    before = os.times()
    start = time.perf_counter()
    run(cmd)
    took = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system -
                                                          before.children_system)
    return took, cpu


def device_files(d):
    """A CA, and a device certificate and key it signed (PEM), with openssl."""
    os.makedirs(d, exist_ok=True)
    p = lambda n: os.path.join(d, n)
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", p("ca.key"), "-out", p("AmazonRootCA1.pem"), "-days", "30",
         "-subj", "/CN=bench CA"])
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", p("private.pem.key"), "-out", p("device.csr"), "-subj", "/CN=bench device"])
    run(["openssl", "x509", "-req", "-in", p("device.csr"), "-CA", p("AmazonRootCA1.pem"),
         "-CAkey", p("ca.key"), "-CAcreateserial", "-out", p("device.pem.crt"), "-days", "30"])
    return p("AmazonRootCA1.pem"), p("device.pem.crt"), p("private.pem.key")


def install_cmd(lambkin, root, units, certs, extra=()):
    ca, cert, key = certs
    return [lambkin, "install", "--root", root, "--unit-dir", units, "--binary", lambkin,
            "--thing-name", "BenchGateway", "--region", "eu-central-1",
            "--mqtt-endpoint", "abcdef-ats.iot.eu-central-1.amazonaws.com",
            "--cert", cert, "--key", key, "--ca", ca, *extra]


def start_host(lambkin, root):
    """`lambkin run` on root; returns (process, (seconds from exec to ready, CPU seconds the
    host used by then), address)."""
    addr_file = os.path.join(root, "state", "api.addr")
    if os.path.exists(addr_file):
        os.remove(addr_file)
    start = time.perf_counter()
    proc = subprocess.Popen([lambkin, "run", "--root", root, "--listen", "127.0.0.1:0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"LAMBKIN_LOG": "warn", **os.environ})
    deadline = start + 120
    while not os.path.exists(addr_file):
        if proc.poll() is not None:
            sys.exit(f"the host exited with {proc.returncode} on {root}")
        if time.perf_counter() > deadline:
            proc.kill()
            sys.exit("the host did not become ready within 120 s")
        time.sleep(0.002)
    ready = time.perf_counter() - start
    cpu = cpu_seconds(proc.pid)
    with open(addr_file) as f:
        addr = f.read().strip()
    return proc, (ready, cpu), addr


def cpu_seconds(pid):
    """User plus system CPU time process pid has used so far: unlike the time it took, not
    stretched by the other processes of a busy machine."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_host(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def api(addr, method, path, body):
    req = urllib.request.Request(f"http://{addr}{path}", data=json.dumps(body).encode(),
                                 method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status


def full_root(lambkin, root, scratch):
    """Makes the root with 100 functions, 100 components and 10,000 queued Events."""
    os.makedirs(root)
    # Development mode while it is filled: the requests below need no signature.
    with open(os.path.join(root, "config.toml"), "w") as f:
        f.write('[api]\nauth = "none"\n')
    proc, _, addr = start_host(lambkin, root)
    try:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("app.py", "def handler(event, context):\n    return event\n")
        code = base64.b64encode(buf.getvalue()).decode()
        for i in range(FUNCTIONS):
            api(addr, "POST", "/2015-03-31/functions", {
                "FunctionName": f"fn-{i:03}", "Runtime": "python3.11",
                "Role": "arn:aws:iam::000000000000:role/bench", "Handler": "app.handler",
                "Code": {"ZipFile": code}})
        recipes = os.path.join(scratch, "recipes")
        artifacts = os.path.join(scratch, "artifacts")
        os.makedirs(recipes)
        os.makedirs(artifacts)
        merges = []
        for i in range(COMPONENTS):
            name = f"com.example.Bench{i:03}"
            with open(os.path.join(recipes, f"{name}-1.0.0.json"), "w") as f:
                json.dump({"RecipeFormatVersion": "2020-01-25", "ComponentName": name,
                           "ComponentVersion": "1.0.0",
                           "Manifests": [{"Platform": {"os": "linux"},
                                          "Lifecycle": {"Run": "exec sleep 3600"}}]}, f)
            merges += ["-m", f"{name}=1.0.0"]
        run([lambkin, "deploy", "--root", root, "-r", recipes, "-a", artifacts, *merges])
    finally:
        stop_host(proc)
    db = sqlite3.connect(os.path.join(root, "state", "lambkin.db"))
    with db:
        db.executemany(
            "INSERT INTO events (function, request_id, payload) VALUES (?, ?, ?)",
            ((f"fn-{i % FUNCTIONS:03}", str(uuid.uuid4()), json.dumps({"n": i}).encode())
             for i in range(EVENTS)))
    counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("functions", "components", "events")}
    db.close()
    os.remove(os.path.join(root, "config.toml"))
    # As a Lambkin from before schema versions left it: without what later steps added (the
    # Events' client context, schema step 2), and marked with no version.
    for name in ("lambkin.db", "spool.db"):
        path = os.path.join(root, "state", name)
        if os.path.exists(path):
            conn = sqlite3.connect(path)
            if name == "lambkin.db":
                conn.execute("ALTER TABLE events DROP COLUMN client_context")
            conn.execute("PRAGMA user_version = 0")
            conn.commit()
            conn.close()
    return counts


def user_version(root):
    conn = sqlite3.connect(os.path.join(root, "state", "lambkin.db"))
    v = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    return v


def summary(samples):
    ms = sorted(took * 1000 for took, _ in samples)
    cpu = statistics.median(c * 1000 for _, c in samples)
    return f"{ms[0]:.0f} | {statistics.median(ms):.0f} | {ms[-1]:.0f} | {cpu:.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lambkin", required=True)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("lambkin install needs root")
    lambkin = os.path.abspath(args.lambkin)
    load_before = os.getloadavg()[0]
    rows = []
    # A root-owned scratch directory no one else may write to (install checks the path), that
    # the components' user may pass through to its root.
    scratch = tempfile.mkdtemp(prefix="lambkin-bench-install-", dir="/var/tmp")
    os.chmod(scratch, 0o711)
    try:
        certs = device_files(os.path.join(scratch, "certs"))
        units = os.path.join(scratch, "units")
        os.makedirs(units)

        # 1. install on a fresh root (a first one, untimed, makes the default user if needed).
        run(install_cmd(lambkin, os.path.join(scratch, "warm-up"), units, certs))
        existing = []
        for i in range(args.runs):
            root = os.path.join(scratch, f"fresh-{i}")
            existing.append(timed(install_cmd(lambkin, root, units, certs)))
        rows.append(("`lambkin install`, fresh root, default user exists", existing))
        created = []
        for i in range(args.runs):
            root = os.path.join(scratch, f"fresh-user-{i}")
            created.append(timed(install_cmd(lambkin, root, units, certs,
                                             ["--component-default-user",
                                              f"lkbench{i}:lkbench{i}g"])))
            run([lambkin, "uninstall", "--root", root, "--purge"])
        rows.append(("`lambkin install`, fresh root, creating user and group", created))

        # 2. The full root of an older Lambkin.
        full = os.path.join(scratch, "full")
        print(f"[bench install] making a root with {FUNCTIONS} functions, {COMPONENTS} "
              f"components and {EVENTS} queued Events", file=sys.stderr)
        counts = full_root(lambkin, full, scratch)
        print(f"[bench install] made: {counts}", file=sys.stderr)
        migrate, again, reinstall, without_components, components_only = [], [], [], [], []
        no_functions, no_components = [], []
        for i in range(args.runs):
            copy = os.path.join(scratch, f"upgrade-{i}")
            shutil.copytree(full, copy, symlinks=True)
            assert user_version(copy) == 0
            proc, ready, _ = start_host(lambkin, copy)
            stop_host(proc)
            migrate.append(ready)
            version = user_version(copy)
            assert version > 0, "the host did not migrate the root"
            shutil.rmtree(copy)
            # The same root with every event still queued, at the current version already.
            shutil.copytree(full, copy, symlinks=True)
            conn = sqlite3.connect(os.path.join(copy, "state", "lambkin.db"))
            conn.execute("ALTER TABLE events ADD COLUMN client_context TEXT")
            conn.execute(f"PRAGMA user_version = {int(version)}")
            conn.commit()
            conn.close()
            proc, ready, _ = start_host(lambkin, copy)
            stop_host(proc)
            again.append(ready)
            shutil.rmtree(copy)
            shutil.copytree(full, copy, symlinks=True)
            reinstall.append(timed(install_cmd(lambkin, copy, units, certs)))
            shutil.rmtree(copy)
            # The older root with nothing to start: no components, and its events for
            # functions not defined here (read and kept, as a Lambda component's are until the
            # engine defines its function, but not run), so that the start is the migration
            # and the reading of the root alone, not 100 instances and 100 components starting.
            shutil.copytree(full, copy, symlinks=True)
            conn = sqlite3.connect(os.path.join(copy, "state", "lambkin.db"))
            with conn:
                conn.execute("DELETE FROM components")
                conn.execute("UPDATE events SET function = 'held-' || function")
            conn.close()
            proc, ready, _ = start_host(lambkin, copy)
            stop_host(proc)
            assert user_version(copy) > 0, "the host did not migrate the root"
            without_components.append(ready)
            shutil.rmtree(copy)
            # Its components alone (events kept, not run): what starting them costs.
            shutil.copytree(full, copy, symlinks=True)
            conn = sqlite3.connect(os.path.join(copy, "state", "lambkin.db"))
            with conn:
                conn.execute("UPDATE events SET function = 'held-' || function")
            conn.close()
            proc, ready, _ = start_host(lambkin, copy)
            stop_host(proc)
            components_only.append(ready)
            shutil.rmtree(copy)
            # Each half alone: the components without the functions' pinned instances
            # starting beside them, and the functions (with their instances) alone.
            for table, samples in (("functions", no_functions), ("components", no_components)):
                shutil.copytree(full, copy, symlinks=True)
                conn = sqlite3.connect(os.path.join(copy, "state", "lambkin.db"))
                with conn:
                    conn.execute("DELETE FROM events")
                    conn.execute(f"DELETE FROM {table}")
                conn.close()
                proc, ready, _ = start_host(lambkin, copy)
                stop_host(proc)
                samples.append(ready)
                shutil.rmtree(copy)
        rows.append((f"`lambkin run` to ready on an older root ({FUNCTIONS} functions, "
                     f"{COMPONENTS} components, {EVENTS:,} queued Events): migration "
                     "included", migrate))
        rows.append(("the same root started again (migrated already)", again))
        rows.append((f"`lambkin run` to ready on the older root with nothing to start "
                     f"({FUNCTIONS} functions, {EVENTS:,} queued Events kept, no component)",
                     without_components))
        rows.append((f"the same with its {COMPONENTS} components (started before the API "
                     "opens; events kept, not run)", components_only))
        rows.append((f"its {COMPONENTS} components alone (no function, no event)",
                     no_functions))
        rows.append((f"its {FUNCTIONS} functions alone, each starting its pinned instance "
                     "(no component, no event)", no_components))
        rows.append(("`lambkin install` on that root", reinstall))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"load average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, "
          f"on {os.cpu_count()} CPUs\n")
    print(f"| step ({args.runs} runs) | best ms | median ms | worst ms | median CPU ms |")
    print("|---|---:|---:|---:|---:|")
    for name, samples in rows:
        print(f"| {name} | {summary(samples)} |")


if __name__ == "__main__":
    main()
