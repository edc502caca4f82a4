"""The Myth page: what do auto-encoders really learn (MorphAEus paper, Table 1 and Fig. 5)?

(a) Manifold test: the tables and verdicts over the numbers of `upd_core.app.manifold` (SSIM and
L1 error of the reconstructions, the domain classifier's P(chest X-ray) and the Fréchet distance to
the chest X-ray training images, per checkpoint and image domain, with bootstrap 95 % intervals).
A method that learned the chest X-ray distribution turns every input into a chest X-ray: its
reconstructions of other domains are classified as chest X-rays and lie closer to the training
images than the inputs. The numbers are computed once per checkpoint by a command
(`python -m upd_core myth precompute`, stored as myth.json); the page reads them and reconstructs
only the few images it shows; without them it computes them live on the embedded demo images, which
are too few for a Fréchet distance, so that column is then empty and says why.

(b) Curse of resolution: the same auto-encoder with ever smaller latents, then MorphAEus, on a few
telling examples.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .analysis import run_detector
from .cells import Cell, empty, picture
from .demo_set import DemoItem
from .formatting import MISSING, sig3
from .manifold import (  # noqa: F401  (the page's names: it imports this module only)
    CLOSER, DEFAULT_DOMAINS, DEFAULT_IMAGES, KIND_IN, KIND_OTHER, KIND_SYNTHETIC, N_BOOT, P_CHEST,
    domain_classifier_sha256, domain_sets, example_images, load_numbers, manifold_numbers,
    reconstruct, reconstruction_views)
from .views import CheckpointView


# ---------------------------------------------------------------- (a) the tables

def _get(row: dict[str, Any] | None, key: str) -> float | None:
    v = (row or {}).get(key)
    return None if not isinstance(v, dict) else v.get("value")


def classified(row: dict[str, Any]) -> bool | None:
    """Are a domain's reconstructions classified as chest X-rays (mean P(chest X-ray) > P_CHEST)?"""
    p = _get(row, "p_chest")
    return None if p is None else p > P_CHEST


def closer(row: dict[str, Any]) -> bool | None:
    """Are a domain's reconstructions >= 5 % closer (FD) to the chest X-ray training images than its inputs?"""
    fd, fd_in = _get(row, "fd"), _get(row, "fd_inputs")
    return None if fd is None or fd_in is None else fd <= CLOSER * fd_in


def domain_verdict(row: dict[str, Any]) -> str:
    """One domain: '✓' classified as chest X-ray and >= 5 % closer in FD; '◐ not closer in FD' classified
    only; '✗' not classified as chest X-ray ('✗ (FD closer)' when its FD still dropped by 5 %);
    '–' without classifier numbers. The classifier decides whether a reconstruction looks like a
    chest X-ray; the FD says whether it moved towards them."""
    c, f = classified(row), closer(row)
    if c is None:
        return MISSING
    if c:
        return "✓" if f is not False else "◐ not closer in FD"
    return "✗ (FD closer)" if f else "✗"


def combine(stats: Sequence[dict[str, float] | None]) -> dict[str, float] | None:
    """The mean of several domains' values; its 95 % interval from their bootstrap standard errors
    (independent resamples: se of the mean = sqrt(sum se^2) / k)."""
    kept = [s for s in stats if isinstance(s, dict) and s.get("value") is not None]
    if not kept or len(kept) < len(stats):
        return None
    k = len(kept)
    value = float(np.mean([s["value"] for s in kept]))
    se = float(np.sqrt(sum(float(s.get("se", 0.0)) ** 2 for s in kept)) / k)
    return {"value": value, "lo": value - 1.96 * se, "hi": value + 1.96 * se, "se": se}


def with_interval(stat: dict[str, float] | None) -> str | None:
    """'0.123 [0.101–0.145]' (3 significant digits), None without a value."""
    if not stat or stat.get("value") is None:
        return None
    return f"{sig3(stat['value'])} [{sig3(stat['lo'])}–{sig3(stat['hi'])}]"


