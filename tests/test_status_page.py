"""The status page on the admin listener (conf/README.md §10), driven in a real headless Chromium.

The page is the gateway's own (`GET /ui`); the browser reads the real admin API of a real gateway
with an echo upstream, a dead peer and a file-backed token provider, and every check is about what
an operator sees: the text in each section, the answers in `#message`, what the proxy then does
with a revoked token. Around it, over plain HTTP: the page's protective headers, and that
`/admin/*` answers are never cached and never open to another origin.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from support.admin_api import (ADMIN_TOKEN, Admin, file_provider, wait_ready,
                               write_config_atomically, write_jwks)
from support.browser import available, start_chromium
from support.harness import FAST_HEALTH, base_config, route, upstream_cfg, wait_for
from support.jwt import SigningKey, std_claims

CORP = "https://id.test"
CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

missing = available()
pytestmark = pytest.mark.skipif(missing is not None, reason=missing or "")


class Env:
    def __init__(self, procs, gw, up, flaky, dead, key):
        self.procs, self.gw, self.up, self.flaky, self.dead, self.key = procs, gw, up, flaky, dead, key
        self.admin = Admin(gw)
        self.config = json.loads(json.dumps(gw.config))

    def token(self, **claims) -> str:
        claims.setdefault("iss", CORP)
        return self.key.token(std_claims(**claims))

    def api_get(self, token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.gw.get("/api/x", headers=headers).status_code


def gateway_config(procs, up, flaky, dead, key) -> dict:
    jwks_path = write_jwks(procs.dir / "ui-jwks.json", key)
    upstreams = {
        "echo": upstream_cfg(up, health=FAST_HEALTH),
        "flaky": upstream_cfg(flaky, health=FAST_HEALTH),
        "gone": upstream_cfg(dead, health=FAST_HEALTH),
    }
    routes = [
        route("api", "/api", "echo", auth={"mode": "required"}),
        route("counted", "/counted", "echo", host="counted.example.com"),
        route("flaky", "/flaky", "flaky"),
        route("ops", "/ops", "echo", visibility="internal"),
    ]
    return base_config(upstreams, routes, listeners=("http", "internal"),
                       providers=[file_provider("corp", CORP, jwks_path)],
                       revocation={"store": "memory"},
                       admin={"token_env": "PORTCULLIS_ADMIN_TOKEN"})


@pytest.fixture(scope="module")
def env(mod_procs) -> Env:
    key = SigningKey("ES256", "ui-key-1")
    up = mod_procs.upstream("ui-echo")
    flaky = mod_procs.upstream("ui-flaky")
    dead = mod_procs.dead_addr()
    gw = mod_procs.gateway(gateway_config(mod_procs, up, flaky, dead, key),
                           env={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
    wait_ready(gw)
    return Env(mod_procs, gw, up, flaky, dead, key)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    d = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield d
    d.quit()


class Page:
    """The status page of `gw` in `driver`, as an operator uses it."""

    def __init__(self, driver, gw):
        self.d = driver
        self.gw = gw
        self.origin = f"http://127.0.0.1:{gw.port('admin')}"

    def open(self, path: str = "/ui") -> "Page":
        self.d.get(self.origin + path)
        wait_for(lambda: self.js("return document.readyState") == "complete", 10, what="page load")
        return self

    def js(self, script: str, *args):
        return self.d.execute_script(script, *args)

    def fresh(self) -> "Page":
        """The page with no session (what a new tab sees)."""
        self.open()
        self.js("sessionStorage.clear(); localStorage.clear();")
        return self.open()

    def css(self, sel: str):
        from selenium.webdriver.common.by import By
        return self.d.find_element(By.CSS_SELECTOR, sel)

    def all(self, sel: str):
        from selenium.webdriver.common.by import By
        return self.d.find_elements(By.CSS_SELECTOR, sel)

    def text(self, sel: str) -> str:
        # textContent, not the rendered text: hidden parts count too, and nothing is retyped.
        return self.js("var e = document.querySelector(arguments[0]); return e ? e.textContent : null;", sel) or ""

    def visible(self, sel: str) -> bool:
        return bool(self.js("var e = document.querySelector(arguments[0]);"
                            "return !!e && e.getClientRects().length > 0;", sel))

    def wait_text(self, sel: str, want: str | re.Pattern, timeout: float = 10.0) -> str:
        def seen():
            t = self.text(sel)
            ok = want.search(t) if isinstance(want, re.Pattern) else want in t
            return t if ok else None
        try:
            return wait_for(seen, timeout, interval=0.1, what=f"{want!r} in {sel}")
        except TimeoutError:
            raise AssertionError(f"{want!r} not in {sel} within {timeout}s; it shows {self.text(sel)!r}; "
                                 f"#message: {self.text('#message')!r}") from None

    def type(self, sel: str, value: str) -> None:
        el = self.css(sel)
        el.clear()
        el.send_keys(value)

    def login(self, token: str = ADMIN_TOKEN) -> "Page":
        self.type("#admin-token", token)
        self.css("#login button[type=submit]").click()
        return self

    def logged_in(self) -> "Page":
        self.fresh().login()
        wait_for(lambda: self.visible("#data") and self.text("#overview .facts"), 10, interval=0.1,
                 what="the page's data after login")
        return self

    def rows(self, section: str) -> list[list[str]]:
        return self.js("""
            return Array.from(document.querySelectorAll(arguments[0] + ' tbody tr')).map(
                tr => Array.from(tr.children).map(td => td.textContent));""", section)

    def headers(self, section: str) -> list[str]:
        return self.js("return Array.from(document.querySelectorAll(arguments[0] + ' thead th'))"
                       ".map(th => th.textContent);", section)

    def row(self, section: str, first_cells: dict, timeout: float = 10.0) -> dict:
        """The first row of `section` whose named cells contain the given text, as {header: text}."""
        def find():
            heads = self.headers(section)
            for r in self.rows(section):
                d = dict(zip(heads, r))
                if all(v in d.get(k, "") for k, v in first_cells.items()):
                    return d
            return None
        try:
            return wait_for(find, timeout, interval=0.1, what=f"a row {first_cells} in {section}")
        except TimeoutError:
            raise AssertionError(f"no row {first_cells} in {section}: {self.rows(section)}") from None

    def click_in_row(self, section: str, contains: str, button_text: str) -> None:
        """Clicks a button in the row containing `contains` (retried: the tables redraw)."""
        def click():
            return self.js("""
                for (const tr of document.querySelectorAll(arguments[0] + ' tbody tr')) {
                  if (!tr.textContent.includes(arguments[1])) continue;
                  for (const b of tr.querySelectorAll('button')) {
                    if (b.textContent === arguments[2]) { b.click(); return true; }
                  }
                }
                return false;""", section, contains, button_text)
        wait_for(click, 10, interval=0.1, what=f"{button_text!r} in the {contains!r} row of {section}")

    def message(self) -> str:
        return self.text("#message")

    def clear_message(self) -> None:
        self.js("document.querySelector('#message').replaceChildren()")

    def cdp(self, cmd: str, params: dict | None = None):
        return self.d.execute_cdp_cmd(cmd, params or {})


@pytest.fixture
def page(driver, env) -> Page:
    p = Page(driver, env.gw)
    yield p
    p.cdp("Emulation.clearDeviceMetricsOverride")
    p.cdp("Emulation.setEmulatedMedia", {"features": []})


# ---------------------------------------------------------------------------------------------
# Over plain HTTP: headers


@pytest.mark.parametrize("path,ctype", [("/", "text/html"), ("/ui", "text/html"), ("/ui/", "text/html"),
                                        ("/ui/app.css", "text/css"), ("/ui/app.js", "text/javascript")])
def test_page_and_assets_carry_the_protective_headers(env, path, ctype):
    r = requests.get(env.gw.url("admin", path), timeout=5)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0] == ctype
    if ctype == "text/html":
        assert r.headers["Content-Type"].replace(" ", "").lower() == "text/html;charset=utf-8"
    assert r.headers["Content-Security-Policy"] == CSP
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert not [h for h in r.headers if h.lower().startswith("access-control-")]
    # The page holds no data: nothing of the status is in it.
    assert env.admin.status()["config_hash"] not in r.text


def test_page_references_only_its_own_assets(env):
    html = requests.get(env.gw.url("admin", "/ui"), timeout=5).text
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sorted(refs) == ["/ui/app.css", "/ui/app.js"], refs
    assert "<script>" not in html and "style=" not in html and "<style" not in html
    for asset in ("/ui/app.css", "/ui/app.js"):
        body = requests.get(env.gw.url("admin", asset), timeout=5).text
        assert "http://" not in body and "https://" not in body and "//" + "cdn" not in body


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/admin/status", None), ("GET", "/admin/revocations", None),
    ("POST", "/admin/revocations", {"iss": CORP, "jti": "cors-probe"}),
    ("DELETE", "/admin/revocations", {"iss": CORP, "jti": "cors-probe"}),
])
@pytest.mark.parametrize("token", [ADMIN_TOKEN, None], ids=["token", "no-token"])
def test_admin_answers_are_not_cached_nor_open_to_other_origins(env, method, path, body, token):
    headers = {"Origin": "https://evil.example"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    r = requests.request(method, env.gw.url("admin", path), json=body, headers=headers, timeout=5)
    assert r.status_code in ((200, 201, 204) if token else (401, 403)), r.text
    assert "no-store" in r.headers.get("Cache-Control", ""), r.headers
    assert not [h for h in r.headers if h.lower().startswith("access-control-")], r.headers
    # A preflight gets no permission either.
    pre = requests.options(env.gw.url("admin", path), timeout=5, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert not [h for h in pre.headers if h.lower().startswith("access-control-")], pre.headers
    assert pre.status_code not in (200, 204) or "no-store" in pre.headers.get("Cache-Control", "")


# ---------------------------------------------------------------------------------------------
# Signing in and out


def test_a_refused_token_shows_no_data_and_is_forgotten(page, env):
    page.fresh().login("not-the-admin-token")
    page.wait_text("#message", "admin token refused")
    assert page.js("return sessionStorage.length") == 0
    assert not page.visible("#data")
    assert page.visible("#login")
    status = env.admin.status()
    for sel in ("#overview", "#routes", "#upstreams", "#providers", "#revocations"):
        t = page.text(sel)
        assert status["config_hash"] not in t and "127.0.0.1" not in t and CORP not in t, (sel, t)


def test_login_keeps_the_token_in_session_storage_only_and_logout_forgets_it(page, env):
    page.logged_in()
    assert page.js("return sessionStorage.length") == 1
    assert ADMIN_TOKEN in page.js("return Object.values(sessionStorage).join()")
    assert page.js("return localStorage.length") == 0
    assert page.js("return document.cookie") == ""
    assert ADMIN_TOKEN not in page.d.current_url
    assert page.text("#message") == ""
    # A reload of the tab keeps the session (sessionStorage), without asking again.
    page.open()
    page.wait_text("#overview", env.admin.status()["config_hash"])
    page.css("#logout").click()
    wait_for(lambda: not page.visible("#data"), 5, what="data hidden after logout")
    assert page.js("return sessionStorage.length") == 0
    assert page.visible("#login")
    assert env.admin.status()["config_hash"] not in page.text("#overview")


# ---------------------------------------------------------------------------------------------
# What each section shows


def test_overview_shows_hash_version_uptime_and_last_reload(page, env):
    page.logged_in()
    st = env.admin.status()
    ov = page.wait_text("#overview", st["config_hash"])
    assert st["version"] and st["version"] in ov
    assert isinstance(st["started_at"], (int, float))
    uptime = page.css("#overview time")
    assert re.fullmatch(r"\d+ (s|min)", uptime.text) or re.fullmatch(r"\d+ h \d+ min", uptime.text), uptime.text
    assert ISO.match(uptime.get_attribute("title")), uptime.get_attribute("title")
    if st.get("last_reload") is None:
        assert "none since start" in ov
    assert ("redis" in st) == ("Redis" in ov), "a Redis line only when the status has one"


def test_routes_show_their_settings_and_counts(page, env):
    for q in ("", "", "", "?status=404", "?status=404", "?status=503"):
        env.gw.get(f"/counted/x{q}", headers={"Host": "counted.example.com"})
    page.logged_in()
    r = page.row("#routes", {"Name": "counted", "Requests": "6"})
    assert r["Host"] == "counted.example.com"
    assert r["Path prefix"] == "/counted"
    assert r["Upstream"] == "echo"
    assert r["Auth"] == "none"
    assert r["Visibility"] == "public"
    assert (r["Requests"], r["4xx"], r["5xx"]) == ("6", "2", "1"), r
    api = page.row("#routes", {"Name": "api"})
    assert (api["Host"], api["Path prefix"], api["Auth"], api["Visibility"]) == ("any", "/api", "required", "public")
    ops = page.row("#routes", {"Name": "ops"})
    assert ops["Visibility"] == "internal"
    # The counters keep going while the page is open, without a page load.
    loads = page.js("return performance.getEntriesByType('navigation').length")
    env.gw.get("/counted/y", headers={"Host": "counted.example.com"})
    page.row("#routes", {"Name": "counted", "Requests": "7"})
    assert page.js("return performance.getEntriesByType('navigation').length") == loads


def test_upstreams_show_each_peer_with_its_health_and_last_check(page, env):
    page.logged_in()
    echo = page.row("#upstreams", {"Upstream": "echo", "State": "healthy"})
    assert echo["Address"] == env.up.addr
    assert re.search(r"\d+ s ago · 200", echo["Last check"]), echo
    gone = page.row("#upstreams", {"Upstream": "gone", "State": "unhealthy"})
    assert gone["Address"] == env.dead
    assert re.search(r"\d+ s ago · \S", gone["Last check"]), gone
    assert "200" not in gone["Last check"].split("·", 1)[1]
    t = page.css("#upstreams tbody time")
    assert ISO.match(t.get_attribute("title")), t.get_attribute("title")


def test_a_peer_going_down_shows_within_seconds(page, env):
    page.logged_in()
    page.row("#upstreams", {"Upstream": "flaky", "State": "healthy"})
    env.flaky.kill()
    try:
        t0 = time.monotonic()
        page.row("#upstreams", {"Upstream": "flaky", "State": "unhealthy"}, timeout=6)
        took = time.monotonic() - t0
        assert took < 6, took
        r = page.row("#upstreams", {"Upstream": "flaky"})
        assert r["State"] == "unhealthy" and "200" not in r["Last check"].split("·", 1)[-1], r
    finally:
        env.flaky.start()
    page.row("#upstreams", {"Upstream": "flaky", "State": "healthy"}, timeout=8)


def test_providers_show_issuer_keys_refresh_age_and_error(page, env):
    page.logged_in()
    p = page.row("#providers", {"Name": "corp"})
    assert p["Issuer"] == CORP
    assert p["Key ids"] == "ui-key-1"
    assert re.fullmatch(r"\d+ s ago|\d+ min ago", p["Last refresh"]), p
    assert p["Last error"] == "none"
    t = page.css("#providers tbody time")
    assert ISO.match(t.get_attribute("title"))
    st = env.admin.status()["providers"][0]
    assert t.get_attribute("title").startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(st["last_refresh"])))


def test_tables_sort_by_a_click_on_their_header(page, env):
    page.logged_in()
    page.row("#upstreams", {"Upstream": "gone"})
    names = lambda: [r[0] for r in page.rows("#upstreams")]  # noqa: E731
    assert names() == sorted(names()), names()
    page.js("""for (const b of document.querySelectorAll('#upstreams thead button'))
                 if (b.textContent === 'Upstream') b.click();""")
    wait_for(lambda: names() == sorted(names(), reverse=True), 3, what="descending order")
    assert page.css("#upstreams thead th").get_attribute("aria-sort") == "descending"
    # By state: the unhealthy peer first, then the healthy ones.
    page.js("""for (const b of document.querySelectorAll('#upstreams thead button'))
                 if (b.textContent === 'State') b.click();""")
    wait_for(lambda: page.rows("#upstreams")[0][2] == "unhealthy", 3, what="unhealthy first")
    # The order outlives the next refresh.
    time.sleep(2.5)
    assert page.rows("#upstreams")[0][2] == "unhealthy"


# ---------------------------------------------------------------------------------------------
# Actions


def test_revoke_and_delete_from_the_page_change_what_the_proxy_does(page, env):
    tok = env.token(jti="page-revoked-1")
    assert env.api_get(tok) == 200
    page.logged_in()
    page.type("#revoke-iss", CORP)
    page.type("#revoke-jti", "page-revoked-1")
    page.css("#revoke button[type=submit]").click()
    page.wait_text("#message", "revoked")
    assert page.message() == "revoked"
    assert env.api_get(tok) == 401
    assert env.gw.get("/api/x", headers={"Authorization": f"Bearer {tok}"}).json()["error_description"] \
        == "token revoked"
    row = page.row("#revocations", {"jti or subject": "page-revoked-1"}, timeout=3)
    assert row["Issuer"] == CORP and row["Kind"] == "jti"
    assert page.css("#revoke-jti").get_attribute("value") == ""
    page.wait_text("#revocations .counts", re.compile(r"By jti: [1-9]"))

    page.click_in_row("#revocations", "page-revoked-1", "Delete")
    page.wait_text("#message", "deleted")
    assert env.api_get(tok) == 200
    wait_for(lambda: "page-revoked-1" not in page.text("#revocations"), 3, what="row gone")
    assert all(e["jti"] != "page-revoked-1" for e in env.admin.revocations()["jti"])


def test_revoke_a_whole_token_from_the_page(page, env):
    tok = env.token(jti=None, sub="whole-token-sub")
    assert env.api_get(tok) == 200
    page.logged_in()
    page.type("#revoke-token", tok)
    page.css("#revoke button[type=submit]").click()
    page.wait_text("#message", "revoked")
    assert env.api_get(tok) == 401
    row = page.row("#revocations", {"jti or subject": "whole-token-sub"})
    assert row["Kind"] == "subject"
    assert ISO.match(page.js("""for (const tr of document.querySelectorAll('#revocations tbody tr'))
        if (tr.textContent.includes('whole-token-sub')) return tr.querySelector('time').title;"""))
    page.click_in_row("#revocations", "whole-token-sub", "Delete")
    page.wait_text("#message", "deleted")
    assert env.api_get(tok) == 200


def test_an_api_error_shows_its_lines_and_changes_nothing(page, env):
    page.logged_in()
    before = env.admin.revocations()
    page.type("#revoke-token", "not.a-jwt")
    page.css("#revoke button[type=submit]").click()
    msg = page.wait_text("#message", "token:")
    assert msg.startswith("token: "), msg
    assert page.css("#message").get_attribute("class") == "error"
    assert env.admin.revocations() == before
    # The field keeps what was typed, and the data stay.
    assert page.css("#revoke-token").get_attribute("value") == "not.a-jwt"
    assert page.visible("#data") and env.admin.status()["config_hash"] in page.text("#overview")
    # A body over 64 KiB: the API's 413 line.
    page.type("#revoke-token", "")
    page.type("#revoke-iss", CORP)
    page.js("document.querySelector('#revoke-jti').value = 'j'.repeat(70000)")
    page.css("#revoke button[type=submit]").click()
    page.wait_text("#message", "64 KiB")
    assert env.admin.revocations() == before


def test_reload_refused_then_accepted(page, env):
    page.logged_in()
    old_hash = env.admin.status()["config_hash"]
    broken = json.loads(json.dumps(env.config))
    broken["routes"][0]["upstream"] = "no-such-upstream"
    write_config_atomically(env.gw, broken)
    try:
        page.css("#reload").click()
        msg = page.wait_text("#message", "routes[0].upstream")
        assert "no-such-upstream" in msg or "routes[0].upstream: " in msg, msg
        assert page.css("#message").get_attribute("class") == "error"
        assert env.admin.status()["config_hash"] == old_hash
        # The overview names the refused reload and its error line.
        ov = page.wait_text("#overview", "routes[0].upstream")
        assert "error" in ov
    finally:
        write_config_atomically(env.gw, env.config)
    page.clear_message()
    page.css("#reload").click()
    msg = page.wait_text("#message", "reloaded ")
    new_hash = env.admin.status()["config_hash"]
    assert msg == f"reloaded {new_hash}"
    ov = page.wait_text("#overview", "ok")
    assert new_hash in ov and "routes[0].upstream" not in ov
    assert env.api_get(env.token()) == 200


# ---------------------------------------------------------------------------------------------
# Safety


def test_hostile_values_are_shown_as_text(page, env):
    jti = "<img src=x onerror=\"window.__pwned=1\">"
    sub = "<script>window.__pwned=2</script><b>bold</b>"
    env.admin.revoke_ok({"iss": CORP, "jti": jti})
    env.admin.revoke_ok({"iss": CORP, "sub": sub})
    try:
        page.logged_in()
        page.row("#revocations", {"jti or subject": jti})
        page.row("#revocations", {"jti or subject": sub})
        time.sleep(2.5)  # at least one more refresh
        assert page.js("return document.querySelectorAll('img, b, #revocations script').length") == 0
        assert page.js("return typeof window.__pwned") == "undefined"
        assert page.js("return window.__cspViolations.length") == 0, page.js("return window.__cspViolations")
        visible = page.css("#revocations").text
        assert jti in visible and "<script>window.__pwned=2</script>" in visible
    finally:
        env.admin.unrevoke({"iss": CORP, "jti": jti})
        env.admin.unrevoke({"iss": CORP, "sub": sub})


def test_the_page_loads_nothing_from_another_origin(page, env):
    page.d.get_log("browser")  # drop what earlier tests left in the console
    page.logged_in()
    time.sleep(4.5)  # a couple of refreshes
    names = page.js("return performance.getEntries().map(e => e.name)"
                    ".filter(n => /^[a-z]+:/.test(n))")
    assert names, "no performance entries"
    foreign = [n for n in names if not n.startswith(page.origin + "/")]
    assert not foreign, foreign
    assert any(n.endswith("/admin/status") for n in names)
    assert page.js("return window.__cspViolations") == []
    errors = [e for e in page.d.get_log("browser")
              if e["level"] == "SEVERE" and "favicon.ico" not in e["message"]]
    assert not errors, errors


def test_stale_data_are_kept_and_marked_while_the_gateway_is_down(driver, procs):
    up = procs.upstream("stale-echo")
    gw = procs.gateway(base_config({"echo": upstream_cfg(up)}, [route("r", "/", "echo")],
                                   admin={"token_env": "PORTCULLIS_ADMIN_TOKEN"}),
                       env={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
    page = Page(driver, gw).logged_in()
    h = Admin(gw).status()["config_hash"]
    page.wait_text("#overview", h)
    assert not page.visible("#stale")
    gw.stop()
    page.wait_text("#stale", "gateway unreachable", timeout=6)
    assert page.visible("#stale")
    stale = page.text("#stale")
    assert re.search(r"data from .*\d+:\d\d:\d\d.*\(\d+ s ago\)", stale), stale
    assert h in page.text("#overview") and up.addr in page.text("#upstreams")
    assert page.visible("#data")
    gw.start()
    wait_for(lambda: not page.visible("#stale"), 8, interval=0.1, what="recovery without a page load")
    assert h in page.text("#overview")


# ---------------------------------------------------------------------------------------------
# Looks


def test_a_phone_gets_one_column_without_sideways_scrolling(page, env):
    page.logged_in()
    page.cdp("Emulation.setDeviceMetricsOverride",
             {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    page.open()
    page.wait_text("#overview", env.admin.status()["config_hash"])
    page.row("#upstreams", {"Upstream": "echo"})
    assert page.js("return window.innerWidth") == 390
    assert page.js("return document.documentElement.scrollWidth") <= 390
    lefts = page.js("return ['#overview','#upstreams','#routes','#providers','#revocations']"
                    ".map(s => document.querySelector(s).getBoundingClientRect().left)")
    assert len(set(lefts)) == 1, lefts
    rights = page.js("return Array.from(document.querySelectorAll('section, td, button, input'))"
                     ".map(e => e.getBoundingClientRect().right)")
    assert max(rights) <= 390, max(rights)
    # A laptop: two columns.
    page.cdp("Emulation.setDeviceMetricsOverride",
             {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    wait_for(lambda: page.js("return document.querySelector('#upstreams').getBoundingClientRect().left") >
             page.js("return document.querySelector('#overview').getBoundingClientRect().left") + 100,
             3, what="two columns at 1280 px")


def _luminance(css_color: str) -> float:
    m = re.match(r"rgba?\((\d+), (\d+), (\d+)", css_color)
    assert m, css_color
    r, g, b = (int(x) / 255 for x in m.groups())
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_dark_mode_follows_the_system(page, env):
    page.logged_in()
    bg = "return getComputedStyle(document.body).backgroundColor"
    fg = "return getComputedStyle(document.body).color"
    page.cdp("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]})
    assert _luminance(page.js(bg)) > 0.8 and _luminance(page.js(fg)) < 0.3
    page.cdp("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    wait_for(lambda: _luminance(page.js(bg)) < 0.15, 3, what="a dark background")
    assert _luminance(page.js(fg)) > 0.7
    section = page.js("return getComputedStyle(document.querySelector('#routes')).backgroundColor")
    assert _luminance(section) < 0.2


def test_a_provider_fetch_error_is_shown_and_a_markup_jwks_body_runs_nothing(driver, procs):
    """A key server answering markup instead of a key set: the provider's row shows the last
    error exactly as the status gives it, no keys and no refresh, and nothing of the body runs."""
    from support.jwks_server import JwksServer

    hostile = b'<img src=x onerror="window.__pwned=3"><script>window.__pwned=4</script>'
    with JwksServer() as idp:
        idp.body_override = hostile
        up = procs.upstream("hostile-echo")
        gw = procs.gateway(base_config({"echo": upstream_cfg(up)}, [route("r", "/", "echo")],
                                       providers=[idp.provider("hostile-idp", "https://hostile.test")],
                                       admin={"token_env": "PORTCULLIS_ADMIN_TOKEN"}),
                           env={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
        admin = Admin(gw)
        wait_for(lambda: admin.status()["providers"][0]["last_error"], 10, what="a provider error")
        err = admin.status()["providers"][0]["last_error"]
        page = Page(driver, gw).logged_in()
        row = page.row("#providers", {"Name": "hostile-idp"})
        assert row["Last error"] == err and row["Key ids"] == "none" and row["Last refresh"] == "never", row
        time.sleep(2.5)
        assert page.js("return document.querySelectorAll('img, #providers script').length") == 0
        assert page.js("return typeof window.__pwned") == "undefined"
        assert page.js("return window.__cspViolations") == []
