"""Launch settings that do not depend on the working folder, and no request to the internet (issue 12).

* `make run` and the Dockerfile pass every safety setting of .streamlit/config.toml as a flag
  (flags win over any config file a working folder may hold), app.py is given by absolute path;
* app.py reads the same file, applies the settings a script may set and says in the sidebar which
  others the server was started without;
* the tab icon is a picture drawn by app.py, not an emoji or Material icon (the browser fetches
  those from a font server on every page load).
The same with a real server and browser: tests/e2e/test_launch.py.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
CONFIG = REPO / ".streamlit" / "config.toml"


def settings() -> dict[str, object]:
    conf = tomllib.loads(CONFIG.read_text())
    return {f"{s}.{k}": v for s, opts in conf.items() if s != "theme" for k, v in opts.items()}


def as_flag_value(v: object) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def flags(argv: list[str]) -> dict[str, str]:
    out = {}
    for i, a in enumerate(argv):
        if a.startswith("--") and i + 1 < len(argv):
            out[a[2:]] = argv[i + 1]
    return out


def test_config_file_holds_the_safety_settings():
    s = settings()
    assert s["server.address"] == "127.0.0.1" and s["server.enableXsrfProtection"] is True
    assert s["browser.gatherUsageStats"] is False and s["client.showErrorDetails"] == "none"
    assert 0 < s["server.maxUploadSize"] <= 200


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_passes_every_safety_setting(tmp_path):
    out = subprocess.run(["make", "-n", "-C", str(REPO), "run", "PORT=8765"], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if "streamlit run" in ln)
    argv = shlex.split(line)
    assert argv[argv.index("run") + 1] == APP, "app.py by absolute path"
    got = flags(argv)
    for name, value in settings().items():
        assert got.get(name) == as_flag_value(value), f"make run does not pass --{name} {as_flag_value(value)}"
    assert got["server.port"] == "8765"


def test_dockerfile_passes_every_safety_setting():
    text = (REPO / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*?\])\s*$", text.replace("\\\n", " "), re.M | re.S)
    assert cmd, "Dockerfile has a JSON CMD"
    argv = [a for a in re.findall(r'"([^"]*)"', cmd.group(1))]
    assert argv[:3] == ["streamlit", "run", "/app/app.py"]
    got = flags(argv)
    for name, value in settings().items():
        want = "0.0.0.0" if name == "server.address" else as_flag_value(value)  # the container's port is published
        assert got.get(name) == want, f"Dockerfile does not pass --{name} {want}"


pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.app_fixtures import env  # noqa: E402


@pytest.fixture()
def no_checkpoints(tmp_path):
    with env(UPD_CHECKPOINTS=str(tmp_path / "none"), UPD_DATA_ROOT=str(tmp_path / "no-data"),
             UPD_CACHE_DIR=str(tmp_path / "cache")):
        yield


def test_app_warns_when_the_server_lacks_a_safety_setting(no_checkpoints):
    from streamlit import config

    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception
    assert not [w for w in at.sidebar.warning if "safety settings" in w.value], "warned with the settings in place"
    old = config.get_option("server.enableXsrfProtection")
    config.set_option("server.enableXsrfProtection", False)
    try:
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
    finally:
        config.set_option("server.enableXsrfProtection", old)
    assert not at.exception
    warn = [w.value for w in at.sidebar.warning if "safety settings" in w.value]
    assert warn and "server.enableXsrfProtection = True" in warn[0]


def test_tab_icon_is_drawn_locally(no_checkpoints, monkeypatch):
    import streamlit as st

    seen = []
    real = st.set_page_config

    def record(*args, **kwargs):
        seen.append(kwargs.get("page_icon", args[1] if len(args) > 1 else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(st, "set_page_config", record)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception and seen
    icon = seen[0]
    assert not isinstance(icon, str), f"page_icon {icon!r} is fetched by the browser from the internet"
    icon = np.asarray(icon)
    assert icon.dtype == np.uint8 and icon.ndim == 3 and icon.shape[2] == 4 and icon.shape[0] <= 128
