#!/usr/bin/env python3
"""What a GreengrassContainer instance costs over a plain process, runtime init excluded.

Starts `/bin/true` N times each way and prints medians:
- plain: a plain exec of the program (the NoContainer path);
- container, no cgroup: `lambkin sandbox-init` (new mount/PID/IPC/UTS namespaces, the read-only
  root, pivot_root, PID 1, exec) without joining a cgroup;
- container: the same, joining the instance's memory and pids cgroups first, as the host does.
The difference between the last two is the kernel's cgroup attach alone.
- zygote: what the host does when a sandbox init is already waiting in its cgroup (an on-demand
  function's next instance): the init is started and has joined its cgroup (it writes one byte
  to stdout) before the clock starts; timed from writing the runtime's environment to its stdin
  (and closing it) to the exit of `/bin/true`.

Memory: one container running `sleep` while a host process maps the same binary (as in real
use, so the binary's pages are shared and not counted): the pages only the container's two
extra processes hold (private dirty, plus the copy-on-write pages they share with each other,
counted once) and their page tables.

Memory of a waiting zygote: the same counts for its one process.

Root only. Usage: bench/container/measure.py LAMBKIN [N]"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

exe = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 30
base = "/sys/fs/cgroup"
scratch = tempfile.mkdtemp()
code = tempfile.mkdtemp()


def cgroup_dirs(name):
    return [f"{base}/{c}/lambkin-bench/{name}" for c in ("memory", "pids")]


def make(name):
    for d in cgroup_dirs(name):
        os.makedirs(d, exist_ok=True)
    open(f"{base}/memory/lambkin-bench/{name}/memory.limit_in_bytes", "w").write(str(16 << 20))
    open(f"{base}/pids/lambkin-bench/{name}/pids.max", "w").write("1024")


def drop(name):
    for d in cgroup_dirs(name):
        for _ in range(200):
            try:
                os.rmdir(d)
                break
            except OSError:
                time.sleep(0.001)


def spec(name, program, args, zygote=False):
    procs = [d + "/cgroup.procs" for d in cgroup_dirs(name)] if name else []
    return json.dumps({"cgroup_procs": procs, "scratch": scratch, "hostname": "bench",
                       "code_dir": code, "runtime_dir": "", "mount_ro_sysfs": False,
                       "volumes": [], "devices": [], "program": program, "args": args,
                       "run_as": None, "zygote": zygote})


# A runtime's environment as the host sends it: KEY=value, each ended by a NUL.
ENV = b"".join(f"{k}={v}".encode() + b"\0" for k, v in {
    **os.environ, "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:40000", "LAMBDA_TASK_ROOT": "/lambda",
    "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0123456789abcdef"}.items())


def zygote(name, program, args):
    """A sandbox init that has joined its cgroup and waits for its environment."""
    z = subprocess.Popen([exe, "sandbox-init", spec(name, program, args, zygote=True)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert z.stdout.read(1) == b"R", "the zygote did not get ready"
    return z


def timed_zygote(z):
    t = time.perf_counter()
    z.stdin.write(ENV)
    z.stdin.close()
    assert z.wait() == 0
    return (time.perf_counter() - t) * 1000


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return (time.perf_counter() - t) * 1000


plain, bare, full, warm = [], [], [], []
for i in range(n):
    plain.append(timed(["/bin/true"]))
    bare.append(timed([exe, "sandbox-init", spec(None, "/bin/true", [])]))
    make(f"b{i}")
    full.append(timed([exe, "sandbox-init", spec(f"b{i}", "/bin/true", [])]))
    drop(f"b{i}")
    make(f"z{i}")
    z = zygote(f"z{i}", "/bin/true", [])
    time.sleep(0.02)  # waiting, as it does between two cold starts
    warm.append(timed_zygote(z))
    drop(f"z{i}")
    time.sleep(0.02)  # let the kernel settle, as between two real cold starts

med = statistics.median
print(f"| start + exit of /bin/true, median of {n} | ms |")
print("|---|---:|")
print(f"| plain exec | {med(plain):.2f} |")
print(f"| container without cgroup | {med(bare):.2f} |")
print(f"| container with memory + pids cgroup | {med(full):.2f} |")
print(f"| container over plain, without cgroup | {med(bare) - med(plain):.2f} |")
print(f"| container over plain, with cgroup | {med(full) - med(plain):.2f} |")
print(f"| of which the cgroup attach | {med(full) - med(bare):.2f} |")
print(f"| zygote (waiting in its cgroup): environment written → exit | {med(warm):.2f} |")
print(f"| zygote over plain | {med(warm) - med(plain):.2f} |")

# Memory, with the same binary mapped by a stand-in host.
host = subprocess.Popen([exe, "sandbox-init", spec(None, "/bin/sleep", ["30"])])
make("mem")
p = subprocess.Popen([exe, "sandbox-init", spec("mem", "/bin/sleep", ["30"])])
time.sleep(0.5)


def children(pid):
    out = []
    for t in os.listdir(f"/proc/{pid}/task"):
        out += [int(c) for c in open(f"/proc/{pid}/task/{t}/children").read().split()]
    return out


def fields(pid):
    d = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "kB":
            d[parts[0].rstrip(":")] = int(parts[1])
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmPTE:"):
            d["VmPTE"] = int(line.split()[1])
    return d


monitor = fields(p.pid)
init = fields(children(p.pid)[0])
private = monitor["Private_Dirty"] + init["Private_Dirty"]
shared_cow = max(monitor["Shared_Dirty"], init["Shared_Dirty"])
tables = monitor["VmPTE"] + init["VmPTE"]
print()
print("| memory of one container's two extra processes (monitor + PID 1) | kB |")
print("|---|---:|")
print(f"| private dirty | {private} |")
print(f"| copy-on-write pages the two share, once | {shared_cow} |")
print(f"| page tables | {tables} |")
print(f"| added per instance | {private + shared_cow + tables} |")
make("idle")
z = zygote("idle", "/bin/sleep", ["30"])
waiting = fields(z.pid)
print()
print("| memory of one waiting zygote (one process) | kB |")
print("|---|---:|")
print(f"| private dirty | {waiting['Private_Dirty']} |")
print(f"| page tables | {waiting['VmPTE']} |")
print(f"| held while waiting | {waiting['Private_Dirty'] + waiting['VmPTE']} |")
for proc in (p, host, z):
    proc.kill()
    proc.wait()
time.sleep(0.2)
drop("mem")
drop("idle")
