"""Home: what the app shows and why, available checkpoints, device, data sources and licences."""
from __future__ import annotations

import pandas as pd
import streamlit as st

import upd_core
from pages._common import checkpoint_views, demo_items, no_checkpoints_message
from upd_core import app_support as sup
from upd_core.checkpoint import checkpoints_root
from upd_core.domain import load_domain_classifier
from upd_core.model_card import SOURCES

st.title("UPD explorer")
st.markdown(
    "**Unsupervised pathology detection, compared and explained.** Every method here was trained on "
    "*normal* images only and flags what does not fit: auto-encoders, MorphAEus (global prior + "
    "deformation), and the other methods of the MorphAEus paper, the UPD study, CRADL, PII and ADM.")

st.info(
    "**The myth, in three sentences.** Auto-encoders trained on healthy images are assumed to fail on "
    "pathology, so that the residual marks it. In practice they either copy their input, pathology "
    "included, or blur everything, so healthy detail lights up as much as disease. This app lets you "
    "see that for yourself, next to methods built to avoid it, and against trivial intensity floors.")

c1, c2, c3 = st.columns(3)
views = checkpoint_views()
c1.metric("Checkpoints", len(views))
c2.metric("Registered methods", len(upd_core.list_methods()))
c3.metric("Device", sup.device_summary())

st.subheader("Pages")
PAGES = [
    ("pages/compare.py", "Compare", "one image, many methods side by side: reconstruction, prior, warped prior, "
                                    "deformation, residual, heatmap, score and percentile"),
    ("pages/upload.py", "Upload", "your own PNG/JPEG/TIFF/BMP/DICOM/NIfTI image: heatmaps, scores, an "
                                  "out-of-distribution check, PNG and JSON downloads"),
    ("pages/tails.py", "Tails", "score distributions of normal vs abnormal images, ROC/PR curves, best, average "
                                "and worst cases (MorphAEus Fig. 6b)"),
    ("pages/myth.py", "Myth", "what auto-encoders really learn: reconstructions of other domains and the "
                              "curse of resolution (MorphAEus Table 1, Fig. 5)"),
    ("pages/lesion_lab.py", "Lesion lab", "add a synthetic lesion and watch every map; Dice over lesion size × "
                                          "intensity (UPD study Fig. 2)"),
    ("pages/benchmarks.py", "Benchmarks", "the evaluation of every shipped checkpoint, intensity floors first, "
                                          "papers' numbers beside them"),
]
for path, label, text in PAGES:
    a, b = st.columns([1, 5])
    with a:
        st.page_link(path, label=label)
    b.markdown(text)

st.subheader("Available checkpoints")
if not views:
    no_checkpoints_message()
else:
    st.dataframe(pd.DataFrame([{
        "checkpoint": v.id, "method": v.title, "trained on": v.dataset,
        "outputs": ", ".join(("score", "anomaly map") + v.outputs),
        "AUROC": v.metrics.get("auroc"), "AP": v.metrics.get("ap"),
    } for v in views]), hide_index=True, width="stretch",
        column_config={"AUROC": st.column_config.NumberColumn(format="%.3f"),
                       "AP": st.column_config.NumberColumn(format="%.3f")})
    st.caption(f"Loaded from `{checkpoints_root()}`; weights are verified against their sha256 before use. "
               "Models are loaded lazily, the first time a page needs them.")
dom = load_domain_classifier()
st.caption("Domain classifier for the out-of-distribution warning and the Myth page: " + (
    f"present ({len(dom.classes)} domains, held-out accuracy {dom.meta.get('held_out_accuracy', float('nan')):.3f}; "
    f"{dom.feature_space()})" if dom else "absent (train it with `scripts/train_domain.sh`); the warning then "
    "relies on the methods' scores alone"))

st.subheader("Data sources and licences")
for key, src in SOURCES.items():
    st.markdown(f"- **{src['title']}** — licence: {src['licence']}. {src['citation']}.")
items = demo_items()
if items:
    provs = sorted({it.provenance for it in items if it.provenance})
    st.markdown(f"- **Embedded demo set** ({len(items)} images shipped by installed packages): "
                + "; ".join(provs[:12]))
else:
    st.markdown("- Embedded demo set: not available in this installation.")
st.markdown(f"- Data root for dataset folders: `{upd_core.paths.data_root()}` "
            f"({'present' if upd_core.paths.data_root().is_dir() else 'absent — demo images only'}). "
            "Images from it are shown in the app but never stored in the repository.")

with st.expander("Security and privacy defaults"):
    roots = ", ".join(f"`{r}`" for r in sup.allowed_roots())
    st.markdown(
        f"- Dataset folders are read only under {roots} (set `UPD_DATA_ROOT`, or `UPD_ALLOWED_DIRS` with "
        "folders separated by `:`, before starting the app). No page reads a path from the URL.\n"
        f"- Checkpoints come only from `{checkpoints_root()}` (or `UPD_CHECKPOINTS`), sha256-verified, "
        "loaded with safetensors (never pickle).\n"
        "- Uploads are limited in size (`.streamlit/config.toml`), processed in memory and never written "
        "to disk; XSRF protection is on. The server listens on 127.0.0.1 unless you change it.\n"
        "- Research and teaching software: **not a medical device**; do not use it for diagnosis.")
