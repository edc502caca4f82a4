"""Myth (teaching): what do auto-encoders really learn? Manifold test and curse of resolution.

The manifold-test numbers are precomputed per checkpoint (`python -m upd_core myth precompute`,
myth.json next to the weights); this page reads them and reconstructs only the pictures it shows.
A checkpoint without them is computed live on the embedded demo images, and the page says so.
"""
from __future__ import annotations

import streamlit as st

from pages._common import (SIZE, _root_key, demo_image, demo_items, detector, page_start, pick_checkpoints,
                           show_cell, show_table)
from upd_core.app import cells, demo_set, folders, myth
from upd_core.errors import DataError

found = page_start(
    "The myth of unsupervised outlier detection",
    "An auto-encoder trained on healthy chest X-rays is supposed to reconstruct *only* healthy chest X-rays. "
    "If that were true, its reconstruction of a brain MRI, a digit or a cat would look like a chest X-ray. "
    "In the MorphAEus paper most did not: they copied whatever they got, and those that did learn the training "
    "distribution lost the detail a pathology detector needs (Table 1 and Fig. 5). The table below says what "
    "the checkpoints here do.")
rec_views = myth.reconstruction_views(found)
if not rec_views:
    st.info("None of the available checkpoints reconstructs images, so there is nothing to show here.")
    st.stop()


@st.cache_resource(show_spinner=False)
def _domain_model():
    from upd_core.domain import load_domain_classifier

    return load_domain_classifier()


@st.cache_data(show_spinner="Reading chest X-rays…", max_entries=4)
def _chest_sets(root: str | None, n: int) -> dict:
    """Normal and abnormal chest X-rays from the data folder (empty without data)."""
    if root is None:
        return {}
    try:
        return folders.load_labelled_folder(root, "test", SIZE, max_per_class=n).by_class()
    except (DataError, ValueError, OSError):
        return {}


@st.cache_data(show_spinner=False, max_entries=8)
def _domain_sha(root_key: str) -> str | None:
    return myth.domain_classifier_sha256()


@st.cache_data(show_spinner=False, max_entries=128)
def _precomputed(checkpoint_id: str, root_key: str, domain_sha: str | None) -> tuple[dict | None, str]:
    return myth.load_numbers(checkpoint_id, domain_sha)


folder = folders.default_dataset_folder()
chest_root = str(folder) if folder else None
chest = _chest_sets(chest_root, 16)
groups = demo_set.demo_by_domain(demo_items())


@st.cache_data(show_spinner=False, max_entries=32)
def _live_numbers(checkpoint_id: str, root_key: str, chest_key: str | None) -> dict:
    """The manifold test on the embedded demo images (and the folder's chest X-rays), as they are."""
    sets = myth.domain_sets(chest.get("normal"), groups, demo_image, None)
    return myth.manifold_numbers(detector(checkpoint_id), sets, _domain_model(), checkpoint_id)


@st.cache_data(show_spinner=False, max_entries=128)
def _example_cells(checkpoint_id: str, root_key: str, names: tuple[str, ...], chest_key: str | None) -> dict:
    examples = myth.example_images(chest.get("normal"), groups, names, demo_image)
    return myth.example_cells(detector(checkpoint_id), checkpoint_id, examples, _domain_model())


@st.cache_data(show_spinner=False, max_entries=32)
def _resolution_cells(checkpoint_id: str, root_key: str, chest_key: str | None) -> list:
    return [myth.reconstruction_cell(detector(checkpoint_id), checkpoint_id, img)
            for _, img in myth.resolution_examples(chest, demo_items(), demo_image)]


# Lazy tabs: only the open one runs (and sends its pictures), so a visit costs one tab's work.
tab_a, tab_b = st.tabs(["(a) Manifold test", "(b) Curse of resolution"], on_change="rerun", key="myth_tab")


def _column_config(widths: dict[str, int], helps: dict[str, str]) -> dict:
    return {name: st.column_config.Column(width=w, help=helps.get(name)) for name, w in widths.items()}


