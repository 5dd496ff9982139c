#!/usr/bin/env bash
# Driver of load-tests/rotation.js: rotates the demo IdP's signing key (provider demo-idp,
# RUN_DIR/idp/jwks.json, which the gateway re-reads within a second of a change) while k6 sends
# traffic, the way an operator rotates keys without refusing a single valid token:
#
#   before   a new key (kid NEW_KID) is generated aside, unpublished; one token is minted with the
#            current key (OLD_KEY) and one with the new key; k6 starts with both
#   publish  after PUBLISH_AFTER, the new key is added to the key set; k6's VUs switch to the
#            new token as soon as /admin/status shows the gateway holds it
#   retire   GRACE after the gateway holds the new key (every VU has switched by then), the
#            old key is removed; k6 checks that old tokens are now refused
#   restore  at the end (also on failure or Ctrl-C) the original key set is put back, so the
#            demo's own tokens (and its curl walk-through) work as before
#
#   load-tests/rotate-jwks.sh [RUN_DIR]    # default: demo-run, i.e. a running `make demo`
#
# Environment:
#   DURATION       k6 run length, in s or m (at least 15s)      30s
#   RATE           requests per second                          100
#   PUBLISH_AFTER  seconds into the run                         a third of DURATION
#   GRACE          seconds between "gateway holds the new key" and the removal of the old one
#                  (more than rotation.js's POLL of 1s)          3
#   OLD_KEY        current private key (its file name is its kid)   RUN_DIR/idp/idp-1.pem
#   NEW_KID        kid of the key introduced                    idp-2
#   IDP_ISSUER     iss of the provider                          https://idp.demo.local
#   AUDIENCE       aud of the tokens                            api
#   SCOPE          scope of the tokens (REQ_PATH's route needs it)  users:read
#   PROVIDER       provider name in /admin/status               demo-idp
#   ADMIN_URL      admin listener                               http://127.0.0.1:9901
#   ADMIN_TOKEN    admin API token                              RUN_DIR/admin.token
#   CA_CERT        CA k6 trusts (set as its SSL_CERT_FILE)       RUN_DIR/tls/ca.crt
#   BASE_URL, REQ_PATH, POLL   passed through to rotation.js
#   PORTCULLIS_BIN the binary (keygen, token)                   target/release/portcullis
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run="$(cd "${1:-$root/demo-run}" && pwd)"
bin="${PORTCULLIS_BIN:-$root/target/release/portcullis}"
python="${PYTHON:-python3}"

duration="${DURATION:-30s}"
jwks="$run/idp/jwks.json"
old_key="${OLD_KEY:-$run/idp/idp-1.pem}"
old_kid="$(basename "$old_key" .pem)"
new_kid="${NEW_KID:-idp-2}"
iss="${IDP_ISSUER:-https://idp.demo.local}"
aud="${AUDIENCE:-api}"
scope="${SCOPE:-users:read}"
provider="${PROVIDER:-demo-idp}"
admin_url="${ADMIN_URL:-http://127.0.0.1:9901}"
grace="${GRACE:-3}"

die() { echo "rotate-jwks: $*" >&2; exit 1; }
log() { echo "rotate-jwks: $(date +%T) $*"; }

case "$duration" in
  *[0-9]s) secs="${duration%s}" ;;
  *[0-9]m) secs="$((${duration%m} * 60))" ;;
  *) die "DURATION must be whole seconds or minutes (30s, 2m), not $duration" ;;
esac
[[ "$secs" =~ ^[0-9]+$ && "$secs" -ge 15 ]] || die "DURATION must be at least 15s"
publish_after="${PUBLISH_AFTER:-$((secs / 3))}"

[[ -x "$bin" ]] || die "$bin not found: run 'make build' first"
[[ -s "$old_key" && -s "$jwks" ]] || die "$old_key or $jwks missing (run conf/demo/prepare.sh $run)"
admin_token="${ADMIN_TOKEN:-$(cat "$run/admin.token" 2>/dev/null || true)}"
[[ -n "$admin_token" ]] || die "no ADMIN_TOKEN and no $run/admin.token"

