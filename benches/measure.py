#!/usr/bin/env python3
"""Measure switchboard against the C epoll echo server and tokio; write the raw figures to a
results folder, from which benches/report.py writes benches/README.md and benches/chart.svg.
benches/run.sh builds everything and calls both; run this directly only to measure again
without building.

  measure.py --bench-dir ../shared/bench --out benches/results [--secs 2] [--repeats 3]
             [--no-profile]

Environment: SWITCHBOARD (the release binary), BENCH_BIN (loadgen and the reference servers),
SB_BENCH_TMP (where the servers' configs and logs go; a fresh folder is used when unset).

Three passes, all over 127.0.0.1, server on core 0 and load generator on core 1:

1. compare: the shared compare.py over every scenario and every server below, interleaved
   (A B C ... A B C ...), in one invocation: the figures of the report all come from it.
2. cpu: three interleaved runs per scenario for c-epoll, tokio and switchboard, reading the
   CPU time the server and the load generator used. A load generator near 100 % of its core
   means the figure is its limit, not the server's; the server's CPU per message is what
   tuning lowers.
3. profile: pp50 under callgrind (user-space instructions per message, by function, with the
   start-up cost taken out by an unloaded run) and pp1/pp50 under `strace -c` (system calls
   per message).
"""
import argparse
import gzip
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.environ.get("BENCH_BIN", "/tmp/switchboard-bench-bin")
LOADGEN = os.path.join(BIN, "loadgen")

# Load per profiled run; callgrind slows the server, so the count of messages comes from loadgen.
PROFILE_SECS = 3
PROFILE_SCENARIO = "pp50"
STRACE_SCENARIOS = ["pp1", "pp50"]
# Cycles of the CPU pass. Kernel time is most of a server's CPU per message (the three servers
# make the same system calls) and moves by 10-15 % from run to run on a shared machine, while
# the holds are within a few percent: more cycles than compare's, for a steadier median.
CPU_REPEATS = 9


def servers(bench_dir):
    """The servers compared, in the order compare.py runs them; ratios are to the first."""
    q = shlex.quote
    wrapper = q(os.path.join(HERE, "switchboard-server.sh"))
    return [
        ("c-epoll", f"{q(os.path.join(BIN, 'c-epoll-echo'))} {{port}}"),
        ("tokio", f"{q(os.path.join(BIN, 'tokio-echo'))} {{port}}"),
        ("switchboard", f"{q(os.path.join(bench_dir, 'switchboard-echo.sh'))} {{port}}"),
        ("bot20", f"{wrapper} bot20 {{port}}"),
        ("log-devnull", f"{wrapper} log-devnull {{port}}"),
        ("log-rotated", f"{wrapper} log-rotated {{port}}"),
    ]


def sh(*argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def kernel_option(name):
    """True or False from /proc/config.gz, None when the kernel does not publish its config."""
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            return any(line.strip() == f"{name}=y" for line in f)
    except OSError:
        return None


def machine():
    model = None
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = None
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        # Whether the kernel keeps interrupt time apart from the task it interrupted; when it
        # does not, the softirq work of loopback delivery counts for whichever process runs.
        "irq_time_accounting": kernel_option("CONFIG_IRQ_TIME_ACCOUNTING"),
        "nproc": int(sh("nproc") or os.cpu_count()),
        "cpu_model": model,
        "kernel": platform.release(),
        "arch": platform.machine(),
        "mem_total_kib": mem_kib,
        "rustc": sh("rustc", "--version"),
        "gcc": (sh("gcc", "--version") or "").splitlines()[0] if sh("gcc", "--version") else None,
        "commit": sh("git", "-C", REPO, "rev-parse", "--short", "HEAD"),
        "commit_subject": sh("git", "-C", REPO, "log", "-1", "--format=%s"),
        # The last commit that changed what is measured (bench-only commits change nothing).
        "source_commit": sh("git", "-C", REPO, "log", "-1", "--format=%h %s", "--", "src",
                            "handlers", "Cargo.toml", "Cargo.lock"),
        # src/ and handlers/ are what is measured: say whether they differ from the commit.
        "source_dirty": bool(sh("git", "-C", REPO, "status", "--porcelain", "--", "src", "handlers",
                                "Cargo.toml", "Cargo.lock")),
    }


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# --- pass 1: compare.py -------------------------------------------------------------------------

