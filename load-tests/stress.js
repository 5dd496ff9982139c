// Portcullis stress test (k6): the arrival rate climbs in steps well past the steady load, to
// find the knee: the rate from which latency and errors climb faster than the load does.
//
// STEPS levels, evenly spaced up to MAX_RATE requests/s; each is reached in RAMP and held for
// HOLD, then the rate falls back to zero. Every request is an authenticated GET of
// BASE_URL + REQ_PATH/<n> that should answer 200 (token from the built-in issuer in setup()).
// Each request is tagged with the level being held (`level:<rate>`, zero-padded; `level:ramp` in between),
// and the end-of-test summary lists p(99) latency, failure rate and request count per level:
// the knee is the first level whose p99 jumps or whose count falls short of rate x HOLD
// (dropped_iterations counts what k6 could not even start).
//
// Thresholds are loose on purpose (a stress run is for reading, not gating), but present:
//   http_req_failed{scenario:stress}   rate < ERROR_RATE (5%)
//   http_req_duration{scenario:stress} p(99) < P99_MS (2000)
//   per level: p(99) < P99_MS and failure rate < ERROR_RATE (shown per level in the summary)
//
// Environment (defaults fit the `make demo` stack; the demo's echo peers are Python, so on a
// small machine the knee is theirs and k6's as much as the gateway's):
//   BASE_URL        gateway (HTTPS listener)                  https://localhost:8443
//   REQ_PATH        path prefix requested                     /users/stress
//   TOKEN_URL       token endpoint                            BASE_URL/auth/token
//   USERNAME / PASSWORD         password-grant user           alice / alice-password
//   GRANT           password | client_credentials             password
//   CLIENT_ID / CLIENT_SECRET   client for GRANT=client_credentials  reporting / reporting-secret
//                               (then e.g. REQ_PATH=/reports)
//   TOKEN           a ready token: no login at all
//   MAX_RATE        highest level, requests/s                 1500
//   STEPS           number of levels                          5
//   RAMP            time to reach each level                  2s
//   HOLD            time held at each level                   6s
//   P99_MS          loose p99 budget, ms                      2000
//   ERROR_RATE      loose failure budget                      0.05
//   MAX_VUS         VU ceiling (in-flight requests)           400
//   INSECURE_TLS    1: skip certificate verification
//
//   SSL_CERT_FILE=demo-run/tls/ca.crt load-tests/k6.sh run load-tests/stress.js
//
// Login, the shared environment defaults and request helpers come from lib/common.js.
import exec from 'k6/execution';
import { INSECURE_TLS, getNumbered, ms, probeSetup, tokenFromEnv } from './lib/common.js';

const REQ_PATH = __ENV.REQ_PATH || '/users/stress';
const MAX_RATE = parseInt(__ENV.MAX_RATE || '1500', 10);
const STEPS = parseInt(__ENV.STEPS || '5', 10);
const RAMP = __ENV.RAMP || '2s';
const HOLD = __ENV.HOLD || '6s';
const P99_MS = parseFloat(__ENV.P99_MS || '2000');
const ERROR_RATE = parseFloat(__ENV.ERROR_RATE || '0.05');
const MAX_VUS = parseInt(__ENV.MAX_VUS || '400', 10);

const LEVELS = Array.from({ length: STEPS }, (_, i) => Math.round((MAX_RATE * (i + 1)) / STEPS));
// Tag values are zero-padded so the summary lists the levels in order.
const tag = (level) => String(level).padStart(String(MAX_RATE).length, '0');
const stages = [];
// [start ms, end ms, level] of each hold, to tag requests by the level being held.
const holds = [];
let at = 0;
for (const level of LEVELS) {
  stages.push({ target: level, duration: RAMP });
  at += ms(RAMP);
  stages.push({ target: level, duration: HOLD });
  holds.push([at, at + ms(HOLD), level]);
  at += ms(HOLD);
}
stages.push({ target: 0, duration: RAMP });

const thresholds = {
  'http_req_failed{scenario:stress}': [`rate<${ERROR_RATE}`],
  'http_req_duration{scenario:stress}': [`p(99)<${P99_MS}`],
};
for (const level of LEVELS) {
  thresholds[`http_req_duration{level:${tag(level)}}`] = [`p(99)<${P99_MS}`];
  thresholds[`http_req_failed{level:${tag(level)}}`] = [`rate<${ERROR_RATE}`];
  thresholds[`http_reqs{level:${tag(level)}}`] = ['count>0'];
}

export const options = {
  scenarios: {
    stress: {
      executor: 'ramping-arrival-rate',
      startRate: Math.min(50, LEVELS[0]),
      timeUnit: '1s',
      preAllocatedVUs: 50,
      maxVUs: MAX_VUS,
      stages,
    },
  },
  insecureSkipTLSVerify: INSECURE_TLS,
  thresholds,
};

// (Setup requests carry no scenario tag, so the thresholds above ignore them.)
export function setup() {
  const token = tokenFromEnv();
  probeSetup(REQ_PATH, token);
  console.log(`stress: levels ${LEVELS.join(', ')} req/s, ${RAMP} ramp + ${HOLD} hold each`);
  return { token };
}

function levelNow() {
  const elapsed = Date.now() - exec.scenario.startTime;
  const hold = holds.find(([from, to]) => elapsed >= from && elapsed < to);
  return hold ? tag(hold[2]) : 'ramp';
}

export default function (data) {
  getNumbered(REQ_PATH, data.token, { level: levelNow() });
}
