#!/usr/bin/env python3
"""Turn the figures in a results folder (written by benches/measure.py) into benches/README.md
and benches/chart.svg. Every number on that page comes from the results; nothing is typed in.

  report.py [RESULTS_DIR]      (default: benches/results)
"""
import json
import math
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

SCENARIOS = ["pp1", "pp50", "pp500", "bulk1", "bulk10", "conn8", "udp1", "udp50", "idle10k"]
WHAT = {
    "pp1": ("TCP ping-pong 64 B, 1 connection", "msgs/s"),
    "pp50": ("TCP ping-pong 64 B, 50 connections", "msgs/s"),
    "pp500": ("TCP ping-pong 64 B, 500 connections", "msgs/s"),
    "bulk1": ("TCP bulk 16 KiB blocks, 1 connection", "MB/s"),
    "bulk10": ("TCP bulk 16 KiB blocks, 10 connections", "MB/s"),
    "conn8": ("connect, echo 16 B, close; 8 at a time", "conns/s"),
    "udp1": ("UDP 64 B, 1 peer", "dgrams/s"),
    "udp50": ("UDP 64 B, 50 peers", "dgrams/s"),
    "idle10k": ("memory per idle TCP connection, 10,000 open", "KiB/conn"),
}
PER_OP = {"msgs/s": "msg", "MB/s": "MB", "conns/s": "conn", "dgrams/s": "dgram"}
# The targets for switchboard (["echo"], log_level info) against C epoll (and tokio).
TARGET_VS_C = {"pp1": 0.95, "pp50": 0.95, "pp500": 0.95, "bulk1": 0.95, "bulk10": 0.95,
               "conn8": 0.90, "udp1": 1.00, "udp50": 1.00}
TARGET_VS_TOKIO = {"pp1": 1.00, "pp50": 1.00, "pp500": 1.00}
# Server CPU per operation (switchboard / C epoll, switchboard / tokio): at most this much.
CPU_VS_C = {"pp50": 1.15, "pp500": 1.15, "bulk1": 1.15, "bulk10": 1.15, "conn8": 1.20}
CPU_VS_TOKIO = {"pp50": 1.00, "pp500": 1.00}
IDLE_KIB = 1.0
BOT_VS_ECHO = 0.80
ROTATED_VS_DEVNULL = 0.95


