// Shared plumbing of the k6 scripts in load-tests/: the environment every script reads the same
// way, login at the built-in issuer, request/response helpers and the constant-arrival-rate
// scenario shape. What a script tests, its own knobs, scenarios and thresholds stay in the
// script (and are documented at its top); only code that was identical in several scripts is
// here, so a fix to, say, the login error handling reaches every script at once.
//
// Environment read here (defaults fit the `make demo` stack, conf/portcullis.yaml):
//   BASE_URL       gateway (HTTPS listener)                    https://localhost:8443
//   TOKEN_URL      built-in issuer's token endpoint            BASE_URL/auth/token
//   USERNAME       password-grant user                         alice
//   PASSWORD       its password                                alice-password
//   CLIENT_ID      client_credentials client                   reporting
//   CLIENT_SECRET  its secret                                  reporting-secret
//   ADMIN_URL      admin listener                              http://127.0.0.1:9901
//   ADMIN_TOKEN    admin API token                             (none)
//   INSECURE_TLS   1: skip certificate verification            (verify; trust a CA with SSL_CERT_FILE)
//
// Usage: import { BASE_URL, loginPassword, ... } from './lib/common.js';
import http from 'k6/http';
import encoding from 'k6/encoding';
import { check, fail } from 'k6';

export const BASE_URL = __ENV.BASE_URL || 'https://localhost:8443';
export const TOKEN_URL = __ENV.TOKEN_URL || `${BASE_URL}/auth/token`;
export const USERNAME = __ENV.USERNAME || 'alice';
export const PASSWORD = __ENV.PASSWORD || 'alice-password';
export const CLIENT_ID = __ENV.CLIENT_ID || 'reporting';
export const CLIENT_SECRET = __ENV.CLIENT_SECRET || 'reporting-secret';
export const ADMIN_URL = __ENV.ADMIN_URL || 'http://127.0.0.1:9901';
export const ADMIN_TOKEN = __ENV.ADMIN_TOKEN || '';
/** For `options.insecureSkipTLSVerify`: k6 verifies certificates unless INSECURE_TLS=1. */
export const INSECURE_TLS = __ENV.INSECURE_TLS === '1';

