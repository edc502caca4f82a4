"""The app as the README starts it, from a folder that is not the repository (issue 12).

`streamlit run <repo>/app.py` is started in a temporary folder holding a hostile
.streamlit/config.toml (XSRF off, usage statistics on, 0.0.0.0, huge uploads): the app's own
settings still apply (XSRF cookie set, listening on 127.0.0.1, no warning in the sidebar), and in
headless Chromium loading Home and Upload sends no request anywhere but 127.0.0.1 (the tab icon
used to be fetched from a font server on every page load).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import urllib.request
from urllib.parse import urlparse

import pytest

from tests.app_fixtures import shared_checkpoints
from tests.e2e.servers import BIN, REPO, free_port, stop, wait_http
from tests.e2e.test_browser import CHROMIUM, FLAGS, settle, sync_api  # skips without chromium / Playwright

pytestmark = pytest.mark.slow
HOSTILE = """[server]
address = "0.0.0.0"
enableXsrfProtection = false
maxUploadSize = 1000
[browser]
gatherUsageStats = true
[client]
showErrorDetails = "full"
"""


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory):
    base = tmp_path_factory.mktemp("elsewhere")
    (base / ".streamlit").mkdir()
    (base / ".streamlit" / "config.toml").write_text(HOSTILE)
    port = free_port()
    log = base / "streamlit.log"
    env = {**os.environ, "UPD_DATA_ROOT": str(base / "no-data"), "UPD_CACHE_DIR": str(base / "cache"),
           "UPD_ALLOWED_DIRS": "", "UPD_CHECKPOINTS": str(shared_checkpoints(("spatial-ae",)))}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "streamlit"), "run", str(REPO / "app.py"), "--server.port", str(port)],
                                cwd=base, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/_stcore/health", proc, timeout=120)
        yield url, log
    finally:
        stop(proc)


def test_settings_hold_when_started_from_another_folder(elsewhere):
    url, log = elsewhere
    with urllib.request.urlopen(url + "/_stcore/health", timeout=30) as r:  # where Streamlit sets its XSRF cookie
        cookies = r.headers.get_all("Set-Cookie") or []
    assert any(c.startswith("_streamlit_xsrf=") for c in cookies), "XSRF protection is off"
    text = log.read_text(errors="replace")
    assert "127.0.0.1" in text and "0.0.0.0" not in text


def test_no_request_leaves_the_machine_and_no_settings_warning(elsewhere):
    url, _ = elsewhere
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(tempfile.mkdtemp(prefix="upd-chromium-"), executable_path=CHROMIUM,
                                                   headless=True, args=FLAGS, viewport={"width": 1280, "height": 1600})
        try:
            page = ctx.new_page()

            def check(request) -> None:
                u = urlparse(request.url)
                if u.scheme in ("data", "blob", "about") or u.hostname in ("127.0.0.1", "localhost"):
                    return
                outside.append(request.url)

            page.on("request", check)
            for path in ("/", "/upload"):
                page.goto(url + path, wait_until="domcontentloaded", timeout=120_000)
                settle(page)
                body = page.inner_text("body")
                assert "started without some of the app's safety settings" not in body
            icon = page.eval_on_selector("link[rel='shortcut icon']", "e => e.href")
        finally:
            ctx.close()
    assert not outside, f"requests to the internet: {outside}"
    assert urlparse(icon).hostname == "127.0.0.1", icon
