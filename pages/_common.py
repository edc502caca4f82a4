"""What every page shares: the page list and preamble, cached model loading, the image picker and
the layout of cells. UI only: every computation is a call into upd_core.app.
"""
from __future__ import annotations

import hashlib
import html
import runpy
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import streamlit as st

import upd_core
from upd_core.app import analysis, demo_set, folders, formatting, selection, uploads, views
from upd_core.app.analysis import MethodResult, OODReport
from upd_core.app.cells import Cell, Legend, ResultGrid
from upd_core.checkpoint import checkpoints_root
from upd_core.errors import CheckpointError, DataError, ImageError

views.configure_threads()  # 1 torch thread unless UPD_APP_THREADS says otherwise (see upd_core.app.views)
APP = Path(__file__).resolve().parent.parent / "app.py"  # the entry point
SIZE = 128  # images are loaded at the shipped checkpoints' size; predict() resizes for others

# (file in pages/, title, icon, URL path, what the page shows): the navigation and Home's overview.
PAGES = (
    ("home.py", "Home", ":material/home:", "home", ""),
    ("compare.py", "Compare", ":material/compare:", "compare",
     "one image, many methods side by side: reconstruction, prior, warped prior, deformation, residual, heatmap, "
     "score and percentile"),
    ("upload.py", "Upload", ":material/upload_file:", "upload",
     "your own PNG/JPEG/TIFF/BMP/DICOM/NIfTI image: heatmaps, scores, an out-of-distribution check, PNG and JSON "
     "downloads"),
    ("tails.py", "Tails", ":material/area_chart:", "tails",
     "score distributions of normal vs abnormal images, ROC/PR curves, best, average and worst cases "
     "(MorphAEus Fig. 6b)"),
    ("myth.py", "Myth", ":material/science:", "myth",
     "what auto-encoders really learn: reconstructions of other domains and the curse of resolution "
     "(MorphAEus Table 1, Fig. 5)"),
    ("lesion_lab.py", "Lesion lab", ":material/target:", "lesion_lab",
     "add a synthetic lesion and watch every map; Dice over lesion size × intensity (UPD study Fig. 2)"),
    ("benchmarks.py", "Benchmarks", ":material/table_chart:", "benchmarks",
     "the evaluation of every shipped checkpoint, intensity floors first, papers' numbers beside them"),
)


def app_pages() -> list[Any]:
    """The pages for st.navigation, Home first (the default page, served at '/')."""
    return [st.Page(f"pages/{file}", title=title, icon=icon, url_path=url, default=url == "home")
            for file, title, icon, url, _ in PAGES]


# ---------------------------------------------------------------- the frame around every page

_FRAME = threading.local()  # set while app.py runs a page (each script run has its own thread)


def run_page(page: Any) -> None:
    """Run the page st.navigation chose, marked as started by app.py."""
    _FRAME.active = True
    try:
        page.run()
    finally:
        _FRAME.active = False


def _enter_app() -> None:
    """Make sure this page runs inside app.py.

    A folder named pages/ next to app.py is also Streamlit's legacy multipage folder: until some
    session has called st.navigation, Streamlit runs a pages/ file on its own when its URL is
    opened (a direct link right after the server started, or every run under streamlit.testing).
    Then this runs the entry point instead, in the same script run (widget events included):
    app.py calls st.navigation, which switches the server to it for good (as Streamlit documents),
    and runs this URL's page inside its frame; this stand-alone run of the page ends there.
    """
    if getattr(_FRAME, "active", False):
        return
    runpy.run_path(str(APP), run_name="__main__")
    st.stop()


def page_start(title: str, intro: str, need_checkpoints: bool = True) -> list[views.CheckpointView]:
    """The top of every page: title and introduction; returns the available checkpoints and, when
    the page needs some and there are none, says how to get them and stops the page."""
    _enter_app()
    st.title(title)
    st.markdown(intro)
    found = checkpoint_views()
    if need_checkpoints and not found:
        no_checkpoints_message()
        st.stop()
    return found


# ---------------------------------------------------------------- cached loading

def _root_key() -> str:
    """Cache key of the checkpoint folder (its manifest's path and modification time)."""
    root = checkpoints_root()
    m = root / "manifest.json"
    return f"{root}:{m.stat().st_mtime_ns if m.exists() else 0}"


@st.cache_data(show_spinner=False, max_entries=8)
def _views(root_key: str) -> list[views.CheckpointView]:
    return views.checkpoint_views()


