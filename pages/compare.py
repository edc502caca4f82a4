"""Compare: one image, many methods; a row per method with every output it has."""
from __future__ import annotations

import streamlit as st

from pages._common import (checkpoint_views, default_checkpoints, detector, image_picker, no_checkpoints_message,
                           ood_banner, pick_checkpoints, result_grid)
from upd_core import app_support as sup

st.title("Compare methods on one image")
st.markdown("Pick an image and any set of methods. Each row shows what that method sees: its reconstruction, "
            "MorphAEus' global prior, the prior warped onto the image and the deformation field (a warped grid, "
            "red = large displacement), the residual, the heatmap and the score with its percentile among the "
            "method's *normal* validation images. Empty cells say why a method has no such output.")

views = checkpoint_views()
if not views:
    no_checkpoints_message()
    st.stop()

left, right = st.columns([1, 2])
with left:
    image, source = image_picker("compare", sources=("Dataset folder", "Demo set", "Upload"))
with right:
    chosen = pick_checkpoints("compare_ckpts", views, default=default_checkpoints(views, 6))
    shared = st.toggle("Same colour scale for all residual maps", value=True, key="compare_shared",
                       help="Residuals are intensity differences, so one scale makes methods comparable: "
                            "a method that copies its input shows almost nothing.")

if image is None:
    st.info("Choose an image to start.")
    st.stop()
if not chosen:
    st.info("Choose at least one method.")
    st.stop()

bar = st.progress(0.0, text="Running methods…")
results = sup.run_checkpoints(image, chosen, detector,
                              progress=lambda i, n, cid: bar.progress(i / max(n, 1), text=f"Running {cid}…"))
bar.empty()
ood_banner(sup.ood_check(results, sup.domain_probability(image)))
result_grid(image, results, shared_residual_scale=shared, key="compare")
st.caption(f"Source: {source}. Images are shown at the model size (128 × 128).")
