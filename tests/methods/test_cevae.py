"""ceVAE with CRADL's scoring functions (Table 9), and RADL (density heads on the VAE's mu)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from upd_core import derived
from upd_core.checkpoint import load_detector, save_checkpoint
from upd_core.density import DENSITIES
from upd_core.methods.autoencoders import VAE
from upd_core.methods.cevae import CEVAE, RADL, CEVAEConfig
from upd_core.methods.vae_helpers import kl_normal
from upd_core.registry import list_methods
from upd_core.training import TrainConfig, fit

from .test_contract import smooth_images

SIZE = 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> CEVAE:
    x = smooth_images(40, SIZE, seed=2)
    det = CEVAE(CEVAEConfig(median_size=0, gauss_sigma=0.0), image_size=SIZE)
    fit(det, x[:32], x[32:], tmp_path_factory.mktemp("cevae"),
        tc=TrainConfig(max_epochs=2, batch_size=8, progress=False, seed=0))
    return det


def test_registered_and_reuses_the_project_vae() -> None:
    assert {"cevae", "radl"} <= set(list_methods()) and "vae-combi" not in list_methods()  # VAE: `vae@combi`
    assert issubclass(CEVAE, VAE) and issubclass(RADL, CEVAE)
    assert CEVAEConfig().ce_weight == 1.0
    assert RADL.Config().score_kind == "nll-grad" and RADL.Config().image_score == "nll"
    with pytest.raises(ValueError, match="score_kind"):
        CEVAE(CEVAEConfig(score_kind="bogus"), image_size=SIZE)


def test_training_loss_has_the_context_term(trained: CEVAE) -> None:
    trained.train()
    out = trained.loss(torch.as_tensor(smooth_images(4, SIZE))[:, None], 0)
    trained.eval()
    assert {"loss", "rec", "kl", "ce"} <= set(out)
    torch.testing.assert_close(out["loss"], out["rec"] + out["kl"] + out["ce"])


def test_scores_and_maps_follow_table9(trained: CEVAE) -> None:
    x = torch.as_tensor(smooth_images(4, SIZE, seed=5))[:, None]
    trained.eval()
    out = trained.forward_maps(x)
    assert {"rec", "kl_grad", "combi", "nll_grad", "reconstruction"} <= set(out)
    torch.testing.assert_close(out["combi"], out["kl_grad"] * out["rec"])  # combi = KL-grad x rec
    torch.testing.assert_close(out["anomaly_map"], out["combi"])  # default map of the ceVAE
    with torch.no_grad():
        mu, logvar = trained.encode(x)
        kl = kl_normal(mu, logvar)
        rec = (x - trained.decode(mu)).abs().flatten(1)
    torch.testing.assert_close(out["score"], rec.sum(1) + kl, rtol=1e-4, atol=1e-3)  # ELBO score
    # KL gradient: finite differences agree with autograd on one pixel
    eps, p = 1e-2, (0, 0, 10, 12)
    xp, xm = x.clone(), x.clone()
    xp[p] += eps
    xm[p] -= eps
    with torch.no_grad():
        def kl_of(t: torch.Tensor) -> torch.Tensor:
            return kl_normal(*trained.encode(t))[0]
        fd = (kl_of(xp) - kl_of(xm)) / (2 * eps)
    assert abs(abs(float(fd)) - float(out["kl_grad"][0, 10, 12])) < 0.1 * abs(float(fd)) + 1e-3


def test_predict_exposes_all_maps(trained: CEVAE) -> None:
    pred = trained.predict(smooth_images(3, SIZE, seed=6))
    assert {"rec", "kl_grad", "combi", "nll_grad"} <= set(pred.extras)
    assert pred.reconstruction.shape == (3, SIZE, SIZE)
    assert all(np.isfinite(v).all() and v.shape == (3, SIZE, SIZE) for v in pred.extras.values())


def test_radl_derived_from_cevae(trained: CEVAE, tmp_path, monkeypatch) -> None:
    save_checkpoint(trained, tmp_path / "cevae", checkpoint_id="cevae")
    val = smooth_images(6, SIZE, seed=32)
    monkeypatch.setattr(derived, "load_split", lambda *a, **k: (None, val, None, None, None))
    derived.derive(str(tmp_path / "cevae"), "radl", str(tmp_path / "radl"), "radl")
    radl = load_detector(tmp_path / "radl", device="cpu")
    assert radl.method == "radl" and radl.config.score_kind == "nll-grad"
    assert radl.calib_scores.numel() == 0  # the source had none
    x = smooth_images(4, SIZE, seed=8)
    pr = radl.predict(x)
    np.testing.assert_allclose(pr.score, trained.to("cpu").score_all(x)["gmm1"], rtol=1e-4)
    np.testing.assert_allclose(pr.anomaly_map, pr.extras["nll_grad"], rtol=1e-5)
    assert pr.percentile is not None
    radl.set_variant("gmm8")  # calibrated by derive: percentiles for every head (val_scores_all)
    assert radl.predict(x).percentile is not None


def test_derive_recomputes_calibration_rows_for_the_new_variants(trained: CEVAE, tmp_path, monkeypatch) -> None:
    """A source's calib_scores rows belong to its own variants (the ceVAE's four scorings), so
    the derived RADL gets one row per density head, computed on the calibration split."""
    calib = smooth_images(5, SIZE, seed=33)
    trained.calibrate_percentiles(calib)
    try:
        save_checkpoint(trained, tmp_path / "cevae", checkpoint_id="cevae")
    finally:
        trained.calib_scores = torch.zeros(0, 0)
    splits = {"val": smooth_images(6, SIZE, seed=32), "calib": calib}
    monkeypatch.setattr(derived, "load_split", lambda data, layout, split, size: (None, splits[split], None, None, None))
    derived.derive(str(tmp_path / "cevae"), "radl", str(tmp_path / "radl"), "radl")
    radl = load_detector(tmp_path / "radl", device="cpu")
    assert radl.calib_scores.shape == (len(DENSITIES), 5)
    for name in DENSITIES:
        radl.set_variant(name)
        torch.testing.assert_close(radl.reference_scores(), radl.calib_scores[radl.variant_names().index(name)])
        np.testing.assert_allclose(radl.calib_scores[DENSITIES.index(name)].numpy(),
                                   radl.score_all(calib)[name], rtol=1e-4)


def test_table9_scores_are_scoring_variants(trained: CEVAE) -> None:
    """ceVAE's maps/scores (rec, KL-grad, combi, ELBO) are selectable variants of the same weights;
    percentiles are only given for the scoring the validation scores were stored for."""
    x = smooth_images(3, SIZE, seed=12)
    assert trained.variant_names()[0] == "elbo" and trained.variant == "elbo"
    assert set(trained.variant_names()) == {"elbo", "combi", "rec", "kl-grad"}
    base = trained.predict(x)
    try:
        trained.set_variant("rec")
        rec = trained.predict(x)
        np.testing.assert_allclose(rec.anomaly_map, base.extras["rec"], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(rec.score, base.extras["rec"].reshape(3, -1).mean(1), rtol=1e-3, atol=1e-6)
        assert rec.percentile is None
        with pytest.raises(ValueError, match="no scoring variant"):
            trained.set_variant("nope")
    finally:
        trained.set_variant(None)
    assert trained.variant == "elbo" and trained.predict(x).percentile is not None