def run_compare(bench_dir, secs, repeats, out):
    srv = servers(bench_dir)
    argv = [sys.executable, os.path.join(bench_dir, "compare.py"), "--secs", str(secs),
            "--repeats", str(repeats), "--json"] + [f"{n}={c}" for n, c in srv]
    print(f"compare: {len(srv)} servers, --secs {secs} --repeats {repeats}", flush=True)
    t0 = time.time()
    r = subprocess.run(argv, capture_output=True, text=True)
    with open(os.path.join(out, "compare.txt"), "w") as f:
        f.write(r.stdout)
    with open(os.path.join(out, "compare-stderr.txt"), "w") as f:
        f.write(r.stderr)
    if r.returncode != 0:
        sys.exit(f"compare.py failed (exit {r.returncode}); see {out}/compare-stderr.txt")
    results = json.loads(r.stdout.strip().splitlines()[-1])
    print("\n".join(r.stdout.strip().splitlines()[:-1]), flush=True)
    return {
        "argv": ["python3", "compare.py"] + argv[2:],
        "servers": dict(srv),
        "secs": secs,
        "repeats": repeats,
        "elapsed_s": round(time.time() - t0, 1),
        "results": results,
    }


# --- shared by the cpu and profile passes ------------------------------------------------------

def compare_module(bench_dir):
    sys.path.insert(0, bench_dir)
    import compare  # noqa: E402  (the shared yardstick: its scenarios and server launcher)
    return compare


def proc_cpu_s(pid):
    """CPU time of a process, all its live threads included, in seconds: from schedstat
    (nanoseconds) where the kernel has it, else utime + stime (clock ticks)."""
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_ticks():
    """{core: [user, nice, system, idle, iowait, irq, softirq, steal]} of cores 0 and 1, in
    clock ticks."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *v = line.split()
            if name in ("cpu0", "cpu1"):
                out[name] = [int(x) for x in v[:8]]
    return out


def loadgen_argv(compare, scen, port, secs):
    mode, args, key = compare.SCENARIOS[scen]
    return ["taskset", "-c", "1", LOADGEN, mode, str(port)] + args.split() + [str(secs)], key


def run_loadgen(argv, secs):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 60)
    if r.returncode != 0:
        raise RuntimeError(f"loadgen failed: {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def operations(res):
    """What one unit of the scenario's figure counts, over the whole run."""
    for key in ("msgs_per_s", "conns_per_s", "dgrams_per_s"):
        if key in res:
            return res[key] * res["secs"]
    return res["MBps"] * res["secs"]  # bulk: per MB


# --- pass 2: CPU time of each side ------------------------------------------------------------

def core_use(k0, k1, core, wall):
    """How busy a core was between two readings, whoever kept it busy: 1 - its idle share.
    (Idle time is exact on a tickless kernel; the busy columns are sampled at each tick and
    miss much of a task that sleeps and wakes thousands of times a second.)"""
    idle = (k1[core][3] + k1[core][4]) - (k0[core][3] + k0[core][4])
    return min(1.0, max(0.0, 1 - idle / (wall * os.sysconf("SC_CLK_TCK"))))


def run_cpu(compare, bench_dir, secs, repeats):
    """Per scenario and server, a list of runs (cycles interleaved as in compare.py)."""
    srv = dict(servers(bench_dir))
    names = ["c-epoll", "tokio", "switchboard"]
    scens = [s for s in compare.SCENARIOS if compare.SCENARIOS[s][0] != "idle"]
    out = {scen: {name: [] for name in names} for scen in scens}
    print(f"cpu: {repeats} interleaved runs per scenario for " + ", ".join(names), flush=True)
    for scen in scens:
        for _ in range(repeats):
            for name in names:
                s = compare.Server(srv[name])
                try:
                    argv, key = loadgen_argv(compare, scen, s.port, secs)
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    c0, t0, k0 = proc_cpu_s(s.p.pid), time.monotonic(), core_ticks()
                    res = run_loadgen(argv, secs)
                    wall = time.monotonic() - t0
                    c1, k1 = proc_cpu_s(s.p.pid), core_ticks()
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                except Exception as e:  # a failed run leaves a gap (None), not a failed report
                    print(f"# cpu {name} {scen}: {e}", file=sys.stderr)
                    out[scen][name].append(None)
                    continue
                finally:
                    s.stop()
                lg = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                ops = operations(res)
                out[scen][name].append({
                    "figure": res[key],
                    "server_busy": (c1 - c0) / wall,
                    "loadgen_busy": lg / wall,
                    "server_us_per_op": (c1 - c0) / ops * 1e6 if ops else None,
                    # Each core as a whole: its process, the kernel's work for it, others.
                    "core0_busy": core_use(k0, k1, "cpu0", wall),
                    "core1_busy": core_use(k0, k1, "cpu1", wall),
                })
    return out


