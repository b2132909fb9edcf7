"""Real-browser tests of the dashboards: headless Chromium driven by Selenium.

Chromium and its driver are Debian's packages (``chromium``, ``chromium-driver``): when they
are missing, the session fixture ``chromium`` installs them with apt-get (root only), and
skips with the reason where it cannot (set ``SEGLOOP_BROWSER_REQUIRED=1`` to fail instead,
as CI should). The fixture is session-scoped and only browser tests use it, so nothing is
installed unless they are selected. Selenium drives the system chromedriver; Selenium
Manager (which would download a driver and a browser) is never asked: the Service gets the
driver's path and ``SE_OFFLINE=true`` is set.

Each test gets a ``browser`` (a :class:`Browser`) that records the console (``SEVERE``
entries are errors, minus the noise listed in ``CONSOLE_NOISE``) and writes its screenshots,
console log and, at teardown, the last page's screenshot and HTML to the test's folder:
``$SEGLOOP_BROWSER_ARTIFACTS/<test id>`` if that variable is set, else pytest's ``tmp_path``.

Run with ``pytest -m browser tests/browser`` (the ``browser`` marker keeps them out of the
default suite).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

APT_PACKAGES = ("chromium", "chromium-driver")
APT_TIMEOUT_S = 900
WINDOW = (1440, 1000)

# Console entries that are SEVERE but say nothing about the page under test. Each needs a
# reason; anything else SEVERE fails the test.
CONSOLE_NOISE: dict[str, re.Pattern[str]] = {
    # Chromium asks every origin for /favicon.ico unless the page names an icon; a server
    # without one answers 404, which the console reports as a failed resource load.
    "favicon 404": re.compile(r"/favicon\.ico - Failed to load resource: .* 404"),
    # Prefect UI 3.9: the flow-run page sets the tab icon to /ico/<state type>.svg before the
    # run is loaded, i.e. to /ico/undefined.svg (404); the right icon follows once it is.
    "Prefect state icon before load": re.compile(
        r"/ico/undefined\.svg - Failed to load resource: .* 404"),
    # MLflow UI 3.17 asks who is logged in (users/current); a server without MLflow's auth
    # app (`mlflow ui`, no --app-name basic-auth) has no such route and answers 404.
    "MLflow UI user query without auth": re.compile(
        r"/ajax-api/2\.0/mlflow/users/current - Failed to load resource: .* 404"),
    # The FiftyOne App's page links two Google Fonts stylesheets; offline (as here) their host
    # does not resolve and the App falls back to local fonts (nothing else is fetched).
    "FiftyOne App's Google Fonts, offline": re.compile(
        r"^https://fonts\.googleapis\.com/css2\?family=[^ ]+ - Failed to load resource: "
        r"net::ERR_(NAME_NOT_RESOLVED|INTERNET_DISCONNECTED|NETWORK_ACCESS_DENIED)"),
    # Chromium reports a ResizeObserver callback that resized what it observes (charts
    # relaying out when a filter hides their neighbours) as an error; the spec defers the
    # notifications to the next frame, nothing is lost (a known benign message).
    "ResizeObserver loop": re.compile(r"ResizeObserver loop completed with undelivered"),
}


def _unavailable(reason: str) -> None:
    """Skip (or, with SEGLOOP_BROWSER_REQUIRED=1, fail) a browser test that cannot run."""
    if os.environ.get("SEGLOOP_BROWSER_REQUIRED") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Chromium:
    browser: Path
    driver: Path
    version: str


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # wait for another apt/dpkg run's lock instead of failing at once
    return subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=120", *args], env=env,
                          capture_output=True, text=True, timeout=APT_TIMEOUT_S)


def _install(browser: Path, driver: Path) -> None:
    how = f"`apt-get install -y {' '.join(APT_PACKAGES)}`"
    if os.geteuid() != 0:
        _unavailable(f"Chromium not installed ({browser}, {driver}) and not root: run {how}")
    if shutil.which("apt-get") is None:
        _unavailable(f"Chromium not installed ({browser}, {driver}) and no apt-get here")
    install = ("install", "-y", "--no-install-recommends", *APT_PACKAGES)
    done = _apt_get(*install)
    if done.returncode != 0:  # stale or missing package lists: refresh once, retry
        _apt_get("update")
        done = _apt_get(*install)
    if done.returncode != 0 or not (_executable(browser) and _executable(driver)):
        _unavailable(f"no Chromium at {browser} and {driver} after {how} (exit "
                     f"{done.returncode}):\n{(done.stderr or done.stdout)[-2000:]}")


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    """Debian's Chromium and chromedriver (installed with apt-get if missing, as root)."""
    browser = Path(os.environ.get("SEGLOOP_CHROMIUM", "/usr/bin/chromium"))
    driver = Path(os.environ.get("SEGLOOP_CHROMEDRIVER", "/usr/bin/chromedriver"))
    if not (_executable(browser) and _executable(driver)):
        _install(browser, driver)
    versions = [subprocess.run([str(p), "--version"], capture_output=True, text=True,
                               timeout=60).stdout.strip() for p in (browser, driver)]
    majors = [re.search(r"(\d+)\.\d+\.\d+", v) for v in versions]
    if not all(majors) or majors[0].group(1) != majors[1].group(1):  # type: ignore[union-attr]
        _unavailable(f"Chromium and chromedriver versions do not match: {versions}")
    return Chromium(browser, driver, versions[0])


