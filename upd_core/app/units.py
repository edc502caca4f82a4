"""What a method's score and anomaly map measure, in words: the unit behind every number shown.

`units_of(det)` reads it from the loaded detector (its family, scoring variant, map kind and score
reduction), so a residual, a KL divergence, an ELBO, a negative log-likelihood (which may be
negative) or an interpolation factor is named as such on the score's tooltip, on the colour bars
of the maps and in the downloads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HIGHER = "Higher = more abnormal."
PERCENTILE = "Compare it with the method's own normal images (the percentile), not with other methods."
HEADS = {"gmm1": "a Gaussian (GMM, K = 1)", "gmm2": "a GMM with K = 2", "gmm4": "a GMM with K = 4",
         "gmm8": "a GMM with K = 8", "flow": "a RealNVP normalising flow"}
REDUCTIONS = {"mean": "mean", "max": "maximum", "mean-top25": "mean of the top 25 %",
              "masked-mean": "mean inside the mask", "masked-max": "maximum inside the mask"}
RESIDUAL = "|x − x̂|"
MAPS = {  # map kind -> (colour-bar unit, sentence)
    "l1": (f"residual {RESIDUAL} (intensity, 0–1)",
           "the absolute difference between the image and its reconstruction, in image intensity (0–1)"),
    "rec": (f"residual {RESIDUAL} (intensity, 0–1)",
            "the absolute difference between the image and its reconstruction, in image intensity (0–1)"),
    "ssim": ("1 − local SSIM", "one minus the local structural similarity of image and reconstruction"),
    "l1*ssim": (f"{RESIDUAL} × (1 − SSIM)", "the residual times one minus the local structural similarity"),
    "kl-grad": ("|∂KL/∂x| (KL gradient)", "the magnitude of the gradient of the KL divergence with respect to "
                                          "each pixel"),
    "combi": (f"|∂KL/∂x| × {RESIDUAL}", "the KL-gradient map times the residual (CRADL Table 9's 'combi')"),
    "nll-grad": ("|∂NLL/∂x| (NLL gradient)", "the magnitude of the gradient of the negative log-likelihood "
                                            "with respect to each pixel"),
}


@dataclass(frozen=True)
class Units:
    """Short names for the score and the map, and the sentence behind the score's tooltip."""

    score: str
    map: str
    help: str


GENERIC = Units("score", "anomaly map (method-specific units)", f"The method's image score. {HIGHER}")


def _nll(head: str, what: str) -> Units:
    return Units(f"NLL of the {what} (nats)", MAPS["nll-grad"][0],
                 f"Negative log-likelihood, in nats, of the image's {what} under {HEADS.get(head, head)} fitted to "
                 f"normal training images. {HIGHER} It can be negative: a density over a continuous "
                 f"representation can exceed 1, so the value has no absolute meaning. {PERCENTILE}")


def _reduced(reduction: str, map_kind: str) -> Units:
    unit, sentence = MAPS.get(map_kind, (GENERIC.map, "the method's anomaly map"))
    how = REDUCTIONS.get(reduction, reduction)
    return Units(f"{how} of the map: {unit}", unit,
                 f"The {how} over the image of the anomaly map, {sentence}. {HIGHER}")


def units_of(det: Any) -> Units:
    """The units of a loaded detector's current scoring (its `@variant`)."""
    from ..density import DENSITIES
    from ..methods.vae_helpers import VARIANTS

    cfg = getattr(det, "config", None)
    reduction = getattr(cfg, "score_reduction", "mean")
    try:
        variant = det.variant
    except Exception:  # a detector without variants
        variant = None
    method = getattr(det, "method", "")
    if variant in DENSITIES:
        return _nll(variant, "ceVAE representation" if method in ("radl", "cevae") else "SimCLR representation")
    if variant in VARIANTS:
        map_kind, score = VARIANTS[variant]
        if map_kind == "rec":
            map_kind = getattr(cfg, "map_kind", "l1")
        unit = MAPS.get(map_kind, (GENERIC.map, ""))[0]
        if score == "kl":
            return Units("KL divergence (nats)", unit,
                         "The KL divergence between the encoder's posterior q(z|x) and the prior p(z), in nats: "
                         f"how unusual the image's latent code is. {HIGHER}")
        if score == "elbo":
            return Units(f"Σ {RESIDUAL} + KL (negative ELBO)", unit,
                         f"The negative evidence lower bound: the summed residual {RESIDUAL} over all pixels plus "
                         f"the KL divergence (nats). {HIGHER}")
        if score == "rec":  # Table 9's 'rec' score is the mean residual (the VAE's own: its reduction)
            return _reduced("mean" if method in ("cevae", "radl") else reduction, map_kind)
        return _reduced(reduction, map_kind)
    if method in ("pii", "fpi"):
        how = REDUCTIONS.get(reduction, reduction)
        return Units(f"{how} interpolation factor (0–1)", "predicted interpolation factor (0–1)",
                     f"The {how} over the image of the predicted interpolation factor: per pixel, how much of a "
                     f"foreign patch the network believes was blended in (0 = none, 1 = all). {HIGHER}")
    if hasattr(cfg, "map_kind"):
        return _reduced(reduction, cfg.map_kind)
    return GENERIC
