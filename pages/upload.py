"""Upload: your own image (PNG/JPEG/TIFF/BMP/DICOM/NIfTI) -> heatmaps, scores, percentiles, OOD check."""
from __future__ import annotations

import streamlit as st

from pages._common import SIZE, detector, ood_banner, page_start, pick_checkpoints, show_cell, show_grid
from upd_core.app import analysis, cells, demo_set, exports, uploads
from upd_core.errors import ImageError

found = page_start(
    "Upload an image",
    "Upload a chest X-ray (or any image) to see where each method finds it abnormal. Files are processed "
    "in memory and never stored. **Not a medical device:** the scores are research outputs, not a "
    "diagnosis.")

up = st.file_uploader("Image file: PNG, JPEG, TIFF, BMP, DICOM (.dcm) or NIfTI (.nii, .nii.gz)", key="upload_file",
                      help="The format is recognised from the file's content, so files without an extension work.")
example = demo_set.example_upload() if up is None else None
if up is None and example is None:
    st.info("Drop a file above. No file at hand? The Compare page has embedded demo images."
            + (f" {demo_set.chest_note()}" if demo_set.chest_note() else ""))
    st.stop()
if up is None:  # open on the synthetic (DRR) chest radiograph until a file is dropped
    name, data = example
    st.info(f"No file yet, so this shows an example: **{name}**, a chest radiograph computed from a CT "
            "(synthetic, not a real X-ray). Drop a file above to analyse your own.")
else:
    name, data = up.name, up.getvalue()


def decoded(data: bytes, window: tuple[float, float] | None = None) -> uploads.DecodedUpload:
    """The upload decoded once per content (sha256) and window: its description and its slices at
    model size, kept in this session (the default one and the latest window), so reruns and slider
    moves decode nothing."""
    file_id = getattr(up, "file_id", None) or name
    memo = st.session_state.get("upload_digest")
    if memo is None or memo[0] != file_id or memo[1] != len(data):
        memo = st.session_state["upload_digest"] = (file_id, len(data), uploads.digest(data))
    key = (memo[2], window)
    kept = st.session_state.setdefault("upload_decoded", {})
    if key not in kept:
        with st.spinner("Reading the file…"):
            dec = uploads.decode_upload(data, SIZE, window=window, sha256=memo[2])
        for old in list(kept):
            if old[0] != key[0] or old[1] is not None:
                del kept[old]  # other files' decodes and other windows; this file's default one stays
        kept[key] = dec
    return kept[key]


try:
    upload = decoded(data)
except ImageError as exc:
    st.error(f"**{name}:** {exc}")
    st.stop()
info = upload.info

c_img, c_opts = st.columns([1, 2])
slice_index = None
window = None
with c_opts:
    fmt = info.get("format", "image")
    desc = f"{fmt}, {info.get('plane_shape', info.get('shape'))} pixels"
    if info.get("modality"):
        desc += f", modality {info['modality']}"
    st.markdown(f"**{name}** — {desc}")
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
    chosen = pick_checkpoints("upload_ckpts", found, page="upload",
                              help="By default the best two of each method family (by measured AUROC).")
    large = st.toggle("Large pictures", value=False, key="upload_large",
                      help="Each method's pictures three to a line instead of all in one row.")

try:
    image = (upload if window is None else decoded(data, window)).image(data, slice_index)
except ImageError as exc:
    st.error(f"**{name}:** {exc}")
    st.stop()
with c_img:
    show_cell(cells.picture(image, f"Input ({SIZE} × {SIZE}, as the models see it)"))

if not chosen:
    st.info("Choose at least one method.")
    st.stop()

@st.cache_resource(show_spinner="Running the methods on the example…", max_entries=8)
def _example_results(digest: str, chosen: tuple[str, ...], _image):
    """The example (no upload yet) is the same for every visitor: its results are computed once per
    server and selection, not once per session."""
    results = analysis.run_checkpoints(_image, list(chosen), detector)
    return results, cells.result_grid(_image, results, cells.UPLOAD_COLUMNS)


key = (upload.digest, slice_index, window, tuple(chosen))
cache = st.session_state.setdefault("upload_results", {})
if key not in cache and up is None:
    cache.clear()
    cache[key] = _example_results(upload.digest, tuple(chosen), image)
elif key not in cache:
    bar = st.progress(0.0, text="Running methods…")
    results = analysis.run_checkpoints(image, chosen, detector,
                                       progress=lambda i, n, cid: bar.progress(i / max(n, 1), text=f"Running {cid}…"))
    bar.empty()
    cache.clear()  # keep only the latest analysis in the session
    cache[key] = (results, cells.result_grid(image, results, cells.UPLOAD_COLUMNS))
results, grid = cache[key]

report = analysis.ood_check(results, analysis.domain_probability(image))
ood_banner(report)


def _full_size(res, data=data, slice_index=slice_index, window=window):
    """The deferred full-size heatmap PNG of one result (decoded and drawn only when clicked)."""
    return lambda: exports.full_size_png(exports.native_image(data, slice_index, window), res)


def _zip(report_json: str, data=data, slice_index=slice_index, window=window, image=image, results=results,
         name=name):
    """The deferred ZIP of all results."""
    return lambda: exports.results_zip(exports.native_image(data, slice_index, window), image, results, report_json,
                                       name)


show_grid(grid, key="upload", show_input=False, download_column=True, widths=[3, 3, 3, 2, 2], large=large,
          full_size=_full_size)

report_json = analysis.results_json(results, name, report)
a, b = st.columns(2)
a.download_button("Download all results (JSON)", report_json,
                  file_name="upd_results.json", mime="application/json", key="upload_json", icon="⬇️")
b.download_button("Download all results (ZIP)", _zip(report_json),
                  file_name=f"upd_results_{exports.safe_name(name)}.zip", mime="application/zip", key="upload_zip",
                  icon="⬇️", on_click="ignore",
                  help="Every heatmap at the image's own size with its colour bar, the maps as .npy, the "
                       "reconstructions and the JSON report, with a README.")
st.caption("Percentiles compare the score with the method's scores of normal validation images from its "
           "training data set. Heatmaps are scaled per method: their units differ, and each colour bar gives "
           "its unit. Hover a picture and use its fullscreen button to enlarge it.")
