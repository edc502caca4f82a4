"""Upload: your own image (PNG/JPEG/TIFF/BMP/DICOM/NIfTI) -> heatmaps, scores, percentiles, OOD check."""
from __future__ import annotations

import streamlit as st

import upd_core
from pages._common import (SIZE, blank_cell, checkpoint_views, colour, content_hash, default_checkpoints, detector, heat,
                           no_checkpoints_message, ood_banner, pick_checkpoints, score_block, show_image)
from upd_core import app_support as sup
from upd_core.errors import ImageError
from upd_core.imaging import image_info

st.title("Upload an image")
st.markdown("Upload a chest X-ray (or any image) to see where each method finds it abnormal. Files are processed "
            "in memory and never stored. **Not a medical device:** the scores are research outputs, not a "
            "diagnosis.")

views = checkpoint_views()
if not views:
    no_checkpoints_message()
    st.stop()

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
    default = default_checkpoints(views, 99)
    chosen = pick_checkpoints("upload_ckpts", views, default=default,
                              help="All single-pass methods are selected by default; gradient-based maps "
                                   "(e.g. CRADL) take longer.")

try:
    image = upd_core.load_image(data, size=SIZE, slice_index=slice_index, window=window)
except ImageError as exc:
    st.error(f"**{up.name}:** {exc}")
    st.stop()
with c_img:
    show_image(image, caption=f"Input ({SIZE} × {SIZE}, as the models see it)")

if not chosen:
    st.info("Choose at least one method.")
    st.stop()

key = (content_hash(data), slice_index, window, tuple(chosen))
cache = st.session_state.setdefault("upload_results", {})
if key not in cache:
    bar = st.progress(0.0, text="Running methods…")
    results = sup.run_checkpoints(image, chosen, detector,
                                  progress=lambda i, n, cid: bar.progress(i / max(n, 1), text=f"Running {cid}…"))
    bar.empty()
    cache.clear()  # keep only the latest analysis in the session
    cache[key] = results
results = cache[key]

report = sup.ood_check(results, sup.domain_probability(image))
ood_banner(report)

heads = ["Heatmap", "Anomaly map", "Reconstruction", "Score", ""]
cols = st.columns([2, 2, 2, 2, 1])
for c, h in zip(cols, heads):
    c.markdown(f"**{h}**")
for r in results:
    st.markdown(f"##### {r.title} <span style='color:#888;font-size:0.8rem'>`{r.checkpoint}`</span>",
                unsafe_allow_html=True)
    cols = st.columns([2, 2, 2, 2, 1])
    if r.error:
        cols[0].error(r.error)
        continue
    with cols[0]:
        show_image(heat(image, r.anomaly_map))
    with cols[1]:
        show_image(colour(r.anomaly_map))
    with cols[2]:
        show_image(r.reconstruction) if r.reconstruction is not None else blank_cell(
            sup.missing_reason(r.method, "reconstruction"))
    with cols[3]:
        score_block(r)
    with cols[4]:
        st.download_button("PNG", sup.heatmap_png(image, r.anomaly_map), file_name=f"heatmap_{r.checkpoint}.png",
                           mime="image/png", key=f"upload_dl_{r.checkpoint}", icon="⬇️",
                           help="Heatmap overlay as PNG")

st.download_button("Download all results (JSON)", sup.results_json(results, up.name, report),
                   file_name="upd_results.json", mime="application/json", key="upload_json", icon="⬇️")
st.caption("Percentiles compare the score with the method's scores of normal validation images from its "
           "training data set. Heatmaps are scaled per method (their units differ).")
