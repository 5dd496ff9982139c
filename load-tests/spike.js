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
//
// Login, the shared environment defaults and request helpers come from lib/common.js.
import exec from 'k6/execution';
import { INSECURE_TLS, getNumbered, ms, probeSetup, tokenFromEnv } from './lib/common.js';

const REQ_PATH = __ENV.REQ_PATH || '/users/spike';
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
  insecureSkipTLSVerify: INSECURE_TLS,
  thresholds: {
    'http_req_failed{scenario:spike}': [`rate<${ERROR_RATE}`],
    'http_req_duration{phase:baseline}': [`p(99)<${RECOVERY_P99_MS}`],
    'http_req_duration{phase:spike}': [`p(99)<${SPIKE_P99_MS}`],
    'http_req_duration{phase:recovery}': [`p(99)<${RECOVERY_P99_MS}`],
    'http_reqs{phase:recovery}': ['count>0'],
  },
};

// (Setup requests carry no scenario tag, so the thresholds above ignore them.)
export function setup() {
  const token = tokenFromEnv();
  probeSetup(REQ_PATH, token);
  return { token };
}

function phaseNow() {
  const elapsed = Date.now() - exec.scenario.startTime;
  if (elapsed < SPIKE_FROM) return 'baseline';
  return elapsed < RECOVERY_FROM ? 'spike' : 'recovery';
}

export default function (data) {
  getNumbered(REQ_PATH, data.token, { phase: phaseNow() });
}
