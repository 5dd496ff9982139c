// Portcullis steady load (k6): a constant arrival rate of authenticated requests for a fixed
// time, with latency and error-rate budgets. The question it answers: does the gateway hold
// its service level at the expected production rate?
//
// Every request is GET BASE_URL + REQ_PATH/<n> with a bearer token and must answer 200. The
// token comes from the built-in issuer in setup() (POST TOKEN_URL, OAuth2 password grant, or
// client_credentials with GRANT=client_credentials), so signature checks hit the verified-token cache
// the way a real client's repeated token does. Pass TOKEN to bring your own (any provider).
//
// Thresholds (k6 exits non-zero when one fails):
//   http_req_failed{scenario:load}      rate < ERROR_RATE
//   http_req_duration{scenario:load}    p(99) < P99_MS, p(95) < P95_MS
//   checks                              rate > 1 - ERROR_RATE
//   dropped_iterations                  fewer than one second's worth (k6 could not keep the rate:
//                                       too few VUs, or the gateway answers too slowly)
//
// Environment (defaults fit the `make demo` stack, conf/portcullis.yaml):
//   BASE_URL        gateway (HTTPS listener)                  https://localhost:8443
//   REQ_PATH        path prefix requested                     /users/load
//   TOKEN_URL       token endpoint                            BASE_URL/auth/token
//   USERNAME        password-grant user                       alice
//   PASSWORD        its password                              alice-password
//   GRANT           password | client_credentials             password
//   CLIENT_ID       client for GRANT=client_credentials       reporting  (then e.g. REQ_PATH=/reports)
//   CLIENT_SECRET   its secret                                reporting-secret
//   TOKEN           a ready token: no login at all
//   RATE            requests per second                       200
//   DURATION        how long                                  30s
//   P99_MS          p99 latency budget, ms                    250
//   P95_MS          p95 latency budget, ms                    100
//   ERROR_RATE      tolerated failure rate                    0.001
//   INSECURE_TLS    1: skip certificate verification          (verify; trust a CA with SSL_CERT_FILE)
//
//   SSL_CERT_FILE=demo-run/tls/ca.crt load-tests/k6.sh run load-tests/load.js
//   SSL_CERT_FILE=... load-tests/k6.sh run -e BASE_URL=https://gw.example.com -e USERNAME=... -e PASSWORD=... load-tests/load.js
//
// Login, the shared environment defaults and request helpers come from lib/common.js.
import { INSECURE_TLS, constantRate, getNumbered, probeSetup, tokenFromEnv } from './lib/common.js';

const REQ_PATH = __ENV.REQ_PATH || '/users/load';
const RATE = parseInt(__ENV.RATE || '200', 10);
const DURATION = __ENV.DURATION || '30s';
const P99_MS = parseFloat(__ENV.P99_MS || '250');
const P95_MS = parseFloat(__ENV.P95_MS || '100');
const ERROR_RATE = parseFloat(__ENV.ERROR_RATE || '0.001');

export const options = {
  scenarios: {
    load: constantRate(RATE, DURATION),
  },
  insecureSkipTLSVerify: INSECURE_TLS,
  thresholds: {
    'http_req_failed{scenario:load}': [`rate<${ERROR_RATE}`],
    'http_req_duration{scenario:load}': [`p(99)<${P99_MS}`, `p(95)<${P95_MS}`],
    checks: [`rate>${1 - ERROR_RATE}`],
    dropped_iterations: [`count<${RATE}`],
  },
};

// (Setup requests carry no scenario tag, so the thresholds above ignore them.)
export function setup() {
  const token = tokenFromEnv();
  // Fail before the clock starts when the target does not serve what we expect.
  probeSetup(REQ_PATH, token);
  return { token };
}

export default function (data) {
  getNumbered(REQ_PATH, data.token);
}
