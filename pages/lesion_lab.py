"""Lesion lab: add a synthetic lesion to a normal image and watch each method's map and score."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from pages._common import detector, image_picker, page_start, pick_checkpoints, show_cell, show_table
from upd_core.app import analysis, formatting, lesion_lab

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
    chosen = pick_checkpoints("lesion_ckpts", found, page="lesion_lab")
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
        st.markdown(f"Score **{formatting.sig3(row.before.score)} → {formatting.sig3(row.after.score)}**  \n"
                    f"{analysis.percentile_text(row.after.percentile)}  \nBest Dice of the map: "
                    f"**{formatting.sig3(row.dice)}**", help=f"**{row.after.units.score}.** {row.after.units.help}")
        st.caption(row.after.units.score)
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
    grids = lesion_lab.sweep_grids(stored[1])
    ncol = min(3, len(grids))
    nrow = (len(grids) + ncol - 1) // ncol
    fig = make_subplots(rows=nrow, cols=ncol, subplot_titles=[titles.get(g.checkpoint, g.checkpoint) for g in grids],
                        horizontal_spacing=0.08, vertical_spacing=0.22 / max(1, nrow))
    for k, g in enumerate(grids):  # one cell per (size, contrast) that was run, its Dice printed in it
        fig.add_trace(go.Heatmap(x=g.size_labels, y=g.contrast_labels, z=g.dice, text=g.text,
                                 texttemplate="%{text}", zmin=0, zmax=1, colorscale="Viridis", coloraxis="coloraxis",
                                 hovertemplate="size %{x}, contrast %{y}: Dice %{text}<extra></extra>"),
                      row=k // ncol + 1, col=k % ncol + 1)
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    fig.update_xaxes(title_text="lesion radius (% of image side)", row=nrow)
    fig.update_yaxes(title_text="contrast (− darker, + brighter)", col=1)
    fig.update_layout(height=330 * nrow, margin=dict(l=10, r=10, t=40, b=10),
                      coloraxis=dict(colorscale="Viridis", cmin=0, cmax=1, colorbar_title="best Dice"))
    st.plotly_chart(fig, key="sweep_fig")
    st.caption("One cell per lesion setting that was run, nothing averaged or re-binned; the number in each cell "
               "is the best Dice of the method's map for that lesion (as in the UPD study's Fig. 2, which plots "
               "Dice over lesion size and intensity).")
    fig2 = px.scatter(df, x="lesion_area", y="dice", color="method", symbol="contrast" if len(contrasts) <= 6 else None,
                      labels={"lesion_area": "lesion area (fraction of the image)", "dice": "best Dice"},
                      title="Dice vs lesion area (one point per lesion)")
    fig2.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig2, key="sweep_scatter")
    show_table(df[["method", "size (%)", "contrast", "lesion_area", "dice", "score", "percentile"]], key="sweep_table")
elif sizes and contrasts:
    st.caption("Press *Run the sweep* to compute it for the current image, methods and lesion settings.")