@pytest.fixture
def artifacts_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where the test's screenshots go: $SEGLOOP_BROWSER_ARTIFACTS/<test id>, or tmp_path."""
    root = os.environ.get("SEGLOOP_BROWSER_ARTIFACTS")
    if not root:
        return tmp_path
    out = Path(root).resolve() / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
    shutil.rmtree(out, ignore_errors=True)  # a rerun's files replace the last run's
    out.mkdir(parents=True)
    return out


class Browser:
    """A Selenium Chrome session plus what a test asserts on: page text, console errors."""

    def __init__(self, driver: Any, out: Path) -> None:
        self.driver, self.out = driver, out
        self.console: list[dict[str, Any]] = []  # every entry read so far (reading drains)

    def get(self, url: str) -> None:
        self.driver.get(url)

    def text(self) -> str:
        """The page's rendered text (innerText: no stale elements while the app re-renders)."""
        return str(self.driver.execute_script(
            "return document.body ? document.body.innerText : ''"))

    def wait_for_text(self, *texts: str, timeout: float = 60) -> str:
        """Wait until every one of ``texts`` is shown; fail with a screenshot otherwise."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            WebDriverWait(self.driver, timeout, poll_frequency=0.25).until(
                lambda _: all(t in self.text() for t in texts))
        except TimeoutException:
            shot = self.screenshot("timeout")
            missing = [t for t in texts if t not in self.text()]
            raise AssertionError(f"not shown after {timeout} s: {missing} (url "
                                 f"{self.driver.current_url}, screenshot {shot}); page "
                                 f"text:\n{self.text()[-3000:]}") from None
        return self.text()

    def click_text(self, text: str, timeout: float = 30) -> None:
        """Click the innermost visible element whose text is exactly ``text`` (a tab, a link,
        a card's title: the click reaches the element that handles it by bubbling)."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        t = json.dumps(text)
        xpath = f"//body//*[normalize-space()={t}][not(.//*[normalize-space()={t}])]"

        def click(driver: Any) -> bool:
            for element in driver.find_elements(By.XPATH, xpath):
                try:
                    if element.is_displayed():
                        element.click()
                        return True
                except WebDriverException:  # re-rendered or covered: look again
                    continue
            return False

        try:
            WebDriverWait(self.driver, timeout, poll_frequency=0.25).until(click)
        except WebDriverException:
            shot = self.screenshot("timeout")
            raise AssertionError(f"nothing visible to click with text {text!r} after "
                                 f"{timeout} s (screenshot {shot})") from None

    def href_of(self, text: str, timeout: float = 30) -> str:
        """The URL of the link around (or at) the visible text ``text``."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        t = json.dumps(text)
        xpath = (f"//body//*[normalize-space()={t}][not(.//*[normalize-space()={t}])]"
                 f"/ancestor-or-self::a[1][@href]")
        link = WebDriverWait(self.driver, timeout, poll_frequency=0.25).until(
            lambda d: next((a for a in d.find_elements(By.XPATH, xpath) if a.is_displayed()),
                           False))
        return str(link.get_attribute("href"))

    def screenshot(self, name: str) -> Path:
        path = self.out / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), f"screenshot {path} failed"
        return path

    def read_console(self) -> list[dict[str, Any]]:
        self.console.extend(self.driver.get_log("browser"))
        return self.console

    def console_errors(self) -> list[dict[str, Any]]:
        """SEVERE console entries so far, less CONSOLE_NOISE."""
        return [e for e in self.read_console() if e.get("level") == "SEVERE"
                and not any(p.search(str(e.get("message", ""))) for p in CONSOLE_NOISE.values())]

    def assert_no_console_errors(self) -> None:
        errors = self.console_errors()
        assert not errors, "browser console errors:\n" + "\n".join(
            f"  {e.get('source', '?')}: {e.get('message')}" for e in errors)


@pytest.fixture
def browser(chromium: Chromium, artifacts_dir: Path, tmp_path: Path) -> Iterator[Browser]:
    """Headless Chromium (a fresh profile per test), its console recorded. At teardown the
    last page is saved (final.png, page.html) with the whole console log (console.json)."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download anything
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install selenium)")

    opts = Options()
    opts.binary_location = str(chromium.browser)
    for arg in ("--headless=new", "--disable-dev-shm-usage", "--no-first-run",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                # no component updates, Safe Browsing lists, etc.: nothing outside the test
                "--disable-background-networking", "--disable-extensions",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(arg)
    if os.geteuid() == 0:  # Chromium's sandbox refuses to run as root
        opts.add_argument("--no-sandbox")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(chromium.driver),
                      log_output=str(artifacts_dir / "chromedriver.log"))
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(60)
    session = Browser(driver, artifacts_dir)
    try:
        yield session
    finally:
        try:
            session.screenshot("final")
            (artifacts_dir / "page.html").write_text(driver.page_source)
            (artifacts_dir / "console.json").write_text(
                json.dumps(session.read_console(), indent=1))
        except Exception:  # noqa: BLE001 - evidence only; the browser may be gone
            pass
        finally:
            driver.quit()