def verdict(other: Sequence[dict[str, Any]]) -> str | None:
    """The summary verdict over the other domains, from the per-domain criteria: '✓ yes' when every
    domain's reconstructions are classified as chest X-rays *and* are >= 5 % closer in FD (the
    paper's rule; '✓ yes (no FD)' when there is no FD), '✗ no' when the classifier calls no domain's
    reconstructions chest X-rays (whatever the FD did: the 'closer' count says that), '◐ partly'
    otherwise. None without classifier numbers."""
    flags = [(classified(r), closer(r)) for r in other]
    if not flags or any(c is None for c, _ in flags):
        return None
    if not any(c for c, _ in flags):
        return "✗ no"
    if all(c for c, _ in flags):
        if all(f for _, f in flags):
            return "✓ yes"
        if all(f is None for _, f in flags):
            return "✓ yes (no FD)"
    return "◐ partly"


SUMMARY_HELP = {
    "method": "The checkpoint (its scoring does not change the reconstruction).",
    "SSIM CXR": "Mean SSIM of the reconstructions of normal test chest X-rays to their inputs (synthetic DRR "
                "chest radiographs when there are no real ones): how faithfully it reconstructs its own domain.",
    "SSIM other": "Mean over the other domains of the SSIM of reconstructions to inputs. High: the method copies "
                  "images it has never seen instead of turning them into chest X-rays.",
    "P(CXR) other": "Mean over the other domains of the domain classifier's P(chest X-ray) of the reconstructions "
                    "[95 % interval].",
    "FD other": "Mean over the other domains of the Fréchet distance of the reconstructions' features to the "
                "chest X-ray training images [95 % interval]. Lower: closer to chest X-rays.",
    "FD inputs": "The same for the inputs themselves: the distance the reconstructions should reduce.",
    "CXR-like": "Other domains whose reconstructions the classifier calls chest X-rays (mean P > 0.5), of all.",
    "closer": "Other domains whose reconstructions are at least 5 % closer (FD) to chest X-rays than the inputs.",
    "learned?": "Did it learn the chest X-ray distribution (MorphAEus Table 1)? ✓ yes: every other domain's "
                "reconstructions are classified as chest X-rays and are 5 % closer in FD; ✗ no: the classifier calls "
                "no other domain's reconstructions chest X-rays ('closer' says whether they moved towards them "
                "anyway); ◐ partly: some domains look like chest X-rays, or not all are closer.",
}
DETAIL_HELP = {
    "n": "Images of this domain (sources: distinct images; the rest are random variants of them).",
    "SSIM": "Mean SSIM of the reconstructions to their inputs.",
    "L1": "Mean absolute reconstruction error (intensity in [0, 1]).",
    "P(CXR)": "Mean P(chest X-ray) of the reconstructions [95 % bootstrap interval].",
    "P(CXR) in": "Mean P(chest X-ray) of the inputs.",
    "FD": "Fréchet distance of the reconstructions to the chest X-ray training images [95 % bootstrap interval].",
    "FD in": "The same for the inputs.",
    "✓?": "✓: the reconstructions are classified as chest X-rays and are >= 5 % closer in FD; ◐: classified as "
          "chest X-rays but not closer; ✗: not classified as chest X-rays (FD closer: they moved towards them).",
}

# Column widths in pixels (the summary fits a 1400 px window with the sidebar open).
SUMMARY_WIDTHS = {"method": 200, "SSIM CXR": 72, "SSIM other": 78, "P(CXR) other": 168, "FD other": 128,
                  "FD inputs": 72, "CXR-like": 66, "closer": 56, "learned?": 84}
DETAIL_WIDTHS = {"method": 170, "domain": 150, "n": 40, "sources": 56, "SSIM": 56, "L1": 56, "P(CXR)": 168,
                 "P(CXR) in": 72, "FD": 128, "FD in": 56, "✓?": 120}


def summary_rows(numbers: dict[str, dict[str, Any]], titles: dict[str, str]) -> list[dict[str, Any]]:
    """One row per checkpoint (its numbers under its id): SSIM on chest X-rays, the means over the
    other domains with their intervals, how many domains meet each criterion, and the verdict."""
    out = []
    for cid, num in numbers.items():
        doms = num.get("domains", [])
        ind = next((r for r in doms if r["kind"] == KIND_IN), None) or next(
            (r for r in doms if r["kind"] == KIND_SYNTHETIC), None)
        other = [r for r in doms if r["kind"] == KIND_OTHER]
        k = len(other)
        n_c = [classified(r) for r in other]
        n_f = [closer(r) for r in other]
        fd = combine([r.get("fd") for r in other])
        fd_in = combine([r.get("fd_inputs") for r in other])
        out.append({
            "method": titles.get(cid, cid),
            "SSIM CXR": _get(ind, "ssim"),
            "SSIM other": (combine([r.get("ssim") for r in other]) or {}).get("value"),
            "P(CXR) other": with_interval(combine([r.get("p_chest") for r in other])),
            "FD other": with_interval(fd),
            "FD inputs": None if fd_in is None else fd_in["value"],
            "CXR-like": None if not k or None in n_c else f"{sum(n_c)}/{k}",
            "closer": None if not k or None in n_f else f"{sum(n_f)}/{k}",
            "learned?": verdict(other),
        })
    return out


