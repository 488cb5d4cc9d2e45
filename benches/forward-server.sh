#!/bin/sh
# A relay on 127.0.0.1:PORT in front of the C epoll echo server (started here on a free port),
# for benches/forward.py:  forward-server.sh switchboard|tokio|socat PORT
# Both processes stay in the caller's process group, which compare.py stops as a whole.
# Environment: SWITCHBOARD (the release binary), BENCH_BIN (c-epoll-echo and tokio-relay).
set -eu
kind=$1
port=$2
bin=${BENCH_BIN:-/tmp/switchboard-bench-bin}
echo_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/c-epoll-echo" "$echo_port" &
# The echo server listens before the relay starts (compare.py waits for the relay's port).
python3 - "$echo_port" <<'PY'
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
        break
    except OSError:
        time.sleep(0.02)
PY
case $kind in
switchboard)
    conf=$(mktemp /tmp/switchboard-forward.XXXXXX)
    cat > "$conf" <<CONF
[daemon]
log_level = "info"
log_file = "$conf.log"
control_socket = "$conf.d/ctl.sock"

[[listener]]
name = "relay"
protocol = "tcp"
ip = "127.0.0.1"
port = $port
handlers = ["forward"]
max_connections = 0
[listener.forward]
upstream = "127.0.0.1:$echo_port"
CONF
    mkdir -m 700 "$conf.d"
    exec "${SWITCHBOARD:-target/release/switchboard}" run -c "$conf" ;;
tokio)
    exec "$bin/tokio-relay" "$port" "$echo_port" ;;
socat)
    exec socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork,nodelay" "TCP:127.0.0.1:$echo_port,nodelay" ;;
*)
    echo "forward-server.sh: switchboard, tokio or socat" >&2; exit 2 ;;
esac
