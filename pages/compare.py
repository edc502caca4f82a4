"""Compare: one image, many methods; a row per method with every output it has."""
from __future__ import annotations

import streamlit as st

from pages._common import detector, image_picker, ood_banner, page_start, pick_checkpoints, show_grid
from upd_core.app import analysis, cells, formatting

found = page_start(
    "Compare methods on one image",
    "Pick an image and any set of methods. Each row shows what that method sees: its reconstruction, "
    "MorphAEus' global prior, the prior warped onto the image and the deformation field (a warped grid, "
    "red = large displacement), the residual, the heatmap and the score with its percentile among the "
    "method's *normal* validation images. Empty cells say why a method has no such output.")

left, right = st.columns([1, 2])
with left:
    image, source = image_picker("compare", sources=("Dataset folder", "Demo set", "Upload"))
with right:
    chosen = pick_checkpoints("compare_ckpts", found, page="compare")
    a, b = st.columns(2)
    shared = a.toggle("Same colour scale for all residual maps", value=True, key="compare_shared",
                      help="Residuals are intensity differences, so one scale makes methods comparable: "
                           "a method that copies its input shows almost nothing.")
    large = b.toggle("Large pictures", value=False, key="compare_large",
                     help="Each method's pictures three to a line instead of all in one row.")

if image is None:
    st.info("Choose an image to start.")
    st.stop()
if not chosen:
    st.info("Choose at least one method.")
    st.stop()

bar = st.progress(0.0, text="Running methods…")
results = analysis.run_checkpoints(image, chosen, detector,
                                   progress=lambda i, n, cid: bar.progress(i / max(n, 1), text=f"Running {cid}…"))
bar.empty()
ood_banner(analysis.ood_check(results, analysis.domain_probability(image)))
grid = cells.result_grid(image, results, cells.COMPARE_COLUMNS, shared_residual_scale=shared)
show_grid(grid, key="compare", large=large)
if grid.residual_vmax:
    st.caption(f"Residual maps share one colour scale (0 … {formatting.sig3(grid.residual_vmax)}); heatmaps are "
               "scaled per method, because methods' maps have different units (each colour bar gives its unit).")
st.caption(f"Source: {source}. Images are shown at the model size (128 × 128); hover a picture and use its "
           "fullscreen button to enlarge it.")
