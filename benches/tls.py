#!/usr/bin/env python3
"""TLS side by side: switchboard with a TLS echo listener against stunnel (the Debian package)
in front of the C epoll echo server, on one core each, loaded by `switchboard bench --tls` on
the other core. Prints the figures and writes them to RESULTS/tls.json, which benches/report.py
turns into the "TLS" section of benches/README.md.

  tls.py [--out benches/results] [--secs 2] [--repeats 5] [--baseline BIN [--bench-dir DIR]]

Environment: SWITCHBOARD (the release binary; default target/release/switchboard), BENCH_BIN
(where c-epoll-echo is; benches/run.sh builds it). Needs stunnel4 and taskset.

Both servers run on core 0 (stunnel's threads and the C echo behind it together), the load
generator on core 1. Both use the same certificate (ECDSA P-256, made by `switchboard cert`)
and negotiate TLS 1.3 with X25519 and AES-256-GCM; every connection of `conn8` makes a full
handshake (the load generator resumes no session). stunnel logs warnings only and sets
TCP_NODELAY on both sides; switchboard logs at info to a file, as in the main benchmark.
Runs are interleaved (stunnel, switchboard, stunnel, ...), and a ratio is the median of the
per-cycle ratios, as in report.py. Each server's CPU time per operation (stunnel and the C
echo added up, threads that ended included) is read from /proc/PID/stat: where the load
generator's core is the limit, it is the fairer comparison.

With --baseline BIN (a switchboard built from an earlier commit, such as main before TLS and
the PROXY protocol), the plain-text scenarios pp1, pp50, bulk1, conn8 and udp1 of the shared
compare.py are also run against both binaries, interleaved, with no listener using TLS or
PROXY: their ratio says whether the plain path moved.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SB = os.environ.get("SWITCHBOARD", os.path.join(REPO, "target/release/switchboard"))
BIN = os.environ.get("BENCH_BIN", "/tmp/switchboard-bench-bin")

# name: (bench arguments, the figure, its unit)
SCENARIOS = {
    "tls-conn8": (["--mode", "connect", "--connections", "8"], "conns_per_s", "handshakes/s"),
    "tls-pp50": (["--mode", "pingpong", "--connections", "50"], "msgs_per_s", "msgs/s"),
    "tls-bulk1": (["--mode", "bulk", "--connections", "1", "--in-flight", "4"], "MBps", "MB/s"),
}
WHAT = {
    "tls-conn8": "connect, TLS handshake, echo 16 B, close; 8 at a time",
    "tls-pp50": "TLS ping-pong 64 B, 50 connections",
    "tls-bulk1": "TLS bulk 16 KiB blocks, 4 in flight, 1 connection",
}
TARGET = 1.0
PLAIN = "pp1,pp50,bulk1,conn8,udp1"


def plain_vs(baseline, bench_dir, secs, repeats):
    """compare.py's plain scenarios: the baseline binary, then this one, interleaved."""
    echo = os.path.join(bench_dir, "switchboard-echo.sh")
    argv = [sys.executable, os.path.join(bench_dir, "compare.py"), "--secs", str(secs),
            "--repeats", str(repeats), "--only", PLAIN, "--json",
            f"baseline=env SWITCHBOARD={baseline} {echo} {{port}}",
            f"this=env SWITCHBOARD={SB} {echo} {{port}}"]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"compare.py failed: {r.stderr[-2000:]}")
    results = json.loads(r.stdout.strip().splitlines()[-1])
    version = subprocess.run([baseline, "--version"], capture_output=True, text=True)
    return {"baseline": version.stdout.strip(), "secs": secs, "repeats": repeats,
            "results": {k: v for k, v in results.items() if not k.startswith("_")},
            "ir_per_msg": instructions(baseline, bench_dir)}


def instructions(baseline, bench_dir):
    """User-space instructions per message under pp50 (callgrind, as measure.py counts them):
    unlike rates, the same on a busy machine as on a quiet one."""
    if not (shutil.which("valgrind") and shutil.which("callgrind_annotate")):
        return None
    sys.path.insert(0, HERE)
    import measure  # noqa: E402  (its callgrind pass)
    compare = measure.compare_module(bench_dir)
    out = {}
    for label, binary in [("baseline", baseline), ("this", SB)]:
        os.environ["SWITCHBOARD"] = binary
        tmp = tempfile.mkdtemp(prefix="switchboard-tls-cg.")
        r = measure.run_callgrind(compare, ["switchboard"], tmp).get("switchboard")
        shutil.rmtree(tmp, ignore_errors=True)
        out[label] = r and round(r["ir_per_msg"], 1)
    os.environ["SWITCHBOARD"] = SB
    return out


def stunnel_version():
    """`stunnel 5.68 on x86_64-pc-linux-gnu platform`, from what `stunnel4 -version` prints."""
    r = subprocess.run(["stunnel4", "-version"], capture_output=True, text=True)
    lines = (r.stdout + r.stderr).splitlines()
    return next((l.strip() for l in lines if l.strip().startswith("stunnel ")), "stunnel")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, t=10):
    end = time.time() + t
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def cpu_s(pid):
    """CPU time of a process in seconds, user and system, all its threads, those that ended
    included (stunnel runs a thread per connection): utime + stime of /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """Processes started on core 0, stopped by their pids."""

    def __init__(self, name, argvs, port, tmp):
        self.name, self.port, self.procs = name, port, []
        log = open(os.path.join(tmp, f"{name}.log"), "w")
        for argv in argvs:
            self.procs.append(subprocess.Popen(["taskset", "-c", "0"] + argv, stdout=log,
                                               stderr=log, stdin=subprocess.DEVNULL))
        if not wait_port(port):
            self.stop()
            sys.exit(f"{name} did not listen on {port}; see {tmp}/{name}.log")

    def cpu(self):
        return sum(cpu_s(p.pid) for p in self.procs)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start(tmp):
    subprocess.run([SB, "cert", "localhost", "--cert", f"{tmp}/cert.pem", "--key",
                    f"{tmp}/key.pem", "--force"], check=True, capture_output=True)
    echo, tunnel, sb = free_port(), free_port(), free_port()
    with open(f"{tmp}/stunnel.conf", "w") as f:
        f.write(f"""foreground = yes
