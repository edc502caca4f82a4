"""Home: what the app shows and why, available checkpoints, device, data sources and licences."""
from __future__ import annotations

import streamlit as st

import upd_core
from pages._common import PAGES, demo_items, no_checkpoints_message, page_start, show_table
from upd_core.app import analysis, folders, views
from upd_core.checkpoint import checkpoints_root
from upd_core.model_card import SOURCES

found = page_start(
    "UPD explorer",
    "**Unsupervised pathology detection, compared and explained.** Every method here was trained on "
    "*normal* images only and flags what does not fit.", need_checkpoints=False)
inventory = views.inventory(found)  # counted from the registry and the checkpoints (as the README's)
st.markdown(views.inventory_text(inventory))

st.info(
    "**The myth, in three sentences.** Auto-encoders trained on healthy images are assumed to fail on "
    "pathology, so that the residual marks it. In practice they either copy their input, pathology "
    "included, or blur everything, so healthy detail lights up as much as disease. This app lets you "
    "see that for yourself, next to methods built to avoid it, and against trivial intensity floors.")

c1, c2, c3, c4 = st.columns(4)
c1.metric("Checkpoints", inventory.checkpoints, help="Trained sets of weights in the checkpoint folder.")
c2.metric("Scorings", inventory.scorings, help="Checkpoints counting each scoring variant `<checkpoint>@<variant>` "
                                               "(e.g. CRADL's density heads) as its own entry, as the pages list them.")
c3.metric("Registered methods", len(inventory.methods))
c4.metric("Device", views.device_summary())

st.subheader("Pages")
for file, title, _, _, text in PAGES[1:]:
    a, b = st.columns([1, 5])
    with a:
        st.page_link(f"pages/{file}", label=title)
    b.markdown(text)

st.subheader("Available checkpoints")
if not found:
    no_checkpoints_message()
else:
    show_table(views.checkpoint_table(found), key="home_checkpoints")
    st.caption(f"Best measured AUROC first. Loaded from `{checkpoints_root()}`; weights are verified against their "
               "sha256 before use. "
               "Models are loaded lazily, the first time a page needs them. *converged*: the paper's stopping "
               "rule ran to its end (early stopping or the maximum epochs); *not converged*: a time budget or "
               "a stated epoch cap stopped training first, so the checkpoint may understate its method.")
st.markdown(f"**Training regime.** {views.REGIME}")
st.caption("Domain classifier for the out-of-distribution warning and the Myth page: "
           + analysis.domain_classifier_summary())

st.subheader("Data sources and licences")
for src in SOURCES.values():
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
    roots = ", ".join(f"`{r}`" for r in folders.allowed_roots())
    st.markdown(
        f"- Dataset folders are read only under {roots} (set `UPD_DATA_ROOT`, or `UPD_ALLOWED_DIRS` with "
        "folders separated by `:`, before starting the app). No page reads a path from the URL.\n"
        f"- Checkpoints come only from `{checkpoints_root()}` (or `UPD_CHECKPOINTS`), sha256-verified, "
        "loaded with safetensors (never pickle).\n"
        "- Uploads are limited in size (`.streamlit/config.toml`), processed in memory and never written "
        "to disk; XSRF protection is on. The server listens on 127.0.0.1 unless you change it.\n"
        "- Research and teaching software: **not a medical device**; do not use it for diagnosis.")
