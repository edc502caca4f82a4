"""VAE helpers: the KL term, the reparameterisation, and CRADL Table 9's scores (`table9`)."""
from __future__ import annotations

import pytest
import torch

from upd_core import scoring
from upd_core.methods.autoencoders import VAE
from upd_core.methods.vae_helpers import (GAUSS_SIGMA, MEDIAN_SIZE, VARIANTS, kl_gradient, kl_normal,
                                          reparameterize, table9)

from .test_contract import smooth_images

SIZE = 32


def test_kl_normal_matches_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(6), torch.ones(6))
    torch.testing.assert_close(kl_normal(mu, logvar), torch.distributions.kl_divergence(q, p).sum(1))
    assert kl_normal(mu.bfloat16(), logvar.bfloat16()).dtype == torch.float32
    torch.testing.assert_close(kl_normal(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_reparameterize_samples_q() -> None:
    torch.manual_seed(0)
    mu, logvar = torch.full((20000, 2), 1.5), torch.full((20000, 2), float(torch.tensor(0.25).log()))
    z = reparameterize(mu, logvar)
    assert abs(float(z.mean()) - 1.5) < 0.02 and abs(float(z.std()) - 0.5) < 0.02


def test_table9_maps_scores_and_post_processing() -> None:
    """Table 9: combi = kl-grad x rec (raw maps), ELBO = sum |x - x_hat| + KL, KL, mean rec;
    the maps in the outputs are post-processed once with the given constants."""
    vae = VAE(image_size=SIZE).eval()
    x = torch.as_tensor(smooth_images(3, SIZE, seed=1))[:, None]
    out = table9(vae, x, "combi", "elbo", (MEDIAN_SIZE, GAUSS_SIGMA))
    _, mu, kl, g = kl_gradient(vae, x)
    with torch.no_grad():
        rec = (x - vae.decode(mu)).abs()[:, 0]
    raw = g.abs()[:, 0] * rec
    torch.testing.assert_close(out["anomaly_map"], raw)  # `predict` post-processes the anomaly map
    torch.testing.assert_close(out["combi"], scoring.postprocess(raw, MEDIAN_SIZE, GAUSS_SIGMA))
    torch.testing.assert_close(out["kl_grad"], scoring.postprocess(g.abs()[:, 0], MEDIAN_SIZE, GAUSS_SIGMA))
    torch.testing.assert_close(out["score"], rec.flatten(1).sum(1) + kl)
    torch.testing.assert_close(table9(vae, x, "kl-grad", "kl", (0, 0.0))["score"], kl)
    torch.testing.assert_close(table9(vae, x, "rec", "rec", (0, 0.0))["score"], rec.flatten(1).mean(1))
    assert "score" not in table9(vae, x, "combi", "map", (0, 0.0))  # reduced from the map by `predict`
    with pytest.raises(ValueError, match="density heads"):
        table9(vae, x, "nll-grad", "nll", (0, 0.0))
    assert list(VARIANTS) == ["rec", "kl-grad", "combi", "elbo"]  # calib_scores rows of VAE checkpoints


def test_table9_nll_gradient() -> None:
    vae = VAE(image_size=SIZE).eval()
    x = torch.as_tensor(smooth_images(2, SIZE, seed=2))[:, None]
    out = table9(vae, x, "nll-grad", "nll", (0, 0.0), nll=lambda mu: 0.5 * mu.pow(2).sum(1))
    xg = x.clone().requires_grad_(True)
    nll = 0.5 * vae.encode(xg)[0].pow(2).sum(1)
    (g,) = torch.autograd.grad(nll.sum(), xg)
    torch.testing.assert_close(out["score"], nll.detach())
    torch.testing.assert_close(out["anomaly_map"], g.abs()[:, 0])
