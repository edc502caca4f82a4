"""UI pieces shared by the pages: cached model loading, the image picker, result cells.

UI only: every computation is a call into upd_core (mostly upd_core.app_support).
"""
from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

import upd_core
from upd_core import app_support as sup
from upd_core.checkpoint import checkpoints_root
from upd_core.errors import CheckpointError, DataError, ImageError
from upd_core.visualize import colorize, overlay

# Streamlit runs the files of a `pages/` folder directly ("multipage v1") when a page URL is opened
# before app.py has ever run in this server process; app.py's st.navigation then switches the
# process to navigation mode. Do that switch here too and rerun, so a direct link to any page gets
# the app's navigation, layout and sidebar.
try:
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
except ImportError:  # a Streamlit without this internal: nothing to fix
    pass

sup.configure_threads()  # 1 torch thread unless UPD_APP_THREADS says otherwise (see app_support)
SIZE = 128  # images are loaded at the shipped checkpoints' size; predict() resizes for others


def _root_key() -> str:
    """Cache key of the checkpoint folder (its manifest's path and modification time)."""
    root = checkpoints_root()
    m = root / "manifest.json"
    return f"{root}:{m.stat().st_mtime_ns if m.exists() else 0}"


@st.cache_data(show_spinner=False, max_entries=8)
def _views(root_key: str) -> list[sup.CheckpointView]:
    return sup.checkpoint_views()


def checkpoint_views() -> list[sup.CheckpointView]:
    """Available checkpoints (re-read when the manifest changes)."""
    try:
        return _views(_root_key())
    except CheckpointError as exc:
        st.error(str(exc))
        return []


@st.cache_resource(show_spinner="Loading model…", max_entries=48)
def _detector(checkpoint_id: str, root_key: str):
    return upd_core.load_detector(checkpoint_id)


def detector(checkpoint_id: str):
    """A loaded detector, cached for the whole server (loaded lazily on first use)."""
    return _detector(checkpoint_id, _root_key())


@st.cache_data(show_spinner=False, max_entries=64)
def demo_items() -> list[sup.DemoItem]:
    return sup.demo_items()


@st.cache_data(show_spinner=False, max_entries=256)
def demo_image(demo_id: str, size: int = SIZE) -> np.ndarray:
    return sup.demo_image(demo_id, size)


@st.cache_data(show_spinner=False, max_entries=16)
def folder_files(root: str) -> list[str]:
    return sup.list_folder_images(sup.safe_folder(root))


@st.cache_data(show_spinner=False, max_entries=512)
def folder_image(root: str, rel: str, size: int = SIZE) -> np.ndarray:
    return sup.read_folder_image(sup.safe_folder(root), rel, size)


def page_header(title: str, intro: str) -> None:
    st.title(title)
    st.markdown(intro)


def no_checkpoints_message() -> None:
    st.warning("No trained checkpoints were found in "
               f"`{checkpoints_root()}`. Train one with `python -m upd_core train ...` "
               "(see the README) or set UPD_CHECKPOINTS to a folder of checkpoints.")


def pick_checkpoints(key: str, views: list[sup.CheckpointView], default: list[str] | None = None,
                     label: str = "Methods (checkpoints)", help: str | None = None) -> list[str]:
    """Multiselect of checkpoint ids, labelled with method titles."""
    by_id = {v.id: v for v in views}
    ids = list(by_id)
    dflt = [i for i in (default if default is not None else ids) if i in by_id]
    titles = [v.title for v in views]
    fmt = {v.id: v.title if titles.count(v.title) == 1 else v.label for v in views}
    return st.multiselect(label, ids, default=dflt, key=key, format_func=fmt.__getitem__,
                          help=help or "Each checkpoint is one trained method; its id is on the Home page.")


def default_checkpoints(views: list[sup.CheckpointView], n: int = 6) -> list[str]:
    return sup.default_selection(views, n)


def folder_input(key: str, help_extra: str = "") -> str | None:
    """A text box for a data folder (default: the data root's Kermany folder); None if unusable."""
    dflt = sup.default_dataset_folder()
    roots = ", ".join(f"`{r}`" for r in sup.allowed_roots())
    text = st.text_input("Dataset folder", value=str(dflt) if dflt else "", key=key,
                         help=f"Only folders under {roots} can be read (set UPD_DATA_ROOT or "
                              f"UPD_ALLOWED_DIRS to allow others). {help_extra}")
    if not text:
        st.info(f"No dataset folder found under {roots}. Point UPD_DATA_ROOT at your data, "
                "or use the embedded demo images.")
        return None
    try:
        return str(sup.safe_folder(text))
    except DataError as exc:
        st.warning(str(exc))
        return None


