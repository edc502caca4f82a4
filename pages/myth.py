"""Myth (teaching): what do auto-encoders really learn? Manifold test and curse of resolution."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from pages._common import SIZE, demo_image, demo_items, detector, page_start, pick_checkpoints, show_cell, show_table
from upd_core.app import cells, demo_set, folders, myth
from upd_core.errors import DataError

found = page_start(
    "The myth of unsupervised outlier detection",
    "An auto-encoder trained on healthy chest X-rays is supposed to reconstruct *only* healthy chest X-rays. "
    "If that were true, its reconstruction of a brain MRI, a digit or a cat would look like a chest X-ray. "
    "Most do not: they copy whatever they get. Those that do learn the training distribution lose the detail "
    "a pathology detector needs (MorphAEus paper, Table 1 and Fig. 5).")
rec_views = [v for v in found if "reconstruction" in v.outputs]
if not rec_views:
    st.info("None of the available checkpoints reconstructs images, so there is nothing to show here.")
    st.stop()


@st.cache_resource(show_spinner=False)
def _domain_model():
    from upd_core.domain import load_domain_classifier

    return load_domain_classifier()


@st.cache_data(show_spinner="Reading chest X-rays…", max_entries=4)
def _chest_sets(root: str | None, n: int) -> dict[str, np.ndarray]:
    """Normal and abnormal chest X-rays from the data folder (empty without data)."""
    if root is None:
        return {}
    try:
        return folders.load_labelled_folder(root, "test", SIZE, max_per_class=n).by_class()
    except (DataError, ValueError, OSError):
        return {}


folder = folders.default_dataset_folder()
chest = _chest_sets(str(folder) if folder else None, 16)
groups = demo_set.demo_by_domain(demo_items())
dom = _domain_model()

tab_a, tab_b = st.tabs(["(a) Manifold test", "(b) Curse of resolution"])


def manifold_tab() -> None:
    st.markdown("Reconstructions of in-distribution chest X-rays and of images from other domains, side by side. "
                "A method that *learned the chest X-ray distribution* turns everything into a chest X-ray: "
                "low Fréchet distance of its reconstructions to the training images and a high classifier "
                "confidence that they are chest X-rays.")
    chosen = pick_checkpoints("myth_ckpts", rec_views, page="myth")
    domains = sorted(groups)
    picked = st.multiselect("Other domains (embedded demo set)", domains, default=domains[:8], key="myth_domains")
    if "normal" not in chest:
        st.info("No chest X-ray folder found (set UPD_DATA_ROOT), so the in-distribution row is missing; the "
                "embedded demo set ships no chest X-rays.")
    sets = myth.manifold_sets(chest.get("normal"), groups, picked, demo_image)
    if not chosen or not sets:
        st.info("Choose at least one method and one domain.")
        return

    # Visual grid: one example per domain (columns), input row + one row per method.
    names = list(sets)
    cols = st.columns([1.4] + [1] * len(names))
    cols[0].markdown("**Input**")
    for c, name in zip(cols[1:], names):
        with c:
            show_cell(cells.picture(sets[name][0], name))
    rows = []
    titles = {v.id: v.title for v in rec_views}
    bar = st.progress(0.0, text="Reconstructing…")
    for k, cid in enumerate(chosen):
        bar.progress(k / len(chosen), text=f"Reconstructing with {titles[cid]}…")
        mine = myth.manifold_test(detector(cid), sets, dom, cid)
        examples = {r.domain: r.example for r in mine}
        cols = st.columns([1.4] + [1] * len(names))
        cols[0].markdown(f"**{titles[cid]}**")
        for c, name in zip(cols[1:], names):
            with c:
                show_cell(examples.get(name) or cells.empty("no reconstruction"))
        rows += mine
    bar.empty()

    fd_label = dom.feature_space() if dom else "FD"
    st.subheader("Manifold learning, in numbers")
    if dom is None:
        st.caption("The domain classifier checkpoint (`checkpoints/domain-classifier`, made by "
                   "`scripts/train_domain.sh`) is absent, so only SSIM is shown.")
    table = pd.DataFrame(myth.manifold_summary(rows, chosen, titles, fd_label)).dropna(axis=1, how="all")
    show_table(table, key="myth_summary")
    st.caption("High SSIM on other domains means the method *copies* inputs it has never seen: it did not learn "
               "what a chest X-ray is.")
    st.caption(f"{fd_label}: Fréchet distance between feature statistics of the reconstructions and of the chest "
               "X-ray training images, in the project's own encoder space — **not FID** (no Inception weights "
               "here). P(chest X-ray): a small domain classifier trained on chest X-rays and the embedded demo "
               "domains. ✓ as in the MorphAEus paper: reconstructions at least 5 % closer to chest X-rays than the "
               "inputs, and classified as chest X-rays.")
    with st.expander("Per domain"):
        detail = pd.DataFrame(myth.manifold_detail(rows, titles, fd_label))
        show_table(detail.dropna(axis=1, how="all"), key="myth_detail")


def resolution_tab() -> None:
    st.markdown("The same auto-encoder with its latent space at 32×32 … 1×1 (for 128×128 inputs). Shallow "
                "latents copy everything, pathology and cats included; deep latents produce a chest X-ray whatever "
                "the input, but a blurry one that misses ribs and small lesions (MorphAEus paper, Fig. 5).")
    series, morph = myth.resolution_series(found)
    if not series:
        st.info("The curse-of-resolution checkpoints (ae-latent-32 … ae-latent-1) are not available.")
        return
    cols_v = series + morph
    header = st.columns(len(cols_v) + 1)
    header[0].markdown("**Input**")
    for c, v in zip(header[1:], cols_v):
        c.markdown(f"**{v.title.split(' (')[0]}**")
    for name, img in myth.resolution_examples(chest, demo_items(), demo_image):
        cols = st.columns(len(cols_v) + 1)
        with cols[0]:
            show_cell(cells.picture(img, name))
        for c, v in zip(cols[1:], cols_v):
            with c:
                show_cell(myth.reconstruction_cell(detector(v.id), v.id, img))
    st.caption(myth.resolution_caption(series, morph))


with tab_a:
    manifold_tab()
with tab_b:
    resolution_tab()
