"""Lesion lab: add a synthetic lesion to a normal image and watch each method's map and score."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from pages._common import detector, image_picker, page_start, pick_checkpoints, show_cell
from upd_core.app import analysis, lesion_lab, views

found = page_start(
    "Lesion lab",
    "Take a normal image, paint a synthetic lesion of known shape, size, contrast and position into it, "
    "and see whether each method's map finds it. The sweep repeats this over lesion size × contrast "
    "and plots each method's Dice (as in the UPD study's Fig. 2).")
shapes = lesion_lab.lesion_shapes()
if not shapes:
    st.info("The synthetic lesion generator (upd_core.lesions) is not available in this installation.")
    st.stop()

left, right = st.columns([1, 2])
with left:
    image, source = image_picker("lesion", sources=("Dataset folder", "Demo set", "Upload"),
                                 prefer_domains=("brain-mri",))
with right:
    chosen = pick_checkpoints("lesion_ckpts", found, default=views.default_selection(found, 4))
    a, b, c = st.columns(3)
    size = a.slider("Size (radius, % of image side)", 2, 25, 8, key="lesion_size") / 100
    contrast = b.slider("Contrast (− darker, + brighter)", -0.6, 0.6, 0.3, 0.05, key="lesion_contrast")
    shape = c.selectbox("Shape", shapes, key="lesion_shape")
    a, b, c = st.columns(3)
    cx = a.slider("Position: left → right", 0.1, 0.9, 0.35, 0.01, key="lesion_x")
    cy = b.slider("Position: top → bottom", 0.1, 0.9, 0.5, 0.01, key="lesion_y")
    blend = c.selectbox("Blend", ("add", "replace"), key="lesion_blend",
                        format_func=lambda m: {"add": "add (opacity; anatomy stays visible)",
                                               "replace": "replace (mass replaces tissue)"}[m])

if image is None:
    st.info("Choose a normal image (for example a healthy chest X-ray from the dataset folder).")
    st.stop()
if not chosen:
    st.info("Choose at least one method.")
    st.stop()

try:
    lesioned, mask = lesion_lab.add_lesion(image, size=size, contrast=contrast, shape=shape, center=(cy, cx),
                                           blend=blend)
except ValueError as exc:
    st.warning(f"This lesion cannot be placed: {exc}")
    st.stop()

for col, cell in zip(st.columns(3), lesion_lab.lesion_cells(image, lesioned, mask)):
    with col:
        show_cell(cell)

titles = {v.id: v.title for v in found}
st.subheader("Each method, before and after")
hdr = st.columns([2, 2, 2, 3])
for c, h in zip(hdr, ("Heatmap (normal)", "Heatmap (lesion)", "Map vs mask", "Scores")):
    c.markdown(f"**{h}**")
for cid in chosen:
    row = lesion_lab.lesion_row(detector(cid), cid, image, lesioned, mask)
    st.markdown(f"##### {titles[cid]}")
    cols = st.columns([2, 2, 2, 3])
    if row.error:
        cols[0].error(row.error)
        continue
    for col, cell in zip(cols, row.cells):
        with col:
            show_cell(cell)
    with cols[3]:
        st.markdown(f"Score **{row.before.score:.4g} → {row.after.score:.4g}**  \n"
                    f"{analysis.percentile_text(row.after.percentile)}  \nBest Dice of the map: **{row.dice:.3f}**")
st.caption("Both heatmaps of a method share one colour scale. Best Dice: the Dice of the map thresholded at its "
           "best threshold for this one lesion (an upper bound of what the map can localise).")

st.subheader("Sweep: Dice over lesion size × contrast")
a, b, c = st.columns(3)
sizes = a.multiselect("Sizes (% of side)", [3, 5, 8, 12, 16, 20], default=[3, 5, 8, 12, 16], key="sweep_sizes")
contrasts = b.multiselect("Contrasts", [-0.5, -0.3, -0.15, 0.1, 0.2, 0.3, 0.5], default=[-0.3, -0.15, 0.1, 0.2, 0.3, 0.5],
                          key="sweep_contrasts")
run = c.button("Run the sweep", key="sweep_run", type="primary",
               help=f"{len(sizes) * len(contrasts)} lesion images × {len(chosen)} methods, in one batch per method.")
sweep_key = (source, tuple(chosen), tuple(sizes), tuple(contrasts), shape, cx, cy, blend)
if run and sizes and contrasts:
    bar = st.progress(0.0, text="Sweeping…")
    dets = {cid: detector(cid) for cid in chosen}
    rows = lesion_lab.lesion_sweep(dets, image, [s / 100 for s in sizes], contrasts, shape=shape, center=(cy, cx),
                            blend=blend, progress=lambda f: bar.progress(f, text="Sweeping…"))
    bar.empty()
    st.session_state["lesion_sweep"] = (sweep_key, rows)
stored = st.session_state.get("lesion_sweep")
if stored and stored[0] == sweep_key:
    df = pd.DataFrame(stored[1])
    df["method"] = df["checkpoint"].map(titles)
    df["size (%)"] = (100 * df["size"]).round(0).astype(int)
    fig = px.density_heatmap(df, x="size (%)", y="contrast", z="dice", facet_col="method", facet_col_wrap=3,
                             histfunc="avg", color_continuous_scale="Viridis", range_color=(0, 1),
                             nbinsx=len(sizes), nbinsy=len(contrasts), text_auto=".2f")
    fig.update_layout(height=300 * ((df["method"].nunique() + 2) // 3), margin=dict(l=10, r=10, t=40, b=10),
                      coloraxis_colorbar_title="Dice")
    st.plotly_chart(fig, key="sweep_fig")
    fig2 = px.scatter(df, x="lesion_area", y="dice", color="method", symbol="contrast" if len(contrasts) <= 6 else None,
                      labels={"lesion_area": "lesion area (fraction of the image)", "dice": "best Dice"},
                      title="Dice vs lesion area (one point per lesion)")
    fig2.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig2, key="sweep_scatter")
    st.dataframe(df[["method", "size (%)", "contrast", "lesion_area", "dice", "score", "percentile"]],
                 hide_index=True, width="stretch")
elif sizes and contrasts:
    st.caption("Press *Run the sweep* to compute it for the current image, methods and lesion settings.")
