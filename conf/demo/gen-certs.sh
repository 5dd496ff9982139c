#!/usr/bin/env bash
# Development TLS material for the demo and the smoke run: a throw-away CA and a
# server certificate for localhost / 127.0.0.1 / ::1 signed by it.
#
#   conf/demo/gen-certs.sh [DIR]        # default DIR: demo-run/tls (git-ignored)
#
# Writes DIR/ca.crt (trust this one: curl --cacert), DIR/ca.key, DIR/server.key
# (0600) and DIR/server.crt, which is the FULL CHAIN (server cert, then the CA
# cert) because the gateway serves the file as it is. Existing material is kept
# while it is complete and valid for at least another day, so reruns are cheap
# and a browser or curl that already trusts the CA keeps working.
set -euo pipefail

dir="${1:-demo-run/tls}"
mkdir -p "$dir"
cd "$dir"

valid() {
  [[ -s ca.crt && -s ca.key && -s server.crt && -s server.key ]] || return 1
  openssl x509 -in ca.crt -noout -checkend 86400 >/dev/null || return 1
  openssl x509 -in server.crt -noout -checkend 86400 >/dev/null || return 1
  openssl verify -CAfile ca.crt server.crt >/dev/null 2>&1
}

if valid; then
  echo "gen-certs: keeping the valid certificates in $PWD"
  exit 0
fi

umask 077
rm -f ca.crt ca.key ca.srl server.crt server.key server.csr leaf.crt leaf.ext

# P-256 keys: small, fast handshakes, and accepted by every client we test with.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -sha256 -days 365 -out ca.crt \
  -subj "/CN=Portcullis demo CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key 2>/dev/null
openssl req -new -key server.key -sha256 -out server.csr -subj "/CN=localhost"
cat >leaf.ext <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
  -sha256 -days 90 -extfile leaf.ext -out leaf.crt 2>/dev/null

cat leaf.crt ca.crt >server.crt
rm -f server.csr leaf.crt leaf.ext ca.srl
chmod 600 ca.key server.key
chmod 644 ca.crt server.crt
openssl verify -CAfile ca.crt server.crt >/dev/null
echo "gen-certs: wrote a CA and a localhost server certificate (full chain) to $PWD"
