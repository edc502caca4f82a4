"""upd_core.app.analysis: running checkpoints on one image and the out-of-distribution check."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.app_fixtures import smooth_images
from upd_core.app import analysis
from upd_core.app.analysis import MethodResult


def result(z, has_reference=True, checkpoint="c"):
    return MethodResult(checkpoint, "spatial-ae", "AE", score=1.0, robust_z=z, has_reference=has_reference)


def test_robust_z_and_ood_levels():
    ref = np.random.default_rng(0).normal(1.0, 0.1, 200)
    assert abs(analysis.robust_z(1.0, ref)) < 0.2
    assert analysis.robust_z(3.0, ref) > 15
    assert analysis.robust_z(1.0, ref[:2]) is None

    assert analysis.ood_check([result(0.5), result(1.0)]).level == "ok"
    assert analysis.ood_check([result(8.0), result(9.0)]).level == "unusual"
    far = analysis.ood_check([result(40.0), result(60.0)])
    assert far.level == "far" and "not meaningful" in far.message
    assert analysis.ood_check([result(0.5)], domain_probability=0.05).level == "far"
    assert analysis.ood_check([result(0.5)], domain_probability=0.4).level == "unusual"
    assert analysis.ood_check([result(0.5)], domain_probability=0.99).level == "ok"
    assert analysis.ood_check([result(50.0)], domain_probability=0.99).level == "unusual"  # e.g. severe pathology
    assert analysis.ood_check([result(-9.0)]).level == "unusual"


def test_ood_names_scorings_without_reference_scores():
    mixed = analysis.ood_check([result(0.5), result(None, has_reference=False, checkpoint="vae-x@kl-grad")])
    assert mixed.level == "ok" and "vae-x@kl-grad has no normal reference scores" in mixed.message
    assert mixed.details["without_reference_scores"] == ["vae-x@kl-grad"]
    assert mixed.details["median_robust_z"] == 0.5  # only the referenced scoring counts
    alone = analysis.ood_check([result(None, has_reference=False, checkpoint="a@v"),
                                result(None, has_reference=False, checkpoint="b@w")])
    assert alone.level == "unknown" and "cannot tell" in alone.message and "a@v, b@w have no" in alone.message
    assert analysis.ood_check([result(None, has_reference=False)], domain_probability=0.05).level == "far"
    assert analysis.ood_check([result(0.5)]).details["without_reference_scores"] == []


class _Fixed:
    """A detector whose normal reference scores differ from its validation scores."""

    method, title = "spatial-ae", "fixed"

    def __init__(self, reference):
        self.val_scores = torch.full((50,), 100.0)
        self._reference = reference

    def reference_scores(self):
        return self._reference

    def predict(self, x):
        from upd_core.detector import Prediction

        n, h, w = np.asarray(x).shape
        return Prediction(score=np.full(n, 2.0), anomaly_map=np.zeros((n, h, w), np.float32))


def test_robust_z_uses_the_reference_scores_of_the_scoring():
    img = smooth_images(1, 16)[0]
    ref = torch.linspace(0.0, 2.0, 41)  # median 1.0, IQR 1.0
    r = analysis.run_detector(_Fixed(ref), img, "x@variant")
    assert r.has_reference and r.robust_z == pytest.approx(1.349)  # not against val_scores (median 100)
    missing = analysis.run_detector(_Fixed(None), img, "x@other")
    assert not missing.has_reference and missing.robust_z is None and missing.error is None


def test_a_vae_variant_without_reference_scores_is_not_compared():
    from upd_core.registry import get_method

    det = get_method("vae")(image_size=32).eval()
    det.val_scores = torch.linspace(0.5, 1.5, 20)  # stored for the default 'rec' scoring only
    img = smooth_images(1, 32, seed=2)[0]
    rec = analysis.run_detector(det, img, "vae-tiny")
    det.set_variant("kl-grad")
    grad = analysis.run_detector(det, img, "vae-tiny@kl-grad")
    assert rec.has_reference and rec.robust_z is not None
    assert not grad.has_reference and grad.robust_z is None and grad.percentile is None
    report = analysis.ood_check([rec, grad])
    assert report.details["without_reference_scores"] == ["vae-tiny@kl-grad"]


def test_run_checkpoints_fills_outputs(ckpts):
    import upd_core

    img = smooth_images(1, 48, seed=3)[0]
    calls = []
    results = analysis.run_checkpoints(img, ["spatial-ae-tiny-32", "morphaeus-tiny-32", "nope"],
                                       upd_core.load_detector, progress=lambda i, n, c: calls.append((i, n)))
    ae, morph, missing = results
    assert calls[-1] == (3, 3)
    assert ae.anomaly_map.shape == (48, 48) and ae.reconstruction.shape == (48, 48) and ae.prior is None
    assert ae.residual is not None and np.isfinite(ae.score) and 0 <= ae.percentile <= 100
    assert ae.has_reference and ae.robust_z is not None
    assert morph.deformation.shape == (2, 48, 48) and morph.warped is not None and morph.prior is not None
    assert missing.error and "could not load" in missing.error
    doc = json.loads(analysis.results_json(results, "x.png", analysis.ood_check(results)))
    assert doc["results"][0]["checkpoint"] == "spatial-ae-tiny-32" and "out_of_distribution" in doc
    assert doc["input"] == "x.png" and "not a medical device" in doc["note"]
    assert "|x − x̂|" in doc["results"][0]["score_unit"] and ae.title == "Spatial AE"  # one scoring: no [variant]
    assert analysis.ood_heading("far") == "⚠️ Out of distribution." and analysis.ood_heading("ok") == ""


def test_variant_results_are_titled_with_their_scoring():
    from upd_core.registry import get_method

    det = get_method("vae")(image_size=32)
    assert analysis.result_title(det) == "VAE [rec]"
    det.set_variant("kl-grad")
    assert analysis.result_title(det) == "VAE [kl-grad]"
    assert analysis.result_title(get_method("spatial-ae")(image_size=32)) == "Spatial AE"


def test_percentile_text():
    assert analysis.percentile_text(None) == "no normal validation scores stored"
    assert analysis.percentile_text(97.26) == "higher than 97.3 % of normal validation images"
