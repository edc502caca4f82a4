"""Running checkpoints on one image, and the out-of-distribution check of the result.

`run_checkpoints` gives one `MethodResult` per checkpoint (maps at the input's size, score,
percentile and robust z against the normal reference scores of that very scoring, errors as one
line); `ood_check` turns the results and the domain classifier into a plain-language warning;
`results_json` is the downloadable report. Used by Compare, Upload, Lesion lab, Myth and Gradio.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .units import GENERIC, Units, units_of


@dataclass
class MethodResult:
    """One checkpoint's view of one image (maps at the input's size)."""

    checkpoint: str
    method: str
    title: str
    score: float = float("nan")
    percentile: float | None = None
    robust_z: float | None = None  # (score - median of normal reference scores) / robust spread
    has_reference: bool = True  # False when this scoring has no normal reference scores
    anomaly_map: np.ndarray | None = None
    reconstruction: np.ndarray | None = None
    prior: np.ndarray | None = None
    warped: np.ndarray | None = None
    deformation: np.ndarray | None = None
    residual: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    units: Units = GENERIC  # what the score and the map measure (upd_core.app.units)

    def summary(self) -> dict[str, Any]:
        """JSON-able numbers (no maps)."""
        return {"checkpoint": self.checkpoint, "method": self.method, "title": self.title,
                "score": None if not np.isfinite(self.score) else float(self.score),
                "score_unit": self.units.score, "anomaly_map_unit": self.units.map,
                "percentile_vs_normal_validation": None if self.percentile is None else round(float(self.percentile), 2),
                "robust_z_vs_normal_validation": None if self.robust_z is None else round(float(self.robust_z), 2),
                "seconds": round(self.seconds, 3), "error": self.error}


def robust_z(score: float, ref: np.ndarray) -> float | None:
    """How many robust standard deviations (IQR / 1.349) a score lies above the normal median."""
    ref = np.asarray(ref, dtype=np.float64)
    if ref.size < 4:
        return None
    q1, med, q3 = np.percentile(ref, [25, 50, 75])
    spread = max((q3 - q1) / 1.349, 1e-12, 1e-6 * abs(med))
    return float((score - med) / spread)


def percentile_text(p: float | None) -> str:
    """The percentile of a score among normal validation images, as one line."""
    if p is None:
        return "no normal validation scores stored"
    return f"higher than {p:.1f} % of normal validation images"


def run_detector(det, image: np.ndarray, checkpoint_id: str = "") -> MethodResult:
    """Predict one (H,W) image in [0,1] with a loaded detector; errors become `result.error`.

    The robust z compares the score with the normal reference scores of the detector's current
    scoring (`det.reference_scores()`, per `<checkpoint>@<variant>`); a scoring without them gets
    no z and `has_reference=False`.
    """
    t0 = time.perf_counter()
    try:
        pred = det.predict(np.asarray(image, dtype=np.float32)[None])
    except Exception as exc:  # shown as one line in the app, never a traceback
        res = MethodResult(checkpoint_id or getattr(det, "checkpoint_id", det.method), det.method, result_title(det),
                           error=f"{type(exc).__name__}: {exc}")
        res.seconds = time.perf_counter() - t0
        return res
    return result_from_prediction(det, image, pred, checkpoint_id, time.perf_counter() - t0)


def result_title(det) -> str:
    """The method's title, with its scoring when the checkpoint has several ("CRADL [gmm4]"), as
    `views.checkpoint_views` titles it."""
    title = type(det).title or det.method
    try:
        names = det.variant_names()
        variant = det.variant
    except Exception:  # a stand-in detector without variants
        return title
    return f"{title} [{variant}]" if variant and len(names) > 1 else title


def result_from_prediction(det, image: np.ndarray, pred, checkpoint_id: str = "", seconds: float = 0.0) -> MethodResult:
    """The `MethodResult` of one image's `Prediction` (the first of the batch); used by
    `run_detector` and by the CLI's `predict`, so both compare with the same reference scores."""
    res = MethodResult(checkpoint_id or getattr(det, "checkpoint_id", det.method), det.method, result_title(det),
                       seconds=seconds)
    try:
        res.units = units_of(det)
    except Exception:  # a stand-in detector: generic units
        res.units = GENERIC
    res.score = float(pred.score[0])
    res.percentile = None if pred.percentile is None else float(pred.percentile[0])
    ref = det.reference_scores()
    res.has_reference = ref is not None
    res.robust_z = None if ref is None else robust_z(res.score, ref.detach().cpu().numpy())
    res.anomaly_map = pred.anomaly_map[0]
    for name in ("reconstruction", "prior", "warped", "deformation"):
        v = getattr(pred, name)
        setattr(res, name, None if v is None else v[0])
    if res.reconstruction is not None:
        res.residual = np.abs(np.asarray(image, dtype=np.float32) - res.reconstruction)
    res.extras = {k: v[0] for k, v in pred.extras.items()}
    return res


def run_checkpoints(image: np.ndarray, checkpoint_ids: Iterable[str], load: Callable[[str], Any],
                    progress: Callable[[int, int, str], None] | None = None) -> list[MethodResult]:
    """Run several checkpoints on one image; `load(id)` returns a detector (cached by the caller)."""
    ids = list(checkpoint_ids)
    results = []
    for i, cid in enumerate(ids):
        if progress:
            progress(i, len(ids), cid)
        try:
            det = load(cid)
        except Exception as exc:
            results.append(MethodResult(cid, "?", cid, error=f"could not load checkpoint: {exc}"))
            continue
        results.append(run_detector(det, image, cid))
    if progress:
        progress(len(ids), len(ids), "")
    return results