def image_picker(key: str, sources: tuple[str, ...] = ("Demo set", "Dataset folder", "Upload"),
                 prefer_domains: tuple[str, ...] = ()) -> tuple[np.ndarray | None, str]:
    """Choose one image from the embedded demo set, an allowed dataset folder, or an upload.

    The first usable source in `sources` is preselected (a folder only when the data root exists);
    demo images of `prefer_domains` are listed first.
    """
    usable = {"Demo set": bool(demo_items()), "Dataset folder": sup.default_dataset_folder() is not None,
              "Upload": True}
    first = next((i for i, s in enumerate(sources) if usable.get(s, True)), 0)
    src = st.radio("Image source", sources, horizontal=True, key=f"{key}_src", index=first)
    if src == "Demo set":
        items = demo_items()
        if not items:
            st.info("The embedded demo set is not available in this installation.")
            return None, ""
        items = sorted(items, key=lambda it: (not sup.is_chest(it), it.domain not in prefer_domains))
        by_id = {it.id: it for it in items}
        did = st.selectbox("Demo image", list(by_id), key=f"{key}_demo",
                           format_func=lambda i: f"{by_id[i].title} — {by_id[i].domain}" if by_id[i].domain
                           else by_id[i].title)
        st.caption(f"Provenance: {by_id[did].provenance or 'package data'}")
        try:
            return demo_image(did), f"demo:{did}"
        except (ImageError, OSError, ValueError) as exc:
            st.error(f"This demo image cannot be loaded: {exc}")
            return None, ""
    if src == "Dataset folder":
        root = folder_input(f"{key}_folder")
        if not root:
            return None, ""
        try:
            files = folder_files(root)
        except DataError as exc:
            st.warning(str(exc))
            return None, ""
        if not files:
            st.warning("No image files in that folder.")
            return None, ""
        groups = sup.folder_groups(files)
        c1, c2 = st.columns([2, 1])
        names = list(groups)
        dflt = next((i for i, g in enumerate(names) if g.lower().endswith("test/normal")), 0)
        group = c1.selectbox("Sub-folder", names, index=dflt, key=f"{key}_group",
                             format_func=lambda g: f"{g} ({len(groups[g])} images)")
        idx = c2.number_input("Image number", 0, len(groups[group]) - 1, 0, key=f"{key}_idx")
        rel = groups[group][int(idx)]
        st.caption(f"`{rel}`")
        try:
            return folder_image(root, rel), f"folder:{rel}"
        except (ImageError, DataError) as exc:
            st.error(str(exc))
            return None, ""
    up = st.file_uploader("Image file (PNG, JPEG, TIFF, BMP, DICOM, NIfTI)", key=f"{key}_upload")
    if up is None:
        return None, ""
    try:
        return upd_core.load_image(up.getvalue(), size=SIZE), f"upload:{up.name}"
    except ImageError as exc:
        st.error(str(exc))
        return None, ""


def show_image(img: np.ndarray | None, caption: str | None = None) -> None:
    if img is not None:
        st.image(np.clip(img, 0, 1) if img.dtype != np.uint8 else img, caption=caption, width="stretch")


def blank_cell(reason: str) -> None:
    st.markdown(f"<div style='min-height:4rem;color:#888;font-size:0.8rem;border:1px dashed #ccc;"
                f"border-radius:6px;padding:0.4rem'>— {reason}</div>", unsafe_allow_html=True)


def heat(img: np.ndarray, amap: np.ndarray) -> np.ndarray:
    return overlay(img, amap)


def colour(amap: np.ndarray, vmax: float | None = None) -> np.ndarray:
    return colorize(amap, "inferno", vmax=vmax)


def percentile_text(p: float | None) -> str:
    if p is None:
        return "no normal validation scores stored"
    return f"higher than {p:.1f} % of normal validation images"


def score_block(res: sup.MethodResult) -> None:
    """Score, percentile and timing of one result."""
    if res.error:
        st.error(res.error)
        return
    st.metric("Score", f"{res.score:.3g}", help="The method's image score (higher = more abnormal).")
    st.caption(percentile_text(res.percentile))
    if res.percentile is not None:
        st.progress(min(1.0, max(0.0, res.percentile / 100)))
    st.caption(f"{res.seconds * 1000:.0f} ms")


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def ood_banner(report: sup.OODReport) -> None:
    if report.level == "far":
        st.error("⚠️ **Out of distribution.** " + report.message)
    elif report.level == "unusual":
        st.warning("**Unusual image.** " + report.message)
    else:
        st.success(report.message)


def result_grid(image: np.ndarray, results: list[sup.MethodResult], shared_residual_scale: bool = True,
                key: str = "grid", downloads: bool = False) -> None:
    """One row per method: input, reconstruction, prior, warped prior, deformation, residual, overlay, score."""
    headers = ["Input", "Reconstruction", "Global prior", "Warped prior", "Deformation", "Residual |x − x̂|",
               "Heatmap", "Score"]
    vmax = None
    if shared_residual_scale:
        res_maps = [r.residual for r in results if r.residual is not None]
        if res_maps:
            vmax = float(np.percentile(np.concatenate([m.ravel() for m in res_maps]), 99.5)) or None
    cols = st.columns(len(headers))
    for c, h in zip(cols, headers):
        c.markdown(f"**{h}**")
    for r in results:
        st.markdown(f"##### {r.title} <span style='color:#888;font-size:0.8rem'>`{r.checkpoint}`</span>",
                    unsafe_allow_html=True)
        cols = st.columns(len(headers))
        with cols[0]:
            show_image(image)
        if r.error:
            with cols[1]:
                st.error(r.error)
            continue
        for col, name in zip(cols[1:4], ("reconstruction", "prior", "warped")):
            with col:
                v = getattr(r, name)
                show_image(v) if v is not None else blank_cell(sup.missing_reason(r.method, name))
        with cols[4]:
            if r.deformation is not None:
                show_image(sup.deformation_grid(r.deformation, image=image))
                st.caption(sup.deformation_stats(r.deformation))
            else:
                blank_cell(sup.missing_reason(r.method, "deformation"))
        with cols[5]:
            if r.residual is not None:
                show_image(colour(r.residual, vmax))
            else:
                blank_cell(sup.missing_reason(r.method, "residual"))
        with cols[6]:
            show_image(heat(image, r.anomaly_map))
            if downloads:
                st.download_button("PNG", sup.heatmap_png(image, r.anomaly_map), file_name=f"heatmap_{r.checkpoint}.png",
                                   mime="image/png", key=f"{key}_dl_{r.checkpoint}", icon="⬇️")
        with cols[7]:
            score_block(r)
    if shared_residual_scale and vmax:
        st.caption(f"Residual maps share one colour scale (0 … {vmax:.3f}); heatmaps are scaled per method, "
                   "because methods' maps have different units.")
