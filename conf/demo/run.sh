#!/usr/bin/env bash
# The `make demo` stack on loopback: a dev CA + localhost certificate, the built-in token
# issuer's key and demo accounts, a key for a stand-in external IdP, two echo peers (peer-a on
# :7001, peer-b on :7002) and the gateway with conf/portcullis.yaml in the foreground.
# Everything generated goes to demo-run/ (git-ignored; conf/demo/prepare.sh). Ctrl-C stops all of it.
#
# PORTCULLIS_BIN overrides the binary (default target/release/portcullis).
# DEMO_PROMETHEUS=1 also starts a local Prometheus (the Debian package's `prometheus`) on
# 127.0.0.1:${DEMO_PROMETHEUS_PORT:-9190} that scrapes the gateway's metrics listener every 5 s
# with conf/prometheus/alerts.yaml loaded; its data goes to demo-run/prometheus/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

bin="${PORTCULLIS_BIN:-target/release/portcullis}"
config=conf/portcullis.yaml
run=demo-run
python="${PYTHON:-python3}"
ports=(7001 7002 8080 8443 8081 9901 9100)
demo_prometheus="${DEMO_PROMETHEUS:-0}"
prometheus_port="${DEMO_PROMETHEUS_PORT:-9190}"
if [[ "$demo_prometheus" == 1 ]]; then
  command -v prometheus >/dev/null || die "DEMO_PROMETHEUS=1 needs prometheus (Debian package prometheus; make deps installs it)"
  ports+=("$prometheus_port")
fi