def checkpoint_views() -> list[views.CheckpointView]:
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
def demo_items() -> list[demo_set.DemoItem]:
    return demo_set.demo_items()


@st.cache_data(show_spinner=False, max_entries=256)
def demo_image(demo_id: str, size: int = SIZE) -> np.ndarray:
    return demo_set.demo_image(demo_id, size)


@st.cache_data(show_spinner=False, max_entries=16)
def folder_files(root: str) -> list[str]:
    return folders.list_folder_images(folders.safe_folder(root))


@st.cache_data(show_spinner=False, max_entries=512)
def folder_image(root: str, rel: str, size: int = SIZE) -> np.ndarray:
    return folders.read_folder_image(folders.safe_folder(root), rel, size)


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@st.cache_data(show_spinner=False, max_entries=16)
def upload_image(data: bytes, size: int = SIZE) -> np.ndarray:
    """An uploaded image at model size, decoded once per content under the apps' size cap."""
    return uploads.load_upload(data, size)


# ---------------------------------------------------------------- inputs

def no_checkpoints_message() -> None:
    st.warning("No trained checkpoints were found in "
               f"`{checkpoints_root()}`. Train one with `python -m upd_core train ...` "
               "(see the README) or set UPD_CHECKPOINTS to a folder of checkpoints.")


def _select(key: str, ids: list[str]) -> None:
    """Button callback: set a multiselect's value (runs before the next script run)."""
    st.session_state[key] = list(ids)


def pick_checkpoints(key: str, found: list[views.CheckpointView], default: list[str] | None = None,
                     label: str = "Methods (checkpoints)", help: str | None = None, page: str | None = None) -> list[str]:
    """Multiselect of checkpoint ids, best measured AUROC first, labelled with method titles and their
    AUROC ('⚠ not converged' where training did not converge), with 'All', 'Best N' and 'Defaults'
    shortcuts, and a caption naming the chosen checkpoints that did not converge. The default
    selection is the page's (`upd_core.app.selection.PAGE_DEFAULTS[page]`) unless `default` is given."""
    by_id = {v.id: v for v in found}
    ids = list(by_id)
    if default is None:
        default = selection.page_default(found, page) if page else ids
    dflt = [i for i in default if i in by_id]
    if key not in st.session_state:  # first visit: the default selection
        st.session_state[key] = dflt
    elif any(i not in by_id for i in st.session_state[key]):  # checkpoints that went away
        st.session_state[key] = [i for i in st.session_state[key] if i in by_id]
    titles = [v.title for v in found]

    def fmt(i: str) -> str:
        v = by_id[i]
        auc = "" if v.auroc is None else f" · AUROC {v.auroc:.3f}"
        return (v.title if titles.count(v.title) == 1 else f"{v.title} ({v.id})") + auc + v.flag

    chosen = st.multiselect(label, ids, key=key, format_func=fmt,
                            help=(help or "Each checkpoint is one trained method; its id is on the Home page.")
                            + " Listed best first by the AUROC measured on its evaluation split (Benchmarks): "
                              "an order for browsing, not a model selection (that would use the test labels). "
                              "⚠ not converged: its training was stopped by a time budget or an epoch cap "
                              "before the paper's stopping rule ended it (Home lists how each one stopped).")
    a, b, c, d = st.columns([2, 1, 2, 2], vertical_alignment="bottom")
    n = int(b.number_input("N", 1, max(1, len(ids)), min(selection.BEST_N, max(1, len(ids))), key=f"{key}_n",
                           label_visibility="collapsed", help="How many checkpoints 'Best N' selects."))
    a.button(f"Best {n}", key=f"{key}_best", on_click=_select, args=(key, selection.best(found, n)), width="stretch",
             help="The N highest AUROCs, one scoring per set of weights.")
    c.button("All", key=f"{key}_all", on_click=_select, args=(key, selection.select_all(found)), width="stretch",
             help="Select every checkpoint and scoring (slow on a CPU).")
    d.button("Defaults", key=f"{key}_defaults", on_click=_select, args=(key, dflt), width="stretch",
             help="The best few of each method family" + (" (and MorphAEus)" if page == "compare" else "") + ".")
    note = views.convergence_note([by_id[i] for i in chosen if i in by_id])
    if note:
        st.caption(note)
    return chosen


