"""UPD explorer: the Streamlit entry point. Navigation only; every page lives in pages/.

Run:  make run   (or: streamlit run app.py)

Launch settings: the safety settings are in .streamlit/config.toml next to this file (upload size,
XSRF protection, no usage statistics, no tracebacks shown, 127.0.0.1). Streamlit reads that file
from the script's folder whatever the working folder is; `make run` and the Dockerfile also pass
them as command-line flags, which no config file or folder can override. This file applies the
ones a script may set and says in the sidebar which others the server was started without.
Nothing a page loads comes from the internet: the tab icon is drawn here (an emoji or Material
icon would make the browser fetch it from a font server on every page load).
"""
from __future__ import annotations

import functools
import tomllib
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from pages._common import app_pages, run_page

SETTINGS = Path(__file__).resolve().parent / ".streamlit" / "config.toml"
NOT_CHECKED = ("server.address", "theme.base")  # Docker listens on 0.0.0.0 on purpose; looks only


@functools.lru_cache(maxsize=1)
def launch_settings() -> dict[str, object]:
    """The app's launch settings from .streamlit/config.toml, as {'section.option': value}."""
    with open(SETTINGS, "rb") as f:
        conf = tomllib.load(f)
    return {f"{section}.{name}": value for section, options in conf.items() for name, value in options.items()}


def missing_settings() -> list[str]:
    """Apply the settings a script may set; return those the server runs without ('name = value')."""
    missing = []
    for name, want in launch_settings().items():
        if name in NOT_CHECKED:
            continue
        try:
            if st.get_option(name) == want:
                continue
            st.set_option(name, want)  # allowed for client.* options only
        except Exception:  # noqa: BLE001 - a server option: it stays as the server was started
            missing.append(f"{name} = {want!r}")
    return missing


@functools.lru_cache(maxsize=1)
def tab_icon() -> Image.Image:
    """The browser-tab icon (64 x 64 RGBA), drawn here: a warm spot on a dark rounded tile, like a
    heatmap. Not derived from any image."""
    n = 64
    yy, xx = np.mgrid[0:n, 0:n] / (n - 1)
    heat = np.clip(1 - np.hypot(xx - 0.6, yy - 0.4) / 0.45, 0, 1)
    inner = np.clip(np.abs(np.stack([xx, yy]) - 0.5) - 0.32, 0, None)  # rounded-square tile
    alpha = np.clip((0.16 - np.hypot(*inner)) * n, 0, 1)
    rgba = np.stack([40 + 215 * heat ** 0.6, 50 + 190 * heat ** 1.8, 80 * (1 - heat), 255 * alpha], axis=-1)
    return Image.fromarray(np.round(rgba).astype(np.uint8))  # RGBA


st.set_page_config(page_title="UPD explorer", page_icon=tab_icon(), layout="wide",
                   menu_items={"About": "UPD explorer: unsupervised pathology detection, compared and explained. "
                                        "Research and teaching software, not a medical device."})

page = st.navigation(app_pages())
st.sidebar.caption("Research and teaching software — **not a medical device**.")
if missing := missing_settings():
    st.sidebar.warning("This server was started without some of the app's safety settings: "
                       + ", ".join(f"`{m}`" for m in missing) + ". Start it with `make run` (or see the README).")
run_page(page)
