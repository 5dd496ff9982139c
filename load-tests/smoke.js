// Portcullis smoke test (k6): one pass over the gateway's contract statuses.
//
// What it checks, against a gateway running conf/portcullis.yaml (the demo stack)
// with the two echo peers (tests/support/echo_upstream.py, which answer with JSON
// describing the request they received) behind it:
//   - issuer:       setup() logs in at the built-in issuer (POST /auth/token): alice with the
//                   password grant, the `reporting` client with client_credentials; the answers
//                   have the RFC 6749 shape (Bearer, expires_in, scope, Cache-Control no-store);
//                   a wrong password is invalid_grant; /auth/jwks.json publishes the key.
//   - plain HTTP:   308 redirect to HTTPS with the exact Location (no redirect followed);
//                   the ACME challenge path is exempt (proxied, 200);
//                   hygiene runs first: an encoded slash (/users%2Fx) gets 400.
//   - HTTPS:        200 proxied over HTTP/2 with Strict-Transport-Security and X-Request-Id,
//                   the canonical path, X-Forwarded-Proto and X-Auth-Subject reaching the peer,
//                   Authorization not forwarded; round robin reaches every peer; POST is allowed;
//                   405 with Allow for a method the route does not take;
//                   404 for no route, and the SAME 404 for the internal-only route;
//                   JSON error bodies with Content-Type application/json and Cache-Control no-store.
//   - auth:         401 without a token (Bearer realm="portcullis"), 401 invalid_token for a
//                   tampered signature, 403 insufficient_scope for alice on /reports, 200 for the
//                   reporting client there; /public answers anonymous requests.
//   - internal:     the internal-only route answers 200 on the internal listener.
//   - admin/metrics: /healthz 200, /metrics exposes portcullis_* series.
//
// The run fails (k6 exits non-zero) unless every check passes and no request fails
// unexpectedly: each request declares the statuses it expects, so a 404 that is
// asked for does not count in http_req_failed.
//
// Environment (defaults match conf/portcullis.yaml and the accounts conf/demo/prepare.sh makes):
//   BASE_URL       HTTPS listener               https://localhost:8443
//   HTTP_URL       plain HTTP listener          http://127.0.0.1:8080
//   INTERNAL_URL   internal listener            http://127.0.0.1:8081
//   ADMIN_URL      admin listener               http://127.0.0.1:9901
//   METRICS_URL    metrics listener             http://127.0.0.1:9100
//   TOKEN_URL      token endpoint               BASE_URL/auth/token
//   USERNAME       user with users:read         alice
//   PASSWORD       its password                 alice-password
//   CLIENT_ID      client with reports:read     reporting
//   CLIENT_SECRET  its secret                   reporting-secret
//   HTTPS_PORT     port expected in Location    the port of BASE_URL
//   PEERS          peers behind /users          2
//   ITERATIONS     passes over all of the above 3
//
// TLS: k6 verifies the server certificate. Trust the demo CA with
// SSL_CERT_FILE=demo-run/tls/ca.crt (k6 is a Go program and honours it), or set
// INSECURE_TLS=1 to skip verification.
//
//   SSL_CERT_FILE=demo-run/tls/ca.crt load-tests/k6.sh run load-tests/smoke.js
//
// Login, the shared environment defaults and request helpers come from lib/common.js.
import http from 'k6/http';
import encoding from 'k6/encoding';
import { check, fail, group } from 'k6';
import {
  ADMIN_URL, BASE_URL as HTTPS_URL, CLIENT_ID, CLIENT_SECRET, INSECURE_TLS, PASSWORD, TOKEN_URL, USERNAME, header, json,
  tamper, upstreamHeader,
} from './lib/common.js';

const HTTP_URL = __ENV.HTTP_URL || 'http://127.0.0.1:8080';
const INTERNAL_URL = __ENV.INTERNAL_URL || 'http://127.0.0.1:8081';
const METRICS_URL = __ENV.METRICS_URL || 'http://127.0.0.1:9100';
const PEERS = parseInt(__ENV.PEERS || '2', 10);

export const options = {
  scenarios: {
    // One VU, sequential requests: the round-robin check needs consecutive picks.
    smoke: { executor: 'shared-iterations', vus: 1, iterations: parseInt(__ENV.ITERATIONS || '3', 10), maxDuration: '60s' },
  },
  insecureSkipTLSVerify: INSECURE_TLS,
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
  },
};

// Host and port of a URL without a URL parser (k6 has none built in).
function hostPort(url) {
  const m = url.match(/^[a-z]+:\/\/(\[[^\]]+\]|[^/:]+)(?::(\d+))?/i);
  if (!m) throw new Error(`cannot parse URL ${url}`);
  const defaultPort = url.toLowerCase().startsWith('https:') ? '443' : '80';
  return { host: m[1], port: m[2] || defaultPort };
}

