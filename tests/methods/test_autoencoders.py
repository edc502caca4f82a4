"""Plain auto-encoders: the VAE's scoring variants of the CRADL paper (Table 9) from the same weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from upd_core import scoring
from upd_core.checkpoint import load_detector
from upd_core.methods.autoencoders import VAE
from upd_core.methods.cevae import CEVAE, CEVAEConfig
from upd_core.methods.vae_helpers import GAUSS_SIGMA, MEDIAN_SIZE, kl_normal
from upd_core.training import TrainConfig, fit

from .test_contract import SIZE, smooth_images


@pytest.fixture(scope="module")
def vae_ckpt(tmp_path_factory):
    x = smooth_images(24, SIZE, seed=4)
    out = tmp_path_factory.mktemp("vae") / "vae"
    fit(VAE(image_size=SIZE), x[:20], x[20:], out, tc=TrainConfig(max_epochs=2, batch_size=8, progress=False))
    return out


def test_vae_table9_variants(vae_ckpt) -> None:
    x = smooth_images(3, SIZE, seed=9)
    base = load_detector(vae_ckpt, device="cpu")
    assert base.variant == "rec" and base.variant_names() == ("rec", "kl-grad", "combi", "elbo")
    p_rec = base.predict(x)
    assert p_rec.percentile is not None
    maps = {}
    for name in ("kl-grad", "combi", "elbo"):
        det = load_detector(f"{vae_ckpt}@{name}", device="cpu")
        p = det.predict(x)
        assert det.variant == name and p.percentile is None  # validation scores exist for 'rec' only
        assert p.anomaly_map.shape == (3, SIZE, SIZE) and np.isfinite(p.anomaly_map).all()
        assert (p.anomaly_map.reshape(3, -1).std(1) > 0).all()
        np.testing.assert_allclose(p.reconstruction, p_rec.reconstruction, rtol=1e-4, atol=1e-5)
        maps[name] = p
    # combi = KL-gradient map x (smoothed) residual, so it differs from the KL-gradient map alone
    assert not np.allclose(maps["combi"].anomaly_map, maps["kl-grad"].anomaly_map)
    assert (maps["elbo"].score > maps["combi"].score).all()  # ELBO sums over pixels + KL
    with pytest.raises(ValueError, match="no scoring variant"):
        base.set_variant("nll")
    base.set_variant("kl-grad")
    base.set_variant(None)
    assert base.variant == "rec"


def test_vae_table9_scores_follow_the_paper(vae_ckpt) -> None:
    """KL-grad variant: KL as image score; combi: the product of the raw maps, post-processed once
    with CRADL's constants (Sec. 4.5: 5x5 median, then Gaussian)."""
    x = smooth_images(3, SIZE, seed=10)
    xt = torch.as_tensor(x)[:, None]
    det = load_detector(f"{vae_ckpt}@kl-grad", device="cpu")
    with torch.no_grad():
        mu, logvar = det.encode(xt)
        rec = (xt - det.decode(mu)).abs()[:, 0]
    np.testing.assert_allclose(det.predict(x).score, kl_normal(mu, logvar).numpy(), rtol=1e-4)
    xg = xt.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(kl_normal(*det.encode(xg)).sum(), xg)
    det.set_variant("combi")
    want = scoring.postprocess(g.abs()[:, 0] * rec, MEDIAN_SIZE, GAUSS_SIGMA)
    np.testing.assert_allclose(det.predict(x).anomaly_map, want.numpy(), rtol=1e-3, atol=1e-7)


def test_vae_and_cevae_share_one_table9(vae_ckpt) -> None:
    """The same weights give the same Table-9 scores and maps as VAE variants and as ceVAE variants."""
    vae = load_detector(vae_ckpt, device="cpu")
    c = vae.config
    cevae = CEVAE(CEVAEConfig(channels=c.channels, kernel=c.kernel, squeeze_channels=c.squeeze_channels,
                              latent_dim=c.latent_dim), image_size=SIZE).eval()
    cevae.load_state_dict({k: v for k, v in vae.state_dict().items() if "scores" not in k}, strict=False)
    x = smooth_images(3, SIZE, seed=11)
    for name in ("rec", "kl-grad", "combi"):
        vae.set_variant(name)
        cevae.set_variant(name)
        pv, pc = vae.predict(x), cevae.predict(x)
        np.testing.assert_allclose(pv.score, pc.score, rtol=1e-4, atol=1e-7, err_msg=name)
        if name != "rec":  # the VAE's own 'rec' map keeps its config (no post-processing)
            np.testing.assert_allclose(pv.anomaly_map, pc.anomaly_map, rtol=1e-4, atol=1e-7, err_msg=name)
    # '@elbo' is each model's own training loss: sum of squared residuals + KL for the L2-trained
    # VAE (fidelity item 10), sum of absolute residuals + KL for the ceVAE's Table-9 ELBO.
    vae.set_variant("elbo")
    cevae.set_variant("elbo")
    xt = torch.as_tensor(x)[:, None]
    with torch.no_grad():
        mu, logvar = vae.encode(xt)
        res = (xt - vae.decode(mu).float())[:, 0]
        kl = kl_normal(mu, logvar)
    assert vae.config.rec_loss == "l2"
    np.testing.assert_allclose(vae.predict(x).score, (res.square().flatten(1).sum(1) + kl).numpy(), rtol=1e-4)
    np.testing.assert_allclose(cevae.predict(x).score, (res.abs().flatten(1).sum(1) + kl).numpy(), rtol=1e-4)