/** "1m30s", "6s", "500ms" -> milliseconds (k6 takes durations as strings, scripts need numbers). */
export function ms(d) {
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

/**
 * A constant-arrival-rate scenario with enough VUs for RATE requests/s (one in flight per VU);
 * `extra` adds keys such as `exec`.
 */
export function constantRate(rate, duration, extra = {}) {
  return {
    executor: 'constant-arrival-rate',
    ...extra,
    rate,
    timeUnit: '1s',
    duration,
    preAllocatedVUs: Math.max(10, Math.ceil(rate / 10)),
    maxVUs: Math.max(50, rate),
  };
}

/** A response header by case-insensitive name, '' when absent (k6 keeps the server's case). */
export function header(res, name) {
  const want = name.toLowerCase();
  for (const k of Object.keys(res.headers)) {
    if (k.toLowerCase() === want) return res.headers[k];
  }
  return '';
}

/** The body as JSON, or null when it is not JSON. */
export function json(res) {
  try {
    return JSON.parse(res.body);
  } catch (e) {
    return null;
  }
}

/**
 * A header as the echo peer (tests/support/echo_upstream.py) received it: it answers with
 * {"headers": [[name, value], ...]}. undefined when absent or when the body is not the echo's.
 */
export function upstreamHeader(res, name) {
  const body = json(res);
  if (body === null || !Array.isArray(body.headers)) return undefined;
  const hit = body.headers.find((h) => String(h[0]).toLowerCase() === name.toLowerCase());
  return hit ? hit[1] : undefined;
}

/**
 * One character in the middle of the signature replaced: still well-formed base64url of the
 * right length (the last character is avoided, its low bits may be padding), no longer valid.
 */
export function tamper(token) {
  const dot = token.lastIndexOf('.');
  const i = dot + 1 + Math.floor((token.length - dot - 1) / 2);
  return token.slice(0, i) + (token[i] === 'A' ? 'B' : 'A') + token.slice(i + 1);
}

/** Authorization: Bearer for a token; no header at all for an empty one. */
export function bearer(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** The admin API's Authorization header (ADMIN_TOKEN). */
export function adminAuth() {
  return { Authorization: `Bearer ${ADMIN_TOKEN}` };
}

/**
 * GET BASE_URL + path with a bearer token (none when empty), no redirect following, and
 * `status` declared as the expected one (anything else counts in http_req_failed).
 */
export function authGet(path, token, status, tags) {
  return http.get(`${BASE_URL}${path}`, {
    headers: bearer(token),
    redirects: 0,
    responseCallback: http.expectedStatuses(status),
    tags,
  });
}

// The access token of a token endpoint answer, or the run fails (setup requests carry no
// scenario tag, so scenario-scoped thresholds ignore the logins).
function accessToken(r, what) {
  let token;
  try {
    token = r.json('access_token');
  } catch (e) {
    token = undefined;
  }
  if (r.status !== 200 || typeof token !== 'string') fail(`${what} at ${TOKEN_URL}: ${r.status} ${r.body}`);
  return token;
}

/** POST TOKEN_URL, OAuth2 password grant (RFC 6749 form); returns the access token or fails. */
export function loginPassword(username = USERNAME, password = PASSWORD) {
  const r = http.post(
    TOKEN_URL,
    { grant_type: 'password', username, password },
    { responseCallback: http.expectedStatuses(200), tags: { name: 'login' } },
  );
  return accessToken(r, `password login of ${username}`);
}

/** POST TOKEN_URL, client_credentials with HTTP Basic; returns the access token or fails. */
export function loginClient(id = CLIENT_ID, secret = CLIENT_SECRET) {
  const r = http.post(
    TOKEN_URL,
    { grant_type: 'client_credentials' },
    {
      headers: { Authorization: `Basic ${encoding.b64encode(`${id}:${secret}`)}` },
      responseCallback: http.expectedStatuses(200),
      tags: { name: 'login' },
    },
  );
  return accessToken(r, `client_credentials login of ${id}`);
}

/**
 * The token the rate scripts (load, stress, spike) send: TOKEN as given (any provider), else a
 * login at the built-in issuer, password grant or GRANT=client_credentials.
 */
export function tokenFromEnv() {
  if (__ENV.TOKEN) return __ENV.TOKEN;
  return __ENV.GRANT === 'client_credentials' ? loginClient() : loginPassword();
}

/**
 * Fails the run before the clock starts when GET BASE_URL + reqPath/setup with the token does
 * not answer 200 (the target does not serve what the script expects).
 */
export function probeSetup(reqPath, token) {
  const r = http.get(`${BASE_URL}${reqPath}/setup`, { headers: bearer(token), redirects: 0 });
  if (r.status !== 200) fail(`GET ${BASE_URL}${reqPath}/setup answered ${r.status}, want 200: ${r.body}`);
}

/**
 * One request of the rate scripts: GET BASE_URL + reqPath/<n> (n cycles through 1000 paths,
 * tagged as one name), which must answer 200. `tags` adds the script's own tags.
 */
export function getNumbered(reqPath, token, tags = {}) {
  const r = http.get(`${BASE_URL}${reqPath}/${__ITER % 1000}`, {
    headers: bearer(token),
    redirects: 0,
    tags: { name: `${reqPath}/:n`, ...tags },
  });
  check(r, { 'status 200': (res) => res.status === 200 });
  return r;
}

/**
 * The token the zero-failure traffic scripts (reload, upgrade) send: TOKEN as given, none with
 * NO_AUTH=1 (a route with auth: none), else a password-grant login of USERNAME.
 */
export function trafficToken() {
  const token = __ENV.TOKEN || '';
  if (token || __ENV.NO_AUTH === '1') return token;
  return loginPassword();
}

/** Params of a traffic request: bearer token (if any), `status` expected, no redirects. */
export function trafficParams(token, status) {
  return {
    headers: bearer(token),
    responseCallback: http.expectedStatuses(status),
    redirects: 0,
    tags: { name: 'traffic' },
  };
}

/** Fails the run before the clock starts when GET BASE_URL + reqPath does not answer `status`. */
export function probeTraffic(reqPath, token, status) {
  const r = trafficGet(reqPath, token, status);
  if (r.status !== status) fail(`GET ${BASE_URL}${reqPath} answered ${r.status}, want ${status}: ${r.body}`);
}

/** One request of the traffic scripts: GET BASE_URL + reqPath, declared to expect `status`. */
export function trafficGet(reqPath, token, status) {
  return http.get(`${BASE_URL}${reqPath}`, trafficParams(token, status));
}

/**
 * setup() of the zero-failure traffic scripts (reload, upgrade): the token (see trafficToken),
 * probed once against reqPath before the clock starts. Returns the scripts' `data`.
 */
export function trafficSetup(reqPath, status) {
  const token = trafficToken();
  probeTraffic(reqPath, token, status);
  return { token };
}

/** Thresholds of the zero-failure traffic scripts: no failed request, every check passed. */
export const ZERO_FAILURES = Object.freeze({
  http_req_failed: ['rate==0'],
  checks: ['rate==1'],
});