def load(results, name):
    path = os.path.join(results, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


class Figures:
    """compare.py's figures. A ratio of two servers is the median of the ratios of their runs
    in the same cycle: runs of one cycle are seconds apart, so a machine that gets busier or
    quieter during the run (it is shared) moves both sides of each ratio alike."""

    def __init__(self, cmp):
        self.raw = cmp["results"]
        self.repeats = cmp["repeats"]
        self.unpaired = set()

    def vals(self, server, scen):
        return self.raw.get(server, {}).get(scen) or []

    def med(self, server, scen):
        v = self.vals(server, scen)
        return statistics.median(v) if v else None

    def paired(self, a, b, scen):
        """The per-cycle ratios, when every run of both servers gave a figure (compare.py
        leaves failed runs out, which would put the cycles out of step)."""
        va, vb = self.vals(a, scen), self.vals(b, scen)
        if len(va) == len(vb) == self.repeats and all(vb):
            return [x / y for x, y in zip(va, vb)]
        return None

    def ratio(self, a, b, scen):
        rs = self.paired(a, b, scen)
        if rs:
            return statistics.median(rs)
        x, y = self.med(a, scen), self.med(b, scen)
        if x is None or not y:
            return None
        self.unpaired.add((a, b, scen))
        return x / y

    def ratio_cell(self, a, b, scen, threshold=None, bold=False):
        """'0.93× (0.88–0.97)': the ratio and the lowest and highest per-cycle ratio."""
        r = self.ratio(a, b, scen)
        text = fmt_ratio(r, threshold)
        if bold and r is not None:
            text = f"**{text}**"
        rs = self.paired(a, b, scen)
        if rs and len(rs) > 1:
            text += f" ({min(rs):.2f}–{max(rs):.2f})"
        elif r is not None:
            text += " †"
        return text


def fmt_ratio(r, threshold=None):
    """Two decimals, or three when two would round a miss up to the threshold."""
    if r is None:
        return "–"
    s = f"{r:.2f}"
    if threshold is not None and r < threshold and float(s) >= threshold:
        s = f"{r:.3f}"
    return s + "×"


def fmt_num(x):
    if x is None:
        return "–"
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def verdict(ok):
    return "–" if ok is None else ("met" if ok else "**MISSED**")


def main_table(F):
    rows = ["| scenario | what | C epoll, median | tokio / C | switchboard / C | switchboard / tokio "
            "| target | met? |",
            "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |"]
    summary = []
    for scen in SCENARIOS:
        what, unit = WHAT[scen]
        if scen == "idle10k":
            c, t, s = (F.med(n, scen) for n in ("c-epoll", "tokio", "switchboard"))
            ok = None if s is None else s <= IDLE_KIB
            rows.append(f"| {scen} | {what} | {fmt_num(c)} KiB | tokio {fmt_num(t)} KiB "
                        f"| switchboard **{fmt_num(s)} KiB** | | ≤ {IDLE_KIB:g} KiB per connection "
                        f"| {verdict(ok)} |")
            summary.append((scen, s, t, ok, f"{fmt_num(s)} KiB per connection"))
            continue
        sc, tc = F.ratio("switchboard", "c-epoll", scen), F.ratio("tokio", "c-epoll", scen)
        st = F.ratio("switchboard", "tokio", scen)
        need_c, need_t = TARGET_VS_C[scen], TARGET_VS_TOKIO.get(scen)
        target = f"≥ {need_c:.2f}× C" + (" and ≥ tokio" if need_t else "")
        ok, why = None, []
        if sc is not None:
            ok = sc >= need_c and (need_t is None or (st is not None and st >= need_t))
            if sc < need_c:
                why.append(f"switchboard / C {fmt_ratio(sc, need_c)} < {need_c:.2f}×")
            if need_t is not None and st is not None and st < need_t:
                why.append(f"switchboard / tokio {fmt_ratio(st, need_t)} < {need_t:.2f}×")
        rows.append(f"| {scen} | {what} | {fmt_num(F.med('c-epoll', scen))} {unit} "
                    f"| {F.ratio_cell('tokio', 'c-epoll', scen)} "
                    f"| {F.ratio_cell('switchboard', 'c-epoll', scen, need_c, bold=True)} "
                    f"| {F.ratio_cell('switchboard', 'tokio', scen, need_t)} | {target} "
                    f"| {verdict(ok)} |")
        summary.append((scen, sc, tc, ok, "; ".join(why)))
    return "\n".join(rows), summary


def bot_table(F):
    rows = ["| scenario | bot20 / echo | bot20 / C | target | met? |",
            "| --- | ---: | ---: | --- | --- |"]
    missed = []
    for scen in SCENARIOS:
        if scen == "idle10k":
            b = F.med("bot20", scen)
            ok = None if b is None else b <= IDLE_KIB
            rows.append(f"| {scen} | {fmt_num(b)} KiB per connection (echo "
                        f"{fmt_num(F.med('switchboard', scen))}) | | ≤ {IDLE_KIB:g} KiB "
                        f"| {verdict(ok)} |")
        else:
            r = F.ratio("bot20", "switchboard", scen)
            ok = None if r is None else r >= BOT_VS_ECHO
            rows.append(f"| {scen} | {F.ratio_cell('bot20', 'switchboard', scen, BOT_VS_ECHO, True)} "
                        f"| {F.ratio_cell('bot20', 'c-epoll', scen)} "
                        f"| ≥ {BOT_VS_ECHO:.2f}× echo | {verdict(ok)} |")
        if ok is False:
            missed.append(f"{scen} ({fmt_ratio(F.ratio('bot20', 'switchboard', scen), BOT_VS_ECHO)})"
                          if scen != "idle10k" else f"{scen} ({fmt_num(F.med('bot20', scen))} KiB)")
    return "\n".join(rows), missed


def log_table(F):
    rows = ["| scenario | rotated file / /dev/null | target | met? |", "| --- | ---: | --- | --- |"]
    missed = []
    for scen in SCENARIOS:
        if scen == "idle10k":
            continue
        r = F.ratio("log-rotated", "log-devnull", scen)
        ok = None if r is None else r >= ROTATED_VS_DEVNULL
        rows.append(f"| {scen} "
                    f"| {F.ratio_cell('log-rotated', 'log-devnull', scen, ROTATED_VS_DEVNULL, True)} "
                    f"| ≥ {ROTATED_VS_DEVNULL:.2f}× (at most 5 % below) | {verdict(ok)} |")
        if ok is False:
            missed.append(f"{scen} ({fmt_ratio(r, ROTATED_VS_DEVNULL)})")
    return "\n".join(rows), missed


def same_server_table(F):
    """`log-devnull` is the `switchboard` server again (the same binary and config; its log
    lines go to /dev/null instead of a file, a handful per run but for conn8's two per
    connection). What their ratio moves away from 1.00 in one run is how finely that run tells
    servers apart. Returns the table and the largest deviations of a median (rate, CPU)."""
    rows = ["| scenario | rate, log-devnull / switchboard | server CPU per op, "
            "log-devnull / switchboard |", "| --- | ---: | ---: |"]
    cpu = F.raw.get("_cpu_us_per_op", {})
    worst = {"rate": (0.0, None), "cpu": (0.0, None)}
    for scen in SCENARIOS:
        if scen == "idle10k":
            continue
        cells = []
        a, b = (cpu.get(n, {}).get(scen) or [] for n in ("switchboard", "log-devnull"))
        pairs = {"rate": F.paired("log-devnull", "switchboard", scen),
                 "cpu": [y / x for x, y in zip(a, b) if x and y] if len(a) == len(b) else None}
        for kind in ("rate", "cpu"):
            rs = pairs[kind]
            if not rs:
                cells.append("–")
                continue
            m = statistics.median(rs)
            cells.append(f"{m:.2f}× ({min(rs):.2f}–{max(rs):.2f})")
            if abs(m - 1) > worst[kind][0]:
                worst[kind] = (abs(m - 1), scen)
        rows.append(f"| {scen} | " + " | ".join(cells) + " |")
    return "\n".join(rows), worst


def spread_table(F, servers):
    head = "| scenario | unit | " + " | ".join(servers) + " |"
    rows = [head, "| --- | --- |" + " ---: |" * len(servers)]
    for scen in SCENARIOS:
        cells = []
        for s in servers:
            v = F.vals(s, scen)
            if not v:
                cells.append("–")
                continue
            m = statistics.median(v)
            if len(v) > 1 and m:
                lo, hi = (min(v) - m) / m * 100, (max(v) - m) / m * 100
                cells.append(f"{fmt_num(m)} ({lo:+.0f}/{hi:+.0f} %)")
            else:
                cells.append(fmt_num(m))
        rows.append(f"| {scen} | {WHAT[scen][1]} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def cpu_med(runs, key):
    v = [r[key] for r in runs or [] if r and r.get(key) is not None]
    return statistics.median(v) if v else None


def cpu_table(cpu):
    names = ["c-epoll", "tokio", "switchboard"]
    rows = ["| scenario | server CPU per op: C / tokio / switchboard | switchboard / C "
            "| core 0: server process / whole core, C · tokio · switchboard "
            "| core 1: load generator / whole core, C · tokio · switchboard |",
            "| --- | --- | ---: | --- | --- |"]
    bound, idle = [], []
    rest = {0: [], 1: []}
    pct = lambda x: "–" if x is None else f"{x * 100:.0f}"  # noqa: E731
    repeats = 0
    for scen in SCENARIOS:
        d = cpu.get(scen)
        if not d:
            continue
        repeats = max(repeats, *(len(v) for v in d.values()))
        per = "µs/" + PER_OP[WHAT[scen][1]]
        us = [cpu_med(d.get(n), "server_us_per_op") for n in names]
        pairs = [s["server_us_per_op"] / c["server_us_per_op"]
                 for c, s in zip(d.get("c-epoll", []), d.get("switchboard", []))
                 if c and s and c.get("server_us_per_op") and s.get("server_us_per_op")]
        ratio = fmt_ratio(statistics.median(pairs)) if pairs else "–"
        if len(pairs) > 1:
            ratio += f" ({min(pairs):.2f}–{max(pairs):.2f})"
        cells, whole = {0: [], 1: []}, {0: [], 1: []}
        for n in names:
            for core, own_key in ((0, "server_busy"), (1, "loadgen_busy")):
                own, w = cpu_med(d.get(n), own_key), cpu_med(d.get(n), f"core{core}_busy")
                whole[core].append(w)
                cells[core].append(f"{pct(own)}/{pct(w)} %")
                if own is not None and w is not None:
                    rest[core].append(max(0.0, w - own))
        rows.append(f"| {scen} | " + " / ".join("–" if u is None else f"{u:.2f}" for u in us)
                    + f" {per} | {ratio} | " + " · ".join(cells[0]) + " | "
                    + " · ".join(cells[1]) + " |")
        if any(x is not None and x >= 0.9 for x in whole[1]):
            bound.append(scen)
        elif whole[0] and all(x is not None and x < 0.7 for x in whole[0] + whole[1]):
            idle.append(scen)
    if rest[0] and rest[1]:
        rows.append("")
        rows.append("Averaged over these runs, the rest of each core (busy, but not in the "
                    "measured process: interrupts and softirqs, which on loopback are mostly "
                    "packet delivery, and other processes, since the machine is shared and they "
                    f"are not pinned) was {statistics.mean(rest[0]) * 100:.0f} % of core 0 and "
                    f"{statistics.mean(rest[1]) * 100:.0f} % of core 1.")
    return "\n".join(rows), bound, idle, repeats


def cpu_targets(cpu):
    """The CPU targets: paired per-cycle ratios of server CPU per operation, medians."""
    rows = ["| scenario | switchboard / C | target | switchboard / tokio | target | met? |",
            "| --- | ---: | --- | ---: | --- | --- |"]
    missed = []

    def paired(scen, other):
        d = cpu.get(scen) or {}
        return [s["server_us_per_op"] / o["server_us_per_op"]
                for o, s in zip(d.get(other, []), d.get("switchboard", []))
                if o and s and o.get("server_us_per_op") and s.get("server_us_per_op")]

    for scen, vs_c in CPU_VS_C.items():
        c, t = paired(scen, "c-epoll"), paired(scen, "tokio")
        if not c:
            continue
        mc = statistics.median(c)
        ok = mc <= vs_c
        cell_c = f"**{mc:.2f}×** ({min(c):.2f}–{max(c):.2f})"
        vs_t = CPU_VS_TOKIO.get(scen)
        cell_t, target_t = "", ""
        if t:
            mt = statistics.median(t)
            cell_t = f"{mt:.2f}× ({min(t):.2f}–{max(t):.2f})"
            if vs_t is not None:
                target_t = f"≤ {vs_t:.2f}× tokio"
                ok = ok and mt <= vs_t
        rows.append(f"| {scen} | {cell_c} | ≤ {vs_c:.2f}× C | {cell_t} | {target_t} "
                    f"| {'met' if ok else '**MISSED**'} |")
        if not ok:
            missed.append(scen)
    return "\n".join(rows), missed


def profile_section(profile):
    if not profile or "skipped" in profile:
        why = profile.get("skipped") if profile else "no profile.json"
        return f"Not measured in this run ({why}).\n"
    out = []
    cg = profile.get("callgrind", {})
    scen = profile["scenario"]
    if cg:
        out.append(f"User-space instructions per echoed message, {scen} "
                   f"({WHAT[scen][0]}, {profile['secs']} s of load under `valgrind --tool=callgrind`, "
                   "minus an unloaded run of the same server so that start-up is not counted):\n")
        out.append("| server | instructions per message | / C |")
        out.append("| --- | ---: | ---: |")
        c = cg.get("c-epoll", {}).get("ir_per_msg")
        for name in ("c-epoll", "tokio", "switchboard", "bot20"):
            if name in cg:
                ir = cg[name]["ir_per_msg"]
                out.append(f"| {name} | {ir:,.0f} | {fmt_ratio(ir / c) if c else '–'} |")
        out.append("")
        for name, title in (("switchboard", "switchboard (echo)"), ("bot20", "bot20")):
            if name not in cg:
                continue
            total = cg[name]["ir_per_msg"]
            out.append(f"Top 10 functions of {title} by instructions per message (self cost; "
                       "inlined code counts for the function it was inlined into):\n")
            out.append("| # | instructions / msg | share | function | source |")
            out.append("| ---: | ---: | ---: | --- | --- |")
            for i, t in enumerate(cg[name]["top"][:10], 1):
                fn = t["function"].replace("|", "\\|")
                if len(fn) > 110:
                    fn = fn[:107] + "..."
                out.append(f"| {i} | {t['ir_per_msg']:.1f} | {t['ir_per_msg'] / total * 100:.1f} % "
                           f"| `{fn}` | {t['file']} |")
            out.append("")
        fns = {t["function"] for t in cg.get("switchboard", {}).get("top", [])}
        cancel = [t["ir_per_msg"] for t in cg.get("switchboard", {}).get("top", [])
                  if "asynccancel" in t["function"]]
        if cancel:
            out.append(f"- `__pthread_enable_asynccancel`/`__pthread_disable_asynccancel` "
                       f"({sum(cancel):.0f} instructions per message together): glibc takes the "
                       "cancellation-point path around `recv`/`send` once a process has a "
                       "second thread, and the log file's non-blocking writer is that thread. "
                       "The C server, single-threaded, calls the same system calls without it.")
        if "recv" in fns or "send" in fns:
            out.append("- glibc's `recv`/`send` wrappers are in the profile: something on the "
                       "per-message path calls them instead of the bare system calls.")
        if out[-1].startswith("- "):
            out.append("")
    st = profile.get("strace", {})
    if st:
        out.append("System calls per message under `strace -f -c` (2 s of load; strace slows "
                   "every call alike, so compare the servers, not the rates):\n")
        for scen, d in st.items():
            out.append(f"{scen}:\n")
            out.append("| server | system calls per message |")
            out.append("| --- | --- |")
            for name, v in d.items():
                calls = ", ".join(
                    f"{k} {c['calls']:.2f}" + (f" ({c['errors']:.2f} failed)" if c["errors"] >= 0.01 else "")
                    for k, c in v["per_msg"].items())
                total = sum(c["calls"] for c in v["per_msg"].values())
                out.append(f"| {name} | **{total:.2f}**: {calls} |")
            out.append("")
    return "\n".join(out)


# --- chart --------------------------------------------------------------------------------------

def tls_section(tls):
    """benches/tls.py's figures: switchboard's TLS listener against stunnel in front of the C
    epoll echo, one core each."""
    if not tls:
        return ("Not measured in this run: `benches/tls.py` writes `results/tls.json` "
                "(benches/run.sh runs it when stunnel4 is installed).\n")
    runs, target = tls["runs"], tls["target"]
    rows = ["| scenario | what | stunnel + C, median | switchboard, median | switchboard / stunnel "
            "| target | met? | server CPU per op, stunnel + C | switchboard | switchboard / stunnel |",
            "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    missed = []
    for scen, by in runs.items():
        st, sb = by["stunnel"], by["switchboard"]
        unit = tls["units"][scen]
        ratios = [b["figure"] / s["figure"] for s, b in zip(st, sb) if s["figure"]]
        cpu = [s["server_us_per_op"] / b["server_us_per_op"] for s, b in zip(st, sb)
               if b["server_us_per_op"]]
        r = statistics.median(ratios) if ratios else None
        c = statistics.median(cpu) if cpu else None
        ok = None if r is None else r >= target
        if ok is False:
            missed.append(scen)
        med = lambda rs, k: statistics.median(x[k] for x in rs)  # noqa: E731
        spread = f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else ""
        per = "µs/MB" if unit == "MB/s" else "µs/op"
        rows.append(
            f"| {scen} | {tls['what'][scen]} | {fmt_num(med(st, 'figure'))} {unit} "
            f"| {fmt_num(med(sb, 'figure'))} {unit} | {fmt_ratio(r, target)}{spread} "
            f"| ≥ {target:.2f}× | {verdict(ok)} | {fmt_num(med(st, 'server_us_per_op'))} {per} "
            f"| {fmt_num(med(sb, 'server_us_per_op'))} {per} | {fmt_ratio(1 / c if c else None)} |")
    errors = sum(x["errors"] for by in runs.values() for rs in by.values() for x in rs)
    plain = tls.get("plain")
    plain_text = ""
    if plain:
        res = plain["results"]
        prow = ["| scenario | what | earlier binary, median | this one, median | this / earlier |",
                "| --- | --- | ---: | ---: | ---: |"]
        for scen in ["pp1", "pp50", "bulk1", "conn8", "udp1"]:
            b, t = res.get("baseline", {}).get(scen, []), res.get("this", {}).get(scen, [])
            rs = [y / x for x, y in zip(b, t) if x]
            if not rs:
                continue
            unit = WHAT[scen][1]
            prow.append(f"| {scen} | {WHAT[scen][0]} | {fmt_num(statistics.median(b))} {unit} "
                        f"| {fmt_num(statistics.median(t))} {unit} "
                        f"| {fmt_ratio(statistics.median(rs))} ({min(rs):.2f}–{max(rs):.2f}) |")
        ir = plain.get("ir_per_msg") or {}
        ir_text = (f" Under callgrind (pp50, user-space instructions per message, which a busy "
                   f"machine does not change): **{ir['this']:.0f}** for this binary, "
                   f"**{ir['baseline']:.0f}** for the earlier one."
                   if ir.get("this") and ir.get("baseline") else "")
        plain_text = f"""
**Plain text, no listener using TLS or PROXY**: the same run measured the shared
`compare.py` scenarios against this binary and an earlier one (`{plain['baseline']}`),
interleaved, {plain['repeats']} runs of {plain['secs']:g} s each (`benches/tls.py --baseline
BIN`); a ratio near 1.00 (within the spread between cycles) says the plain path did not move.{ir_text}

{chr(10).join(prow)}
"""
    verdicts = (f"**Missed**: {', '.join(missed)}." if missed
                else "Every TLS target was met in this run.")
    return f"""{verdicts}

Measured on {tls['started']} at `{tls['commit'].split(' ', 1)[0]}`, {tls['repeats']} interleaved runs of
{tls['secs']:g} s per server and scenario ({tls['elapsed_s']} s in all), {errors} failed operations.
Both servers on core 0 ({tls['stunnel'] if isinstance(tls['stunnel'], str) else 'stunnel'}: its threads and the C echo
behind it together), the load generator (`switchboard bench --tls --insecure`, rustls,
no session resumption: every connection of tls-conn8 is a full handshake) on core 1. The
same certificate (ECDSA P-256 from `switchboard cert`) for both; TLS 1.3, X25519,
AES-256-GCM. stunnel logs warnings only and sets TCP_NODELAY on both sides; switchboard logs
at info to a file. A ratio is the median of the per-cycle ratios (lowest–highest in
brackets); "server CPU per op" is the server side's CPU time (all processes and threads) over
the operations of the run, lower is better, and its ratio is switchboard's over stunnel's
(below 1: switchboard spends less). stunnel runs a thread per connection, which take turns on
its one core: it is not CPU-bound here (its rate is below what its CPU time per operation
would allow), and the rates compare the two designs as a user would run them.

{chr(10).join(rows)}
{plain_text}"""


def forward_section(fw):
    """benches/forward.py's figures: `forward` against a tokio relay and socat, each in front of
    the C epoll echo."""
    if not fw:
        return ("Not measured in this run: `benches/forward.py` writes `results/forward.json` "
                "(benches/run.sh runs it when socat is installed).\n")
    res, targets = fw["results"], fw["targets"]
    units = {"pp50": "msgs/s", "pp500": "msgs/s", "bulk1": "MB/s", "bulk10": "MB/s",
             "conn8": "conns/s"}
    what = {"pp50": "ping-pong 64 B, 50 connections", "pp500": "ping-pong 64 B, 500 connections",
            "bulk1": "bulk 16 KiB blocks, 1 connection", "bulk10": "bulk 16 KiB blocks, 10 connections",
            "conn8": "connect, echo 16 B, close; 8 at a time"}
    rows = ["| scenario | what | tokio relay, median | socat, median | switchboard, median "
            "| switchboard / tokio | switchboard / socat | target | met? |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    missed = []

    def ratio(scen, ref):
        rs = [b / a for a, b in zip(res[ref][scen], res["switchboard"][scen]) if a]
        if not rs:
            return None, ""
        spread = f" ({min(rs):.2f}–{max(rs):.2f})" if len(rs) > 1 else ""
        return statistics.median(rs), spread

    for scen in targets:
        med = {n: statistics.median(res[n][scen]) if res[n].get(scen) else None
               for n in ("tokio", "socat", "switchboard")}
        rt, st = ratio(scen, "tokio")
        rs, ss = ratio(scen, "socat")
        ref, target = targets[scen]
        got = rt if ref == "tokio" else rs
        ok = None if got is None else got >= target
        if ok is False:
            missed.append(scen)
        u = units[scen]
        rows.append(f"| {scen} | {what[scen]} | {fmt_num(med['tokio'])} {u} | "
                    f"{fmt_num(med['socat'])} {u} | {fmt_num(med['switchboard'])} {u} | "
                    f"{fmt_ratio(rt)}{st} | {fmt_ratio(rs)}{ss} | ≥ {target:g}× {ref} | {verdict(ok)} |")
    cpu = res.get("_cpu_us_per_op", {})
    cpu_rows = ["| scenario | tokio relay | socat | switchboard | switchboard / tokio |",
                "| --- | ---: | ---: | ---: | ---: |"]
    for scen in targets:
        m = {n: statistics.median(cpu[n][scen]) if cpu.get(n, {}).get(scen) else None
             for n in ("tokio", "socat", "switchboard")}
        per = "µs/MB" if scen.startswith("bulk") else "µs/op"
        r = m["switchboard"] / m["tokio"] if m["switchboard"] and m["tokio"] else None
        cpu_rows.append(f"| {scen} | {fmt_num(m['tokio'])} {per} | {fmt_num(m['socat'])} {per} | "
                        f"{fmt_num(m['switchboard'])} {per} | {fmt_ratio(r)} |")
    verdicts = (f"**Missed**: {', '.join(missed)}." if missed
                else "Every forwarding target was met in this run.")
    errors = len(fw.get("errors", []))
    return f"""{verdicts}

Measured on {fw['started']} at `{fw['commit']}`, {fw['repeats']} interleaved cycles of
{fw['secs']:g} s per relay and scenario ({fw['elapsed_s']} s in all), {errors} runs that failed
(a missing figure, "–": socat forks a process per connection and does not keep 500 open at
once). Each relay and the C echo server behind it on core 0 (their CPU counted together), the
shared load generator on core 1, through the relay. The tokio relay is
`benches/tokio-relay` (`copy_bidirectional` on the current-thread runtime, what a Rust user
would write); socat is {' '.join(fw.get('socat', [])) or 'the Debian package'}
(`TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr,fork,nodelay TCP:127.0.0.1:ECHO,nodelay`);
switchboard is `handlers = ["forward"]` logging at info to a file
(`benches/forward-server.sh`). A ratio is the median of the per-cycle ratios, with the lowest
and highest in brackets. On a shared machine the absolute figures move with the load; the
ratios of one run are what to read.

{chr(10).join(rows)}

Server CPU per operation (the relay and the echo server behind it), medians; lower is better:

{chr(10).join(cpu_rows)}
"""


def chart(F, meta, path):
    """Left: messages per second, every run (dots) and the medians (lines). Right: the ratio to
    C epoll, median of the per-cycle ratios (bars: lowest and highest), with the target."""
    series = [("c-epoll", "C epoll", "#444444"), ("tokio", "tokio", "#d95f02"),
              ("switchboard", "switchboard", "#1f6fd1")]
    conns = [(1, "pp1"), (50, "pp50"), (500, "pp500")]
    W, H, T, B = 980, 470, 92, 60
    panels = [(80, 390), (550, 300)]  # (left, width)
    ph = H - T - B
    lx0, lx1 = math.log10(0.6), math.log10(800)
    m = meta.get("machine", {})
    e = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         '<text x="20" y="24" font-size="15" font-weight="bold">TCP ping-pong, 64 B, against '
         'the number of connections</text>',
         f'<text x="20" y="44" fill="#555">{meta.get("repeats")} cycles of interleaved runs; '
         'server on core 0, load generator on core 1. The machine is shared and its speed '
         'drifts: compare within a cycle (right).</text>',
         f'<text x="20" y="61" fill="#555">{esc(m.get("cpu_model"))}, {m.get("nproc")} CPUs, '
         f'kernel {esc(m.get("kernel"))}; {esc(meta.get("started", ""))[:10]}, switchboard '
         f'{esc(m.get("commit"))}; drawn by benches/report.py</text>']

    def axes(left, width, ymin, ymax, step, fmt, title, ylabel):
        x = lambda n: left + (math.log10(n) - lx0) / (lx1 - lx0) * width  # noqa: E731
        y = lambda v: T + ph - (v - ymin) / (ymax - ymin) * ph  # noqa: E731
        e.append(f'<text x="{left}" y="{T - 10}" font-weight="bold">{title}</text>')
        v = ymin
        while v <= ymax + 1e-9:
            e.append(f'<line x1="{left}" x2="{left + width}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                     'stroke="#e3e3e3"/>')
            e.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{fmt(v)}</text>')
            v += step
        for n, _ in conns:
            e.append(f'<text x="{x(n):.1f}" y="{T + ph + 18}" text-anchor="middle">{n}</text>')
        e.append(f'<line x1="{left}" x2="{left + width}" y1="{T + ph}" y2="{T + ph}" '
                 'stroke="#888"/>')
        e.append(f'<line x1="{left}" x2="{left}" y1="{T}" y2="{T + ph}" stroke="#888"/>')
        e.append(f'<text x="{left + width / 2}" y="{T + ph + 38}" text-anchor="middle">'
                 'connections (log scale)</text>')
        e.append(f'<text transform="translate({left - 62} {T + ph / 2}) rotate(-90)" '
                 f'text-anchor="middle">{ylabel}</text>')
        return x, y

    # Left panel: rates.
    left, width = panels[0]
    top = max((max(F.vals(s, c)) for s, _, _ in series for _, c in conns if F.vals(s, c)),
              default=1)
    step = nice_step(top / 5)
    x, y = axes(left, width, 0, step * math.ceil(top * 1.05 / step), step,
                lambda v: f"{v / 1000:,.0f}k" if v else "0", "messages per second",
                "round trips per second")
    for i, (s, label, color) in enumerate(series):
        dx = (i - 1) * 8
        pts = [(x(n) + dx, F.med(s, c), F.vals(s, c)) for n, c in conns if F.vals(s, c)]
        if not pts:
            continue
        e.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                 + " ".join(f"{px:.1f},{y(md):.1f}" for px, md, _ in pts) + '"/>')
        for px, md, vals in pts:
            for v in vals:
                e.append(f'<circle cx="{px:.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}" '
                         'fill-opacity="0.35"/>')
            e.append(f'<circle cx="{px:.1f}" cy="{y(md):.1f}" r="4.5" fill="{color}">'
                     f'<title>{label}: median {md:,.0f} msgs/s</title></circle>')

    # Right panel: ratios to C epoll.
    left, width = panels[1]
    rs_all = [r for s, _, _ in series[1:] for _, c in conns
              for r in (F.paired(s, "c-epoll", c) or [F.ratio(s, "c-epoll", c) or 1.0])]
    ymax = min(2.0, 0.1 * math.ceil(max(rs_all + [1.1]) * 1.02 / 0.1))
    ymin = max(0.0, 0.1 * math.floor(min(rs_all + [0.9]) * 0.98 / 0.1))
    x, y = axes(left, width, ymin, ymax, 0.1, lambda v: f"{v:.1f}×", "ratio to C epoll",
                "median of the per-cycle ratios")
    need = TARGET_VS_C["pp1"]
    e.append(f'<line x1="{left}" x2="{left + width}" y1="{y(need):.1f}" y2="{y(need):.1f}" '
             'stroke="#1f6fd1" stroke-dasharray="5 4"/>')
    e.append(f'<text x="{left + width - 4}" y="{y(need) + 15:.1f}" text-anchor="end" '
             f'fill="#1f6fd1">target {need:.2f}×</text>')
    for i, (s, label, color) in enumerate(series):
        dx = (i - 1) * 8
        pts = []
        for n, c in conns:
            r, rs = F.ratio(s, "c-epoll", c), F.paired(s, "c-epoll", c)
            if r is not None:
                pts.append((x(n) + dx, r, rs or [r]))
        if not pts:
            continue
        e.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                 + " ".join(f"{px:.1f},{y(min(r, ymax)):.1f}" for px, r, _ in pts) + '"/>')
        for px, r, rs in pts:
            e.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{y(min(min(rs), ymax)):.1f}" '
                     f'y2="{y(min(max(rs), ymax)):.1f}" stroke="{color}" stroke-width="1.5"/>')
            e.append(f'<circle cx="{px:.1f}" cy="{y(min(r, ymax)):.1f}" r="4.5" fill="{color}">'
                     f'<title>{label}: {r:.2f}× C</title></circle>')
    # Legend, right of the panels.
    for i, (_, label, color) in enumerate(series):
        ly = T + 10 + i * 22
        e.append(f'<circle cx="{left + width + 22}" cy="{ly}" r="4.5" fill="{color}"/>')
        e.append(f'<text x="{left + width + 31}" y="{ly + 4}">{label}</text>')
    e.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(e) + "\n")