# --- pass 3: profiles -------------------------------------------------------------------------

class Traced:
    """A server started under a tool (valgrind or strace), on core 0."""

    def __init__(self, compare, name, wrap, tmp):
        self.port = compare.free_port()
        env = dict(os.environ, SB_BENCH_TMP=tmp)
        if name in ("switchboard", "bot20"):
            variant = "echo" if name == "switchboard" else name
            argv = [os.path.join(HERE, "switchboard-server.sh"), variant, str(self.port)]
            env["SB_WRAP"] = " ".join(wrap)
        else:
            argv = wrap + [os.path.join(BIN, f"{name}-echo"), str(self.port)]
        self.log = open(os.path.join(tmp, f"{name}.tool.log"), "w")
        self.p = subprocess.Popen(["taskset", "-c", "0"] + argv, env=env, stdout=self.log,
                                  stderr=self.log, start_new_session=True)
        if not compare.wait_port(self.port, t=60):
            self.stop(signal.SIGKILL)
            raise RuntimeError(f"{name} did not come up under {wrap[0]}")
        time.sleep(0.5)

    def stop(self, sig=signal.SIGTERM, target=None):
        if self.p.poll() is None:
            os.kill(target or self.p.pid, sig)
            try:
                self.p.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.log.close()

    def child(self):
        """The traced server when the tool runs it as a child (strace)."""
        pid = self.p.pid
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
        return int(kids[0])


CG_LINE = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*?)(?: \[(.*)\])?$")


def callgrind_functions(path):
    """{function: self instructions} and the program total, from callgrind_annotate."""
    r = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", path],
                       capture_output=True, text=True, check=True)
    total, funcs = None, {}
    for line in r.stdout.splitlines():
        m = CG_LINE.match(line)
        if not m:
            continue
        ir, what = int(m.group(1).replace(",", "")), m.group(2)
        if what == "PROGRAM TOTALS":
            total = ir
            continue
        funcs[what] = funcs.get(what, 0) + ir
    return total, funcs


def short_place(what):
    """'file:function' with the build machine's paths taken off the file."""
    file, _, func = what.partition(":")
    file = re.sub(r"^.*/registry/src/[^/]+/", "", file)
    file = re.sub(r"^/rustc/[0-9a-f]+/library/", "std:", file)
    file = file.replace(REPO + "/", "")
    file = re.sub(r"^(\./)+", "", file)
    return func, file


def run_callgrind(compare, names, tmp):
    out = {}
    for name in names:
        runs = {}
        try:
            for loaded in (False, True):
                cg = os.path.join(tmp, f"callgrind.{name}.{'load' if loaded else 'idle'}")
                t = Traced(compare, name,
                           ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}"], tmp)
                try:
                    res = None
                    if loaded:
                        argv, _ = loadgen_argv(compare, PROFILE_SCENARIO, t.port, PROFILE_SECS)
                        res = run_loadgen(argv, PROFILE_SECS)
                finally:
                    t.stop()
                runs[loaded] = (callgrind_functions(cg), res)
        except Exception as e:
            print(f"# callgrind {name}: {e}", file=sys.stderr)
            continue
        (idle_total, idle_f), _ = runs[False]
        (load_total, load_f), res = runs[True]
        msgs = operations(res)
        # callgrind_annotate lists a function once per source file its code came from
        # (inlining): add those up, and name the file that contributed most, preferring one
        # outside the standard library (whose iterators are inlined everywhere).
        per_fn = {}
        for what, ir in load_f.items():
            d = (ir - idle_f.get(what, 0)) / msgs
            func, file = short_place(what)
            per_fn.setdefault(func, {})[file] = d
        top = sorted(per_fn.items(), key=lambda kv: -sum(kv[1].values()))[:25]

        def main_file(files):
            own = {f: d for f, d in files.items() if not f.startswith("std:")}
            return max(own or files, key=lambda f: (own or files)[f])

        out[name] = {
            "messages": msgs,
            "msgs_per_s_under_callgrind": res["msgs_per_s"],
            "ir_per_msg": (load_total - idle_total) / msgs,
            "top": [{"function": f, "file": main_file(files), "ir_per_msg": sum(files.values())}
                    for f, files in top if sum(files.values()) > 0.05],
        }
        print(f"callgrind {name}: {out[name]['ir_per_msg']:.0f} instructions per message",
              flush=True)
    return out


