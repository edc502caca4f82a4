"""The Myth page: what do auto-encoders really learn (MorphAEus paper, Table 1 and Fig. 5)?

(a) Manifold test: reconstructions of chest X-rays and of other domains, their SSIM to the inputs,
the Fréchet distance of their features to the training images and a domain classifier's
confidence that they are chest X-rays. (b) Curse of resolution: the same auto-encoder with ever
smaller latents, then MorphAEus, on a few telling examples.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .analysis import run_detector
from .cells import Cell, empty, picture
from .demo_set import DemoItem
from .formatting import sig3
from .views import CheckpointView

IN_DISTRIBUTION = "chest X-ray (in-distribution)"


def ssim_per_image(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSIM of each image pair of two (N,H,W) stacks."""
    import torch

    from ..scoring import ssim

    return ssim(torch.as_tensor(np.asarray(x, np.float32)), torch.as_tensor(np.asarray(y, np.float32))).numpy()


@dataclass
class ManifoldRow:
    checkpoint: str
    domain: str
    n: int
    ssim: float  # reconstruction vs its input
    fd: float | None  # Fréchet distance of reconstructions to the training features
    fd_inputs: float | None  # the same for the inputs themselves (reference)
    confidence: float | None  # mean domain-classifier P(chest X-ray) of the reconstructions
    confidence_inputs: float | None
    example: Cell | None = None  # the reconstruction of the domain's first image


def manifold_sets(chest_normal: np.ndarray | None, groups: dict[str, list[DemoItem]], domains: Sequence[str],
                  image_of: Callable[[str], np.ndarray]) -> dict[str, np.ndarray]:
    """The image sets of the manifold test: normal chest X-rays (when given), then each demo domain."""
    sets: dict[str, np.ndarray] = {}
    if chest_normal is not None and len(chest_normal):
        sets[IN_DISTRIBUTION] = chest_normal
    for d in domains:
        sets[d] = np.stack([image_of(it.id) for it in groups[d]])
    return sets


def manifold_test(det, sets: dict[str, np.ndarray], domain_model=None, checkpoint_id: str = "") -> list[ManifoldRow]:
    """Per domain: SSIM of reconstructions, FD of reconstructions to the training images and the
    domain classifier's chest-X-ray confidence (MorphAEus paper, Table 1 idea).

    `domain_model` (upd_core.domain.DomainClassifier) supplies features, training statistics and
    probabilities; without it FD and confidence are None. Rows carry `checkpoint_id` (default: the
    detector's own id; pass the `<checkpoint>@<variant>` a page selected).
    """
    cid = checkpoint_id or getattr(det, "checkpoint_id", det.method)
    rows = []
    for name, imgs in sets.items():
        imgs = np.asarray(imgs, np.float32)
        if imgs.size == 0:
            continue
        pred = det.predict(imgs)
        rec = pred.reconstruction
        if rec is None:
            continue
        s = float(ssim_per_image(imgs, rec).mean())
        fd = fd_in = conf = conf_in = None
        if domain_model is not None:
            fd = domain_model.frechet_to_training(rec)
            fd_in = domain_model.frechet_to_training(imgs)
            conf = float(domain_model.chest_probability(rec).mean())
            conf_in = float(domain_model.chest_probability(imgs).mean())
        rows.append(ManifoldRow(cid, name, len(imgs), s, fd, fd_in, conf, conf_in, picture(rec[0])))
    return rows


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def manifold_summary(rows: Sequence[ManifoldRow], checkpoint_ids: Sequence[str], titles: dict[str, str],
                     fd_label: str) -> list[dict[str, Any]]:
    """One row per checkpoint: SSIM on chest X-rays, mean SSIM / FD / P(chest X-ray) on the other
    domains, and the paper's verdict (reconstructions >= 5 % closer to chest X-rays than the inputs
    and confidently classified as chest X-rays) when FD and confidence exist."""
    out = []
    for cid in checkpoint_ids:
        mine = [r for r in rows if r.checkpoint == cid]
        ind = [r for r in mine if r.domain.startswith("chest")]
        ood = [r for r in mine if not r.domain.startswith("chest")]
        fd_r, fd_i, conf = (_mean([getattr(r, k) for r in ood]) for k in ("fd", "fd_inputs", "confidence"))
        row = {"method": titles.get(cid, cid),
               "SSIM (chest X-rays)": ind[0].ssim if ind else None,
               "mean SSIM (other domains)": _mean([r.ssim for r in ood]),
               f"mean {fd_label} (other domains)": fd_r,
               "mean P(chest X-ray) (other domains)": conf}
        if fd_r is not None and conf is not None:
            closer = fd_i is not None and fd_r <= 0.95 * fd_i
            row["learned the distribution?"] = "✓" if (closer and conf > 0.5) else "✗"
        out.append(row)
    return out


def manifold_detail(rows: Sequence[ManifoldRow], titles: dict[str, str], fd_label: str) -> list[dict[str, Any]]:
    """One row per method and domain."""
    return [{"method": titles.get(r.checkpoint, r.checkpoint), "domain": r.domain, "images": r.n,
             "SSIM (rec. vs input)": r.ssim, f"{fd_label} of reconstructions": r.fd,
             f"{fd_label} of inputs": r.fd_inputs, "P(chest X-ray) of reconstructions": r.confidence,
             "P(chest X-ray) of inputs": r.confidence_inputs} for r in rows]


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