def detail_rows(numbers: dict[str, dict[str, Any]], titles: dict[str, str]) -> list[dict[str, Any]]:
    """One row per checkpoint and domain."""
    return [{"method": titles.get(cid, cid), "domain": r["domain"], "n": r["n"], "sources": r.get("sources"),
             "SSIM": _get(r, "ssim"), "L1": _get(r, "l1"), "P(CXR)": with_interval(r.get("p_chest")),
             "P(CXR) in": _get(r, "p_chest_inputs"), "FD": with_interval(r.get("fd")),
             "FD in": _get(r, "fd_inputs"), "✓?": domain_verdict(r) if r["kind"] != KIND_IN else ""}
            for cid, num in numbers.items() for r in num.get("domains", [])]


def verdict_caption(numbers: dict[str, dict[str, Any]], titles: dict[str, str]) -> str:
    """What the verdicts of the shown checkpoints say, in one sentence."""
    rows = summary_rows(numbers, titles)
    groups: dict[str, list[str]] = {}
    for r in rows:
        v = r["learned?"]
        if v:
            groups.setdefault(v.split()[0], []).append(r["method"])
    if not groups:
        return ""
    parts = []
    for sym, text in (("✓", "turn every other domain into a chest X-ray"),
                      ("◐", "make some other domains look like chest X-rays"),
                      ("✗", "make no other domain look like a chest X-ray")):
        if sym in groups:
            names = groups[sym]
            parts.append(f"{len(names)} of {len(rows)} ({', '.join(names)}) {text}")
    return "Here: " + "; ".join(parts) + "."


def real_chest(numbers: dict[str, dict[str, Any]]) -> bool:
    """Whether the numbers include real (not synthetic) chest X-rays."""
    return any(r["kind"] == KIND_IN for num in numbers.values() for r in num.get("domains", []))


def numbers_caption(numbers: dict[str, dict[str, Any]]) -> str:
    """What the numbers are: the feature space and reference of the FD (not FID), the images per
    domain, the classifier and the intervals."""
    first = next(iter(numbers.values()), {})
    label = first.get("feature_space", "FD")
    reference = first.get("reference") or "stored in the domain classifier"
    n_img = first.get("images_per_domain")
    sizes = ""
    if n_img:
        chest = "the normal test chest X-rays, and " if real_chest(numbers) else ""
        sizes = (f"Every domain has {n_img} images: {chest}for each demo domain its demo images plus random variants "
                 "of them (crops, flips, small rotations, gamma), so its FD describes those few sources, not the whole "
                 "domain; the same number everywhere keeps the FD's small-sample bias equal. ")
    return (f"FD: {label}, the Fréchet distance between the feature statistics of the reconstructions and those of "
            f"the chest X-ray training images ({reference}), in the project's own encoder space — **not FID** (no "
            f"Inception weights here). {sizes}P(CXR): a small domain classifier's probability that an image is a "
            "chest X-ray (trained on chest X-rays and the embedded demo domains). Intervals: bootstrap 95 % over "
            f"resamples of each domain's images ({first.get('n_boot', N_BOOT)} resamples); the means over domains "
            "combine their bootstrap standard errors. High SSIM on other domains means the method *copies* inputs "
            "it has never seen.")


def live_note(live: dict[str, str], titles: dict[str, str]) -> str:
    """Which checkpoints the page computed live (and why), and the command that precomputes them."""
    cmd = "python -m upd_core myth precompute --checkpoint " + " ".join(sorted({c.split("@")[0] for c in live}))
    return ("Computed live for " + ", ".join(f"{titles.get(c, c)} ({why})" for c, why in live.items())
            + ": on the embedded demo images as they are (a few per domain), which are too few for a Fréchet "
            f"distance. Precompute them on {DEFAULT_IMAGES} images per domain, with FD: `{cmd}`.")


