"""Real-browser harness: a live `streamlit run app.py` server and Debian's headless Chromium.

Playwright drives `/usr/bin/chromium` (never a downloaded browser). Where Chromium is
missing, we try `apt-get install chromium` once (as root); the tests skip, with the
reason, only where that is impossible. Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from project_paths import PROJECT_ROOT

SCREENSHOTS = PROJECT_ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_executable() -> str:
    """Path of Debian's Chromium, installing it with apt-get if missing; else skip."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = f"{CHROMIUM} not found"
    if os.geteuid() == 0 and shutil.which("apt-get") and not os.environ.get("MUSHCAM_NO_APT"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        done = subprocess.run(
            "apt-get update -qq && apt-get install -y -qq chromium",
            shell=True, env=env, capture_output=True, text=True, timeout=600,
        )
        if done.returncode == 0 and os.access(CHROMIUM, os.X_OK):
            return CHROMIUM
        reason += f"; apt-get install chromium failed: {(done.stderr or done.stdout).strip()[-300:]}"
    else:
        reason += "; cannot install it here (needs root and apt-get)"
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_app(env: dict[str, str] | None = None, timeout: float = 60.0) -> Iterator[str]:
    """Start ``streamlit run app.py`` headless on 127.0.0.1; yield its URL; stop it."""
    port = free_port()
    log_path = PROJECT_ROOT / "artifacts" / f"streamlit-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
    ]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start; log:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.25)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1000) -> Iterator[object]:
    """A Playwright page in headless Debian Chromium."""
    executable = chromium_executable()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def wait_idle(
    page: object, timeout: float = 120.0, settle: float = 0.8, ready: str = '[data-testid="stHeading"]'
) -> None:
    """Wait until the page shows ``ready`` and the script run has finished and settled.

    Streamlit shows ``stStatusWidget`` ('Running…') while a script runs, skeletons before
    the first elements arrive, and marks elements of the previous run ``data-stale``; all
    must be gone for ``settle`` seconds.
    """
    page.wait_for_selector(ready, state="attached", timeout=timeout * 1000)
    busy = (
        '[data-testid="stStatusWidget"], [data-testid="stSkeleton"], [data-testid="stSpinner"], '
        '[data-stale="true"]'
    )
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        if page.locator(busy).count() > 0:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= settle:
            return
        time.sleep(0.1)
    raise AssertionError("the app did not finish running within the timeout")


def wait_for_text(page: object, text: str, count: int | None = None, timeout: float = 120.0) -> None:
    """Wait until ``text`` is on the page (at least once, or exactly ``count`` times), then until the run settles.

    Asserting right after an action races the server on a loaded host: wait for the very element the
    test asserts on, never for "some alert" or a fixed time.
    """
    sync_api = pytest.importorskip("playwright.sync_api")
    locator = page.get_by_text(text)
    if count is None:
        locator.first.wait_for(state="visible", timeout=timeout * 1000)
    else:
        sync_api.expect(locator).to_have_count(count, timeout=timeout * 1000)
    wait_idle(page, timeout=timeout)


def exception_texts(page: object) -> list[str]:
    """Texts of every Streamlit exception box on the page (should be none)."""
    boxes = page.locator('[data-testid="stException"]')
    return [boxes.nth(i).inner_text() for i in range(boxes.count())]


def screenshot(page: object, name: str) -> Path:
    """Save a PNG of the viewport under artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


@contextlib.contextmanager
def browser_sessions(count: int, width: int = 1400, height: int = 1100) -> Iterator[list[object]]:
    """``count`` pages, each in its own browser context (separate cookies: separate Streamlit sessions)."""
    executable = chromium_executable()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            pages = []
            for _ in range(count):
                context = browser.new_context(viewport={"width": width, "height": height})
                page = context.new_page()
                page.set_default_timeout(60_000)
                pages.append(page)
            yield pages
        finally:
            browser.close()
