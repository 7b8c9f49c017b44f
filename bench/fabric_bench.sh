#!/usr/bin/env bash
# The gateway against nginx as a plain reverse proxy, in front of the same engine processes, in
# the same run; the engines alone as the baseline. Medians of RUNS repetitions (interleaved).
#  1. open loop at 1,000 streaming requests/s: time to first byte, p50 and p99, and what each
#     proxy adds over going direct;
#  2. closed loop, 64 clients: the most streaming requests per second;
#  3. 10,000 streams opened at once and held: the most open at once, and failures.
set -euo pipefail
build=${1:-build}
runs=${RUNS:-3}
bin=$build/infergrid
load=$build/fabric_load
command -v nginx >/dev/null || { echo "installing nginx"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# A proxy holds two descriptors per stream (client and upstream): the streams held at once in
# part 3 are capped by this machine's descriptor limit.
# part 3 runs the gateway as two processes sharing the listening socket (processes: 2), as nginx
# runs two workers, each process with its own descriptor limit.
HOLD=${HOLD:-10000}
echo "descriptor limit $(ulimit -n) per process: holding $HOLD streams in part 3"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}" $(cat "$tmp/engine.pids" 2>/dev/null); do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
port_of() { for _ in $(seq 100); do grep -qo 'listening on' "$1" 2>/dev/null && { grep -o '[0-9]*$' "$1"; return; }; sleep 0.05; done; echo "no port in $1" >&2; exit 1; }
start_engines() {  # N ARGS...: N engines, prints their ports
  local n=$1; shift
  for i in $(seq "$n"); do
    "$bin" engine --model llama3-8b --port 0 --seed "$i" "$@" > "$tmp/e$i.out" 2>&1 &
    echo $! >> "$tmp/engine.pids"  # a subshell: pids+=() would be lost
  done
  for i in $(seq "$n"); do port_of "$tmp/e$i.out"; done
}
KEY=sk-bench-0123456789
gateway_yaml() {  # NAME TENANTS PORTS...: a gateway config in front of PORTS, with or without a tenant
  local name=$1 tenants=$2; shift 2
  { echo "listen: 127.0.0.1:0"; echo "policy: least-outstanding"; echo "threads: 2"; echo "processes: ${PROCS:-1}"
    echo "max_connections_per_client: 100000"; echo "max_connections: 100000"
    if [ "$tenants" = 1 ]; then
      # Authentication and both limits evaluated on every request, set high enough never to bind.
      echo "tenants:"; echo "  - name: bench"; echo "    api_key_sha256: [$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)]"
      echo "    max_class: critical"; echo "    requests_per_minute: 100000000"; echo "    tokens_per_minute: 1000000000000"
    fi
    echo "sites:"; echo "  - name: local"; echo "    location: [50.11, 8.68]"; echo "    backends:"
    for p in "$@"; do echo "      - url: http://127.0.0.1:$p"; echo "        models: [llama3-8b]"; echo "        max_concurrency: 100000"; done
  } > "$tmp/$name.yaml"
}
start_proxies() {  # PORTS...: starts the gateway (open, and with a tenant) and nginx in front of them; sets GW, GT and NG
  local ports=("$@")
  gateway_yaml gw 0 "${ports[@]}"
  "$bin" gateway --config "$tmp/gw.yaml" > "$tmp/gw.out" 2>&1 & pids+=($!)
  GW=$(port_of "$tmp/gw.out")
  gateway_yaml gt 1 "${ports[@]}"
  "$bin" gateway --config "$tmp/gt.yaml" > "$tmp/gt.out" 2>&1 & pids+=($!)
  GT=$(port_of "$tmp/gt.out")
  NG=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$tmp/ng"
  { echo "worker_processes 2; pid $tmp/ng/nginx.pid; error_log $tmp/ng/error.log error;"
    echo "worker_rlimit_nofile 200000; events { worker_connections 100000; }"
    echo "http { access_log off; client_body_temp_path $tmp/ng; proxy_temp_path $tmp/ng;"
    echo "  fastcgi_temp_path $tmp/ng; uwsgi_temp_path $tmp/ng; scgi_temp_path $tmp/ng;"
    echo "  upstream engines { least_conn;"; for p in "${ports[@]}"; do echo "    server 127.0.0.1:$p;"; done; echo "  }"
    echo "  server { listen 127.0.0.1:$NG; location / { proxy_pass http://engines; proxy_http_version 1.1;"
    echo "    proxy_set_header Connection \"\"; proxy_buffering off; proxy_read_timeout 300s; } } }"
  } > "$tmp/ng/nginx.conf"
  nginx -p "$tmp/ng" -c "$tmp/ng/nginx.conf" -g 'daemon off;' & pids+=($!)
  sleep 0.5
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { grep -o "\"$1\":[0-9.]*" | cut -d: -f2; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
if [ "${ONLY_HOLD:-0}" != 1 ]; then
mapfile -t E < <(start_engines 1 --time-scale 0.2 --max-num-seqs 1024)
start_proxies "${E[@]}"
"$load" open "127.0.0.1:${E[0]}" 200 2 8 >/dev/null  # warm-up
measure() {  # MODE N: RUNS interleaved rounds over direct, nginx, gateway and gateway with a tenant into $tmp/MODE.txt
  for r in $(seq "$runs"); do
    for t in direct:${E[0]} nginx:$NG gateway:$GW tenant:$GT; do
      FABRIC_KEY=$([ "${t%%:*}" = tenant ] && echo "$KEY") "$load" "$1" "127.0.0.1:${t#*:}" "$2" 10 8 | sed "s/^/${t%%:*} /" >> "$tmp/$1.txt"
    done
  done
}
measure open 1000
for t in direct nginx gateway tenant; do
  p50=$(grep "^$t " "$tmp/open.txt" | field ttfb_p50_ms | median); p99=$(grep "^$t " "$tmp/open.txt" | field ttfb_p99_ms | median)
  f=$(grep "^$t " "$tmp/open.txt" | field failed | sort -g | tail -1)
  echo "open 1000/s $t: ttfb p50 $p50 ms, p99 $p99 ms, most failures in a run $f"
  eval "${t}_p50=$p50 ${t}_p99=$p99"
done
echo "added over direct: nginx p50 $(echo "$nginx_p50 - $direct_p50" | bc -l) ms, p99 $(echo "$nginx_p99 - $direct_p99" | bc -l) ms; gateway p50 $(echo "$gateway_p50 - $direct_p50" | bc -l) ms, p99 $(echo "$gateway_p99 - $direct_p99" | bc -l) ms; gateway with key and limits p50 $(echo "$tenant_p50 - $direct_p50" | bc -l) ms, p99 $(echo "$tenant_p99 - $direct_p99" | bc -l) ms"
measure closed 64
for t in direct nginx gateway tenant; do
  echo "closed 64 clients $t: $(grep "^$t " "$tmp/closed.txt" | field completed_per_s | median) streams/s (median)"
done
# 4. Idle connections: resident memory per connection held open, and after they close.
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
gw_pid=$(pgrep -f "gateway --config $tmp/gw.yaml" | head -1); ng_pid=$(pgrep -f "nginx: worker" | head -1)
IDLE=${IDLE:-5000}
for t in gateway:$GW:$gw_pid nginx:$NG:all; do
  name=${t%%:*}; rest=${t#*:}; port=${rest%%:*}; pid=${rest#*:}
  total_rss() { if [ "$pid" = all ]; then local s=0; for p in $(pgrep -f "nginx: worker"); do s=$((s + $(rss "$p"))); done; echo $s; else rss "$pid"; fi; }
  before=$(total_rss)
  python3 - "$port" "$IDLE" "$tmp/idle.$name" <<'PY' &
import socket, sys, time, os
port, n, flag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port)); socks.append(s)
open(flag, "w").close()
time.sleep(4)
for s in socks: s.close()
PY
  py=$!
  while [ ! -f "$tmp/idle.$name" ]; do sleep 0.1; done; sleep 1
  held=$(total_rss); wait $py; sleep 1; closed=$(total_rss)
  echo "idle $IDLE connections $name: rss before $before kB, held $held kB ($(( (held - before) * 1024 / IDLE )) B each), after close $closed kB"
done
for p in "${pids[@]}" $(cat "$tmp/engine.pids"); do kill "$p" 2>/dev/null || true; done; pids=(); rm -f "$tmp/engine.pids"; sleep 1
fi
[ "${SKIP_HOLD:-0}" = 1 ] && exit 0
mapfile -t E < <(start_engines 4 --time-scale 1 --max-num-seqs 4096)
PROCS=2 start_proxies "${E[@]}"
for t in nginx:$NG gateway:$GW; do
  "$load" hold "127.0.0.1:${t#*:}" "$HOLD" 0 150 | sed "s/^/hold ${t%%:*} /"
done
