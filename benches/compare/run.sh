#!/usr/bin/env bash
# Portcullis against HAProxy and a bare Pingora proxy, on loopback, in one run.
#
#   benches/compare/run.sh                 # correctness pass, then 5 rounds x 3 s (~5 min)
#   QUICK=1 benches/compare/run.sh         # 2 rounds x 1 s: proves the harness works
#   CHECK_ONLY=1 benches/compare/run.sh    # correctness pass only, no timing (what `make test` runs)
#
# Contenders, all on 127.0.0.1 from BENCH_PORT_BASE (default 18080) up:
#   +0 direct              nginx (1 worker, `return 200 "ok"`, keep-alive, no access log): the
#                          upstream of every proxy below; it also serves the JWKS
#   +1 haproxy-proxy       HAProxy, nbthread 1, http-reuse always, plain proxy
#   +2 haproxy-jwt         the same plus jwt_verify rules: ES256/RS256 pinned per kid, iss, aud, exp
#   +3 bare-pingora        benches/bare_pingora.rs: Pingora with one fixed peer and no filters
#   +4 portcullis          the gateway at its defaults (1 thread, access log off); `/` requires a
#                          token from the bench provider, `/public/` does not
#   +5 portcullis-nocache  the same with token_cache.max_entries: 0
#   +6 portcullis-baseline only with BASELINE_BIN: another build (say, of the commit before a
#                          change) with portcullis's config, measured in the same rounds
#
# Knobs (environment): ROUNDS (5), DURATION (3 s), WARMUP (2 s), QUICK=1 (2 rounds x 1 s,
# 1 s warm-up), CHECK_ONLY=1, CONNS (32), N_TOKENS (1000), BENCH_PORT_BASE (18080),
# LAYOUT (wrk-alone: wrk on cpu0, everything else on cpu1; none: no pinning),
# REVOCATIONS (0: preload this many unrelated revocations into both gateways' default
# revocation file, to measure the revocation check with a large list),
# BASELINE_BIN (unset: no baseline contender),
# TRACING_RATIO (unset: tracing off; a ratio such as 0.01 turns span export on in the portcullis
# and portcullis-nocache contenders at that sample_ratio, exporting to nginx, which answers every
# POST with 200; the baseline contender keeps tracing off, so BASELINE_BIN=<the same binary>
# measures the cost of tracing in the same rounds),
# PORTCULLIS_BIN and BARE_PINGORA_BIN (default: the release build of this checkout, built if
# missing), BENCH_OUT (bench-out/: keys, tokens, configs, logs, results.md, results.json).
#
# Everything it starts runs in a process group of its own and is stopped on exit, by
# process-group id (SIGTERM or SIGINT, whichever stops it at once; SIGKILL after 5 s).
# Exit status: 0 on success, 1 on a failed correctness check or any other error.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
PORTCULLIS_BIN="${PORTCULLIS_BIN:-$target_dir/release/portcullis}"
BARE_PINGORA_BIN="${BARE_PINGORA_BIN:-$target_dir/release/examples/bare-pingora}"
PY="${PYTHON:-python3}"

QUICK="${QUICK:-0}"
CHECK_ONLY="${CHECK_ONLY:-0}"
if [[ "$QUICK" == 1 ]]; then
  ROUNDS="${ROUNDS:-2}" DURATION="${DURATION:-1}" WARMUP="${WARMUP:-1}"
else
  ROUNDS="${ROUNDS:-5}" DURATION="${DURATION:-3}" WARMUP="${WARMUP:-2}"
fi
CONNS="${CONNS:-32}"
# The correctness pass needs only a few of the N tokens (minting 2 x 1000 takes a while); a
# larger set left by an earlier run is reused.
if [[ "$CHECK_ONLY" == 1 ]]; then N_TOKENS="${N_TOKENS:-4}"; else N_TOKENS="${N_TOKENS:-1000}"; fi
LAYOUT="${LAYOUT:-wrk-alone}"
REVOCATIONS="${REVOCATIONS:-0}"
TRACING_RATIO="${TRACING_RATIO:-}"
PORT_BASE="${BENCH_PORT_BASE:-18080}"
ISSUER="https://issuer.bench.local/"
AUDIENCE="bench-api"
TOKEN_TTL=24h
NOAUTH_PATH=/public/

