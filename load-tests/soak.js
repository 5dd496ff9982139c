// Portcullis soak (k6): ten minutes of mixed traffic with reloads underneath, and every single
// answer must be the expected one. What a short run cannot show shows here: a leak per request,
// per reload or per evicted cache entry, a cache mix-up after many evictions, a reload that
// drops keys or revocations.
//
// Kinds of request (each tagged `kind:<name>`, each with its own checks):
//   valid      USERNAME's token on REQ_PATH                                 200
//   forged     the valid token with one signature character changed        401 "bad signature"
//   revoked    a token of USERNAME logged out at REVOKE_URL in setup()      401 "token revoked"
//   distinct   the next of TOKENS_FILE's tokens on REQ_PATH                 200
// TOKENS_FILE holds more distinct valid tokens (one per line) than the token cache holds, cycled
// in order, so the cache evicts all run long and every `distinct` request past the first lap
// is a fresh signature check; load-tests/run.sh mints them (load-tests/mint-tokens.py) and
// shrinks the demo's token_cache.max_entries to TOKEN_CACHE_ENTRIES for this.
// A second scenario POSTs ADMIN_URL/admin/reload every RELOAD_EVERY; each must answer 200.
//
// Thresholds (k6 exits non-zero when one fails): checks rate==1 (and per kind),
// http_req_failed rate==0 (every request declares its one expected status).
//
// Environment (defaults fit the `make demo` stack, conf/portcullis.yaml):
//   BASE_URL       gateway (HTTPS listener)                  https://localhost:8443
//   REVOKE_URL     revocation endpoint (RFC 7009)            BASE_URL/auth/revoke
//   USERNAME / PASSWORD   the user that logs in              alice / alice-password
//   REQ_PATH       a route USERNAME and the minted tokens may use   /users
//   TOKENS_FILE    distinct valid tokens, one per line       (required)
//   ADMIN_URL / ADMIN_TOKEN   for the reloads                (required)
//   RATE           requests per second                       200
//   DURATION       how long                                  10m
//   RELOAD_EVERY   time between two reloads                  30s
//
//   make soak                                  # 10 minutes on a stack of its own
//   SOAK_DURATION=1m make soak                 # shorter
import http from 'k6/http';
import exec from 'k6/execution';
import { check, fail } from 'k6';
import { SharedArray } from 'k6/data';
import {
  ADMIN_TOKEN, ADMIN_URL, BASE_URL, INSECURE_TLS, adminAuth, authGet, constantRate, header, loginPassword, ms, tamper,
} from './lib/common.js';

const REVOKE_URL = __ENV.REVOKE_URL || `${BASE_URL}/auth/revoke`;
const REQ_PATH = __ENV.REQ_PATH || '/users';
const RATE = parseInt(__ENV.RATE || '200', 10);
const DURATION = __ENV.DURATION || '10m';
const RELOAD_EVERY = __ENV.RELOAD_EVERY || '30s';

if (!__ENV.TOKENS_FILE) throw new Error('soak: TOKENS_FILE is required (load-tests/run.sh sets it)');
if (!ADMIN_TOKEN) throw new Error('soak: ADMIN_TOKEN is required for the reloads');
const TOKENS = new SharedArray('distinct tokens', () =>
  open(__ENV.TOKENS_FILE).split('\n').filter((t) => t.length > 0));

// Half the traffic is distinct tokens, so the cache turns over many times in a run.
const KINDS = [['valid', 4], ['forged', 1], ['revoked', 1], ['distinct', 6]];
const TOTAL_WEIGHT = KINDS.reduce((n, [, w]) => n + w, 0);

const thresholds = { checks: ['rate==1'], http_req_failed: ['rate==0'] };
for (const [kind] of KINDS) thresholds[`checks{kind:${kind}}`] = ['rate==1'];
thresholds['checks{kind:reload}'] = ['rate==1'];

export const options = {
  scenarios: {
    mix: constantRate(RATE, DURATION, { exec: 'mix' }),
    reloads: {
      executor: 'constant-arrival-rate',
      exec: 'reload',
      rate: 1,
      timeUnit: RELOAD_EVERY,
      duration: DURATION,
      preAllocatedVUs: 1,
      maxVUs: 2,
    },
  },
  insecureSkipTLSVerify: INSECURE_TLS,
  thresholds,
};

export function setup() {
  if (TOKENS.length === 0) fail(`${__ENV.TOKENS_FILE} holds no tokens`);
  const valid = loginPassword();
  const revoked = loginPassword();
  const r = http.post(REVOKE_URL, { token: revoked }, { responseCallback: http.expectedStatuses(200), tags: { name: 'revoke' } });
  if (r.status !== 200) fail(`logout at ${REVOKE_URL}: ${r.status} ${r.body}`);
  const probe = authGet(`${REQ_PATH}/setup`, TOKENS[0], 200, { name: 'setup' });
  if (probe.status !== 200) fail(`GET ${REQ_PATH} with a minted token: ${probe.status} ${probe.body}`);
  console.log(`soak: ${TOKENS.length} distinct tokens, ${RATE} req/s for ${DURATION} (${ms(DURATION) / 1000}s), reload every ${RELOAD_EVERY}`);
  return { valid, revoked, forged: tamper(valid) };
}

const invalidToken = (description) => (res) =>
  res.status === 401 && header(res, 'WWW-Authenticate').includes(`error_description="${description}"`);

function pick() {
  let n = Math.random() * TOTAL_WEIGHT;
  for (const [kind, w] of KINDS) {
    n -= w;
    if (n < 0) return kind;
  }
  return KINDS[0][0];
}

export function mix(data) {
  const kind = pick();
  const tags = { name: `${REQ_PATH}/:kind`, kind };
  let r;
  switch (kind) {
    case 'valid':
      r = authGet(`${REQ_PATH}/valid`, data.valid, 200, tags);
      check(r, { 'valid: 200': (res) => res.status === 200 }, { kind });
      break;
    case 'forged':
      r = authGet(`${REQ_PATH}/forged`, data.forged, 401, tags);
      check(r, { 'forged: 401 bad signature': invalidToken('bad signature') }, { kind });
      break;
    case 'revoked':
      r = authGet(`${REQ_PATH}/revoked`, data.revoked, 401, tags);
      check(r, { 'revoked: 401 token revoked': invalidToken('token revoked') }, { kind });
      break;
    default: {
      const token = TOKENS[exec.scenario.iterationInTest % TOKENS.length];
      r = authGet(`${REQ_PATH}/distinct`, token, 200, tags);
      check(r, { 'distinct: 200': (res) => res.status === 200 }, { kind });
    }
  }
}

export function reload() {
  const r = http.post(`${ADMIN_URL}/admin/reload`, null, {
    headers: adminAuth(),
    responseCallback: http.expectedStatuses(200),
    tags: { name: 'reload', kind: 'reload' },
  });
  const hashed = (res) => {
    try {
      return typeof res.json('config_hash') === 'string';
    } catch (e) {
      return false;
    }
  };
  check(r, { 'reload: 200 with config_hash': (res) => res.status === 200 && hashed(res) }, { kind: 'reload' });
}