pid =
debug = warning
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
[echo]
accept = 127.0.0.1:{tunnel}
connect = 127.0.0.1:{echo}
cert = {tmp}/cert.pem
key = {tmp}/key.pem
""")
    with open(f"{tmp}/switchboard.toml", "w") as f:
        f.write(f"""[daemon]
log_level = "info"
log_file = "{tmp}/switchboard.log"
control_socket = "{tmp}/ctl.sock"

[[listener]]
name = "echo-tls"
protocol = "tcp"
ip = "127.0.0.1"
port = {sb}
handlers = ["echo"]
max_connections = 0
[listener.tls]
cert = "{tmp}/cert.pem"
key = "{tmp}/key.pem"
""")
    c_echo = Server("c-epoll", [[os.path.join(BIN, "c-epoll-echo"), str(echo)]], echo, tmp)
    stunnel = Server("stunnel", [["stunnel4", f"{tmp}/stunnel.conf"]], tunnel, tmp)
    # stunnel's side is two processes: the tunnel and the echo server behind it.
    stunnel.procs += c_echo.procs
    switchboard = Server("switchboard", [[SB, "run", "-c", f"{tmp}/switchboard.toml"]], sb, tmp)
    return {"stunnel": stunnel, "switchboard": switchboard}


def load(server, scen, secs):
    args, key, _ = SCENARIOS[scen]
    argv = ["taskset", "-c", "1", SB, "bench", "--tls", "--insecure",
            f"localhost:{server.port}", "--duration", f"{secs}s", "--warmup", "300ms",
            "--json"] + args
    c0, t0 = server.cpu(), time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 60)
    wall = time.monotonic() - t0
    c1 = server.cpu()
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    res = json.loads(r.stdout.strip().splitlines()[-1])
    ops = res["ops"] if key != "MBps" else res["MBps"] * res["secs"]
    return {"figure": res[key], "errors": res["errors"],
            # The whole run's CPU (warm-up included) over the whole run's operations.
            "server_us_per_op": (c1 - c0) / max(ops * wall / res["secs"], 1) * 1e6,
            "server_busy": (c1 - c0) / wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--secs", type=float, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline", help="an earlier switchboard binary, for the plain scenarios")
    ap.add_argument("--bench-dir", default=os.path.join(REPO, "..", "shared", "bench"))
    a = ap.parse_args()
    for tool in ("stunnel4", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"tls.py: {tool} is needed (apt-get install stunnel4 util-linux)")
    if not os.path.exists(os.path.join(BIN, "c-epoll-echo")):
        sys.exit(f"tls.py: no c-epoll-echo in {BIN}; run ../shared/bench/build.sh")
    tmp = tempfile.mkdtemp(prefix="switchboard-tls-bench.")
    servers = start(tmp)
    runs = {scen: {name: [] for name in servers} for scen in SCENARIOS}
    t0 = time.time()
    try:
        for scen in SCENARIOS:
            for _ in range(a.repeats):
                for name, server in servers.items():
                    runs[scen][name].append(load(server, scen, a.secs))
    finally:
        for s in servers.values():
            s.stop()
    plain = plain_vs(os.path.abspath(a.baseline), os.path.abspath(a.bench_dir), a.secs,
                     a.repeats) if a.baseline else None
    out = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t0)),
        "elapsed_s": round(time.time() - t0),
        "secs": a.secs, "repeats": a.repeats, "target": TARGET,
        "commit": subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%h %s"],
                                 capture_output=True, text=True).stdout.strip(),
        "stunnel": stunnel_version(),
        "what": WHAT, "units": {s: SCENARIOS[s][2] for s in SCENARIOS}, "runs": runs,
        "plain": plain,
    }
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "tls.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"{'scenario':10} {'stunnel':>12} {'switchboard':>12} {'ratio':>7}  "
          f"{'µs/op stunnel':>13} {'switchboard':>11}")
    for scen in SCENARIOS:
        st, sb = runs[scen]["stunnel"], runs[scen]["switchboard"]
        ratio = statistics.median(b["figure"] / s["figure"] for s, b in zip(st, sb))
        med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
        print(f"{scen:10} {med(st, 'figure'):12,.1f} {med(sb, 'figure'):12,.1f} {ratio:6.2f}x  "
              f"{med(st, 'server_us_per_op'):13.1f} {med(sb, 'server_us_per_op'):11.1f}")
    if plain:
        res = plain["results"]
        print(f"plain text, this binary / {plain['baseline']}: pp50 instructions per message "
              f"{plain['ir_per_msg']}")
        for scen in PLAIN.split(","):
            pairs = zip(res["baseline"].get(scen, []), res["this"].get(scen, []))
            rs = [t / b for b, t in pairs if b]
            if rs:
                print(f"  {scen:8} {statistics.median(rs):.3f}x ({min(rs):.2f}-{max(rs):.2f})")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
