#!/usr/bin/env python3
"""Container cost: `lambkin sandbox-init` (cgroup, namespaces, root, pivot, exec, teardown)
against a plain exec of the same program, and the private memory of the two processes a
container adds (monitor and PID 1). Root only. Usage: bench/container/measure.py LAMBKIN [N]"""
import json, os, subprocess, sys, tempfile, time, statistics
exe = sys.argv[1]; n = int(sys.argv[2]) if len(sys.argv) > 2 else 50
base = "/sys/fs/cgroup"
scratch = tempfile.mkdtemp(); code = tempfile.mkdtemp()
def cg(name, create=True):
    dirs = [f"{base}/{c}/lambkin/{name}" for c in ("memory", "pids", "devices")]
    return dirs
def spec(name, program, args):
    return json.dumps({"cgroup_procs": [d + "/cgroup.procs" for d in cg(name)], "scratch": scratch,
        "hostname": "bench", "code_dir": code, "runtime_dir": "", "mount_ro_sysfs": False,
        "volumes": [], "devices": [], "program": program, "args": args, "run_as": None})
def make(name):
    for d in cg(name): os.makedirs(d, exist_ok=True)
    m = f"{base}/memory/lambkin/{name}"
    open(m + "/memory.limit_in_bytes", "w").write(str(16 << 20))
    open(f"{base}/pids/lambkin/{name}/pids.max", "w").write("1024")
    open(f"{base}/devices/lambkin/{name}/devices.deny", "w").write("a")
    for r in ("c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm"):
        open(f"{base}/devices/lambkin/{name}/devices.allow", "w").write(r)
def drop(name):
    for d in cg(name):
        for _ in range(100):
            try: os.rmdir(d); break
            except OSError: time.sleep(0.001)
plain, cont = [], []
for i in range(n):
    t = time.perf_counter(); subprocess.run(["/bin/true"], check=True); plain.append(time.perf_counter() - t)
    t = time.perf_counter(); make(f"b{i}")
    subprocess.run([exe, "sandbox-init", spec(f"b{i}", "/bin/true", [])], check=True)
    drop(f"b{i}"); cont.append(time.perf_counter() - t)
med = lambda v: statistics.median(v) * 1000
print(f"plain exec of /bin/true: median {med(plain):.2f} ms")
print(f"container (cgroup + namespaces + root + exec + teardown): median {med(cont):.2f} ms")
print(f"overhead: {med(cont) - med(plain):.2f} ms")
# memory: the extra processes of one instance
make("mem")
p = subprocess.Popen([exe, "sandbox-init", spec("mem", "/bin/sleep", ["30"])])
time.sleep(0.5)
def kids(pid):
    out = []
    for t in os.listdir(f"/proc/{pid}/task"):
        for c in open(f"/proc/{pid}/task/{t}/children").read().split(): out.append(int(c))
    return out
init = kids(p.pid)[0]; runtime = kids(init)[0]
def rollup(pid):
    d = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "kB": d[parts[0].rstrip(":")] = int(parts[1])
    return d
extra_priv = extra_pss = 0
for pid, role in ((p.pid, "monitor"), (init, "init")):
    r = rollup(pid); priv = r["Private_Clean"] + r["Private_Dirty"]
    print(f"{role}: Rss {r['Rss']} kB, Pss {r['Pss']} kB, private {priv} kB")
    extra_priv += priv; extra_pss += r["Pss"]
print(f"extra per instance: private {extra_priv} kB, Pss {extra_pss} kB")
p.kill(); p.wait()
time.sleep(0.2); drop("mem")
