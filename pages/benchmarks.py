"""Benchmarks: the evaluation of every checkpoint, intensity floors first, papers' numbers beside them."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages._common import page_start, show_table
from upd_core.app import benchmarks

found = page_start(
    "Benchmarks",
    "The results `python -m upd_core evaluate` wrote next to each checkpoint, in the layout of the papers' "
    "tables. The first rows are **trivial floors**: how well the mean or the standard deviation of an image's "
    "intensities alone separate normal from abnormal on the same split. A method is only interesting where "
    "it beats them. Click a column header to sort.")
st.info(benchmarks.REGIME)

evals = benchmarks.load_evaluations()
tables = benchmarks.benchmark_rows(evals)
if not tables:
    st.info("No checkpoint has been evaluated yet (`python -m upd_core evaluate --checkpoint ID`).")
for split, rows in tables.items():
    st.subheader(f"Measured here: {split}")
    df = pd.DataFrame(benchmarks.display_rows(rows))
    df.insert(0, "row", df.pop("kind"))
    df = df.dropna(axis=1, how="all")
    show_table(df, key=f"bench_{split}", height=35 * (len(df) + 1) + 3)
    beat = benchmarks.floor_summary(rows)
    if beat is not None:
        n_beat, n_methods, floor = beat
        st.caption(f"{n_beat} of {n_methods} checkpoints beat the best intensity floor (AUROC {floor:.3f}) on "
                   "this split. AUROC / AP with abnormal as positive; FPR95/99: false-positive rate at 95/99 % "
                   "sensitivity (lower is better); SSIM of healthy reconstructions; pixel metrics from "
                   "synthetic lesions unless masks exist.")
    st.caption("*converged*: whether training ran the paper's stopping rule to its end (early stopping or the "
               "maximum epochs), or was cut by a time budget or a stated epoch cap. Brackets: stratified "
               "bootstrap 95 % confidence interval over the test images (where the evaluation has one). "
               "*over seeds*: mean ± sample standard deviation over the trainings with different seeds "
               "(*seeds* of them; the shipped weights are seed 0).")

st.subheader("Do percentiles transfer to healthy test images?")
cals = benchmarks.calibration_entries(evals)
if not cals:
    st.caption("No evaluation here records the calibration of its percentiles yet (evaluations written by "
               "a recent `python -m upd_core evaluate` do).")
else:
    cid = st.selectbox("Checkpoint", list(cals), key="bench_calib_ckpt")
    cal = cals[cid]
    table = pd.DataFrame(benchmarks.calibration_table(cal))
    fig = go.Figure(go.Bar(x=table["percentile bin"], y=table["share"], name="healthy test images",
                           marker_color="#4c78a8"))
    fig.add_hline(y=float(table["uniform"].iloc[0]), line_dash="dash", line_color="#d62728",
                  annotation_text=f"uniform ({table['uniform'].iloc[0]:.2f})", annotation_position="top left")
    fig.update_layout(xaxis_title="percentile among the calibration images", yaxis_title="share of healthy "
                      "test images", height=360, margin=dict(l=10, r=10, t=30, b=10), showlegend=False)
    st.plotly_chart(fig, key="bench_calib_fig")
    st.caption(benchmarks.calibration_summary(cal))
    st.markdown(benchmarks.CALIBRATION_HELP)

st.subheader("Reported elsewhere, on other data")
st.warning("These are the numbers the papers **reported on their own data sets** (COVID-19 Radiography, CheXpert, "
           "ChestX-ray14), resolutions, training budgets and protocols. They are context, **not** a comparison with "
           "the rows above, which were measured here on a different split. *In this app* says whether a method is "
           "implemented here or only planned; *selection regime* what each paper says about how it chose its "
           "models and settings.")
ours = {v.method for v in found}
only_ours = st.toggle("Only methods that have a checkpoint here", value=False, key="bench_only_ours")
rep = pd.DataFrame(benchmarks.reported_rows(ours if only_ours else None))
if rep.empty:
    st.caption("No reported numbers for these methods.")
else:
    for source, part in rep.groupby("source", sort=False):
        with st.expander(source, expanded=True):
            st.caption(f"Selection regime: {benchmarks.reported_regime(str(source))}.")
            part = part.drop(columns=["source", "regime"]).dropna(axis=1, how="all")
            show_table(part, height=35 * (len(part) + 1) + 3)
