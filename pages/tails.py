"""Tails: score distributions of normal vs abnormal images, ROC/PR curves, best/average/worst cases."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from pages._common import SIZE, detector, folder_input, page_start, pick_checkpoints, show_cell
from upd_core.app import demo_set, folders, tails
from upd_core.errors import DataError

found = page_start(
    "Tails of the score distributions",
    "How well do the scores of *normal* and *abnormal* images separate, and what do the cases in the "
    "tails look like? Pick a labelled dataset and methods: densities of the scores per class, ROC and "
    "precision-recall curves, and the best, average and worst case of each class with its map "
    "(the MorphAEus paper's Fig. 6b). Scores are cached on disk per checkpoint and dataset, so a "
    "revisit is instant.")


@st.cache_data(show_spinner="Reading the dataset…", max_entries=8)
def _folder_set(root: str, split: str, max_per_class: int | None) -> folders.LabelledSet:
    return folders.load_labelled_folder(root, split, SIZE, max_per_class=max_per_class)


@st.cache_data(show_spinner="Building the demo set…", max_entries=2)
def _demo_set() -> folders.LabelledSet:
    return demo_set.demo_labelled_set(SIZE)


c1, c2 = st.columns([2, 3])
with c1:
    source = st.radio("Labelled images", ("Dataset folder", "Demo: synthetic lesions"), horizontal=True,
                      key="tails_src", index=0 if folders.default_dataset_folder() else 1,
                      help="Without a dataset folder, normal demo images and copies of them with synthetic "
                           "lesions serve as a small labelled set.")
    data: folders.LabelledSet | None = None
    try:
        if source == "Dataset folder":
            root = folder_input("tails_folder", "Folder-per-class layouts (e.g. Kermany test/NORMAL|PNEUMONIA), "
                                                "CheXpert, MedNIST, NIfTI volumes with masks…")
            if root:
                a, b = st.columns(2)
                split = a.selectbox("Split", ("test", "val", "train"), key="tails_split")
                cap = b.selectbox("Images per class", (100, 250, "all"), index=0, key="tails_cap",
                                  help="An evenly spaced subset keeps the first computation fast on a CPU.")
                data = _folder_set(root, split, None if cap == "all" else int(cap))
        else:
            data = _demo_set()
    except (DataError, ValueError, OSError) as exc:
        st.warning(f"This dataset cannot be used: {exc}")
with c2:
    chosen = pick_checkpoints("tails_ckpts", found, page="tails")

if data is None:
    st.info("Choose a labelled dataset to start.")
    st.stop()
n0, n1 = data.counts()
st.caption(f"**{data.name}**: {n0} normal, {n1} abnormal images.")
if n0 == 0 or n1 == 0:
    st.warning("This split needs both normal and abnormal images (e.g. the test split).")
    st.stop()
if not chosen:
    st.info("Choose at least one method.")
    st.stop()

titles = {v.id: v.title for v in found}
bar = st.progress(0.0, text="Scoring…")
sets, errors = tails.score_sets(chosen, data, detector, progress=lambda i, n, cid: bar.progress(
    i / n, text=f"Scoring {len(data.labels)} images with {titles[cid]}…"))
bar.empty()
for cid, err in errors.items():
    st.error(f"{titles[cid]}: {err}")
if not sets:
    st.stop()
cached = [cid for cid, s in sets.items() if s.from_cache]
if cached:
    st.caption(f"Scores of {len(cached)} of {len(sets)} methods came from the disk cache.")
curves = {cid: tails.curves(s.labels, s.scores) for cid, s in sets.items()}

COLORS = {"normal": "#2b83ba", "abnormal": "#d7191c"}
tab_d, tab_c, tab_x = st.tabs(["Score distributions", "ROC and PR curves", "Best, average and worst cases"])

with tab_d:
    cols = st.columns(min(2, len(sets)))
    for k, (cid, s) in enumerate(sets.items()):
        dens = tails.densities(s.scores, s.labels)
        fig = go.Figure()
        for lab, name in ((0, "normal"), (1, "abnormal")):
            fig.add_histogram(x=s.scores[s.labels == lab], name=f"{name} (histogram)", histnorm="probability density",
                              opacity=0.35, marker_color=COLORS[name], nbinsx=40)
            if name in dens:
                fig.add_scatter(x=dens["grid"], y=dens[name], name=f"{name} (density)", mode="lines",
                                line=dict(color=COLORS[name], width=2))
        fig.update_layout(barmode="overlay", height=330, margin=dict(l=10, r=10, t=40, b=10),
                          title=f"{titles[cid]} — AUROC {curves[cid].get('auroc', float('nan')):.3f}",
                          xaxis_title="score", yaxis_title="density", legend=dict(orientation="h", y=-0.25))
        cols[k % len(cols)].plotly_chart(fig, key=f"tails_dens_{cid}")

with tab_c:
    roc, pr = go.Figure(), go.Figure()
    roc.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#999"), name="chance")
    prev = next(iter(curves.values()))["prevalence"]
    pr.add_scatter(x=[0, 1], y=[prev, prev], mode="lines", line=dict(dash="dot", color="#999"),
                   name=f"chance (prevalence {prev:.2f})")
    for cid, cur in curves.items():
        roc.add_scatter(x=cur["fpr"], y=cur["tpr"], mode="lines", name=f"{titles[cid]} ({cur['auroc']:.3f})")
        pr.add_scatter(x=cur["recall"], y=cur["precision"], mode="lines", name=f"{titles[cid]} ({cur['ap']:.3f})")
    roc.update_layout(title="ROC (abnormal = positive)", xaxis_title="false-positive rate",
                      yaxis_title="true-positive rate", height=420, margin=dict(l=10, r=10, t=40, b=10))
    pr.update_layout(title="Precision-recall", xaxis_title="recall", yaxis_title="precision", height=420,
                     margin=dict(l=10, r=10, t=40, b=10))
    a, b = st.columns(2)
    a.plotly_chart(roc, key="tails_roc")
    b.plotly_chart(pr, key="tails_pr")

with tab_x:
    a, b = st.columns([2, 3])
    cid = a.selectbox("Method", list(sets), format_func=lambda i: titles[i], key="tails_case_ckpt")
    q = b.slider("Quantile within each class (%)", 0, 100, 90, key="tails_q",
                 help="Shows the image at this quantile of each class's scores, next to the fixed best, "
                      "average (median) and worst cases.")
    gallery = tails.tail_gallery(detector(cid), data.images, sets[cid], q)
    st.caption("Normal: best = lowest score, worst = highest. Abnormal: best = highest score, worst = lowest. "
               "Each image is shown with the method's heatmap.")
    for name, pairs in gallery.items():
        st.markdown(f"**{name.capitalize()} images**")
        cols = st.columns(len(pairs) * 2)
        for j, (picture, heat) in enumerate(pairs):
            with cols[2 * j]:
                show_cell(picture)
            with cols[2 * j + 1]:
                show_cell(heat)
    st.caption("Images are read from your dataset folder at run time; nothing is copied into the app.")