# ---------------------------------------------------------------- out-of-distribution check

@dataclass
class OODReport:
    level: str  # "ok", "unusual", "far", or "unknown" (nothing to compare the image with)
    message: str
    details: dict[str, Any] = field(default_factory=dict)


Z_UNUSUAL, Z_FAR = 6.0, 20.0
# Calibrated on the Kermany test split (robust z vs each checkpoint's normal validation scores):
# normal images reach z ~ 4 (MorphAEus) / 12 (CRADL) at their 99th percentile, pneumonia 10 / 18,
# while the embedded demo images of other domains reach 5-21 (MorphAEus) / 25-200 (CRADL).
# Scores alone therefore cannot separate severe pathology from another domain: without the domain
# classifier only a median z above Z_FAR is called "far"; with it, the classifier decides.


def _unreferenced_note(ids: Sequence[str]) -> str:
    """The sentence naming the scorings that have no normal reference scores ('' when none)."""
    if not ids:
        return ""
    if len(ids) == 1:
        return f" {ids[0]} has no normal reference scores for its scoring, so it is left out of this check."
    return f" {', '.join(ids)} have no normal reference scores for their scoring, so they are left out of this check."


def ood_check(results: Sequence[MethodResult], domain_probability: float | None = None,
              training_data: str = "chest X-rays") -> OODReport:
    """Plain-language warning when an image is far from the checkpoints' training data.

    Signals: the domain classifier's probability that the image is a chest X-ray (when shipped;
    it decides "far"), and how far from the normal reference scores of its own scoring each method
    places the image (median robust z over methods). Pathology raises scores too, so high scores
    alone make an image "unusual", and "far" only when extreme and no classifier is available.
    Scorings without reference scores are named and left out, never compared with another's.
    """
    zs = [r.robust_z for r in results if r.robust_z is not None and r.error is None]
    unreferenced = [r.checkpoint for r in results if r.error is None and not r.has_reference]
    note = _unreferenced_note(unreferenced)
    med_z = float(np.median(zs)) if zs else None
    details: dict[str, Any] = {"median_robust_z": None if med_z is None else round(med_z, 2),
                               "domain_probability_chest_xray": None if domain_probability is None
                               else round(float(domain_probability), 3),
                               "without_reference_scores": unreferenced}
    far_msg = ("The heatmaps and scores below are not meaningful for it: the models only know what normal "
               "training images look like, so everything about a different kind of image looks 'abnormal'.")
    if domain_probability is not None:
        if domain_probability < 0.2:
            return OODReport("far", f"This image does not look like one of the {training_data} the models were "
                                    f"trained on (a classifier of image domains gives {100 * domain_probability:.0f} % "
                                    f"that it is one). {far_msg}{note}", details)
        if domain_probability < 0.5:
            return OODReport("unusual", f"This image may not be one of the {training_data} the models were "
                                        f"trained on (domain classifier: {100 * domain_probability:.0f} %). "
                                        f"Read the maps with care.{note}", details)
    elif med_z is None and unreferenced:
        return OODReport("unknown", f"The app cannot tell whether this image is like the {training_data} the "
                                    f"models were trained on: no domain classifier is shipped, and{note}", details)
    elif med_z is not None and med_z > Z_FAR:
        return OODReport("far", f"This image looks very different from the {training_data} the models were "
                                f"trained on (the methods score it {med_z:.0f} spreads above typical normal "
                                f"images). {far_msg}{note}", details)
    if med_z is not None and abs(med_z) > Z_UNUSUAL:
        side = "above" if med_z > 0 else "below"
        return OODReport("unusual", f"The methods score this image far {side} typical normal {training_data} "
                                    f"({abs(med_z):.0f} spreads). That can be pathology, but also a different view, "
                                    f"device, crop or image type. Read the maps with care.{note}", details)
    return OODReport("ok", f"The image is within the range of the {training_data} the models were trained on.{note}",
                     details)


OOD_HEADINGS = {"far": "⚠️ Out of distribution.", "unusual": "Unusual image.", "unknown": "", "ok": ""}


def ood_heading(level: str) -> str:
    """The bold first words of the app's out-of-distribution banner (also the CLI's warning)."""
    return OOD_HEADINGS.get(level, "")


def domain_probability(image: np.ndarray) -> float | None:
    """P(chest X-ray) of one image from the shipped domain classifier, or None when there is none."""
    from ..domain import load_domain_classifier

    clf = load_domain_classifier()
    if clf is None:
        return None
    return float(clf.chest_probability(np.asarray(image, np.float32)[None])[0])


def domain_classifier_summary() -> str:
    """One line on the domain classifier behind the OOD warning and the Myth page."""
    from ..domain import load_domain_classifier

    dom = load_domain_classifier()
    if dom is None:
        return ("absent (train it with `scripts/train_domain.sh`); the warning then relies on the methods' "
                "scores alone")
    return (f"present ({len(dom.classes)} domains, held-out accuracy "
            f"{dom.meta.get('held_out_accuracy', float('nan')):.3f}; {dom.feature_space()})")


def results_json(results: Sequence[MethodResult], source: str = "", ood: OODReport | None = None) -> str:
    """The downloadable JSON report of an analysis."""
    from .. import __version__

    doc = {"tool": f"UPD explorer {__version__}", "input": source,
           "note": "research / teaching software, not a medical device",
           "results": [r.summary() for r in results]}
    if ood is not None:
        doc["out_of_distribution"] = {"level": ood.level, "message": ood.message, **ood.details}
    return json.dumps(doc, indent=2)