UP_PORT=$PORT_BASE
HAP_PORT=$((PORT_BASE + 1))
HAPJWT_PORT=$((PORT_BASE + 2))
BARE_PORT=$((PORT_BASE + 3))
PC_PORT=$((PORT_BASE + 4))
PCNC_PORT=$((PORT_BASE + 5))
BASE_PORT=$((PORT_BASE + 6))
BASELINE_BIN="${BASELINE_BIN:-}"
# The Portcullis instances with a config of their own: name, then the binary that runs it.
PC_NAMES=(portcullis portcullis-nocache)
[[ -z "$BASELINE_BIN" ]] || PC_NAMES+=(portcullis-baseline)

# pc_bin NAME ARGS...: runs the Portcullis build that instance NAME is measured with.
pc_bin() {
  local name=$1
  shift
  if [[ "$name" == portcullis-baseline ]]; then "$BASELINE_BIN" "$@"; else "$PORTCULLIS_BIN" "$@"; fi
}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
on_error() { log "FAILED: line $1: \`$2\` exited with $3 (logs: ${OUT:-bench-out}/logs/)"; exit "$3"; }
trap 'on_error "$LINENO" "$BASH_COMMAND" "$?"' ERR

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ && "$DURATION" =~ ^[1-9][0-9]*$ && "$WARMUP" =~ ^[1-9][0-9]*$ ]] \
  || die "ROUNDS, DURATION and WARMUP must be positive integers (seconds)"
[[ "$N_TOKENS" =~ ^[1-9][0-9]*$ && "$REVOCATIONS" =~ ^[0-9]+$ && "$CONNS" =~ ^[1-9][0-9]*$ ]] \
  || die "N_TOKENS, CONNS and REVOCATIONS must be integers"

case "$LAYOUT" in
  wrk-alone)
    if (($(nproc) >= 2)); then WRK_CPUS=0 SERVER_CPUS=1; else WRK_CPUS="" SERVER_CPUS=""; LAYOUT=none; fi ;;
  none) WRK_CPUS="" SERVER_CPUS="" ;;
  *) die "LAYOUT=$LAYOUT: use wrk-alone or none" ;;
esac

OUT="${BENCH_OUT:-$root/bench-out}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"   # absolute: the configs embed it
mkdir -p "$OUT"/{keys,tokens,conf,logs,run,www}

# ---------------------------------------------------------------- tools