def folder_input(key: str, help_extra: str = "") -> str | None:
    """A text box for a data folder (default: the data root's Kermany folder); None if unusable."""
    dflt = folders.default_dataset_folder()
    roots = ", ".join(f"`{r}`" for r in folders.allowed_roots())
    text = st.text_input("Dataset folder", value=str(dflt) if dflt else "", key=key,
                         help=f"Only folders under {roots} can be read (set UPD_DATA_ROOT or "
                              f"UPD_ALLOWED_DIRS to allow others). {help_extra}")
    if not text:
        st.info(f"No dataset folder found under {roots}. Point UPD_DATA_ROOT at your data, "
                "or use the embedded demo images.")
        return None
    try:
        return str(folders.safe_folder(text))
    except DataError as exc:
        st.warning(str(exc))
        return None


def image_picker(key: str, sources: tuple[str, ...] = ("Demo set", "Dataset folder", "Upload"),
                 prefer_domains: tuple[str, ...] = ()) -> tuple[np.ndarray | None, str]:
    """Choose one image from the embedded demo set, an allowed dataset folder, or an upload.

    The first usable source in `sources` is preselected (a folder only when the data root exists);
    demo images of `prefer_domains` are listed first.
    """
    usable = {"Demo set": bool(demo_items()), "Dataset folder": folders.default_dataset_folder() is not None,
              "Upload": True}
    first = next((i for i, s in enumerate(sources) if usable.get(s, True)), 0)
    src = st.radio("Image source", sources, horizontal=True, key=f"{key}_src", index=first)
    if src == "Demo set":
        items = demo_items()
        if not items:
            st.info("The embedded demo set is not available in this installation.")
            return None, ""
        by_id = {it.id: it for it in demo_set.picker_order(items, prefer_domains)}
        did = st.selectbox("Demo image", list(by_id), key=f"{key}_demo", format_func=lambda i: by_id[i].label)
        st.caption(f"Provenance: {by_id[did].provenance or 'package data'}")
        if demo_set.chest_note(items):  # no synthetic (DRR) chest radiograph: say why
            st.caption(demo_set.chest_note(items))
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
        groups = folders.folder_groups(files)
        c1, c2 = st.columns([2, 1])
        names = list(groups)
        group = c1.selectbox("Sub-folder", names, index=folders.default_group(names), key=f"{key}_group",
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
        return upload_image(up.getvalue()), f"upload:{up.name}"
    except ImageError as exc:
        st.error(str(exc))
        return None, ""


# ---------------------------------------------------------------- laying out results

def blank_cell(reason: str) -> None:
    st.markdown(f"<div style='min-height:4rem;color:#888;font-size:0.8rem;border:1px dashed #ccc;"
                f"border-radius:6px;padding:0.4rem'>— {reason}</div>", unsafe_allow_html=True)


def legend_bar(lg: Legend) -> None:
    """A map picture's colour bar: its colours, the values at both ends and the unit."""
    esc = html.escape
    st.markdown(
        f"<div title='{esc(lg.note)}' style='margin-top:-0.5rem;margin-bottom:0.4rem'>"
        f"<div style='height:8px;border-radius:2px;background:linear-gradient(to right, {', '.join(lg.colors)})'></div>"
        f"<div style='display:flex;justify-content:space-between;font-size:0.7rem;color:#555;line-height:1.2'>"
        f"<span>{esc(lg.low)}</span><span>{esc(lg.high)}</span></div>"
        f"<div style='font-size:0.7rem;color:#555;line-height:1.2'>{esc(lg.unit)}</div></div>",
        unsafe_allow_html=True)


def show_cell(cell: Cell) -> None:
    """A cell's picture with its caption and colour bar, or its reason in a dashed box. Hovering a
    picture shows Streamlit's fullscreen button (click to enlarge)."""
    if cell.image is None:
        blank_cell(cell.reason)
    else:
        st.image(cell.image, caption=cell.caption or None, width="stretch")
        if cell.legend is not None:
            legend_bar(cell.legend)


def show_table(rows: Any, key: str | None = None, height: int | None = None, **column_config: Any) -> None:
    """A table with numbers to 3 decimals and '–' for missing values (sorting stays numeric)."""
    import pandas as pd

    df = (rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))).convert_dtypes()
    kwargs: dict[str, Any] = {"height": height} if height else {}
    st.dataframe(df.style.format(formatting.table_value, na_rep=formatting.MISSING), hide_index=True,
                 width="stretch", key=key, column_config=column_config or None, placeholder=formatting.MISSING,
                 **kwargs)


