#!/usr/bin/env bash
# The `make demo` stack on loopback: a dev CA + localhost certificate, two echo
# peers (peer-a on :7001, peer-b on :7002) and the gateway with
# conf/portcullis.yaml in the foreground. Ctrl-C stops all of it.
#
# PORTCULLIS_BIN overrides the binary (default target/release/portcullis).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

bin="${PORTCULLIS_BIN:-target/release/portcullis}"
config=conf/portcullis.yaml
run=demo-run
python="${PYTHON:-python3}"
ports=(7001 7002 8080 8443 8081 9901 9100)

die() { echo "demo: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

[[ -x "$bin" ]] || die "$bin not found: run 'make build' first"
for p in "${ports[@]}"; do
  ! port_open "$p" || die "127.0.0.1:$p is already in use: is another demo running?"
done

conf/demo/gen-certs.sh "$run/tls"
"$bin" -t -c "$config"

# The admin API token: kept across runs so a copied curl line keeps working.
if [[ -z "${PORTCULLIS_ADMIN_TOKEN:-}" ]]; then
  if [[ ! -s "$run/admin.token" ]]; then
    (umask 077 && openssl rand -hex 24 >"$run/admin.token")
  fi
  PORTCULLIS_ADMIN_TOKEN="$(cat "$run/admin.token")"
fi
export PORTCULLIS_ADMIN_TOKEN

pids=()
gateway=""
cleanup() {
  local pid
  trap - EXIT INT TERM
  # SIGINT is Pingora's fast shutdown; the peers take SIGTERM.
  if [[ -n "$gateway" ]]; then kill -INT "$gateway" 2>/dev/null || true; fi
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}" $gateway; do wait "$pid" 2>/dev/null || true; done
  echo "demo: stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$python" tests/support/echo_upstream.py --listen 127.0.0.1:7001 --name peer-a >"$run/peer-a.log" 2>&1 &
pids+=($!)
"$python" tests/support/echo_upstream.py --listen 127.0.0.1:7002 --name peer-b >"$run/peer-b.log" 2>&1 &
pids+=($!)
for p in 7001 7002; do
  for ((i = 0; ; i++)); do
    curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$p/healthz" && break
    ((i < 50)) || die "echo peer on :$p did not start (see $run/peer-*.log)"
    sleep 0.2
  done
done

ca="$run/tls/ca.crt"
cat <<EOF

Portcullis demo: peers peer-a (127.0.0.1:7001) and peer-b (127.0.0.1:7002) are up; starting the gateway.
Try these in another terminal (from $root):

  # plain HTTP is redirected to HTTPS (308, Location: https://127.0.0.1:8443/users/1)
  curl -si http://127.0.0.1:8080/users/1

  # proxied over HTTPS, trusting the demo CA (the peer echoes what it received)
  curl -s --cacert $ca https://localhost:8443/users/1

  # load balancing: round robin over both peers
  for i in 1 2 3 4; do curl -s --cacert $ca https://localhost:8443/users/\$i | python3 -c 'import json,sys; print(json.load(sys.stdin)["peer"])'; done

  # an internal route: 404 on the public listener (the same 404 as an unknown path) ...
  curl -si --cacert $ca https://localhost:8443/internal/status
  # ... and 200 on the internal listener
  curl -si http://127.0.0.1:8081/internal/status

  # request hygiene: an encoded slash is refused (400); a method the route does not take gets 405 + Allow
  curl -si --cacert $ca 'https://localhost:8443/users%2Fx'
  curl -si --cacert $ca -X DELETE https://localhost:8443/users/1

  # metrics, health and the admin API
  curl -s 127.0.0.1:9100/metrics | grep portcullis_
  curl -s 127.0.0.1:9901/readyz
  curl -s -H "Authorization: Bearer \$(cat $run/admin.token)" 127.0.0.1:9901/admin/status

  # the k6 smoke test against this running stack
  make loadtest

Ctrl-C stops the gateway and the peers. Access log lines follow on stdout.

EOF

# In the foreground of this script, but started with & and waited for: the traps then
# run as soon as Ctrl-C (or a kill of this script) arrives, stop the gateway and the
# peers, and the script exits with the gateway if it stops on its own.
"$bin" -c "$config" &
gateway=$!
wait "$gateway"