def nice_step(raw):
    mag = 10 ** math.floor(math.log10(raw))
    for k in (1, 2, 2.5, 5, 10):
        if raw <= k * mag:
            return k * mag
    return 10 * mag


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def minutes(s):
    if s is None:
        return "?"
    return f"{s // 60} min {s % 60:02d} s"


def main():
    results = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results"))
    cmp, meta = load(results, "compare.json"), load(results, "machine.json")
    if not cmp or not meta:
        sys.exit(f"no compare.json/machine.json in {results}: run benches/run.sh")
    cpu, profile = load(results, "cpu.json") or {}, load(results, "profile.json")
    fw = load(results, "forward.json")
    tls = load(results, "tls.json")
    F = Figures(cmp)
    meta["repeats"] = cmp["repeats"]
    m = meta["machine"]
    main_rows, summary = main_table(F)
    bot_rows, bot_missed = bot_table(F)
    log_rows, log_missed = log_table(F)
    cpu_rows, bound, unsaturated, cpu_repeats = cpu_table(cpu) if cpu else ("", [], [], 0)
    cpu_target_rows, cpu_missed = cpu_targets(cpu) if cpu else ("", [])
    same_rows, same_worst = same_server_table(F)
    chart(F, meta, os.path.join(HERE, "chart.svg"))

    missed = [f"{s} ({why})" for s, _, _, ok, why in summary if ok is False]
    lines = []
    if missed:
        lines.append(f"- **Missed** against C epoll / tokio: {', '.join(missed)}.")
    if bot_missed:
        bulk = " The bulk scenarios send 16 KiB lines: the rules that are not anchored scan " \
               "every byte of every line, so the bot's cost grows with the length of a " \
               "message where echo's hardly does." if any(m.startswith("bulk") for m in bot_missed) else ""
        lines.append(f"- **Missed** by the bot (bot20 < {BOT_VS_ECHO:.2f}× echo): "
                     f"{', '.join(bot_missed)}.{bulk}")
    if cpu_missed:
        lines.append(f"- **Missed** by server CPU per operation (table \"CPU targets\" below): "
                     f"{', '.join(cpu_missed)}.")
    if log_missed:
        lines.append(f"- **Missed** by logging to a rotated file (more than 5 % below /dev/null): "
                     f"{', '.join(log_missed)}.")
    absent = [name for name in cmp["servers"] if not any(F.raw.get(name, {}).values())]
    if absent:
        lines.append(f"- **Not measured**: {', '.join(absent)}: no run of it came up "
                     "(`results/compare-stderr.txt` says why), so its targets are open.")
    if not lines:
        lines.append("- Every target was met in this run.")
    (rate_dev, rate_at), (cpu_dev, cpu_at) = same_worst["rate"], same_worst["cpu"]
    if rate_at or cpu_at:
        lines.append(
            "- **How finely this run tells servers apart**: `log-devnull` is the switchboard "
            "server again (table \"The same server twice\" below), and side by side with it in "
            f"this run the medians differ by up to {rate_dev * 100:.0f} % in rate ({rate_at}) "
            f"and {cpu_dev * 100:.0f} % in server CPU per operation ({cpu_at}). A target met "
            "or missed by less than that is a tie that this run does not decide either way.")
    if bound:
        lines.append(f"- The load generator's core (core 1) was ≥ 90 % busy in {', '.join(bound)} "
                     "(table \"CPU\" below): there the figures are partly the load generator's "
                     "limit, and ratios near 1.0 say that the servers keep up rather than that "
                     "they are equally fast. Server CPU per operation is the fairer comparison.")
    if unsaturated:
        lines.append(f"- In {', '.join(unsaturated)} neither core was 70 % busy "
                     "(table \"CPU\" below): the rate is set by the round "
                     "trips between server and load generator (each waits to be woken by the "
                     "other), so the server's CPU time per operation says more about its own cost "
                     "than the rate does.")
    verdicts = "\n".join(lines)
    unpaired_note = ("; † marks a ratio of medians, where a failed run (see "
                     "`results/compare-stderr.txt`) left the cycles out of step"
                     if F.unpaired else "")

    rel = os.path.relpath(results, os.path.dirname(HERE))
    servers = list(cmp["servers"])
    argv = " ".join(a if " " not in a and "{" not in a else f"'{a}'" for a in cmp["argv"])
    dirty = " (with uncommitted changes in src/ or handlers/)" if m.get("source_dirty") else ""
    source = (f"; src/ and handlers/ as of `{m['source_commit'].split(' ', 1)[0]}` "
              f"({m['source_commit'].split(' ', 1)[-1]})" if m.get("source_commit") else "")

    total = meta.get("total_s")
    build = minutes(total - meta.get("measure_s", 0)) if total else "?"
    cgp = (profile or {}).get("callgrind", {})
    ir = {n: (cgp.get(n) or {}).get("ir_per_msg") for n in ("c-epoll", "tokio", "switchboard")}
    c_ir = f"{ir['c-epoll']:.0f}" if ir["c-epoll"] else "a few dozen"
    user_cost = (f"switchboard {ir['switchboard']:,.0f} instructions per message: "
                 f"{ir['switchboard'] / ir['c-epoll']:.0f}x C's, {ir['switchboard'] / ir['tokio']:.2f}x tokio's"
                 if all(ir.values()) else "see the profile below")
    c_cpu = [r["server_us_per_op"] for r in (cpu.get("pp50") or {}).get("c-epoll", [])
             if r and r.get("server_us_per_op")]
    c_us = f"{statistics.median(c_cpu):.2f} µs (pp50)" if c_cpu else "several µs"
    irq_note = ("\n  This kernel does not keep interrupt time apart (`CONFIG_IRQ_TIME_ACCOUNTING` is not"
                "\n  set): the softirq work of loopback delivery, for the packets of either side, counts"
                "\n  for whichever process the core is running, so how it splits between server and"
                "\n  load generator moves with their timing."
                if m.get("irq_time_accounting") is False else "")
    page = f"""# Benchmarks: switchboard against a C epoll server and tokio

<!-- Written by benches/report.py from {rel}/: change the scripts, not this file. -->

One command rebuilds everything, measures, and rewrites this page and `chart.svg`:

```sh
benches/run.sh
```

This run took **{minutes(meta.get('total_s'))}** in all (build {build}, measuring {minutes(meta.get('measure_s'))}; a build from
scratch adds a few minutes). `SECS` (seconds per run, default 1) and `REPEATS` (cycles,
default 5) change the length: many short cycles rather than a few long ones, because the
machine's load drifts, and the median of 5 paired ratios shrugs off 2 disturbed cycles.
`BENCH_DIR` points at the shared yardstick
(default `../shared/bench` beside the repository). It needs gcc, cargo (tokio comes from
crates.io), python3, taskset, and for the profile valgrind and strace. Only the results of the
last run are kept here; earlier ones are in git history.

## The run

- **Machine**: {m.get('nproc')} CPUs (`nproc`), {m.get('cpu_model')} (`/proc/cpuinfo`), kernel
  {m.get('kernel')} {m.get('arch')}, {(m.get('mem_total_kib') or 0) // 1024} MiB; load average {meta['loadavg_before'][0]:.2f} before,
  {meta.get('loadavg_after', ['?'])[0]} after (a shared machine: only ratios between servers of the same run mean anything).
- **Measured**: switchboard commit `{m.get('commit')}` ({m.get('commit_subject')}){dirty}{source}, {m.get('rustc')}, on {meta['started']}.
- **How**: `{os.path.relpath(HERE, os.path.dirname(HERE))}/measure.py` runs the shared `compare.py` once over every scenario and server,
  interleaved (A B C … A B C …), server pinned to core 0 and load generator to core 1,
  {cmp['secs']:g} s per run, {cmp['repeats']} runs each (idle10k: 1), and reports medians. The call:

  ```
  {argv}
  ```

## Targets

{verdicts}

What a missed target would take, by kind (the figures above say which apply to this run):

- **Ping-pong, and its CPU per message, against C or tokio within a few percent**: all three
  servers make the same system calls per message (one read, one write; see the strace counts
  below), and those calls are nearly all of a server's CPU time per message: the C server runs
  {c_ir} user-space instructions per message and still spends {c_us} per message. That kernel
  share moves by 10-15 % from run to run on a shared machine, more than the margins of these
  holds, hence the wide per-cycle ranges.{irq_note} What differs between the servers is the user-space
  cost per message ({user_cost}; the profile below) and, at 500 connections, how much
  per-connection state each message touches: a run by hand at pp500 under
  `valgrind --tool=callgrind --cache-sim=yes` (not part of this script) counted about 11
  first-level data-cache misses per message for switchboard against 6 for tokio (about a third
  of them at the first touch of the session, in `read_mode`), and about one last-level miss:
  with 500 sessions in some 300 KB, the misses are served by the second-level cache, some 14
  cycles each, so the difference is worth tens of nanoseconds per message, well under 1 % of
  it. Declaring the fields a message touches together at the front of the session
  (`repr(C)`, tried) saved about one miss in twenty. Plain sessions already call
  `recv`/`send` bare (rustix), without glibc's cancellation points. What is left of a gap at
  500 connections is in the kernel's share, which a profile of it
  (`perf record -e cpu-clock`) compares symbol by symbol.
- **Bulk CPU per MB against C**: the echo handler's reply is a copy of the message into the
  outbox, one copy of every byte, which the C server (writing from the buffer it read into)
  does not make. Sending the input back without that copy would need the outbox to refer to
  the input, a change of the handler interface.
- **UDP against C**: datagrams come in by `recvmmsg` batches and the replies of one batch
  leave by `sendmmsg`; with one peer there is one datagram per batch, so what is left is the
  user-space cost per datagram.
- **The bot on 16 KiB lines**: rules that are not anchored scan every byte of every line; a
  limit on how much of a message the rules look at, or anchoring by default, would bound it.
  On short messages (what a support bot sees) it is within the target.

switchboard is `handlers = ["echo"]`, log_level info, logging to a file
(`../shared/bench/switchboard-echo.sh`). compare.py runs the servers in cycles (one run of
each, in turn) and a ratio here is the median, over the {cmp['repeats']} cycles, of the ratio of the two
servers' runs in the same cycle; in brackets the lowest and highest of those {cmp['repeats']} ratios
(runs of one cycle are seconds apart, so a machine that gets busier or quieter during the run
moves both sides of a ratio alike){unpaired_note}. Higher is better, except idle10k (KiB per
connection after 10,000 idle connections opened, lower is better; the C server keeps no
per-connection state in user space, so its figure is near 0 and a ratio to it means nothing).

{main_rows}

### The same server twice

`log-devnull` is the `switchboard` server of the table above again: the same binary and
config, its log lines going to /dev/null instead of a file (a handful per run; conn8 logs two
per connection). Its ratio to `switchboard`, measured in the same cycles, would be 1.00× without
noise; how far it strays is the noise of this run, the yardstick for the other ratios of the
run (the TLS and forwarding runs below are runs of their own).

{same_rows}

### A support bot instead of echo

`bot20`: the same listeners with `handlers = ["bye-close", "scripted-reply"]` and 20 regex
rules (`benches/bot20.toml`, `benches/bot20-rules.toml`), none of which matches what the load
generator sends, so every message is tested against all 20 and answered by the fallback
`{{message}}`. TCP uses line framing (the bot's answer is an exact echo only when the daemon
puts back the `\\n`), so this ratio also includes the cost of line framing over raw.

{bot_rows}

### Logging to a rotated file

`log-rotated` (log_level info, `log_file` in a folder, `log_rotation = "daily"`) against
`log-devnull` (the same, `log_file = "/dev/null"`): same writer, same format, only where the
lines go differs. At info a session logs when it opens and closes, so conn8 is where this
shows; elsewhere the lines are a handful per run.

{log_rows}

## TLS: switchboard against stunnel

`benches/tls.py` (run by `benches/run.sh`, or on its own: `python3 benches/tls.py`): TLS
handshakes per second and TLS throughput of a TLS echo listener (`[listener.tls]`), against
stunnel (the Debian package stunnel4) in front of the C epoll echo server; the target is at least
stunnel's figure in each.

{tls_section(tls)}
## Forwarding: switchboard against a tokio relay and socat

`benches/forward.py` (run by `benches/run.sh` when socat is installed, or on its own:
`python3 benches/forward.py`): switchboard's `forward` handler with no fault, against a tokio
relay and socat, each in front of the C epoll echo server. Targets: at least 0.9× the tokio
relay's throughput in ping-pong at 50 and 500 connections and in bulk; at least 10× socat's
connection rate.

{forward_section(fw)}
## Chart

![TCP ping-pong, messages per second against connections](chart.svg)

`chart.svg` is drawn by `benches/report.py` from the pp1, pp50 and pp500 figures above: on
the left every run (dots) and the medians (lines), on the right the ratios to C epoll as in
the table (bars: lowest and highest per-cycle ratio).

## All figures: medians, with the lowest and highest run against the median

{spread_table(F, servers)}

## CPU

{cpu_repeats} more interleaved runs per scenario for c-epoll, tokio and switchboard (medians), reading the
CPU time that the server (all its threads, from `/proc/PID/task/*/schedstat`) and the load
generator (its rusage) used, and how busy each of the two cores was as a whole (1 − its idle
share in `/proc/stat`). "Server CPU per op" is the server's own time over the operations of
the run: the figure that tuning the event loop lowers, whatever the rate; switchboard / C is
the median of the per-cycle ratios, with their range.

{cpu_rows}

### CPU targets

The server's own CPU time per operation, switchboard over C epoll and over tokio: the median
of the per-cycle ratios of the runs above, with their range. Where the load generator's core
is saturated (pp50, pp500, bulk10, conn8), this is the fair comparison of the servers' cost.

{cpu_target_rows}

## Profile

Where the time goes, for the tuning of the event loop.

{profile_section(profile)}
## Files

| file | what |
| --- | --- |
| `run.sh` | the one command: builds the yardstick and the release binary, measures, writes this page |
| `measure.py` | the three passes (compare, CPU, profile); writes `results/` |
| `report.py` | `results/` → `README.md` and `chart.svg` |
| `tls.py` | TLS against stunnel in front of the C echo; writes `results/tls.json` |
| `switchboard-server.sh` | the switchboard servers besides the shared echo one: `bot20`, `log-devnull`, `log-rotated` (and `echo` for the profile) |
| `bot20.toml`, `bot20-rules.toml` | the bot's config and its 20 rules (`switchboard check -c benches/bot20.toml`) |
| `results/compare.txt` | compare.py's own table; `compare.json`: every run's figure |
| `results/cpu.json`, `results/profile.json`, `results/strace-*.txt` | the CPU and profile passes, raw |
| `results/machine.json` | machine, commit, load average, durations |
| `forward.py`, `forward-server.sh`, `tokio-relay/` | forwarding against a tokio relay and socat in front of the C echo; writes `results/forward.json` |
| `results/forward.json` | every forwarding run's figure and server CPU per operation |
| `results/tls.json` | every TLS run: figure, errors, server CPU per operation |
"""
    with open(os.path.join(HERE, "README.md"), "w") as f:
        f.write(page)
    print(f"wrote {os.path.join(HERE, 'README.md')} and chart.svg")
    for scen, sc, tc, ok, _ in summary:
        s = fmt_num(sc) + " KiB" if scen == "idle10k" else fmt_ratio(sc)
        t = fmt_num(tc) + " KiB" if scen == "idle10k" else fmt_ratio(tc)
        print(f"{scen:8} switchboard {s:>10}  tokio {t:>10}  {verdict(ok)}")


if __name__ == "__main__":
    main()
