#!/usr/bin/env python3
"""Forwarding side by side: switchboard's `forward` handler against a tokio relay
(`copy_bidirectional`, benches/tokio-relay, the anchor) and socat (`TCP-LISTEN:..,fork,
reuseaddr`), each in front of the C epoll echo server, loaded through the relay by the shared
yardstick's load generator. Prints the figures and writes them to RESULTS/forward.json, which
benches/report.py turns into the "Forwarding" section of benches/README.md.

  forward.py [--bench-dir ../shared/bench] [--out benches/results] [--secs 1] [--repeats 5]

Environment: SWITCHBOARD (the release binary; default target/release/switchboard), BENCH_BIN
(where the shared build.sh put loadgen and c-epoll-echo; the tokio relay is built there too).
Needs socat (apt-get install socat), cargo, taskset.

Each relay and the C echo behind it run on core 0 (compare.py pins the whole process group, and
counts the CPU of both), the load generator on core 1. Runs are interleaved (tokio, socat,
switchboard, tokio, ...), and a ratio is the median of the per-cycle ratios. Targets:
throughput at least 0.9x the tokio relay for ping-pong at 50 and 500 connections and for bulk;
connections per second at least 10x socat.
"""
import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.environ.get("BENCH_BIN", "/tmp/switchboard-bench-bin")
SCENARIOS = ["pp50", "pp500", "bulk1", "bulk10", "conn8"]
# scenario: (the server the ratio is taken to, the target)
TARGETS = {"pp50": ("tokio", 0.9), "pp500": ("tokio", 0.9), "bulk1": ("tokio", 0.9),
           "bulk10": ("tokio", 0.9), "conn8": ("socat", 10.0)}


def build_relay():
    target = os.path.join(BIN, "tokio-relay-target")
    subprocess.run(["cargo", "build", "--release", "-q", "--manifest-path",
                    os.path.join(HERE, "tokio-relay", "Cargo.toml")],
                   env={**os.environ, "CARGO_TARGET_DIR": target}, check=True)
    shutil.copy(os.path.join(target, "release", "tokio-relay"), os.path.join(BIN, "tokio-relay.new"))
    os.replace(os.path.join(BIN, "tokio-relay.new"), os.path.join(BIN, "tokio-relay"))


def ratios(results, name, ref, scen):
    return [b / a for a, b in zip(results[ref][scen], results[name][scen]) if a]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench-dir", default=os.path.join(REPO, "..", "shared", "bench"))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--secs", type=float, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    for tool in ("socat", "taskset", "cargo"):
        if not shutil.which(tool):
            sys.exit(f"forward.py: {tool} is needed (apt-get install socat util-linux)")
    for tool in ("loadgen", "c-epoll-echo"):
        if not os.path.exists(os.path.join(BIN, tool)):
            sys.exit(f"forward.py: no {tool} in {BIN}; run {a.bench_dir}/build.sh")
    build_relay()
    os.environ.setdefault("SWITCHBOARD", os.path.join(REPO, "target/release/switchboard"))
    wrapper = shlex.quote(os.path.join(HERE, "forward-server.sh"))
    servers = [(n, f"{wrapper} {n} {{port}}") for n in ("tokio", "socat", "switchboard")]
    argv = [sys.executable, os.path.join(a.bench_dir, "compare.py"), "--secs", str(a.secs),
            "--repeats", str(a.repeats), "--only", ",".join(SCENARIOS), "--json"] + \
        [f"{n}={c}" for n, c in servers]
    t0 = time.time()
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"compare.py failed: {r.stderr}")
    lines = r.stdout.strip().splitlines()
    results = json.loads(lines[-1])
    print("\n".join(lines[:-1]))
    out = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t0)),
        "elapsed_s": round(time.time() - t0),
        "secs": a.secs, "repeats": a.repeats, "targets": TARGETS,
        "commit": subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%h %s"],
                                 capture_output=True, text=True).stdout.strip(),
        "socat": subprocess.run(["socat", "-V"], capture_output=True,
                                text=True).stdout.splitlines()[1:2],
        "errors": r.stderr.strip().splitlines(),
        "results": results,
    }
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "forward.json"), "w") as f:
        json.dump(out, f, indent=1)
    print()
    print(f"{'scenario':10} {'switchboard / tokio':>20} {'switchboard / socat':>20}  target")
    for scen in SCENARIOS:
        cells = []
        for ref in ("tokio", "socat"):
            rs = ratios(results, "switchboard", ref, scen)
            cells.append(f"{statistics.median(rs):.2f}x" if rs else "-")
        ref, target = TARGETS[scen]
        rs = ratios(results, "switchboard", ref, scen)
        met = "met" if rs and statistics.median(rs) >= target else "MISSED"
        print(f"{scen:10} {cells[0]:>20} {cells[1]:>20}  >= {target}x {ref}: {met}")


if __name__ == "__main__":
    main()
