// Portcullis hot reload under load (k6): constant-rate traffic must not see a single failed
// request while the configuration is reloaded (POST /admin/reload or SIGHUP) underneath it.
//
// Scenarios:
//   traffic   constant-arrival-rate GETs of BASE_URL + REQ_PATH (with `Authorization: Bearer
//             TOKEN` when TOKEN is set); every answer must be EXPECT_STATUS (default 200).
//   reloads   only when ADMIN_TOKEN is set: POST ADMIN_URL/admin/reload RELOAD_RATE times a
//             second for the same DURATION; every answer must be 200 with a config_hash.
//             Without ADMIN_TOKEN something else reloads (the pytest driver
//             tests/test_reload.py::test_reload_under_load rewrites the config file between
//             two valid versions and reloads 20 times while this script runs).
//
// Thresholds (k6 exits non-zero when one fails): http_req_failed rate==0, checks rate==1.
//
// Environment (defaults fit the `make demo` stack, conf/portcullis.yaml):
//   BASE_URL       gateway listener                      https://localhost:8443
//   REQ_PATH       path requested                        /users/reload-load
//   TOKEN          bearer token for the route            (unset: log in at TOKEN_URL as USERNAME)
//   TOKEN_URL      built-in issuer's token endpoint      BASE_URL/auth/token
//   USERNAME       password-grant user (without TOKEN)   alice
//   PASSWORD       its password                          alice-password
//   NO_AUTH        1: no token at all (a route with auth: none)
//   EXPECT_STATUS  status every request must get         200
//   RATE           requests per second                   200
//   DURATION       how long                              30s
//   ADMIN_URL      admin listener                        http://127.0.0.1:9901
//   ADMIN_TOKEN    admin token; enables the reloads scenario
//   RELOAD_RATE    reloads per second                    2
//
// Stand-alone, against a running `make demo` (it prints and keeps its admin token in
// demo-run/admin.token; the demo CA is demo-run/tls/ca.crt):
//
//   ADMIN_TOKEN="$(cat demo-run/admin.token)" SSL_CERT_FILE=demo-run/tls/ca.crt \
//     load-tests/k6.sh run load-tests/reload.js
//
// `make loadtest` (load-tests/run.sh) runs it against the demo stack with the defaults above,
// logged in as alice, and sets ADMIN_TOKEN, so the reloads scenario runs too. Reloading the
// unchanged demo config still swaps in a freshly built snapshot each time (issuer, users and
// clients files included), which is what is being exercised.
//
// Login, the shared environment defaults and request helpers come from lib/common.js.
import http from 'k6/http';
import { check } from 'k6';
import { ADMIN_TOKEN, ADMIN_URL, INSECURE_TLS, ZERO_FAILURES, adminAuth, constantRate, trafficGet, trafficSetup } from './lib/common.js';

const REQ_PATH = __ENV.REQ_PATH || '/users/reload-load';
const EXPECT_STATUS = parseInt(__ENV.EXPECT_STATUS || '200', 10);
const RATE = parseInt(__ENV.RATE || '200', 10);
const DURATION = __ENV.DURATION || '30s';
const RELOAD_RATE = parseInt(__ENV.RELOAD_RATE || '2', 10);

const scenarios = {
  traffic: constantRate(RATE, DURATION, { exec: 'traffic' }),
};
if (ADMIN_TOKEN) {
  scenarios.reloads = {
    executor: 'constant-arrival-rate',
    exec: 'reload',
    rate: RELOAD_RATE,
    timeUnit: '1s',
    duration: DURATION,
    preAllocatedVUs: 2,
    maxVUs: 10,
  };
}

export const options = {
  scenarios,
  insecureSkipTLSVerify: INSECURE_TLS,
  thresholds: { ...ZERO_FAILURES },
};

export function setup() {
  // TOKEN as given, NO_AUTH=1 none, else a password-grant login of USERNAME; fails fast (before
  // the clock starts) when the target is not serving what we expect.
  return trafficSetup(REQ_PATH, EXPECT_STATUS);
}

export function traffic(data) {
  const r = trafficGet(REQ_PATH, data.token, EXPECT_STATUS);
  check(r, { [`traffic: status ${EXPECT_STATUS}`]: (res) => res.status === EXPECT_STATUS });
}

export function reload() {
  const r = http.post(`${ADMIN_URL}/admin/reload`, null, {
    headers: adminAuth(),
    responseCallback: http.expectedStatuses(200),
    tags: { name: 'reload' },
  });
  check(r, {
    'reload: 200': (res) => res.status === 200,
    'reload: config_hash returned': (res) => {
      try {
        return typeof JSON.parse(res.body).config_hash === 'string';
      } catch (e) {
        return false;
      }
    },
  });
}
