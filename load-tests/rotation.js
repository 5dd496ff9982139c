// Portcullis JWKS key rotation under load (k6): a provider's signing key is rotated while
// traffic flows, and not one valid token is refused.
//
// The rotation is done outside this script, by the driver load-tests/rotate-jwks.sh, on the
// provider's key set (the demo's provider demo-idp reads demo-run/idp/jwks.json):
//   1. before the run: a new key is made but NOT published; TOKEN_OLD (old kid) and TOKEN_NEW
//      (new kid) are minted with `portcullis token` and passed to this script;
//   2. publish: the new key is added to the JWKS (the gateway re-reads the file within ~1 s);
//   3. retire: after every VU has switched to TOKEN_NEW, the old key is removed.
// This script follows the key set the gateway actually holds (GET ADMIN_URL/admin/status,
// providers[name=PROVIDER].keys, polled by each VU every POLL): a VU sends TOKEN_OLD until it
// sees the new kid there, TOKEN_NEW from then on; every such request must be 200. Once the
// old kid is gone from the gateway, every 10th request of a VU also sends TOKEN_OLD, which
// must now be refused (401 "unknown key id"): a cached verification must not outlive its key.
//
// Thresholds (k6 exits non-zero when one fails):
//   checks{kind:valid} rate==1      no valid token refused, before, during or after the rotation
//   checks{kind:retired} rate==1    tokens of the removed key refused
//   checks rate==1, http_req_failed rate==0
//   old_key_requests, new_key_requests, retired_key_refusals count>0 (the rotation did happen
//   during the run; set EXPECT_RETIRE=0 when the driver only publishes a key)
//
// Environment:
//   BASE_URL       gateway (HTTPS listener)                    https://localhost:8443
//   REQ_PATH       route the tokens may use                    /users
//   TOKEN_OLD      token signed with the current key           (required)
//   TOKEN_NEW      token signed with the key being introduced  (required)
//   PROVIDER       provider name in /admin/status              demo-idp
//   ADMIN_URL      admin listener                              http://127.0.0.1:9901
//   ADMIN_TOKEN    admin API token (required)
//   RATE           requests per second                         100
//   DURATION       how long                                    30s
//   POLL           how often each VU reads /admin/status       1s
//   EXPECT_RETIRE  1: the old key must be retired during the run  1
//   INSECURE_TLS   1: skip certificate verification
//
//   load-tests/rotate-jwks.sh            # against a running `make demo`: mints, runs, rotates, restores
//
// Login, the shared environment defaults and request helpers come from lib/common.js.
import http from 'k6/http';
import encoding from 'k6/encoding';
import { check, fail } from 'k6';
import { Counter } from 'k6/metrics';
import { ADMIN_TOKEN, ADMIN_URL, INSECURE_TLS, adminAuth, authGet, constantRate, header, ms } from './lib/common.js';

const REQ_PATH = __ENV.REQ_PATH || '/users';
const TOKEN_OLD = __ENV.TOKEN_OLD || '';
const TOKEN_NEW = __ENV.TOKEN_NEW || '';
const PROVIDER = __ENV.PROVIDER || 'demo-idp';
const RATE = parseInt(__ENV.RATE || '100', 10);
const DURATION = __ENV.DURATION || '30s';
const POLL = __ENV.POLL || '1s';
const EXPECT_RETIRE = (__ENV.EXPECT_RETIRE || '1') === '1';

const oldKeyRequests = new Counter('old_key_requests');
const newKeyRequests = new Counter('new_key_requests');
const retiredRefusals = new Counter('retired_key_refusals');

const thresholds = {
  checks: ['rate==1'],
  'checks{kind:valid}': ['rate==1'],
  http_req_failed: ['rate==0'],
  old_key_requests: ['count>0'],
  new_key_requests: ['count>0'],
};
if (EXPECT_RETIRE) {
  thresholds['checks{kind:retired}'] = ['rate==1'];
  thresholds.retired_key_refusals = ['count>0'];
}

export const options = {
  scenarios: {
    rotation: constantRate(RATE, DURATION),
  },
  insecureSkipTLSVerify: INSECURE_TLS,
  thresholds,
};

function kidOf(token) {
  try {
    return JSON.parse(encoding.b64decode(token.split('.')[0], 'rawurl', 's')).kid;
  } catch (e) {
    return undefined;
  }
}

const OLD_KID = TOKEN_OLD ? kidOf(TOKEN_OLD) : undefined;
const NEW_KID = TOKEN_NEW ? kidOf(TOKEN_NEW) : undefined;

// The kids the gateway holds for PROVIDER right now, or null when the status is unreadable.
function gatewayKids() {
  const r = http.get(`${ADMIN_URL}/admin/status`, {
    headers: adminAuth(),
    responseCallback: http.expectedStatuses(200),
    tags: { name: 'admin status' },
  });
  if (r.status !== 200) return null;
  try {
    const p = r.json().providers.find((x) => x.name === PROVIDER);
    return p ? p.keys : null;
  } catch (e) {
    return null;
  }
}

export function setup() {
  if (!TOKEN_OLD || !TOKEN_NEW) fail('TOKEN_OLD and TOKEN_NEW are required: run this through load-tests/rotate-jwks.sh');
  if (!ADMIN_TOKEN) fail('ADMIN_TOKEN is required');
  if (!OLD_KID || !NEW_KID || OLD_KID === NEW_KID) fail(`need two tokens with different kids, got ${OLD_KID} and ${NEW_KID}`);
  const kids = gatewayKids();
  if (kids === null) fail(`provider ${PROVIDER} not found in ${ADMIN_URL}/admin/status`);
  if (!kids.includes(OLD_KID)) fail(`provider ${PROVIDER} does not hold ${OLD_KID} (it holds ${kids})`);
  if (kids.includes(NEW_KID)) console.warn(`rotation: ${NEW_KID} is already published: no switch will be seen`);
}

// Per-VU view of the rotation (each VU has its own copy of this module's state).
let lastPoll = -Infinity;
let useNew = false;
let oldRetired = false;
let round = 0;
let refusedLogged = 0;

function get(token, status, kind) {
  return authGet(`${REQ_PATH}/rotation`, token, status, { name: `${REQ_PATH}/rotation`, kind });
}

export default function () {
  if (Date.now() - lastPoll >= ms(POLL)) {
    lastPoll = Date.now();
    const kids = gatewayKids();
    check(kids, { 'admin status readable': (k) => k !== null }, { kind: 'status' });
    if (kids !== null) {
      useNew = useNew || kids.includes(NEW_KID);
      oldRetired = useNew && !kids.includes(OLD_KID);
    }
  }

  const r = get(useNew ? TOKEN_NEW : TOKEN_OLD, 200, 'valid');
  (useNew ? newKeyRequests : oldKeyRequests).add(1);
  const ok = check(r, { 'valid token accepted (200)': (res) => res.status === 200 }, { kind: 'valid' });
  if (!ok && refusedLogged++ < 3) console.error(`refused a valid token (kid ${useNew ? NEW_KID : OLD_KID}): ${r.status} ${header(r, 'WWW-Authenticate')}`);

  round += 1;
  if (oldRetired && round % 10 === 0) {
    const old = get(TOKEN_OLD, 401, 'retired');
    const refused = check(old, {
      'retired key: token refused (401 unknown key id)': (res) =>
        res.status === 401 && header(res, 'WWW-Authenticate').includes('error_description="unknown key id"'),
    }, { kind: 'retired' });
    if (refused) retiredRefusals.add(1);
  }
}