const HTTPS_PORT = __ENV.HTTPS_PORT || hostPort(HTTPS_URL).port;

// Request params: the statuses this request should get (others count as failed), no redirect
// following, and a bearer token when given.
function expect(statuses, token) {
  const p = { responseCallback: http.expectedStatuses(...[].concat(statuses)), redirects: 0 };
  if (token) p.headers = { Authorization: `Bearer ${token}` };
  return p;
}

function isContractError(res) {
  const body = json(res);
  return (
    body !== null &&
    typeof body.error === 'string' &&
    typeof body.error_description === 'string' &&
    (header(res, 'Content-Type') || '').startsWith('application/json') &&
    (header(res, 'Cache-Control') || '').includes('no-store')
  );
}

// A successful RFC 6749 token answer: returns the access token, or fails the run.
function tokenFrom(res, what) {
  const body = json(res);
  const ok = check(res, {
    [`issuer: ${what}: 200`]: (r) => r.status === 200,
    [`issuer: ${what}: Bearer token with expires_in and scope`]: () =>
      body !== null &&
      typeof body.access_token === 'string' &&
      body.token_type === 'Bearer' &&
      typeof body.expires_in === 'number' &&
      typeof body.scope === 'string',
    [`issuer: ${what}: Cache-Control no-store`]: (r) => (header(r, 'Cache-Control') || '').includes('no-store'),
  });
  if (!ok) fail(`${what} at ${TOKEN_URL}: ${res.status} ${res.body}`);
  return body.access_token;
}

export function setup() {
  const user = tokenFrom(
    http.post(TOKEN_URL, { grant_type: 'password', username: USERNAME, password: PASSWORD }, expect(200)),
    `password login of ${USERNAME}`,
  );
  const client = tokenFrom(
    http.post(TOKEN_URL, { grant_type: 'client_credentials' }, {
      ...expect(200),
      headers: { Authorization: `Basic ${encoding.b64encode(`${CLIENT_ID}:${CLIENT_SECRET}`)}` },
    }),
    `client_credentials login of ${CLIENT_ID}`,
  );
  // An unknown name, fresh each run: a wrong password counts toward the per-name throttle.
  const wrong = http.post(
    TOKEN_URL,
    { grant_type: 'password', username: `smoke-nobody-${Date.now()}`, password: 'wrong' },
    expect(400),
  );
  check(wrong, {
    'issuer: bad credentials: 400 invalid_grant': (r) => r.status === 400 && (json(r) || {}).error === 'invalid_grant',
  });
  const jwks = http.get(TOKEN_URL.replace(/\/token$/, '/jwks.json'), expect(200));
  check(jwks, {
    'issuer: jwks.json publishes a key': (r) => r.status === 200 && Array.isArray((json(r) || {}).keys) && json(r).keys.length > 0,
  });
  return { user, client };
}

