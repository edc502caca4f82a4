"""Upload: your own image (PNG/JPEG/TIFF/BMP/DICOM/NIfTI) -> heatmaps, scores, percentiles, OOD check."""
from __future__ import annotations

import streamlit as st

import upd_core
from pages._common import SIZE, content_hash, detector, ood_banner, page_start, pick_checkpoints, show_cell, show_grid
from upd_core.app import analysis, cells, views
from upd_core.errors import ImageError
from upd_core.imaging import image_info

found = page_start(
    "Upload an image",
    "Upload a chest X-ray (or any image) to see where each method finds it abnormal. Files are processed "
    "in memory and never stored. **Not a medical device:** the scores are research outputs, not a "
    "diagnosis.")

up = st.file_uploader("Image file: PNG, JPEG, TIFF, BMP, DICOM (.dcm) or NIfTI (.nii, .nii.gz)", key="upload_file",
                      help="The format is recognised from the file's content, so files without an extension work.")
if up is None:
    st.info("Drop a file above. No file at hand? The Compare page has embedded demo images.")
    st.stop()

data = up.getvalue()
try:
    info = image_info(data)
except ImageError as exc:
    st.error(f"**{up.name}:** {exc}")
    st.stop()

c_img, c_opts = st.columns([1, 2])
slice_index = None
window = None
with c_opts:
    fmt = info.get("format", "image")
    desc = f"{fmt}, {info.get('plane_shape', info.get('shape'))} pixels"
    if info.get("modality"):
        desc += f", modality {info['modality']}"
    st.markdown(f"**{up.name}** — {desc}")
    n = int(info.get("n_slices", 1) or 1)
    if n > 1:
        slice_index = st.slider("Slice", 0, n - 1, int(info.get("slice_index", n // 2)), key="upload_slice",
                                help="Axial slices from inferior to superior (NIfTI) or frames (DICOM/TIFF).")
    if fmt == "DICOM":
        file_win = info.get("window")
        manual = st.checkbox("Set window / level manually", key="upload_winman",
                             help=f"The file's own window: {file_win}" if file_win else
                             "The file has no window; by default intensities are stretched between "
                             "their 0.5th and 99.5th percentiles.")
        if manual:
            wc, ww = st.columns(2)
            centre = wc.number_input("Window centre (level)", value=float(file_win[0]) if file_win else 40.0,
                                     key="upload_wc")
            width = ww.number_input("Window width", value=float(file_win[1]) if file_win else 400.0, min_value=1.0,
                                    key="upload_ww")
            window = (centre, width)
    chosen = pick_checkpoints("upload_ckpts", found, default=views.default_selection(found, 99),
                              help="All single-pass methods are selected by default; gradient-based maps "
                                   "(e.g. CRADL) take longer.")

try:
    image = upd_core.load_image(data, size=SIZE, slice_index=slice_index, window=window)
except ImageError as exc:
    st.error(f"**{up.name}:** {exc}")
    st.stop()
with c_img:
    show_cell(cells.picture(image, f"Input ({SIZE} × {SIZE}, as the models see it)"))

if not chosen:
    st.info("Choose at least one method.")
    st.stop()

key = (content_hash(data), slice_index, window, tuple(chosen))
cache = st.session_state.setdefault("upload_results", {})
if key not in cache:
    bar = st.progress(0.0, text="Running methods…")
    results = analysis.run_checkpoints(image, chosen, detector,
                                       progress=lambda i, n, cid: bar.progress(i / max(n, 1), text=f"Running {cid}…"))
    bar.empty()
    cache.clear()  # keep only the latest analysis in the session
    cache[key] = (results, cells.result_grid(image, results, cells.UPLOAD_COLUMNS))
results, grid = cache[key]

report = analysis.ood_check(results, analysis.domain_probability(image))
ood_banner(report)
show_grid(grid, key="upload", show_input=False, download_column=True, widths=[2, 2, 2, 2, 1])

st.download_button("Download all results (JSON)", analysis.results_json(results, up.name, report),
                   file_name="upd_results.json", mime="application/json", key="upload_json", icon="⬇️")
st.caption("Percentiles compare the score with the method's scores of normal validation images from its "
           "training data set. Heatmaps are scaled per method (their units differ).")
