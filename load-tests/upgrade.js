// Portcullis graceful upgrade under load (k6): constant-rate traffic must not see a single
// failed request or connection error while a new gateway process takes over the listening
// sockets from the old one.
//
// The upgrade itself is done outside this script, while it runs (conf/README.md §1, Pingora's -u):
//   1. start the new process with the SAME config and `-u`; it waits on server.upgrade_sock
//      for the listening sockets (for about 5 s, so do step 2 promptly):
//        target/release/portcullis -u -c conf/portcullis.yaml &
//   2. send SIGQUIT to the old process: it hands its sockets over, keeps serving for 5 s, then
//      drains for server.grace_period_seconds and exits:
//        kill -QUIT <pid of the old portcullis>
// The pytest driver tests/test_upgrade.py::test_graceful_upgrade_under_load does exactly this
// while the script runs (100 req/s, short DURATION) and also checks that the old process exits
// and the new one serves.
//
// Thresholds (k6 exits non-zero when one fails):
//   http_req_failed rate==0, checks rate==1, and connection_errors count==0 (a request that got
//   no HTTP answer at all: refused, reset, or closed connection).
//
// Environment (defaults fit the `make demo` stack, conf/portcullis.yaml):
//   BASE_URL       gateway listener                      https://localhost:8443
//   REQ_PATH       path requested                        /users/upgrade-load
//   TOKEN          bearer token for the route            (unset: log in at TOKEN_URL as USERNAME)
//   TOKEN_URL      built-in issuer's token endpoint      BASE_URL/auth/token
//   USERNAME       password-grant user (without TOKEN)   alice
//   PASSWORD       its password                          alice-password
//   NO_AUTH        1: no token at all (a route with auth: none)
//   EXPECT_STATUS  status every request must get         200
//   RATE           requests per second                   200
//   DURATION       how long (cover the 5 s hand-over,    30s
//                  the grace period and some margin)
//
// Stand-alone against a running `make demo` (demo CA: demo-run/tls/ca.crt); in a second
// terminal run steps 1 and 2 above during the run:
//
//   SSL_CERT_FILE=demo-run/tls/ca.crt load-tests/k6.sh run load-tests/upgrade.js
//
// `make loadtest` runs it (without an upgrade) with the defaults above, logged in as alice, as a
// steady-load check.
//
// Login, the shared environment defaults and request helpers come from lib/common.js.
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { INSECURE_TLS, ZERO_FAILURES, constantRate, trafficGet, trafficSetup } from './lib/common.js';

const REQ_PATH = __ENV.REQ_PATH || '/users/upgrade-load';
const EXPECT_STATUS = parseInt(__ENV.EXPECT_STATUS || '200', 10);
const RATE = parseInt(__ENV.RATE || '200', 10);
const DURATION = __ENV.DURATION || '30s';

const connectionErrors = new Counter('connection_errors');

export const options = {
  scenarios: {
    traffic: constantRate(RATE, DURATION),
  },
  insecureSkipTLSVerify: INSECURE_TLS,
  thresholds: { ...ZERO_FAILURES, connection_errors: ['count==0'] },
};

export function setup() {
  // TOKEN as given, NO_AUTH=1 none, else a password-grant login of USERNAME; fails fast (before
  // the clock starts) when the target is not serving what we expect.
  return trafficSetup(REQ_PATH, EXPECT_STATUS);
}

export default function (data) {
  const r = trafficGet(REQ_PATH, data.token, EXPECT_STATUS);
  if (r.status === 0) {
    // No HTTP answer at all; error/error_code say why (e.g. 1211 reset, 1212 refused).
    connectionErrors.add(1, { error_code: String(r.error_code) });
    console.warn(`connection error: ${r.error_code} ${r.error}`);
  }
  check(r, { [`status ${EXPECT_STATUS}`]: (res) => res.status === EXPECT_STATUS });
}