def fd_notes(numbers: dict[str, dict[str, Any]]) -> list[str]:
    """Why some domains have no FD, in one sentence per feature dimension ([] when all have one)."""
    by_dim: dict[int, set[int]] = {}
    for num in numbers.values():
        for r in num.get("domains", []):
            if r.get("fd_note") and "fd" not in r:
                by_dim.setdefault(int(num.get("feature_dim") or 0), set()).add(int(r["n"]))
    out = []
    for dim, ns in sorted(by_dim.items()):
        span = f"{min(ns)}" if len(ns) == 1 else f"{min(ns)}–{max(ns)}"
        out.append(f"No FD where a domain has only {span} images, fewer than the {dim} feature dimensions (its "
                   "covariance would be singular); `python -m upd_core myth precompute` computes the FD on "
                   f"{DEFAULT_IMAGES} images per domain.")
    return out


def example_cells(det, checkpoint_id: str, examples: dict[str, np.ndarray], domain_model=None) -> dict[str, Cell]:
    """The reconstruction of each example image (one batch), captioned with its P(chest X-ray)."""
    try:
        rec = reconstruct(det, np.stack(list(examples.values())))
    except Exception as exc:  # shown as one line, never a traceback
        return {n: empty(f"{type(exc).__name__}: {exc}") for n in examples}
    if rec is None:
        return {n: empty("no reconstruction") for n in examples}
    probs = domain_model.chest_probability(rec) if domain_model is not None else [None] * len(rec)
    return {n: picture(r, "" if p is None else f"P(CXR) {float(p):.2f}") for n, r, p in zip(examples, rec, probs)}


# ---------------------------------------------------------------- (b) curse of resolution

RESOLUTION_DEMOS = ("astronaut", "chelsea", "colin27-t1", "digit-3")


def resolution_series(views: Sequence[CheckpointView]) -> tuple[list[CheckpointView], list[CheckpointView]]:
    """The curse-of-resolution AEs from the largest latent to the smallest, and MorphAEus (if any)."""
    series = sorted([v for v in views if v.method.startswith("ae-latent-")],
                    key=lambda v: -int(v.method.rsplit("-", 1)[1]))
    return series, [v for v in views if v.method == "morphaeus"][:1]


def resolution_examples(chest: dict[str, np.ndarray], items: Sequence[DemoItem],
                        image_of: Callable[[str], np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """(name, image): a healthy and a pneumonia chest X-ray and a healthy one with a synthetic lesion
    (when a data folder gave them), then a photo, a cat, a brain MRI and a digit of the demo set."""
    from .lesion_lab import add_lesion

    examples: list[tuple[str, np.ndarray]] = []
    normal, abnormal = chest.get("normal"), chest.get("abnormal")
    if normal is not None:
        examples.append(("healthy chest X-ray", normal[0]))
    if abnormal is not None:
        examples.append(("pneumonia", abnormal[0]))
    if normal is not None and len(normal) > 1:
        img, _ = add_lesion(normal[1], size=0.12, contrast=0.4, center=(0.5, 0.3), blend="add")
        examples.append(("healthy + synthetic lesion", img))
    titles = {it.id: it.title for it in items}
    examples += [(titles[did], image_of(did)) for did in RESOLUTION_DEMOS if did in titles]
    return examples


def reconstruction_cell(det, checkpoint_id: str, image: np.ndarray) -> Cell:
    """A checkpoint's reconstruction of one image with its score, or the error."""
    res = run_detector(det, image, checkpoint_id)
    if res.error:
        return empty(res.error)
    return picture(res.reconstruction, f"score {sig3(res.score)}")


def resolution_caption(series: Sequence[CheckpointView], morph: Sequence[CheckpointView]) -> str:
    """What the columns of the curse-of-resolution grid are."""
    sides = ", ".join(v.method.replace("ae-latent-", "") + "×" + v.method.replace("ae-latent-", "") for v in series)
    return (f"Latent side at 128×128 input, left to right: {sides}"
            + (" — then MorphAEus (1×1 prior, locally deformed)." if morph else "."))