install_tools() {
  local entry missing=() sudo=()
  for entry in haproxy:haproxy nginx:nginx wrk:wrk curl:curl openssl:openssl \
               taskset:util-linux setsid:util-linux; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
  done
  if ((${#missing[@]})); then
    [[ "$(id -u)" == 0 ]] || sudo=(sudo)
    log "installing Debian packages: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  for entry in haproxy nginx wrk curl openssl taskset setsid "$PY"; do
    command -v "$entry" >/dev/null || die "$entry is not installed"
  done
  local v
  v=$(haproxy -v | sed -n 's/^HAProxy version \([0-9]*\.[0-9]*\).*/\1/p')
  awk -v v="$v" 'BEGIN { split(v, p, "."); exit !(p[1] > 2 || (p[1] == 2 && p[2] >= 5)) }' \
    || die "HAProxy ${v:-?} has no jwt_verify (2.5 or later needed)"
}

build_if_missing() {
  if [[ ! -x "$PORTCULLIS_BIN" ]]; then
    log "building $PORTCULLIS_BIN"
    (cd "$root" && cargo build --release --bin portcullis)
  fi
  if [[ ! -x "$BARE_PINGORA_BIN" ]]; then
    log "building $BARE_PINGORA_BIN"
    (cd "$root" && cargo build --release --example bare-pingora)
  fi
  [[ -x "$PORTCULLIS_BIN" ]] || die "no Portcullis binary at $PORTCULLIS_BIN (set PORTCULLIS_BIN)"
  [[ -x "$BARE_PINGORA_BIN" ]] || die "no bare-pingora binary at $BARE_PINGORA_BIN (set BARE_PINGORA_BIN)"
}

# ---------------------------------------------------------------- processes

declare -a GROUPS_STARTED=()
declare -A GROUP_OF=() STOP_SIGNAL=()

# start NAME SIGNAL CMD...: CMD in a session of its own (its pid is its process-group id),
# pinned to the servers' CPU, output to logs/NAME.log; SIGNAL stops it at once (nginx and
# HAProxy: TERM; Pingora: INT, since its TERM waits out a grace period).
start() {
  local name=$1 pid pgid
  shift
  local signal=$1
  shift
  local -a pin=()
  [[ -z "$SERVER_CPUS" ]] || pin=(taskset -c "$SERVER_CPUS")
  setsid "${pin[@]}" "$@" >"$OUT/logs/$name.log" 2>&1 </dev/null &
  pid=$!
  GROUPS_STARTED+=("$pid")
  GROUP_OF[$name]=$pid
  STOP_SIGNAL[$pid]=$signal
  sleep 0.05
  pgid=$(awk '{ sub(/.*\) /, ""); print $3 }' "/proc/$pid/stat" 2>/dev/null || true)
  [[ -z "$pgid" || "$pgid" == "$pid" ]] || die "$name: expected process group $pid, got $pgid"
}

stop_all() {
  local g alive
  ((${#GROUPS_STARTED[@]})) || return 0
  for g in "${GROUPS_STARTED[@]}"; do kill "-${STOP_SIGNAL[$g]}" -- "-$g" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0
    for g in "${GROUPS_STARTED[@]}"; do kill -0 -- "-$g" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for g in "${GROUPS_STARTED[@]}"; do
    if kill -0 -- "-$g" 2>/dev/null; then
      log "process group $g still running 5 s after SIG${STOP_SIGNAL[$g]}; sending SIGKILL:" \
        "$(ps -o pid=,stat=,args= -g "$g" | tr -s ' \n' ' ')"
      kill -KILL -- "-$g" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
  GROUPS_STARTED=()
}

trap 'stop_all' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_ready NAME URL: until URL answers 200 (the gateway's upstream health check needs a moment).
wait_ready() {
  local name=$1 url=$2
  for _ in $(seq 300); do
    kill -0 "${GROUP_OF[$name]}" 2>/dev/null || {
      tail -n 20 "$OUT/logs/$name.log" >&2
      die "$name exited during start-up (log: $OUT/logs/$name.log)"
    }
    [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)" == 200 ]] && return 0
    sleep 0.1
  done
  die "$name did not answer 200 on $url within 30 s (log: $OUT/logs/$name.log)"
}

# ---------------------------------------------------------------- keys and tokens

keys() {
  local kid alg
  for kid in bench-es256:ES256 bench-rs256:RS256; do
    alg=${kid#*:} kid=${kid%%:*}
    if [[ ! -f "$OUT/keys/$kid.pem" ]]; then
      "$PORTCULLIS_BIN" keygen --alg "$alg" --kid "$kid" --out "$OUT/keys" 2>>"$OUT/logs/tools.log"
    fi
    openssl pkey -in "$OUT/keys/$kid.pem" -pubout -out "$OUT/keys/$kid.pub.pem"
  done
  # nginx's worker may run as another user and keys/ is private: serve a public copy.
  cp "$OUT/keys/jwks.json" "$OUT/www/jwks.json"
  chmod 644 "$OUT/www/jwks.json"
}

# token KEY [ISS [AUD [portcullis token flags...]]]: one token signed with keys/KEY.pem, valid
# unless told otherwise.
token() {
  local key=$1 iss=${2:-$ISSUER} aud=${3:-$AUDIENCE}
  shift $(($# < 3 ? $# : 3))
  "$PORTCULLIS_BIN" token --key "$OUT/keys/$key.pem" --iss "$iss" --aud "$aud" \
    --sub bench-user --scope "read write" --ttl "$TOKEN_TTL" "$@" 2>>"$OUT/logs/tools.log"
}

# fresh FILE LINES: FILE has at least LINES tokens, minted after the keys and less than
# 12 hours ago (they live 24 h).
fresh() {
  [[ -f "$1" && "$1" -nt "$OUT/keys/jwks.json" ]] || return 1
  [[ -n "$(find "$1" -mmin -720)" ]] || return 1
  (($(wc -l <"$1") >= $2))
}

tokens() {
  local t="$OUT/tokens" kid alg now
  for kid in bench-es256 bench-rs256; do
    alg=${kid#bench-}
    fresh "$t/$alg-1.txt" 1 || token "$kid" >"$t/$alg-1.txt"
    if ! fresh "$t/$alg-N.txt" "$N_TOKENS"; then
      log "minting $N_TOKENS $alg tokens"
      seq "$N_TOKENS" | xargs -P "$(nproc)" -I{} "$PORTCULLIS_BIN" token \
        --key "$OUT/keys/$kid.pem" --iss "$ISSUER" --aud "$AUDIENCE" --sub "bench-user-{}" \
        --scope "read write" --ttl "$TOKEN_TTL" >"$t/$alg-N.txt.tmp" 2>>"$OUT/logs/tools.log"
      mv "$t/$alg-N.txt.tmp" "$t/$alg-N.txt"
    fi
  done
  cat "$t"/{es256,rs256}-{1,N}.txt >"$t/all.txt"

  # Bad tokens: one file each, every one must be refused with 401.
  rm -rf "$t/bad" && mkdir -p "$t/bad"
  now=$(date +%s)
  token bench-es256 "" "" --claim "exp=$((now - 3600))" --claim "iat=$((now - 7200))" \
    --claim "nbf=$((now - 7200))" >"$t/bad/expired.txt"
  token bench-es256 "https://other-issuer.bench.local/" >"$t/bad/wrong-iss.txt"
  token bench-es256 "" other-api >"$t/bad/wrong-aud.txt"
  token bench-es256 "" "" --kid bench-unknown >"$t/bad/unknown-kid.txt"
  # alg pinned per key: an RS256 signature presented under the ES256 key's kid
  token bench-rs256 "" "" --kid bench-es256 >"$t/bad/kid-of-other-alg.txt"
  "$PY" "$here/badtokens.py" "$t/bad" "$t/es256-1.txt" "$t/rs256-1.txt" "$OUT/keys/bench-rs256.pub.pem"
}

# ---------------------------------------------------------------- configs

write_configs() {
  local c="$OUT/conf" user=""
  # As root, nginx would hand its worker to `nobody`, which cannot enter a private checkout.
  [[ "$(id -u)" != 0 ]] || user="user root;"
  cat >"$c/nginx.conf" <<EOF
# Generated by benches/compare/run.sh: the trivial upstream and JWKS server.
$user
worker_processes 1;
daemon off;
pid $OUT/run/nginx.pid;
error_log $OUT/logs/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  server_tokens off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path $OUT/run/nginx-body;
  proxy_temp_path $OUT/run/nginx-proxy;
  fastcgi_temp_path $OUT/run/nginx-fastcgi;
  uwsgi_temp_path $OUT/run/nginx-uwsgi;
  scgi_temp_path $OUT/run/nginx-scgi;
  server {
    listen 127.0.0.1:$UP_PORT backlog=4096;
    location = /.well-known/jwks.json { default_type application/json; alias $OUT/www/jwks.json; }
    location / { default_type text/plain; return 200 "ok"; }
  }
}
EOF

  local hap_head
  hap_head="# Generated by benches/compare/run.sh.
global
  nbthread 1
  maxconn 4096

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 300s
  http-reuse always

backend upstream
  server nginx 127.0.0.1:$UP_PORT"

  printf '%s\n\nfrontend proxy\n  bind 127.0.0.1:%s\n  default_backend upstream\n' \
    "$hap_head" "$HAP_PORT" >"$c/haproxy-proxy.cfg"

  # HAProxy cannot read a JWKS: it gets the two public keys as PEM, each pinned to its
  # algorithm and kid. Cheap checks first, the signature last; anything else is a 401.
  local deny="http-request deny deny_status 401 hdr WWW-Authenticate Bearer"
  cat >"$c/haproxy-jwt.cfg" <<EOF
$hap_head

frontend jwt
  bind 127.0.0.1:$HAPJWT_PORT
  http-request set-var(txn.token) http_auth_bearer
  http-request set-var(txn.alg) var(txn.token),jwt_header_query('\$.alg')
  http-request set-var(txn.kid) var(txn.token),jwt_header_query('\$.kid')
  http-request set-var(txn.exp) var(txn.token),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.now) date()
  acl es256 var(txn.alg) -m str ES256
  acl rs256 var(txn.alg) -m str RS256
  acl es256_kid var(txn.kid) -m str bench-es256
  acl rs256_kid var(txn.kid) -m str bench-rs256
  acl iss_ok var(txn.token),jwt_payload_query('\$.iss') -m str $ISSUER
  acl aud_ok var(txn.token),jwt_payload_query('\$.aud') -m str $AUDIENCE
  acl live var(txn.exp),sub(txn.now) -m int gt 0
  acl es256_sig var(txn.token),jwt_verify("ES256","$OUT/keys/bench-es256.pub.pem") -m int 1
  acl rs256_sig var(txn.token),jwt_verify("RS256","$OUT/keys/bench-rs256.pub.pem") -m int 1
  $deny unless es256 es256_kid or rs256 rs256_kid
  $deny unless iss_ok aud_ok live
  $deny if es256 !es256_sig
  $deny if rs256 !rs256_sig
  default_backend upstream
EOF

  # Portcullis at its defaults: only what the setup needs (one thread like the others, a
  # plain-HTTP listener that proxies instead of redirecting, no access log, the upstream,
  # the provider and the routes). Each instance gets a directory of its own, since relative
  # paths (such as the default revocation file) resolve against the config's directory.
  local name cache port tracing
  for name in "${PC_NAMES[@]}"; do
    mkdir -p "$c/$name"
    cache="" port=$PC_PORT tracing=""
    if [[ -n "$TRACING_RATIO" && "$name" != portcullis-baseline ]]; then
      tracing="tracing: { enabled: true, sample_ratio: $TRACING_RATIO, otlp_endpoint: \"http://127.0.0.1:$UP_PORT/v1/traces\" }"
    fi
    [[ "$name" != portcullis-nocache ]] || cache="token_cache: { max_entries: 0 }" port=$PCNC_PORT
    [[ "$name" != portcullis-baseline ]] || port=$BASE_PORT
    # The default revocation store is data/revocations.jsonl next to the config: start each
    # run from an empty list, or from REVOCATIONS unrelated entries.
    rm -rf "$c/$name/data" && mkdir -p "$c/$name/data"
    if ((REVOCATIONS > 0)); then
      "$PY" -c 'import json, secrets, sys
n, iss = int(sys.argv[1]), sys.argv[2]
with open(sys.argv[3], "w") as f:
    for _ in range(n):
        f.write(json.dumps({"op": "revoke_jti", "iss": iss, "jti": secrets.token_hex(16), "expires_at": 4102444800}) + "\n")' \
        "$REVOCATIONS" "$ISSUER" "$c/$name/data/revocations.jsonl"
    fi
    cat >"$c/$name/portcullis.yaml" <<EOF
# Generated by benches/compare/run.sh; everything not set here is at its default.
server: { threads: 1 }
listeners:
  http: { addr: "127.0.0.1:$port" }
https_redirect: { enabled: false }
access_log: { enabled: false }
$cache
$tracing
upstreams:
  nginx:
    peers: [{ addr: "127.0.0.1:$UP_PORT" }]
providers:
  - name: bench
    issuer: "$ISSUER"
    audiences: ["$AUDIENCE"]
    algorithms: [ES256, RS256]
    jwks: { url: "http://127.0.0.1:$UP_PORT/.well-known/jwks.json" }
routes:
  - name: public
    match: { path_prefix: "${NOAUTH_PATH%/}" }
    upstream: nginx
    auth: { mode: none }
  - name: api
    match: { path_prefix: / }
    upstream: nginx
    auth: { mode: required }
EOF
  done

  nginx -q -t -c "$c/nginx.conf" 2>"$OUT/logs/nginx-test.log" \
    || { cat "$OUT/logs/nginx-test.log" >&2; die "nginx rejected $c/nginx.conf"; }
  haproxy -q -c -f "$c/haproxy-proxy.cfg" || die "HAProxy rejected $c/haproxy-proxy.cfg"
  haproxy -q -c -f "$c/haproxy-jwt.cfg" || die "HAProxy rejected $c/haproxy-jwt.cfg"
  for name in "${PC_NAMES[@]}"; do
    pc_bin "$name" -t -c "$c/$name/portcullis.yaml" >"$OUT/logs/$name-test.log" 2>&1 \
      || { cat "$OUT/logs/$name-test.log" >&2; die "Portcullis rejected $c/$name/portcullis.yaml"; }
  done
}

# ---------------------------------------------------------------- correctness

FAILURES=()
CHECKS=0
fail() { FAILURES+=("$*"); }

# request URL [TOKEN] -> "STATUS BODY" (body on one line)
request() {
  local out
  local -a auth=()
  [[ $# -lt 2 ]] || auth=(-H "Authorization: Bearer $2")
  out=$(curl -s --max-time 5 "${auth[@]}" -w '\n%{http_code}' "$1") || { echo "000 (no answer)"; return; }
  local body=${out%$'\n'*}
  printf '%s %s' "${out##*$'\n'}" "${body//$'\n'/ }"
}

expect_ok() { # NAME URL [TOKEN]
  local got
  CHECKS=$((CHECKS + 1))
  got=$(request "${@:2}")
  [[ "$got" == "200 ok" ]] || fail "$1: GET $2 -> '${got:0:80}' (want 200 ok)"
}

expect_401() { # NAME URL CASE [TOKEN]
  local got
  CHECKS=$((CHECKS + 1))
  got=$(request "$2" "${@:4}")
  [[ "${got%% *}" == 401 ]] || fail "$1: $3 -> '${got:0:80}' (want 401)"
}

check_auth() { # NAME BASE_URL
  local name=$1 base=$2 t="$OUT/tokens" f tok
  for f in es256-1 rs256-1; do expect_ok "$name" "$base/" "$(<"$t/$f.txt")"; done
  for f in es256-N rs256-N; do
    while read -r tok; do expect_ok "$name" "$base/" "$tok"; done < <(awk 'NR <= 2; END { print }' "$t/$f.txt")
  done
  expect_401 "$name" "$base/" "no Authorization header"
  for f in "$t"/bad/*.txt; do expect_401 "$name" "$base/" "$(basename "$f" .txt)" "$(<"$f")"; done
}

correctness() {
  local es1
  es1=$(<"$OUT/tokens/es256-1.txt")
  expect_ok direct "http://127.0.0.1:$UP_PORT/" "$es1"
  expect_ok haproxy-proxy "http://127.0.0.1:$HAP_PORT/" "$es1"
  expect_ok bare-pingora "http://127.0.0.1:$BARE_PORT/" "$es1"
  expect_ok portcullis "http://127.0.0.1:$PC_PORT$NOAUTH_PATH"
  expect_ok portcullis "http://127.0.0.1:$PC_PORT$NOAUTH_PATH" "$es1"
  check_auth haproxy-jwt "http://127.0.0.1:$HAPJWT_PORT"
  check_auth portcullis "http://127.0.0.1:$PC_PORT"
  check_auth portcullis-nocache "http://127.0.0.1:$PCNC_PORT"
  if ((${#FAILURES[@]})); then
    printf '  %s\n' "${FAILURES[@]}" >&2
    die "correctness pass: ${#FAILURES[@]} check(s) failed; nothing was measured"
  fi
  log "correctness pass OK ($CHECKS checks): the plain proxies answer ok; haproxy-jwt, portcullis and" \
    "portcullis-nocache accept ES256 and RS256 tokens and answer 401 to no token and to" \
    "$(find "$OUT/tokens/bad" -name '*.txt' | wc -l) bad ones"
}

# ---------------------------------------------------------------- main

main() {
  install_tools
  build_if_missing
  local p
  for p in "$UP_PORT" "$HAP_PORT" "$HAPJWT_PORT" "$BARE_PORT" "$PC_PORT" "$PCNC_PORT" "$BASE_PORT"; do
    ! port_open "$p" || die "127.0.0.1:$p is in use; stop what listens there or set BENCH_PORT_BASE"
  done
  rm -f "$OUT"/logs/*.log
  keys
  tokens
  write_configs

  log "starting contenders (layout $LAYOUT${SERVER_CPUS:+: servers on cpu $SERVER_CPUS, wrk on cpu $WRK_CPUS})"
  start direct TERM nginx -c "$OUT/conf/nginx.conf"
  wait_ready direct "http://127.0.0.1:$UP_PORT/"
  start haproxy-proxy TERM haproxy -db -f "$OUT/conf/haproxy-proxy.cfg"
  start haproxy-jwt TERM haproxy -db -f "$OUT/conf/haproxy-jwt.cfg"
  start bare-pingora INT "$BARE_PINGORA_BIN" --listen "127.0.0.1:$BARE_PORT" --upstream "127.0.0.1:$UP_PORT"
  start portcullis INT "$PORTCULLIS_BIN" -c "$OUT/conf/portcullis/portcullis.yaml"
  start portcullis-nocache INT "$PORTCULLIS_BIN" -c "$OUT/conf/portcullis-nocache/portcullis.yaml"
  if [[ -n "$BASELINE_BIN" ]]; then
    start portcullis-baseline INT "$BASELINE_BIN" -c "$OUT/conf/portcullis-baseline/portcullis.yaml"
    wait_ready portcullis-baseline "http://127.0.0.1:$BASE_PORT$NOAUTH_PATH"
  fi
  wait_ready haproxy-proxy "http://127.0.0.1:$HAP_PORT/"
  wait_ready bare-pingora "http://127.0.0.1:$BARE_PORT/"
  wait_ready portcullis "http://127.0.0.1:$PC_PORT$NOAUTH_PATH"
  wait_ready portcullis-nocache "http://127.0.0.1:$PCNC_PORT$NOAUTH_PATH"
  port_open "$HAPJWT_PORT" || die "haproxy-jwt is not listening (log: $OUT/logs/haproxy-jwt.log)"

  correctness
  if [[ "$CHECK_ONLY" == 1 ]]; then
    log "CHECK_ONLY=1: no measurement"
    return 0
  fi

  # Scenarios in the order every round runs them: id, contender, scenario, url, tokens, group.
  local t="$OUT/tokens" s c port sc
  {
    local noauth=("direct:$UP_PORT" "haproxy-proxy:$HAP_PORT" "bare-pingora:$BARE_PORT"
                  "portcullis:$PC_PORT$NOAUTH_PATH")
    [[ -z "$BASELINE_BIN" ]] || noauth+=("portcullis-baseline:$BASE_PORT$NOAUTH_PATH")
    for s in "${noauth[@]}"; do
      c=${s%%:*} port=${s#*:}
      [[ "$port" == */* ]] || port="$port/"
      printf '%s/noauth\t%s\tnoauth\thttp://127.0.0.1:%s\t%s\t%s\n' \
        "$c" "$c" "$port" "$t/es256-1.txt" "${GROUP_OF[$c]}"
    done
    for sc in es256-1 es256-N rs256-1 rs256-N; do
      local jwt=("haproxy-jwt:$HAPJWT_PORT" "portcullis:$PC_PORT" "portcullis-nocache:$PCNC_PORT")
      [[ -z "$BASELINE_BIN" || "$sc" != es256-1 ]] || jwt+=("portcullis-baseline:$BASE_PORT")
      for s in "${jwt[@]}"; do
        c=${s%%:*} port=${s#*:}
        printf '%s/%s\t%s\t%s\thttp://127.0.0.1:%s/\t%s\t%s\n' \
          "$c" "$sc" "$c" "$sc" "$port" "$t/$sc.txt" "${GROUP_OF[$c]}"
      done
    done
  } >"$OUT/run/scenarios.tsv"

  log "measuring: $(wc -l <"$OUT/run/scenarios.tsv") scenarios x $ROUNDS rounds x ${DURATION} s (wrk -t1 -c$CONNS)"
  "$PY" "$here/bench.py" measure --scenarios "$OUT/run/scenarios.tsv" --runs "$OUT/runs.jsonl" \
    --rounds "$ROUNDS" --duration "$DURATION" --warmup "$WARMUP" --warmup-tokens "$t/all.txt" \
    --conns "$CONNS" --lua "$here/tokens.lua" --wrk-cpus "$WRK_CPUS" \
    --groups "$(IFS=,; echo "${GROUPS_STARTED[*]}")"
  stop_all

  local commit
  commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  [[ -z "$(git -C "$root" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]] || commit+="+changes"
  printf '{"commit":"%s","portcullis_bin":"%s","rounds":%d,"duration":%d,"warmup":%d,"conns":%d,"wrk_threads":1,"n_tokens":%d,"revocations":%d,"tracing_ratio":"%s","layout":"%s"}\n' \
    "$commit" "$PORTCULLIS_BIN" "$ROUNDS" "$DURATION" "$WARMUP" "$CONNS" "$N_TOKENS" "$REVOCATIONS" "$TRACING_RATIO" \
    "$([[ -n "$SERVER_CPUS" ]] && echo "wrk on cpu $WRK_CPUS, upstream and contenders on cpu $SERVER_CPUS" || echo "no CPU pinning")" \
    >"$OUT/run/meta.json"
  "$PY" "$here/bench.py" report --runs "$OUT/runs.jsonl" --out "$OUT" --meta "$OUT/run/meta.json"
  log "results: $OUT/results.md and $OUT/results.json"
}

main "$@"
