// Several Portcullis instances sharing one Redis (k6; conf/README.md §7): requests go round-robin
// over the instances, a token revoked on one is refused by every other within one second, and a
// route with `rate_limit.shared: true` admits for all instances together what one would.
//
// Scenario `revocation` (one VU per token, one iteration each): the VU's token is accepted by
// every instance (200), then revoked through the admin API of instance VU % N (must answer 201);
// the VU then polls each other instance until it answers 401 and records how long that took
// after the 201 in `propagation_ms`.
// Scenario `shared_limit` (only with LIMITED_PATH): LIMIT_RATE requests/s for DURATION, spread
// round-robin over the instances, all from this one client, on a route limited to LIMIT_RPS with
// LIMIT_BURST; `admitted` counts the 200s.
//
// Thresholds (k6 exits non-zero when one fails):
//   propagation_ms max<PROPAGATION_MS (default 1000); checks rate==1;
//   admitted within ±10% of LIMIT_BURST + LIMIT_RPS·DURATION (with LIMITED_PATH).
//
// Environment:
//   BASE_URLS      the instances' listeners, comma-separated   http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083
//   ADMIN_URLS     their admin listeners, in the same order    http://127.0.0.1:9901,http://127.0.0.1:9902,http://127.0.0.1:9903
//   ADMIN_TOKEN    admin API token (required)
//   REQ_PATH       a route that requires a token               /users
//   TOKENS         comma-separated tokens to revoke (one VU each); without it, VUS tokens are
//                  obtained from TOKEN_URL with USERNAME / PASSWORD (lib/common.js)
//   VUS            tokens to log in for, without TOKENS         5
//   PROPAGATION_MS threshold on propagation                     1000
//   LIMITED_PATH   a route with rate_limit.shared: true         (none: scenario off)
//   LIMIT_RPS      its rps                                      20
//   LIMIT_BURST    its burst                                    LIMIT_RPS
//   LIMIT_RATE     requests/s offered                           5 x LIMIT_RPS
//   DURATION       length of the shared_limit scenario          10s
//   INSECURE_TLS   1: skip certificate verification
//
//   ADMIN_TOKEN=... BASE_URLS=http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083 \
//     LIMITED_PATH=/limited load-tests/k6.sh run load-tests/multi-instance.js
import http from 'k6/http';
import exec from 'k6/execution';
import { check, fail, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { ADMIN_TOKEN, INSECURE_TLS, loginPassword, ms } from './lib/common.js';

const list = (v, d) => (v || d).split(',').map((s) => s.trim()).filter((s) => s);
const BASE_URLS = list(__ENV.BASE_URLS, 'http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083');
const ADMIN_URLS = list(__ENV.ADMIN_URLS, 'http://127.0.0.1:9901,http://127.0.0.1:9902,http://127.0.0.1:9903');
const REQ_PATH = __ENV.REQ_PATH || '/users';
const GIVEN_TOKENS = list(__ENV.TOKENS, '');
const VUS = GIVEN_TOKENS.length || parseInt(__ENV.VUS || '5', 10);
const PROPAGATION_MS = parseInt(__ENV.PROPAGATION_MS || '1000', 10);
const LIMITED_PATH = __ENV.LIMITED_PATH || '';
const LIMIT_RPS = parseFloat(__ENV.LIMIT_RPS || '20');
const LIMIT_BURST = parseFloat(__ENV.LIMIT_BURST || String(LIMIT_RPS));
const LIMIT_RATE = parseInt(__ENV.LIMIT_RATE || String(5 * LIMIT_RPS), 10);
const DURATION = __ENV.DURATION || '10s';

if (!ADMIN_TOKEN) fail('ADMIN_TOKEN is required');
if (ADMIN_URLS.length < BASE_URLS.length) fail('ADMIN_URLS needs one admin URL per BASE_URLS entry');

const propagation = new Trend('propagation_ms', true);
const admitted = new Counter('admitted');
const refused = new Counter('refused');

const expected = LIMIT_BURST + (LIMIT_RPS * ms(DURATION)) / 1000;
const scenarios = {
  revocation: { executor: 'per-vu-iterations', vus: VUS, iterations: 1, maxDuration: '1m', exec: 'revocation' },
};
const thresholds = {
  checks: ['rate==1'],
  propagation_ms: [`max<${PROPAGATION_MS}`],
};
if (LIMITED_PATH) {
  scenarios.shared_limit = {
    executor: 'constant-arrival-rate',
    exec: 'sharedLimit',
    rate: LIMIT_RATE,
    timeUnit: '1s',
    duration: DURATION,
    preAllocatedVUs: Math.max(5, Math.ceil(LIMIT_RATE / 20)),
    maxVUs: Math.max(20, Math.ceil(LIMIT_RATE / 5)),
  };
  thresholds.admitted = [`count>=${Math.floor(expected * 0.9)}`, `count<=${Math.ceil(expected * 1.1)}`];
}

export const options = { scenarios, thresholds, insecureSkipTLSVerify: INSECURE_TLS };

export function setup() {
  if (GIVEN_TOKENS.length) return { tokens: GIVEN_TOKENS };
  const tokens = [];
  for (let i = 0; i < VUS; i++) tokens.push(loginPassword());
  return { tokens };
}

function get(base, token) {
  return http.get(`${base}${REQ_PATH}`, {
    headers: { Authorization: `Bearer ${token}` },
    responseCallback: http.expectedStatuses(200, 401),
  });
}

export function revocation(data) {
  // One iteration per VU: the scenario's iteration number is this VU's own index (VU ids are
  // shared with the other scenario, so they need not start at 1 here).
  const vu = exec.scenario.iterationInTest;
  const token = data.tokens[vu % data.tokens.length];
  for (const base of BASE_URLS) {
    check(get(base, token), { 'accepted before its revocation': (r) => r.status === 200 });
  }
  const on = vu % BASE_URLS.length;
  const r = http.post(`${ADMIN_URLS[on]}/admin/revocations`, JSON.stringify({ token }), {
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
  });
  if (!check(r, { 'revocation answered 201': (x) => x.status === 201 })) return;
  const acknowledged = Date.now();
  BASE_URLS.forEach((base, i) => {
    if (i === on) return;
    let refusedAt = null;
    while (Date.now() - acknowledged < 5000) {
      if (get(base, token).status === 401) {
        refusedAt = Date.now();
        break;
      }
      sleep(0.01);
    }
    check(refusedAt, { 'refused by every other instance': (t) => t !== null });
    propagation.add((refusedAt || Date.now()) - acknowledged);
  });
}

export function sharedLimit() {
  const base = BASE_URLS[exec.scenario.iterationInTest % BASE_URLS.length];
  const r = http.get(`${base}${LIMITED_PATH}`, { responseCallback: http.expectedStatuses(200, 429) });
  check(r, { 'limited route answers 200 or 429': (x) => x.status === 200 || x.status === 429 });
  if (r.status === 200) admitted.add(1);
  else if (r.status === 429) refused.add(1);
}