def download_png(cell: Cell, key: str, help: str | None = None) -> None:
    """The download button of a cell's picture, under the cell's file name."""
    st.download_button("PNG", cell.png(), file_name=cell.download, mime="image/png", key=key, icon="⬇️", help=help)


def score_block(res: MethodResult) -> None:
    """Score (3 significant digits; its unit on the tooltip and below), percentile and timing of one result."""
    if res.error:
        st.error(res.error)
        return
    st.metric("Score", formatting.sig3(res.score), help=f"**{res.units.score}.** {res.units.help}")
    st.caption(res.units.score)
    st.caption(analysis.percentile_text(res.percentile))
    if res.percentile is not None:
        st.progress(min(1.0, max(0.0, res.percentile / 100)))
    st.caption(f"{res.seconds * 1000:.0f} ms")


def ood_banner(report: OODReport) -> None:
    heading = analysis.ood_heading(report.level).replace("⚠️ ", "")
    if report.level == "far":
        st.error(f"⚠️ **{heading}** " + report.message)
    elif report.level == "unusual":
        st.warning(f"**{heading}** " + report.message)
    elif report.level == "unknown":
        st.info(report.message)
    else:
        st.success(report.message)


def method_heading(res: MethodResult) -> None:
    st.markdown(f"##### {res.title} <span style='color:#888;font-size:0.8rem'>`{res.checkpoint}`</span>",
                unsafe_allow_html=True)


def downloads(row: Any, key: str, full_size: Callable[[MethodResult], Callable[[], bytes]] | None = None) -> None:
    """A row's download buttons: the heatmap as shown (PNG) and, with `full_size`, at the input's
    own size with its colour bar (computed only when clicked)."""
    r = row.result
    for cell in row.cells:
        if cell.download:
            download_png(cell, f"{key}_dl_{r.checkpoint}", help="The heatmap overlay as shown (model size)")
            if full_size is not None:
                st.download_button("Full size", full_size(r), file_name=cell.download.replace(".png", "_full_size.png"),
                                   mime="image/png", key=f"{key}_dlfull_{r.checkpoint}", icon="⬇️", on_click="ignore",
                                   help="The heatmap at the uploaded image's own size, with its colour bar and unit")


def show_grid(grid: ResultGrid, key: str, show_input: bool = True, download_column: bool = False,
              widths: list[int] | None = None, large: bool = False,
              full_size: Callable[[MethodResult], Callable[[], bytes]] | None = None) -> None:
    """One row per method: (the input,) one column per output cell, the score (, the downloads).
    `large`: the pictures of each method three to a line, much larger."""
    if large:
        return _show_grid_large(grid, key, show_input, download_column, full_size)
    headers = ["Input"] * show_input + grid.headers + ["Score"] + [""] * download_column
    spec = widths or len(headers)
    for c, h in zip(st.columns(spec), headers):
        c.markdown(f"**{h}**")
    for row in grid.rows:
        r = row.result
        method_heading(r)
        cols = st.columns(spec)
        if show_input:
            with cols[0]:
                show_cell(grid.input)
        first = int(show_input)
        if r.error:
            cols[first].error(r.error)
            continue
        for col, cell in zip(cols[first:], row.cells):
            with col:
                show_cell(cell)
        with cols[first + len(row.cells)]:
            score_block(r)
        if download_column:
            with cols[-1]:
                downloads(row, key, full_size)


def _show_grid_large(grid: ResultGrid, key: str, show_input: bool, download_column: bool,
                     full_size: Callable[[MethodResult], Callable[[], bytes]] | None, per_line: int = 3) -> None:
    """`show_grid` with large pictures: each method's cells three to a line, titled, then its score."""
    for row in grid.rows:
        r = row.result
        method_heading(r)
        if r.error:
            st.error(r.error)
            continue
        named = ([("Input", grid.input)] if show_input else []) + list(zip(grid.headers, row.cells))
        for start in range(0, len(named), per_line):
            for col, (title, cell) in zip(st.columns(per_line), named[start:start + per_line]):
                with col:
                    st.markdown(f"**{title}**")
                    show_cell(cell)
        a, b = st.columns([1, 2])
        with a:
            score_block(r)
        if download_column:
            with b:
                downloads(row, key, full_size)
        st.divider()
