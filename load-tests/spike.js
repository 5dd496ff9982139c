// Portcullis spike test (k6): a sudden burst far above the baseline rate, then back down. The
// questions: does the gateway stay correct (no errors) through the burst, and does latency
// come back to the baseline's once the burst is over (no backlog, no stuck connections)?
//
// Phases of one ramping-arrival-rate scenario, each request tagged with its phase:
//   baseline   BASE_RATE req/s for WARMUP
//   spike      up to SPIKE_RATE within RISE, held for SPIKE
//   recovery   back to BASE_RATE within RISE, held for RECOVERY
// Every request is an authenticated GET of BASE_URL + REQ_PATH/<n> that must answer 200 (token
// from the built-in issuer in setup()).
//
// Thresholds (k6 exits non-zero when one fails):
//   http_req_failed{scenario:spike}       rate < ERROR_RATE
//   http_req_duration{phase:spike}        p(99) < SPIKE_P99_MS      (loose: queueing is expected)
//   http_req_duration{phase:recovery}     p(99) < RECOVERY_P99_MS   (back to normal)
//   http_req_duration{phase:baseline}     p(99) < RECOVERY_P99_MS   (for comparison)
//
// Environment (defaults fit the `make demo` stack):
//   BASE_URL        gateway (HTTPS listener)                  https://localhost:8443
//   REQ_PATH        path prefix requested                     /users/spike
//   TOKEN_URL       token endpoint                            BASE_URL/auth/token
//   USERNAME / PASSWORD         password-grant user           alice / alice-password
//   GRANT           password | client_credentials             password
//   CLIENT_ID / CLIENT_SECRET   client for GRANT=client_credentials  reporting / reporting-secret
//                               (then e.g. REQ_PATH=/reports)
//   TOKEN           a ready token: no login at all
//   BASE_RATE       baseline requests/s                       50
//   SPIKE_RATE      peak requests/s                           1000
//   WARMUP / RISE / SPIKE / RECOVERY   phase lengths          8s / 2s / 10s / 8s
//   ERROR_RATE      tolerated failure rate                    0.01
//   SPIKE_P99_MS    p99 budget during the spike, ms           3000
//   RECOVERY_P99_MS p99 budget outside it, ms                 250
//   MAX_VUS         VU ceiling (in-flight requests)           400
//   INSECURE_TLS    1: skip certificate verification
//
//   SSL_CERT_FILE=demo-run/tls/ca.crt load-tests/k6.sh run load-tests/spike.js
import http from 'k6/http';
import encoding from 'k6/encoding';
import exec from 'k6/execution';
import { check, fail } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'https://localhost:8443';
const REQ_PATH = __ENV.REQ_PATH || '/users/spike';
const TOKEN_URL = __ENV.TOKEN_URL || `${BASE_URL}/auth/token`;
const BASE_RATE = parseInt(__ENV.BASE_RATE || '50', 10);
const SPIKE_RATE = parseInt(__ENV.SPIKE_RATE || '1000', 10);
const WARMUP = __ENV.WARMUP || '8s';
const RISE = __ENV.RISE || '2s';
const SPIKE = __ENV.SPIKE || '10s';
const RECOVERY = __ENV.RECOVERY || '8s';
const ERROR_RATE = parseFloat(__ENV.ERROR_RATE || '0.01');
const SPIKE_P99_MS = parseFloat(__ENV.SPIKE_P99_MS || '3000');
const RECOVERY_P99_MS = parseFloat(__ENV.RECOVERY_P99_MS || '250');
const MAX_VUS = parseInt(__ENV.MAX_VUS || '400', 10);

// "1m30s", "6s", "500ms" -> milliseconds.
function ms(d) {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  const unit = { ms: 1, s: 1000, m: 60000, h: 3600000 };
  let total = 0;
  let m;
  let used = '';
  while ((m = re.exec(d)) !== null) {
    total += parseFloat(m[1]) * unit[m[2]];
    used += m[0];
  }
  if (used !== d) throw new Error(`bad duration ${d}`);
  return total;
}

// Phase boundaries in ms since the scenario started: the spike phase covers the rise, the
// hold and the fall (requests then still meet the burst's backlog); recovery starts after it.
const SPIKE_FROM = ms(WARMUP);
const RECOVERY_FROM = SPIKE_FROM + 2 * ms(RISE) + ms(SPIKE);

export const options = {
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: BASE_RATE,
      timeUnit: '1s',
      preAllocatedVUs: 50,
      maxVUs: MAX_VUS,
      stages: [
        { target: BASE_RATE, duration: WARMUP },
        { target: SPIKE_RATE, duration: RISE },
        { target: SPIKE_RATE, duration: SPIKE },
        { target: BASE_RATE, duration: RISE },
        { target: BASE_RATE, duration: RECOVERY },
      ],
    },
  },
  insecureSkipTLSVerify: __ENV.INSECURE_TLS === '1',
  thresholds: {
    'http_req_failed{scenario:spike}': [`rate<${ERROR_RATE}`],
    'http_req_duration{phase:baseline}': [`p(99)<${RECOVERY_P99_MS}`],
    'http_req_duration{phase:spike}': [`p(99)<${SPIKE_P99_MS}`],
    'http_req_duration{phase:recovery}': [`p(99)<${RECOVERY_P99_MS}`],
    'http_reqs{phase:recovery}': ['count>0'],
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
  const r = http.get(`${BASE_URL}${REQ_PATH}/setup`, { headers: { Authorization: `Bearer ${token}` }, redirects: 0 });
  if (r.status !== 200) fail(`GET ${BASE_URL}${REQ_PATH}/setup answered ${r.status}, want 200: ${r.body}`);
  return { token };
}

function phaseNow() {
  const elapsed = Date.now() - exec.scenario.startTime;
  if (elapsed < SPIKE_FROM) return 'baseline';
  return elapsed < RECOVERY_FROM ? 'spike' : 'recovery';
}

export default function (data) {
  const r = http.get(`${BASE_URL}${REQ_PATH}/${__ITER % 1000}`, {
    headers: { Authorization: `Bearer ${data.token}` },
    redirects: 0,
    tags: { name: `${REQ_PATH}/:n`, phase: phaseNow() },
  });
  check(r, { 'status 200': (res) => res.status === 200 });
}