export default function (data) {
  group('plain http', () => {
    const { host } = hostPort(HTTP_URL);
    const port = HTTPS_PORT === '443' ? '' : `:${HTTPS_PORT}`;
    const r = http.get(`${HTTP_URL}/users/1?x=1`, expect(308));
    check(r, {
      'http: 308 redirect': (res) => res.status === 308,
      'http: Location is the https URL with path and query': (res) =>
        header(res, 'Location') === `https://${host}${port}/users/1?x=1`,
      'http: redirect is not proxied': (res) => json(res) === null || json(res).peer === undefined,
    });

    const acme = http.get(`${HTTP_URL}/.well-known/acme-challenge/smoke-token`, expect(200));
    check(acme, { 'http: ACME challenge path is exempt and proxied': (res) => res.status === 200 });

    const bad = http.get(`${HTTP_URL}/users%2Fx`, expect(400));
    check(bad, {
      'http: encoded slash is 400 before any redirect': (res) => res.status === 400,
      'http: 400 has the JSON error shape': isContractError,
    });
  });

  group('https', () => {
    const r = http.get(`${HTTPS_URL}/users/1`, expect(200, data.user));
    check(r, {
      'https: 200 proxied': (res) => res.status === 200,
      'https: answered by a peer': (res) => json(res) !== null && typeof json(res).peer === 'string',
      'https: canonical path forwarded': (res) => json(res) !== null && json(res).path === '/users/1',
      'https: X-Forwarded-Proto https sent upstream': (res) => upstreamHeader(res, 'X-Forwarded-Proto') === 'https',
      'https: X-Auth-Subject is the verified sub': (res) => upstreamHeader(res, 'X-Auth-Subject') === USERNAME,
      'https: Authorization is not forwarded': (res) => upstreamHeader(res, 'Authorization') === undefined,
      'https: HTTP/2 negotiated': (res) => res.proto === 'HTTP/2.0',
      'https: Strict-Transport-Security set': (res) =>
        /max-age=31536000/.test(header(res, 'Strict-Transport-Security') || ''),
      'https: X-Request-Id echoed': (res) => (header(res, 'X-Request-Id') || '').length > 0,
    });

    const seen = new Set();
    for (let i = 0; i < 2 * PEERS; i++) {
      const res = http.get(`${HTTPS_URL}/users/${i}`, expect(200, data.user));
      const body = json(res);
      if (res.status === 200 && body !== null) seen.add(body.peer);
    }
    check(seen, { [`https: round robin reaches all ${PEERS} peers`]: (s) => s.size === PEERS });

    const postParams = expect(200, data.user);
    postParams.headers['Content-Type'] = 'application/json';
    const post = http.post(`${HTTPS_URL}/users`, JSON.stringify({ name: 'smoke' }), postParams);
    check(post, { 'https: POST /users proxied': (res) => res.status === 200 });

    const del = http.del(`${HTTPS_URL}/users/1`, null, expect(405, data.user));
    check(del, {
      'https: 405 for a method the route does not take': (res) => res.status === 405,
      'https: Allow lists GET and POST': (res) => {
        const allow = (header(res, 'Allow') || '').split(',').map((s) => s.trim());
        return allow.includes('GET') && allow.includes('POST');
      },
    });

    const none = http.get(`${HTTPS_URL}/no-such-route`, expect(404));
    check(none, {
      'https: 404 for no route': (res) => res.status === 404,
      'https: 404 has the JSON error shape': isContractError,
    });

    const hidden = http.get(`${HTTPS_URL}/internal/status`, expect(404));
    check(hidden, {
      'https: internal route is a 404': (res) => res.status === 404,
      'https: internal 404 is the no-route 404': (res) =>
        res.body === none.body && header(res, 'Content-Type') === header(none, 'Content-Type'),
    });
  });

  group('auth', () => {
    const missing = http.get(`${HTTPS_URL}/users/1`, expect(401));
    check(missing, {
      'auth: 401 without a token': (res) => res.status === 401,
      'auth: WWW-Authenticate Bearer realm="portcullis"': (res) =>
        header(res, 'WWW-Authenticate') === 'Bearer realm="portcullis"',
      'auth: 401 has the JSON error shape': isContractError,
      'auth: 401 is not proxied': (res) => (json(res) || {}).peer === undefined,
    });

    const forged = http.get(`${HTTPS_URL}/users/1`, expect(401, tamper(data.user)));
    check(forged, {
      'auth: 401 for a tampered signature': (res) => res.status === 401,
      'auth: error="invalid_token"': (res) => (header(res, 'WWW-Authenticate') || '').includes('error="invalid_token"'),
    });

    const scoped = http.get(`${HTTPS_URL}/reports/1`, expect(403, data.user));
    check(scoped, {
      'auth: 403 without the route\'s scope': (res) => res.status === 403,
      'auth: error="insufficient_scope", scope="reports:read"': (res) => {
        const h = header(res, 'WWW-Authenticate') || '';
        return h.includes('error="insufficient_scope"') && h.includes('scope="reports:read"');
      },
      'auth: 403 has the JSON error shape': isContractError,
    });

    const reports = http.get(`${HTTPS_URL}/reports/1`, expect(200, data.client));
    check(reports, {
      'auth: 200 for the client with the scope': (res) => res.status === 200,
      'auth: client token sub is the client_id': (res) => upstreamHeader(res, 'X-Auth-Subject') === CLIENT_ID,
    });

    const anonymous = http.get(`${HTTPS_URL}/public/1`, expect(200));
    check(anonymous, {
      'auth: 200 anonymous on an optional-auth route': (res) => res.status === 200,
      'auth: no identity sent for an anonymous request': (res) => upstreamHeader(res, 'X-Auth-Subject') === undefined,
    });
  });

  group('internal', () => {
    const r = http.get(`${INTERNAL_URL}/internal/status`, expect(200));
    check(r, {
      'internal: internal route served': (res) => res.status === 200,
      'internal: answered by a peer': (res) => json(res) !== null && typeof json(res).peer === 'string',
    });
  });

  group('admin and metrics', () => {
    check(http.get(`${ADMIN_URL}/healthz`, expect(200)), { 'admin: /healthz 200': (res) => res.status === 200 });
    check(http.get(`${METRICS_URL}/metrics`, expect(200)), {
      'metrics: 200': (res) => res.status === 200,
      'metrics: portcullis_requests_total exported': (res) => res.body.includes('portcullis_requests_total'),
      'metrics: auth decisions counted': (res) => res.body.includes('portcullis_auth_decisions_total'),
    });
  });
}
