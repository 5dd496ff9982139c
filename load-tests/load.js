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
import http from 'k6/http';
import encoding from 'k6/encoding';
import { check, fail } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'https://localhost:8443';
const REQ_PATH = __ENV.REQ_PATH || '/users/load';
const TOKEN_URL = __ENV.TOKEN_URL || `${BASE_URL}/auth/token`;
const RATE = parseInt(__ENV.RATE || '200', 10);
const DURATION = __ENV.DURATION || '30s';
const P99_MS = parseFloat(__ENV.P99_MS || '250');
const P95_MS = parseFloat(__ENV.P95_MS || '100');
const ERROR_RATE = parseFloat(__ENV.ERROR_RATE || '0.001');

export const options = {
  scenarios: {
    load: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.max(10, Math.ceil(RATE / 10)),
      maxVUs: Math.max(50, RATE),
    },
  },
  insecureSkipTLSVerify: __ENV.INSECURE_TLS === '1',
  thresholds: {
    'http_req_failed{scenario:load}': [`rate<${ERROR_RATE}`],
    'http_req_duration{scenario:load}': [`p(99)<${P99_MS}`, `p(95)<${P95_MS}`],
    checks: [`rate>${1 - ERROR_RATE}`],
    dropped_iterations: [`count<${RATE}`],
  },
};

// POST TOKEN_URL (RFC 6749 form): password grant, or client_credentials with HTTP Basic.
// (Setup requests carry no scenario tag, so the thresholds above ignore them.)
function login() {
  if (__ENV.TOKEN) return __ENV.TOKEN;
  const params = { headers: {}, responseCallback: http.expectedStatuses(200), tags: { name: 'login' } };
  let form;
  if (__ENV.GRANT === 'client_credentials') {
    const id = __ENV.CLIENT_ID || 'reporting';
    const secret = __ENV.CLIENT_SECRET || 'reporting-secret';
    form = { grant_type: 'client_credentials' };
    params.headers.Authorization = `Basic ${encoding.b64encode(`${id}:${secret}`)}`;
  } else {
    form = { grant_type: 'password', username: __ENV.USERNAME || 'alice', password: __ENV.PASSWORD || 'alice-password' };
  }
  const r = http.post(TOKEN_URL, form, params);
  let token;
  try {
    token = r.json('access_token');
  } catch (e) {
    token = undefined;
  }
  if (r.status !== 200 || typeof token !== 'string') fail(`login at ${TOKEN_URL}: ${r.status} ${r.body}`);
  return token;
}

export function setup() {
  const token = login();
  // Fail before the clock starts when the target does not serve what we expect.
  const r = http.get(`${BASE_URL}${REQ_PATH}/setup`, { headers: { Authorization: `Bearer ${token}` }, redirects: 0 });
  if (r.status !== 200) fail(`GET ${BASE_URL}${REQ_PATH}/setup answered ${r.status}, want 200: ${r.body}`);
  return { token };
}

export default function (data) {
  const r = http.get(`${BASE_URL}${REQ_PATH}/${__ITER % 1000}`, {
    headers: { Authorization: `Bearer ${data.token}` },
    redirects: 0,
    tags: { name: `${REQ_PATH}/:n` },
  });
  check(r, { 'status 200': (res) => res.status === 200 });
}
