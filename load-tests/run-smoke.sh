#!/usr/bin/env bash
# Starts the demo stack on loopback (two echo peers + the gateway with
# conf/portcullis.yaml), runs k6 scripts against it, stops everything, and exits
# with k6's status (non-zero when a check or threshold fails).
#
#   load-tests/run-smoke.sh                       # load-tests/smoke.js
#   load-tests/run-smoke.sh load-tests/x.js ...   # other scripts, in order
#   load-tests/run-smoke.sh --use-running ...     # reuse a stack `make demo` already runs
#
# PORTCULLIS_BIN overrides the binary (default target/release/portcullis; build it first).
# Logs of the processes it starts go to demo-run/smoke/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

use_running=0
if [[ "${1:-}" == --use-running ]]; then use_running=1; shift; fi
scripts=("$@")
[[ ${#scripts[@]} -gt 0 ]] || scripts=(load-tests/smoke.js)

bin="${PORTCULLIS_BIN:-target/release/portcullis}"
config=conf/portcullis.yaml
tls=demo-run/tls
logs=demo-run/smoke
python="${PYTHON:-python3}"
# Every port conf/portcullis.yaml uses: peers, http, https, internal, admin, metrics.
ports=(7001 7002 8080 8443 8081 9901 9100)

die() { echo "run-smoke: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stack_running() {
  curl -sf -o /dev/null --max-time 2 http://127.0.0.1:9901/healthz &&
    curl -sf -o /dev/null --max-time 2 http://127.0.0.1:7001/healthz
}

pids=()
# shellcheck disable=SC2317  # only called from the EXIT trap
stop_all() {
  local pid i
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}

show_logs() {
  local f
  for f in "$logs"/*.log; do
    [[ -f "$f" ]] || continue
    echo "---- last lines of $f" >&2
    tail -n 30 "$f" >&2
  done
}

# wait_for URL SECONDS PID [CURL_ARGS...]: until URL answers 2xx, failing early when PID dies.
wait_for() {
  local url=$1 secs=$2 pid=$3 i
  shift 3
  for ((i = 0; i < secs * 5; i++)); do
    curl -sf -o /dev/null --max-time 1 "$@" "$url" && return 0
    kill -0 "$pid" 2>/dev/null || { show_logs; die "process $pid exited before $url answered"; }
    sleep 0.2
  done
  show_logs
  die "$url did not answer within ${secs}s"
}

if [[ $use_running == 1 ]] && stack_running; then
  echo "run-smoke: a demo stack is already running; testing it as it is"
else
  [[ -x "$bin" ]] || die "$bin not found: run 'make build' first"
  for p in "${ports[@]}"; do
    ! port_open "$p" || die "127.0.0.1:$p is already in use (a running 'make demo'? then use --use-running, or stop it)"
  done
  trap stop_all EXIT
  trap 'exit 130' INT TERM

  conf/demo/gen-certs.sh "$tls" >/dev/null
  rm -rf "$logs"
  mkdir -p "$logs"
  "$bin" -t -c "$config"

  for peer in a:7001 b:7002; do
    "$python" tests/support/echo_upstream.py --listen "127.0.0.1:${peer#*:}" --name "peer-${peer%%:*}" \
      >"$logs/peer-${peer%%:*}.log" 2>&1 &
    pids+=($!)
  done
  wait_for http://127.0.0.1:7001/healthz 15 "${pids[0]}"
  wait_for http://127.0.0.1:7002/healthz 15 "${pids[1]}"

  PORTCULLIS_ADMIN_TOKEN="$(openssl rand -hex 16)" "$bin" -c "$config" >"$logs/portcullis.log" 2>&1 &
  gw=$!
  pids+=("$gw")
  wait_for http://127.0.0.1:9901/healthz 30 "$gw"
  wait_for https://localhost:8443/users/ready 30 "$gw" --cacert "$tls/ca.crt"
  # Peers may start out unhealthy until their first checks pass: wait until every
  # peer of conf/portcullis.yaml is reported healthy, so round robin sees them all.
  for ((i = 0; ; i++)); do
    healthy="$(curl -sf --max-time 1 http://127.0.0.1:9100/metrics | grep -c '^portcullis_upstream_peer_healthy{.*} 1$' || true)"
    [[ "$healthy" -ge 2 ]] && break
    kill -0 "$gw" 2>/dev/null || { show_logs; die "the gateway exited"; }
    ((i < 75)) || { show_logs; die "peers not reported healthy within 15s (healthy: $healthy)"; }
    sleep 0.2
  done
  echo "run-smoke: stack up (gateway pid $gw, logs in $logs/)"
fi

status=0
for script in "${scripts[@]}"; do
  echo "run-smoke: k6 run $script"
  if ! SSL_CERT_FILE="$root/$tls/ca.crt" load-tests/k6.sh run --quiet --no-usage-report "$script"; then
    status=1
    echo "run-smoke: FAILED: $script" >&2
  fi
done
if [[ $status != 0 && ${#pids[@]} -gt 0 ]]; then show_logs; fi
exit "$status"
