#!/usr/bin/env bash
# Runs k6 scripts from load-tests/ against the demo stack and exits non-zero when any of
# them fails (a check or a threshold). It either starts a stack of its own or reuses the
# one `make demo` runs:
#
#   load-tests/run.sh                            # load-tests/smoke.js on a stack of its own
#   load-tests/run.sh load-tests/x.js ...        # other scripts, in order, on one stack
#   load-tests/run.sh --use-running ...          # reuse a running `make demo` (demo-run/), else start one
#
# A stack of its own runs on the demo ports (so `make demo` must not be running) from a
# temporary directory: a copy of conf/portcullis.yaml next to a fresh demo-run/ made by
# conf/demo/prepare.sh (TLS, issuer key, IdP key, users, clients, admin token), two echo
# peers and the gateway. Everything is stopped and removed on exit (KEEP_TMP=1 keeps the
# directory; logs are shown when something fails).
#
# What each script gets (k6 reads the environment): SSL_CERT_FILE (the demo CA), the demo
# accounts (USERNAME/PASSWORD, CLIENT_ID/CLIENT_SECRET), ADMIN_URL/ADMIN_TOKEN, and an
# EXPIRED_TOKEN minted with `portcullis token` and the demo IdP's key. rotation.js runs through
# load-tests/rotate-jwks.sh, which rotates the IdP key set underneath it. Other knobs
# (DURATION, RATE, ...) pass through from the caller's environment to every script.
#
# soak.js (`make soak`) also gets TOKENS_FILE: SOAK_TOKENS (default 20,000) distinct tokens
# minted with the demo IdP's key by load-tests/mint-tokens.py. With TOKEN_CACHE_ENTRIES set, a
# stack of its own runs with that token_cache.max_entries, so the tokens outnumber the cache;
# its gateway's RSS and open file descriptors are printed before and after each script.
#
# PORTCULLIS_BIN overrides the binary (default target/release/portcullis; build it first).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

