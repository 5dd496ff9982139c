// Portcullis revocation under load (k6): a token revoked through the admin API is refused from
// the very next request on, by every VU, while other tokens of the same user keep working.
//
// Each VU owns two tokens of USERNAME, made in setup() at the built-in issuer: `target` and
// `control`. It sends requests with both in turn (PACE apart). At its own moment, spread over
// REVOKE_FROM..REVOKE_TO of DURATION across the VUs, it revokes its target token itself:
// POST ADMIN_URL/admin/revocations {"token": target} must answer 201, and from then on every
// request with the target token must be 401 "token revoked" (no grace, no stale cache), while
// the control token (same user, other jti) must stay 200.
//
// Thresholds (k6 exits non-zero when one fails):
//   checks rate==1, and per phase: checks{phase:before} (target 200 before its revocation),
//   checks{phase:revoke} (201), checks{phase:after} (target 401 after it), checks{phase:control}
//   http_req_failed rate==0 (every request declares the status it expects)
//   revocations count==VUS (every VU did revoke within DURATION)
//
// Environment (defaults fit the `make demo` stack, conf/portcullis.yaml):
//   BASE_URL       gateway (HTTPS listener)                    https://localhost:8443
//   REQ_PATH       route USERNAME may use                      /users
//   TOKEN_URL      token endpoint                              BASE_URL/auth/token
//   USERNAME       user                                        alice
//   PASSWORD       its password                                alice-password
//   ADMIN_URL      admin listener                              http://127.0.0.1:9901
//   ADMIN_TOKEN    admin API token (required)                  make demo: demo-run/admin.token
//   VUS            VUs, each with its own pair of tokens       10
//   DURATION       how long                                    20s
//   PACE           pause between two rounds of a VU            50ms
//   REVOKE_FROM    first VU revokes at this fraction of DURATION  0.2
//   REVOKE_TO      last VU revokes at this fraction           0.7
//   INSECURE_TLS   1: skip certificate verification
//
//   ADMIN_TOKEN="$(cat demo-run/admin.token)" SSL_CERT_FILE=demo-run/tls/ca.crt \
//     load-tests/k6.sh run load-tests/revocation.js
//
// Login, the shared environment defaults and request helpers come from lib/common.js.
import http from 'k6/http';
import exec from 'k6/execution';
import { check, fail, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import { ADMIN_TOKEN, ADMIN_URL, INSECURE_TLS, adminAuth, authGet, header, loginPassword, ms } from './lib/common.js';

const REQ_PATH = __ENV.REQ_PATH || '/users';
const VUS = parseInt(__ENV.VUS || '10', 10);
const DURATION = __ENV.DURATION || '20s';
const PACE = __ENV.PACE || '50ms';
const REVOKE_FROM = parseFloat(__ENV.REVOKE_FROM || '0.2');
const REVOKE_TO = parseFloat(__ENV.REVOKE_TO || '0.7');

const revocations = new Counter('revocations');

export const options = {
  scenarios: {
    revocation: { executor: 'constant-vus', vus: VUS, duration: DURATION },
  },
  insecureSkipTLSVerify: INSECURE_TLS,
  thresholds: {
    checks: ['rate==1'],
    'checks{phase:before}': ['rate==1'],
    'checks{phase:revoke}': ['rate==1'],
    'checks{phase:after}': ['rate==1'],
    'checks{phase:control}': ['rate==1'],
    http_req_failed: ['rate==0'],
    revocations: [`count==${VUS}`],
  },
};

export function setup() {
  if (!ADMIN_TOKEN) fail('ADMIN_TOKEN is required (make demo keeps it in demo-run/admin.token)');
  const probe = http.get(`${ADMIN_URL}/admin/revocations`, { headers: adminAuth() });
  if (probe.status !== 200) fail(`GET ${ADMIN_URL}/admin/revocations: ${probe.status} ${probe.body}`);
  const pairs = [];
  for (let i = 0; i < VUS; i++) pairs.push({ target: loginPassword(), control: loginPassword() });
  return { pairs };
}

// Per-VU state (each VU has its own copy of this module).
let revoked = false;

function get(token, status, phase) {
  return authGet(`${REQ_PATH}/revocation`, token, status, { name: `${REQ_PATH}/revocation`, phase });
}

export default function (data) {
  const vu = exec.vu.idInTest; // 1..VUS
  const { target, control } = data.pairs[(vu - 1) % data.pairs.length];
  const spread = VUS > 1 ? (vu - 1) / (VUS - 1) : 0;
  const revokeAt = ms(DURATION) * (REVOKE_FROM + (REVOKE_TO - REVOKE_FROM) * spread);

  if (!revoked && Date.now() - exec.scenario.startTime >= revokeAt) {
    const r = http.post(`${ADMIN_URL}/admin/revocations`, JSON.stringify({ token: target }), {
      headers: { ...adminAuth(), 'Content-Type': 'application/json' },
      responseCallback: http.expectedStatuses(201),
      tags: { name: 'admin revoke', phase: 'revoke' },
    });
    const ok = check(r, { 'revoke: admin API answers 201': (res) => res.status === 201 }, { phase: 'revoke' });
    if (ok) {
      revoked = true;
      revocations.add(1);
    }
  }

  if (revoked) {
    const r = get(target, 401, 'after');
    check(r, {
      'after: revoked token refused (401 token revoked)': (res) =>
        res.status === 401 && header(res, 'WWW-Authenticate').includes('error_description="token revoked"'),
    }, { phase: 'after' });
  } else {
    const r = get(target, 200, 'before');
    check(r, { 'before: token accepted (200)': (res) => res.status === 200 }, { phase: 'before' });
  }

  const c = get(control, 200, 'control');
  check(c, { 'control: other token of the same user still accepted (200)': (res) => res.status === 200 }, { phase: 'control' });

  sleep(ms(PACE) / 1000);
}
