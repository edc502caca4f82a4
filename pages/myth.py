"""Myth (teaching): what do auto-encoders really learn? Manifold test and curse of resolution."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from pages._common import (SIZE, checkpoint_views, demo_image, demo_items, detector, no_checkpoints_message,
                           pick_checkpoints, show_image)
from upd_core import app_support as sup
from upd_core.errors import DataError

st.title("The myth of unsupervised outlier detection")
st.markdown(
    "An auto-encoder trained on healthy chest X-rays is supposed to reconstruct *only* healthy chest X-rays. "
    "If that were true, its reconstruction of a brain MRI, a digit or a cat would look like a chest X-ray. "
    "Most do not: they copy whatever they get. Those that do learn the training distribution lose the detail "
    "a pathology detector needs (MorphAEus paper, Table 1 and Fig. 5).")

views = checkpoint_views()
if not views:
    no_checkpoints_message()
    st.stop()
rec_views = [v for v in views if "reconstruction" in v.outputs]
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
        s = sup.load_labelled_folder(root, "test", SIZE, max_per_class=n)
    except (DataError, ValueError, OSError):
        return {}
    return {"normal": s.images[s.labels == 0], "abnormal": s.images[s.labels == 1]}


folder = sup.default_dataset_folder()
chest = _chest_sets(str(folder) if folder else None, 16)
groups = sup.demo_by_domain(demo_items())
dom = _domain_model()

tab_a, tab_b = st.tabs(["(a) Manifold test", "(b) Curse of resolution"])

def manifold_tab() -> None:
    st.markdown("Reconstructions of in-distribution chest X-rays and of images from other domains, side by side. "
                "A method that *learned the chest X-ray distribution* turns everything into a chest X-ray: "
                "low Fréchet distance of its reconstructions to the training images and a high classifier "
                "confidence that they are chest X-rays.")
    default = sup.default_selection(rec_views, 6)
    chosen = pick_checkpoints("myth_ckpts", rec_views, default=default)
    domains = sorted(groups)
    picked = st.multiselect("Other domains (embedded demo set)", domains, default=domains[:8], key="myth_domains")
    sets: dict[str, np.ndarray] = {}
    if "normal" in chest:
        sets["chest X-ray (in-distribution)"] = chest["normal"]
    else:
        st.info("No chest X-ray folder found (set UPD_DATA_ROOT), so the in-distribution row is missing; the "
                "embedded demo set ships no chest X-rays.")
    for d in picked:
        sets[d] = np.stack([demo_image(it.id) for it in groups[d]])
    if not chosen or not sets:
        st.info("Choose at least one method and one domain.")
        return

    # Visual grid: one example per domain (columns), input row + one row per method.
    names = list(sets)
    cols = st.columns([1.4] + [1] * len(names))
    cols[0].markdown("**Input**")
    for c, name in zip(cols[1:], names):
        with c:
            show_image(sets[name][0], caption=name)
    rows = []
    titles = {v.id: v.title for v in rec_views}
    bar = st.progress(0.0, text="Reconstructing…")
    for k, cid in enumerate(chosen):
        bar.progress(k / len(chosen), text=f"Reconstructing with {titles[cid]}…")
        det = detector(cid)
        cols = st.columns([1.4] + [1] * len(names))
        cols[0].markdown(f"**{titles[cid]}**")
        for c, name in zip(cols[1:], names):
            with c:
                show_image(det.predict(sets[name][:1]).reconstruction[0])
        rows += sup.manifold_test(det, sets, dom)
    bar.empty()

    fd_label = dom.feature_space() if dom else "FD"
    st.subheader("Manifold learning, in numbers")
    if dom is None:
        st.caption("The domain classifier checkpoint (`checkpoints/domain-classifier`, made by "
                   "`scripts/train_domain.sh`) is absent, so only SSIM is shown.")
    detail = pd.DataFrame([{
        "method": titles.get(r.checkpoint, r.checkpoint), "domain": r.domain, "images": r.n,
        "SSIM (rec. vs input)": r.ssim, f"{fd_label} of reconstructions": r.fd, f"{fd_label} of inputs": r.fd_inputs,
        "P(chest X-ray) of reconstructions": r.confidence, "P(chest X-ray) of inputs": r.confidence_inputs,
    } for r in rows])
    summary = []
    for cid in chosen:
        mine = [r for r in rows if r.checkpoint == cid]
        ind = [r for r in mine if r.domain.startswith("chest")]
        ood = [r for r in mine if not r.domain.startswith("chest")]
        fd_r = [r.fd for r in ood if r.fd is not None]
        fd_i = [r.fd_inputs for r in ood if r.fd_inputs is not None]
        conf = [r.confidence for r in ood if r.confidence is not None]
        row = {"method": titles[cid],
               "SSIM (chest X-rays)": ind[0].ssim if ind else None,
               "mean SSIM (other domains)": float(np.mean([r.ssim for r in ood])) if ood else None,
               f"mean {fd_label} (other domains)": float(np.mean(fd_r)) if fd_r else None,
               "mean P(chest X-ray) (other domains)": float(np.mean(conf)) if conf else None}
        if fd_r and conf:  # the paper's check: >= 5 % closer to CXR than the inputs, and confidently CXR
            row["learned the distribution?"] = "✓" if (np.mean(fd_r) <= 0.95 * np.mean(fd_i) and np.mean(conf) > 0.5) \
                else "✗"
        summary.append(row)
    table = pd.DataFrame(summary).dropna(axis=1, how="all")
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns
                                if c not in ("method", "learned the distribution?")})
    st.caption("High SSIM on other domains means the method *copies* inputs it has never seen: it did not learn "
               "what a chest X-ray is.")
    st.caption(f"{fd_label}: Fréchet distance between feature statistics of the reconstructions and of the chest "
               "X-ray training images, in the project's own encoder space — **not FID** (no Inception weights "
               "here). P(chest X-ray): a small domain classifier trained on chest X-rays and the embedded demo "
               "domains. ✓ as in the MorphAEus paper: reconstructions at least 5 % closer to chest X-rays than the "
               "inputs, and classified as chest X-rays.")
    with st.expander("Per domain"):
        st.dataframe(detail.dropna(axis=1, how="all"), hide_index=True, width="stretch")


def resolution_tab() -> None:
    st.markdown("The same auto-encoder with its latent space at 32×32 … 1×1 (for 128×128 inputs). Shallow "
                "latents copy everything, pathology and cats included; deep latents produce a chest X-ray whatever "
                "the input, but a blurry one that misses ribs and small lesions (MorphAEus paper, Fig. 5).")
    series = sorted([v for v in views if v.method.startswith("ae-latent-")],
                    key=lambda v: -int(v.method.rsplit("-", 1)[1]))
    morph = [v for v in views if v.method == "morphaeus"][:1]
    if not series:
        st.info("The curse-of-resolution checkpoints (ae-latent-32 … ae-latent-1) are not available.")
        return
    examples: list[tuple[str, np.ndarray]] = []
    if "normal" in chest:
        examples.append(("healthy chest X-ray", chest["normal"][0]))
    if "abnormal" in chest:
        examples.append(("pneumonia", chest["abnormal"][0]))
    base = chest["normal"][1] if "normal" in chest else None
    if base is not None:
        img, _ = sup.add_lesion(base, size=0.12, contrast=0.4, center=(0.5, 0.3), blend="add")
        examples.append(("healthy + synthetic lesion", img))
    for did in ("astronaut", "chelsea", "colin27-t1", "digit-3"):
        if any(it.id == did for it in demo_items()):
            examples.append((next(it.title for it in demo_items() if it.id == did), demo_image(did)))
    cols_v = series + morph
    header = st.columns(len(cols_v) + 1)
    header[0].markdown("**Input**")
    for c, v in zip(header[1:], cols_v):
        c.markdown(f"**{v.title.split(' (')[0]}**")
    for name, img in examples:
        cols = st.columns(len(cols_v) + 1)
        with cols[0]:
            show_image(img, caption=name)
        for c, v in zip(cols[1:], cols_v):
            with c:
                res = sup.run_detector(detector(v.id), img, v.id)
                if res.error:
                    st.caption(res.error)
                else:
                    show_image(res.reconstruction, caption=f"score {res.score:.3g}")
    st.caption("Latent side at 128×128 input, left to right: " + ", ".join(
        v.method.replace("ae-latent-", "") + "×" + v.method.replace("ae-latent-", "") for v in series)
        + (" — then MorphAEus (1×1 prior, locally deformed)." if morph else "."))


with tab_a:
    manifold_tab()
with tab_b:
    resolution_tab()
