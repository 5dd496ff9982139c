"""Headless Debian Chromium driven over WebDriver (Selenium + chromedriver), for the status page
suite (conf/README.md §10).

Only the machine's own /usr/bin/chromium and /usr/bin/chromedriver are used (Debian packages
`chromium` and `chromium-driver`; `make deps` installs them): Selenium is given both paths, so it
never looks for or downloads a browser. Each browser gets a fresh profile directory, no sync, no
background networking, no component updates: the only requests it makes are the page's own.
"""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-default-browser-check",
    "--window-size=1280,900",
]

# Installed by the browser before any page script runs (a CDP hook, so the page's CSP does not
# apply to it): records every CSP violation the page causes.
CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolations.push({blocked: e.blockedURI, directive: e.violatedDirective});
});
"""


def available() -> str | None:
    """None when Chromium and chromedriver are here, else what is missing."""
    for p in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(p) and os.access(p, os.X_OK)):
            return f"{p} not found (Debian packages chromium and chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (tests/requirements.txt)"
    return None


def start_chromium(profile_dir: Path, extra_flags: list[str] | None = None):
    """A headless Chromium with a fresh profile in `profile_dir`; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile_dir = Path(profile_dir)
    profile_dir.mkdir(parents=True, exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in CHROMIUM_FLAGS + (extra_flags or []):
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={profile_dir}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(profile_dir / "chromedriver.log"))
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(20)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_RECORDER})
    return driver
