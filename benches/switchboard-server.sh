#!/bin/sh
# The switchboard servers that benches/run.sh compares besides ../shared/bench/switchboard-echo.sh:
#
#   switchboard-server.sh VARIANT PORT
#     echo          the same server as ../shared/bench/switchboard-echo.sh (for the profiles)
#     bot20         benches/bot20.toml: ["bye-close", "scripted-reply"] with 20 regex rules
#     log-devnull   ["echo"], log_level info, log_file = "/dev/null"
#     log-rotated   ["echo"], log_level info, log_file in a fresh folder, log_rotation = "daily"
#
# All listen on 127.0.0.1:PORT over TCP and UDP. The two log variants differ only in where the
# log lines go (same non-blocking writer, same format), so their ratio is the cost of a rotated
# file. SWITCHBOARD is the binary (default target/release/switchboard); configs and logs go
# under SB_BENCH_TMP (default /tmp), one folder per server start. SB_WRAP, when set, is put
# before the binary (the profiles run it under valgrind or strace that way).
set -e
variant=$1
port=$2
here=$(cd "$(dirname "$0")" && pwd)
bin=${SWITCHBOARD:-target/release/switchboard}
dir=$(mktemp -d "${SB_BENCH_TMP:-/tmp}/sb-$variant.XXXXXX")
conf=$dir/switchboard.toml

echo_conf() {
    cat <<CONF
[daemon]
log_level = "info"
$1

[[listener]]
name = "echo-tcp"
protocol = "tcp"
ip = "127.0.0.1"
port = $port
handlers = ["echo"]

[[listener]]
name = "echo-udp"
protocol = "udp"
ip = "127.0.0.1"
port = $port
handlers = ["echo"]
CONF
}

case $variant in
echo)
    echo_conf "log_file = \"$dir/switchboard.log\"" > "$conf"
    ;;
bot20)
    sed -e "s|^port = 8920\$|port = $port|" \
        -e "s|^log_file = .*|log_file = \"$dir/switchboard.log\"|" \
        -e "s|^script = \"bot20-rules.toml\"|script = \"$here/bot20-rules.toml\"|" \
        "$here/bot20.toml" > "$conf"
    ;;
log-devnull)
    echo_conf 'log_file = "/dev/null"' > "$conf"
    ;;
log-rotated)
    echo_conf "log_file = \"$dir/switchboard.log\"
log_rotation = \"daily\"" > "$conf"
    ;;
*)
    echo "switchboard-server.sh: unknown variant '$variant' (echo, bot20, log-devnull, log-rotated)" >&2
    exit 2
    ;;
esac
# SB_WRAP is a command line: split into words on purpose.
# shellcheck disable=SC2086
exec ${SB_WRAP:-} "$bin" run -c "$conf"