# The kids the gateway holds for the provider, space-separated (empty when unreadable).
gateway_kids() {
  curl -sf --max-time 2 -H "Authorization: Bearer $admin_token" "$admin_url/admin/status" |
    "$python" -c 'import json, sys
d = json.load(sys.stdin)
print(" ".join(next((p["keys"] for p in d["providers"] if p["name"] == sys.argv[1]), [])))' "$provider" 2>/dev/null || true
}

# wait_kids WANT SECONDS: until the gateway's kid list (sorted) is WANT.
wait_kids() {
  local want=$1 secs=$2 i got
  for ((i = 0; i < secs * 10; i++)); do
    got="$(gateway_kids | tr ' ' '\n' | sort | xargs)"
    [[ "$got" == "$want" ]] && return 0
    sleep 0.1
  done
  die "the gateway holds [$got] for $provider, expected [$want] within ${secs}s"
}

# edit_jwks add FILE | remove KID: rewrites the key set atomically (readers never see half a file).
edit_jwks() {
  "$python" - "$jwks" "$@" <<'PY'
import json, os, sys
path, op, arg = sys.argv[1:4]
keys = json.load(open(path))["keys"]
if op == "add":
    keys += json.load(open(arg))["keys"]
else:
    keys = [k for k in keys if k.get("kid") != arg]
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump({"keys": keys}, f, indent=2)
    f.write("\n")
os.chmod(tmp, 0o644)
os.replace(tmp, path)
PY
}

wait_kids "$old_kid" 5

stage="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-rotate.XXXXXX")"
k6_pid=""
# shellcheck disable=SC2317  # only called from the EXIT trap
restore() {
  trap - EXIT
  trap '' PIPE   # the output may be gone (a closed pipe): restore anyway
  if [[ -n "$k6_pid" ]]; then kill -INT "$k6_pid" 2>/dev/null || true; wait "$k6_pid" 2>/dev/null || true; fi
  if [[ -s "$stage/jwks.orig.json" ]]; then
    cp "$stage/jwks.orig.json" "$jwks.tmp" && mv "$jwks.tmp" "$jwks"
    log "restored the original key set ($old_kid)" 2>/dev/null || true
  fi
  rm -rf "$stage"
}
trap restore EXIT
trap 'exit 130' INT TERM HUP PIPE

cp "$jwks" "$stage/jwks.orig.json"
"$bin" keygen --alg ES256 --kid "$new_kid" --out "$stage/new" >/dev/null 2>&1
ttl="$((secs + 600))s"
mint() { "$bin" token --key "$1" --iss "$iss" --aud "$aud" --sub rotation-test --scope "$scope" --ttl "$ttl"; }
token_old="$(mint "$old_key")"
token_new="$(mint "$stage/new/$new_kid.pem")"

log "k6 run load-tests/rotation.js for $duration; publish $new_kid after ${publish_after}s, retire $old_kid ${grace}s later"
TOKEN_OLD="$token_old" TOKEN_NEW="$token_new" ADMIN_TOKEN="$admin_token" ADMIN_URL="$admin_url" \
  PROVIDER="$provider" DURATION="$duration" SSL_CERT_FILE="${CA_CERT:-$run/tls/ca.crt}" \
  "$root/load-tests/k6.sh" run --quiet --no-usage-report "$root/load-tests/rotation.js" &
k6_pid=$!

sleep "$publish_after"
kill -0 "$k6_pid" 2>/dev/null || die "k6 ended before the rotation"
edit_jwks add "$stage/new/jwks.json"
log "published $new_kid"
wait_kids "$(printf '%s\n' "$old_kid" "$new_kid" | sort | xargs)" 10
log "the gateway holds $old_kid and $new_kid"
sleep "$grace"
edit_jwks remove "$old_kid"
log "retired $old_kid"
wait_kids "$new_kid" 10
log "the gateway holds $new_kid only"

status=0
wait "$k6_pid" || status=$?
k6_pid=""
restore
wait_kids "$old_kid" 10
exit "$status"
