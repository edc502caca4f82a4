"""Benchmarks: the evaluation of every checkpoint, intensity floors first, papers' numbers beside them."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._common import checkpoint_views, no_checkpoints_message
from upd_core import app_support as sup

st.title("Benchmarks")
st.markdown("The results `python -m upd_core evaluate` wrote next to each checkpoint, in the layout of the papers' "
            "tables. The first rows are **trivial floors**: how well the mean or the standard deviation of an image's "
            "intensities alone separate normal from abnormal on the same split. A method is only interesting where "
            "it beats them. Click a column header to sort.")

views = checkpoint_views()
if not views:
    no_checkpoints_message()
    st.stop()

NUM = {c: st.column_config.NumberColumn(format="%.3f") for c in
       ("AUROC", "AP", "FPR95", "FPR99", "SSIM (healthy)", "pixel AP", "best Dice", "auroc", "ap", "fpr95", "fpr99",
        "ssim")}
tables = sup.benchmark_rows(sup.load_evaluations())
if not tables:
    st.info("No checkpoint has been evaluated yet (`python -m upd_core evaluate --checkpoint ID`).")
for split, rows in tables.items():
    st.subheader(f"Measured here: {split}")
    df = pd.DataFrame(rows)
    df.insert(0, "row", df.pop("kind").map({"floor": "floor", "method": "method"}))
    df = df.dropna(axis=1, how="all")
    st.dataframe(df, hide_index=True, width="stretch", column_config=NUM, key=f"bench_{split}",
                 height=35 * (len(df) + 1) + 3)
    methods = df[df["row"] == "method"]
    if "AUROC" in df and not methods.empty:
        floor = df[df["row"] == "floor"]["AUROC"].max()
        beat = int((methods["AUROC"] > floor).sum()) if pd.notna(floor) else None
        if beat is not None:
            st.caption(f"{beat} of {len(methods)} checkpoints beat the best intensity floor (AUROC {floor:.3f}) on "
                       "this split. AUROC / AP with abnormal as positive; FPR95/99: false-positive rate at 95/99 % "
                       "sensitivity (lower is better); SSIM of healthy reconstructions; pixel metrics from "
                       "synthetic lesions unless masks exist.")

st.subheader("Reported elsewhere, on other data")
st.warning("These are the numbers the papers **reported on their own data sets** (COVID-19 Radiography, CheXpert, "
           "ChestX-ray14), resolutions, training budgets and protocols. They are context, **not** a comparison with "
           "the rows above, which were measured here on a different split.")
ours = {v.method for v in views}
only_ours = st.toggle("Only methods that have a checkpoint here", value=False, key="bench_only_ours")
rep = pd.DataFrame(sup.reported_rows(ours if only_ours else None))
if rep.empty:
    st.caption("No reported numbers for these methods.")
else:
    for source, part in rep.groupby("source", sort=False):
        with st.expander(source, expanded=True):
            part = part.drop(columns=["source"]).dropna(axis=1, how="all")
            st.dataframe(part, hide_index=True, width="stretch", column_config=NUM, height=35 * (len(part) + 1) + 3)