def manifold_tab() -> None:
    st.markdown("Reconstructions of in-distribution chest X-rays and of images from other domains, side by side. "
                "A method that *learned the chest X-ray distribution* turns everything into a chest X-ray: its "
                "reconstructions of other domains are classified as chest X-rays and lie closer (Fréchet "
                "distance) to the training images than the inputs do.")
    chosen = pick_checkpoints("myth_ckpts", rec_views, page="myth",
                              help="One entry per set of weights: a scoring variant changes the score, never the "
                                   "reconstruction.")
    domains = sorted(groups, key=lambda d: (not d.startswith("chest"), d))
    picked = st.multiselect("Domains shown as pictures", domains, key="myth_domains",
                            default=[d for d in myth.DEFAULT_DOMAINS if d in domains] or domains[:8],
                            help="The numbers below cover every domain; this only chooses the pictures.")
    if not chosen:
        st.info("Choose at least one method.")
        return
    root_key = _root_key()
    titles = {v.id: v.title for v in rec_views}
    dom_sha = _domain_sha(root_key)
    numbers, live = {}, {}
    for cid in chosen:
        num, why = _precomputed(cid, root_key, dom_sha)
        if num is None:
            live[cid] = why
            with st.spinner(f"Computing the manifold test of {titles[cid]} live…"):
                num = _live_numbers(cid, root_key, chest_root)
        numbers[cid] = num

    # The pictures: one example per domain (columns), the inputs, then one row per method.
    names = tuple(picked)
    inputs = myth.example_images(chest.get("normal"), groups, names, demo_image)
    spec = [1.4] + [1] * len(inputs)
    head = st.columns(spec)
    head[0].markdown("**Input**")
    for c, (name, img) in zip(head[1:], inputs.items()):
        with c:
            show_cell(cells.picture(img, name))
    for cid in chosen:
        recs = _example_cells(cid, root_key, names, chest_root)
        row = st.columns(spec)
        row[0].markdown(f"**{titles[cid]}**")
        for c, name in zip(row[1:], inputs):
            with c:
                show_cell(recs.get(name) or cells.empty("no reconstruction"))
    if "normal" not in chest:
        st.caption("No chest X-ray folder found (set UPD_DATA_ROOT), so the pictures have no real chest X-ray; the "
                   "embedded demo set's chest radiographs are synthetic (DRR).")

    st.subheader("Manifold learning, in numbers")
    if live:
        st.info(myth.live_note(live, titles))
    show_table(myth.summary_rows(numbers, titles), key="myth_summary",
               **_column_config(myth.SUMMARY_WIDTHS, myth.SUMMARY_HELP))
    verdicts = myth.verdict_caption(numbers, titles)
    if verdicts:
        st.markdown(verdicts)
    if next(iter(numbers.values())).get("feature_space") is None:
        st.caption("The domain classifier checkpoint (`checkpoints/domain-classifier`, made by "
                   "`scripts/train_domain.sh`) is absent, so only SSIM and L1 error are shown.")
    st.caption(myth.numbers_caption(numbers))
    if not myth.real_chest(numbers):
        st.caption("These numbers have no real chest X-rays, so SSIM CXR is measured on the synthetic (DRR) chest "
                   "radiographs.")
    for note in myth.fd_notes(numbers):
        st.caption(note)
    with st.expander("Per domain"):
        show_table(myth.detail_rows(numbers, titles), key="myth_detail",
                   **_column_config(myth.DETAIL_WIDTHS, myth.DETAIL_HELP))


def resolution_tab() -> None:
    st.markdown("The same auto-encoder with its latent space at 32×32 … 1×1 (for 128×128 inputs). Shallow "
                "latents copy everything, pathology and cats included; deep latents produce a chest X-ray whatever "
                "the input, but a blurry one that misses ribs and small lesions (MorphAEus paper, Fig. 5).")
    series, morph = myth.resolution_series(found)
    if not series:
        st.info("The curse-of-resolution checkpoints (ae-latent-32 … ae-latent-1) are not available.")
        return
    cols_v = series + morph
    root_key = _root_key()
    columns = [_resolution_cells(v.id, root_key, chest_root) for v in cols_v]
    header = st.columns(len(cols_v) + 1)
    header[0].markdown("**Input**")
    for c, v in zip(header[1:], cols_v):
        c.markdown(f"**{v.title.split(' (')[0]}**")
    for k, (name, img) in enumerate(myth.resolution_examples(chest, demo_items(), demo_image)):
        cols = st.columns(len(cols_v) + 1)
        with cols[0]:
            show_cell(cells.picture(img, name))
        for c, col_cells in zip(cols[1:], columns):
            with c:
                show_cell(col_cells[k])
    st.caption(myth.resolution_caption(series, morph))


if tab_a.open:
    with tab_a:
        manifold_tab()
if tab_b.open:
    with tab_b:
        resolution_tab()