use_running=0
if [[ "${1:-}" == --use-running ]]; then use_running=1; shift; fi
scripts=("$@")
[[ ${#scripts[@]} -gt 0 ]] || scripts=(load-tests/smoke.js)

bin="${PORTCULLIS_BIN:-$root/target/release/portcullis}"
python="${PYTHON:-python3}"
# Every port conf/portcullis.yaml uses: peers, http, https, internal, admin, metrics.
ports=(7001 7002 8080 8443 8081 9901 9100)

die() { echo "run: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stack_running() {
  curl -sf -o /dev/null --max-time 2 http://127.0.0.1:9901/healthz &&
    curl -sf -o /dev/null --max-time 2 http://127.0.0.1:7001/healthz
}

tmp=""
logs=""
pids=()
# shellcheck disable=SC2317  # only called from the EXIT trap
stop_all() {
  local pid i
  trap - EXIT
  trap '' PIPE
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
  if [[ -n "$tmp" ]]; then
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then echo "run: kept $tmp" 2>/dev/null || true; else rm -rf "$tmp"; fi
  fi
}

show_logs() {
  local f
  [[ -n "$logs" ]] || return 0
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

[[ -x "$bin" ]] || die "$bin not found: run 'make build' first"

if [[ $use_running == 1 ]] && stack_running; then
  run="$root/demo-run"
  [[ -s "$run/tls/ca.crt" && -s "$run/idp/idp-1.pem" ]] ||
    die "a stack is running but $run lacks the demo material: is it 'make demo' (conf/demo/run.sh)?"
  admin_token="${PORTCULLIS_ADMIN_TOKEN:-$(cat "$run/admin.token")}"
  echo "run: a demo stack is already running; testing it as it is"
else
  for p in "${ports[@]}"; do
    ! port_open "$p" || die "127.0.0.1:$p is already in use (a running 'make demo'? then use --use-running, or stop it)"
  done
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-k6.XXXXXX")"
  trap stop_all EXIT
  trap 'exit 130' INT TERM HUP PIPE
  run="$tmp/demo-run"
  logs="$tmp/logs"
  mkdir -p "$tmp/conf" "$logs"
  # The config's ../demo-run/ paths resolve next to the copy; pid file and upgrade socket move too.
  sed "s|/tmp/portcullis-demo|$tmp/portcullis|g" conf/portcullis.yaml >"$tmp/conf/portcullis.yaml"
  config="$tmp/conf/portcullis.yaml"
  if [[ -n "${TOKEN_CACHE_ENTRIES:-}" ]]; then
    sed -i "s/^token_cache: { max_entries: [0-9]*/token_cache: { max_entries: $TOKEN_CACHE_ENTRIES/" "$config"
    grep -q "^token_cache: { max_entries: $TOKEN_CACHE_ENTRIES," "$config" ||
      die "could not set token_cache.max_entries in $config"
  fi
  PORTCULLIS_BIN="$bin" conf/demo/prepare.sh "$run" >"$logs/prepare.log" 2>&1 || { show_logs; die "prepare failed"; }
  "$bin" -t -c "$config" >/dev/null
  admin_token="$(cat "$run/admin.token")"

  for peer in a:7001 b:7002; do
    "$python" tests/support/echo_upstream.py --listen "127.0.0.1:${peer#*:}" --name "peer-${peer%%:*}" \
      >"$logs/peer-${peer%%:*}.log" 2>&1 &
    pids+=($!)
  done
  wait_for http://127.0.0.1:7001/healthz 15 "${pids[0]}"
  wait_for http://127.0.0.1:7002/healthz 15 "${pids[1]}"

  PORTCULLIS_ADMIN_TOKEN="$admin_token" "$bin" -c "$config" >"$logs/portcullis.log" 2>&1 &
  gw=$!
  pids+=("$gw")
  wait_for http://127.0.0.1:9901/readyz 30 "$gw"
  wait_for https://localhost:8443/public/ready 30 "$gw" --cacert "$run/tls/ca.crt"
  # Peers may start out unhealthy until their first checks pass: wait until every
  # peer of conf/portcullis.yaml is reported healthy, so round robin sees them all.
  for ((i = 0; ; i++)); do
    healthy="$(curl -sf --max-time 1 http://127.0.0.1:9100/metrics | grep -c '^portcullis_upstream_peer_healthy{.*} 1$' || true)"
    [[ "$healthy" -ge 2 ]] && break
    kill -0 "$gw" 2>/dev/null || { show_logs; die "the gateway exited"; }
    ((i < 75)) || { show_logs; die "peers not reported healthy within 15s (healthy: $healthy)"; }
    sleep 0.2
  done
  echo "run: stack up (gateway pid $gw, files in $tmp)"
fi

# What every script gets. USERNAME is set explicitly: some login shells export one of their own.
export SSL_CERT_FILE="$run/tls/ca.crt"
export BASE_URL="${BASE_URL:-https://localhost:8443}"
export ADMIN_URL="${ADMIN_URL:-http://127.0.0.1:9901}"
export ADMIN_TOKEN="$admin_token"
export USERNAME=alice PASSWORD=alice-password CLIENT_ID=reporting CLIENT_SECRET=reporting-secret
now="$(date +%s)"
EXPIRED_TOKEN="$("$bin" token --key "$run/idp/idp-1.pem" --iss https://idp.demo.local --aud api \
  --sub alice --scope users:read --claim iat=$((now - 3600)) --claim exp=$((now - 1800)))"
export EXPIRED_TOKEN

# RSS (MiB) and open descriptors of the stack's own gateway, for the soak's report.
resources() {
  [[ -n "${gw:-}" && -r "/proc/$gw/status" ]] || { echo "n/a (not this script's stack)"; return; }
  local kb fds
  kb="$(awk '/^VmRSS:/ {print $2}' "/proc/$gw/status")"
  fds="$(find "/proc/$gw/fd" -mindepth 1 -maxdepth 1 | wc -l)"
  echo "RSS $((kb / 1024)) MiB, $fds open fds"
}

status=0
failed=()
for script in "${scripts[@]}"; do
  echo
  echo "run: ==== $script"
  if [[ "$(basename "$script")" == soak.js && -z "${TOKENS_FILE:-}" ]]; then
    TOKENS_FILE="$run/soak-tokens.txt"
    "$python" load-tests/mint-tokens.py --key "$run/idp/idp-1.pem" --iss https://idp.demo.local \
      --aud api --scope users:read --count "${SOAK_TOKENS:-20000}" --ttl 7200 --out "$TOKENS_FILE"
    export TOKENS_FILE
  fi
  echo "run: gateway before: $(resources)"
  case "$(basename "$script")" in
    rotation.js)
      if ! CA_CERT="$SSL_CERT_FILE" PORTCULLIS_BIN="$bin" load-tests/rotate-jwks.sh "$run"; then
        status=1
        failed+=("$script")
      fi
      ;;
    *)
      if ! load-tests/k6.sh run --quiet --no-usage-report "$script"; then
        status=1
        failed+=("$script")
      fi
      ;;
  esac
  echo "run: gateway after: $(resources)"
done
echo
if [[ $status != 0 ]]; then
  echo "run: FAILED: ${failed[*]}" >&2
  show_logs
else
  echo "run: passed: ${scripts[*]}"
fi
exit "$status"