die() { echo "demo: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

[[ -x "$bin" ]] || die "$bin not found: run 'make build' first"
for p in "${ports[@]}"; do
  ! port_open "$p" || die "127.0.0.1:$p is already in use: is another demo running?"
done

PORTCULLIS_BIN="$bin" conf/demo/prepare.sh "$run"
"$bin" -t -c "$config"

# The admin API token: kept across runs in demo-run/admin.token, so a copied curl line and
# `make loadtest` keep working; a PORTCULLIS_ADMIN_TOKEN set by the caller replaces it.
if [[ -n "${PORTCULLIS_ADMIN_TOKEN:-}" ]]; then
  (umask 077 && printf '%s\n' "$PORTCULLIS_ADMIN_TOKEN" >"$run/admin.token")
fi
PORTCULLIS_ADMIN_TOKEN="$(cat "$run/admin.token")"
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
"$python" conf/demo/ws_echo.py serve --listen 127.0.0.1:7003 >"$run/chat.log" 2>&1 &
pids+=($!)

if [[ "$demo_prometheus" == 1 ]]; then
  mkdir -p "$run/prometheus"
  cat >"$run/prometheus/prometheus.yml" <<EOF
# Written by conf/demo/run.sh (DEMO_PROMETHEUS=1).
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - $root/conf/prometheus/alerts.yaml
scrape_configs:
  - job_name: portcullis
    static_configs:
      - targets: ["127.0.0.1:9100"]
EOF
  promtool check config "$run/prometheus/prometheus.yml" >/dev/null
  prometheus --config.file="$run/prometheus/prometheus.yml" \
    --storage.tsdb.path="$run/prometheus/data" \
    --web.listen-address="127.0.0.1:$prometheus_port" >"$run/prometheus/prometheus.log" 2>&1 &
  pids+=($!)
fi

ca="$run/tls/ca.crt"
gw=https://localhost:8443
cat <<EOF

Portcullis demo: peers peer-a (127.0.0.1:7001) and peer-b (127.0.0.1:7002) are up; starting the gateway.
Demo accounts: users alice / alice-password (users:read users:write) and bob / bob-password
(reports:read); client reporting / reporting-secret (reports:read). Try these in another
terminal, in order (from $root):

  # plain HTTP is redirected to HTTPS (308, Location: https://127.0.0.1:8443/users/1)
  curl -si http://127.0.0.1:8080/users/1

  # log in as alice at the built-in issuer (OAuth2 password grant) and keep the access token
  TOKEN=\$(curl -s --cacert $ca -d grant_type=password -d username=alice -d password=alice-password $gw/auth/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

  # a protected route with the token: 200 (the peer echoes what it got, X-Auth-Subject: alice included)
  curl -s --cacert $ca -H "Authorization: Bearer \$TOKEN" $gw/users/1

  # a WebSocket through the gateway, opened with the token: the peer echoes each message
  python3 conf/demo/ws_echo.py call --url wss://localhost:8443/chat --ca $ca --token "\$TOKEN" hello again

  # load balancing: round robin over both peers
  for i in 1 2 3 4; do curl -s --cacert $ca -H "Authorization: Bearer \$TOKEN" $gw/users/\$i | python3 -c 'import json,sys; print(json.load(sys.stdin)["peer"])'; done

  # no token: 401 (WWW-Authenticate: Bearer realm="portcullis")
  curl -si --cacert $ca $gw/users/1

  # an expired token from the demo IdP (provider demo-idp, key $run/idp/idp-1.pem): 401 token expired
  EXPIRED=\$($bin token --key $run/idp/idp-1.pem --iss https://idp.demo.local --aud api --sub alice --scope users:read --claim iat=\$((\$(date +%s) - 3600)) --claim exp=\$((\$(date +%s) - 1800)))
  curl -si --cacert $ca -H "Authorization: Bearer \$EXPIRED" $gw/users/1

  # a tampered signature (its first 10 characters replaced): 401 bad signature
  curl -si --cacert $ca -H "Authorization: Bearer \${TOKEN%.*}.AAAAAAAAAA\${TOKEN##*.??????????}" $gw/users/1

  # alice lacks reports:read: 403 insufficient_scope
  curl -si --cacert $ca -H "Authorization: Bearer \$TOKEN" $gw/reports/weekly

  # the reporting client has it (client_credentials grant, HTTP Basic): 200
  REPORTING=\$(curl -s --cacert $ca -u reporting:reporting-secret -d grant_type=client_credentials $gw/auth/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s --cacert $ca -H "Authorization: Bearer \$REPORTING" $gw/reports/weekly

  # /public takes anonymous requests (200; with a valid token the identity headers are set too)
  curl -si --cacert $ca $gw/public/hello

  # logout: revoke the token at the issuer (200), then it is refused: 401 token revoked
  curl -si --cacert $ca -d "token=\$TOKEN" $gw/auth/revoke
  curl -si --cacert $ca -H "Authorization: Bearer \$TOKEN" $gw/users/1

  # an internal route: 404 on the public listener (the same 404 as an unknown path) ...
  curl -si --cacert $ca $gw/internal/status
  # ... and 200 on the internal listener
  curl -si http://127.0.0.1:8081/internal/status

  # request hygiene: an encoded slash is refused (400); a method the route does not take gets 405 + Allow
  curl -si --cacert $ca '$gw/users%2Fx'
  curl -si --cacert $ca -X DELETE $gw/users/1

  # metrics, health and the admin API (status, revocations)
  curl -s 127.0.0.1:9100/metrics | grep -E '^portcullis_(requests|auth_decisions)_total'
  curl -s 127.0.0.1:9901/readyz
  curl -s -H "Authorization: Bearer \$(cat $run/admin.token)" 127.0.0.1:9901/admin/status
  curl -s -H "Authorization: Bearer \$(cat $run/admin.token)" 127.0.0.1:9901/admin/revocations

  # the status page: open http://127.0.0.1:9901/ in a browser, sign in with the admin token
  cat $run/admin.token

  # the k6 suite against this running stack (README.md, "Load tests")
  make loadtest

  # with DEMO_PROMETHEUS=1: Prometheus at http://127.0.0.1:$prometheus_port (alerts under /alerts);
  # point a Grafana at it and import conf/grafana/portcullis.json

Ctrl-C stops the gateway and the peers. Access log lines follow on stdout.

EOF

# In the foreground of this script, but started with & and waited for: the traps then
# run as soon as Ctrl-C (or a kill of this script) arrives, stop the gateway and the
# peers, and the script exits with the gateway if it stops on its own.
"$bin" -c "$config" &
gateway=$!
wait "$gateway"