def strace_counts(path):
    calls = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) in (5, 6) and parts[0][0].isdigit() and parts[-1] != "total":
                calls[parts[-1]] = {"calls": int(parts[3]),
                                    "errors": int(parts[4]) if len(parts) == 6 else 0}
    return calls


def run_strace(compare, names, tmp, out_dir):
    out = {}
    for scen in STRACE_SCENARIOS:
        out[scen] = {}
        for name in names:
            st = os.path.join(out_dir, f"strace-{name}-{scen}.txt")
            child = None
            try:
                t = Traced(compare, name, ["strace", "-f", "-c", "-o", st], tmp)
                try:
                    argv, _ = loadgen_argv(compare, scen, t.port, 2)
                    res = run_loadgen(argv, 2)
                    child = t.child()
                finally:
                    # Stop the server, not strace, so that strace writes its summary and exits.
                    t.stop(target=child)
            except Exception as e:
                print(f"# strace {name} {scen}: {e}", file=sys.stderr)
                continue
            msgs = operations(res)
            calls = strace_counts(st)
            out[scen][name] = {
                "messages": msgs,
                "per_msg": {k: {"calls": v["calls"] / msgs, "errors": v["errors"] / msgs}
                            for k, v in sorted(calls.items(), key=lambda kv: -kv[1]["calls"])
                            if v["calls"] / msgs >= 0.01},
            }
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench-dir", required=True, help="the shared yardstick (compare.py ...)")
    ap.add_argument("--out", required=True, help="results folder (rewritten)")
    ap.add_argument("--secs", type=float, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-profile", action="store_true")
    a = ap.parse_args()
    bench_dir = os.path.abspath(a.bench_dir)
    if not os.environ.get("SWITCHBOARD"):
        sys.exit("set SWITCHBOARD to the release binary (benches/run.sh does)")
    os.makedirs(a.out, exist_ok=True)
    for old in os.listdir(a.out):
        if old.endswith((".json", ".txt")):
            os.remove(os.path.join(a.out, old))
    own_tmp = not os.environ.get("SB_BENCH_TMP")
    tmp = os.environ.get("SB_BENCH_TMP") or tempfile.mkdtemp(prefix="switchboard-bench.")
    os.environ["SB_BENCH_TMP"] = tmp
    t0 = time.time()
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
            "loadavg_before": loadavg()}
    compare = compare_module(bench_dir)
    cmp = run_compare(bench_dir, a.secs, a.repeats, a.out)
    with open(os.path.join(a.out, "compare.json"), "w") as f:
        json.dump(cmp, f, indent=1)
    cpu = run_cpu(compare, bench_dir, a.secs, CPU_REPEATS)
    with open(os.path.join(a.out, "cpu.json"), "w") as f:
        json.dump(cpu, f, indent=1)
    profile = {"scenario": PROFILE_SCENARIO, "secs": PROFILE_SECS}
    tools = [t for t in ("valgrind", "callgrind_annotate", "strace") if not shutil.which(t)]
    if a.no_profile or tools:
        profile["skipped"] = "--no-profile" if a.no_profile else "missing " + ", ".join(tools)
    else:
        profile["callgrind"] = run_callgrind(compare, ["c-epoll", "tokio", "switchboard", "bot20"], tmp)
        profile["strace"] = run_strace(compare, ["c-epoll", "tokio", "switchboard"], tmp, a.out)
    with open(os.path.join(a.out, "profile.json"), "w") as f:
        json.dump(profile, f, indent=1)
    meta["loadavg_after"] = loadavg()
    meta["measure_s"] = round(time.time() - t0)
    started = os.environ.get("RUN_STARTED")
    meta["total_s"] = round(time.time() - int(started)) if started else None
    with open(os.path.join(a.out, "machine.json"), "w") as f:
        json.dump(meta, f, indent=1)
    if own_tmp:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
