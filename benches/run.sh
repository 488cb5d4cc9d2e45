#!/bin/sh
# Measure switchboard against the C epoll echo server and tokio (and, with TLS, against stunnel
# in front of the C server: benches/tls.py; forwarding, against a tokio relay and socat:
# benches/forward.py), then rewrite benches/README.md
# and benches/chart.svg from what was measured. One command, from any folder:
#
#   benches/run.sh
#
# Environment (all optional):
#   SECS=1 REPEATS=5   seconds per run, and runs per server and scenario
#   BENCH_DIR          the shared yardstick (compare.py, loadgen.c, ...); default ../shared/bench
#                      beside the repository
#   BENCH_BIN          where build.sh puts loadgen and the reference servers
#   CARGO_TARGET_DIR   where cargo builds switchboard; default target/ in the repository
#   NO_PROFILE=1       skip callgrind and strace
set -eu
started=$(date +%s)
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bench_dir=${BENCH_DIR:-$repo/../shared/bench}
target=${CARGO_TARGET_DIR:-$repo/target}
export BENCH_BIN="${BENCH_BIN:-/tmp/switchboard-bench-bin}"

for tool in gcc cargo python3 taskset; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is needed" >&2; exit 1; }
done
[ -f "$bench_dir/compare.py" ] || {
    echo "run.sh: no compare.py in $bench_dir; set BENCH_DIR to the shared bench folder" >&2
    exit 1
}

# idle10k holds 10,000 connections open: the load generator and the server each need that many
# descriptors. Both raise their soft limit only as far as the hard one, so check it here.
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=65536
if [ "$hard" -lt 10100 ]; then
    echo "run.sh: idle10k needs 10,100 open files, the hard limit is $hard (raise it, e.g. in limits.conf)" >&2
    exit 1
fi
ulimit -Sn "$hard"

sh "$bench_dir/build.sh"
(cd "$repo" && CARGO_TARGET_DIR="$target" cargo build --release --quiet)
export SWITCHBOARD="$target/release/switchboard"
export RUN_STARTED="$started"

python3 "$here/measure.py" --bench-dir "$bench_dir" --out "$here/results" \
    --secs "${SECS:-1}" --repeats "${REPEATS:-5}" ${NO_PROFILE:+--no-profile}
if command -v stunnel4 >/dev/null; then
    python3 "$here/tls.py" --out "$here/results" --secs "${SECS:-1}" --repeats "${REPEATS:-5}"
else
    echo "run.sh: stunnel4 is not installed: the TLS comparison is skipped" >&2
fi
if command -v socat >/dev/null; then
    python3 "$here/forward.py" --bench-dir "$bench_dir" --out "$here/results" \
        --secs "${SECS:-1}" --repeats "${REPEATS:-5}"
else
    echo "run.sh: socat is not installed: the forwarding comparison is skipped" >&2
fi
python3 "$here/report.py" "$here/results"
echo "run.sh: done in $(( $(date +%s) - started )) s; see benches/README.md"
