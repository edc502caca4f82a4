"""Density models of upd_core.density: EM recovers known mixtures, eigenvalue floor, RealNVP."""
from __future__ import annotations

import math

import pytest
import torch

from upd_core.density import DensityBank, GaussianMixture, RealNVP, eigenvalue_floor


def _mixture_samples(n: int = 4000, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    means = torch.tensor([[0.0, 0.0, 0.0], [6.0, 6.0, 0.0], [-6.0, 4.0, 3.0]])
    a = torch.randn(3, 3, 3, generator=g) * 0.5
    covs = a @ a.transpose(1, 2) + 0.3 * torch.eye(3)
    weights = torch.tensor([0.5, 0.3, 0.2])
    comp = torch.multinomial(weights, n, replacement=True, generator=g)
    z = means[comp] + torch.einsum("nde,ne->nd", torch.linalg.cholesky(covs)[comp], torch.randn(n, 3, generator=g))
    return z, weights, means, covs


def test_em_recovers_known_mixture() -> None:
    z, weights, means, covs = _mixture_samples()
    gmm = GaussianMixture(3, 3).fit(z, reg_covar=1e-6, tol=1e-7, seed=0)
    std, mean = gmm.scale.std, gmm.scale.mean
    fitted_means = gmm.means * std + mean
    # match components to the truth by nearest mean
    order = torch.cdist(means, fitted_means).argmin(1)
    assert sorted(order.tolist()) == [0, 1, 2]
    torch.testing.assert_close(fitted_means[order], means, atol=0.15, rtol=0)
    torch.testing.assert_close(gmm.log_weights.exp()[order], weights, atol=0.03, rtol=0)
    fitted_covs = gmm.covariances()[order] * torch.outer(std, std)
    torch.testing.assert_close(fitted_covs, covs, atol=0.15, rtol=0)
    # the log-likelihood matches torch.distributions for the fitted parameters
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(gmm.log_weights.exp()[order]),
        torch.distributions.MultivariateNormal(fitted_means[order], fitted_covs))
    torch.testing.assert_close(gmm.log_prob(z[:50]), mix.log_prob(z[:50]), atol=1e-3, rtol=1e-4)


def test_gmm_nll_is_differentiable_and_finite() -> None:
    z, *_ = _mixture_samples(500)
    gmm = GaussianMixture(3, 2).fit(z)
    q = z[:4].clone().requires_grad_(True)
    gmm.nll(q).sum().backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0


def test_eigenvalue_floor() -> None:
    q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    cov = q @ torch.diag(torch.tensor([2.0, 0.5, 1e-9, 0.0], dtype=torch.float64)) @ q.T
    floored = eigenvalue_floor(cov, 1e-3)
    lam = torch.linalg.eigvalsh(floored)
    torch.testing.assert_close(lam, torch.tensor([1e-3, 1e-3, 0.5, 2.0], dtype=torch.float64))
    assert torch.equal(eigenvalue_floor(cov, 0.0), cov)  # off
    # a GMM on degenerate data (a plane in 3D) stays positive definite with the floor alone
    g = torch.Generator().manual_seed(0)
    z = torch.randn(300, 3, generator=g)
    z[:, 2] = z[:, 0] + z[:, 1]
    gmm = GaussianMixture(3, 2).fit(z, reg_covar=0.0, eig_floor=1e-2, tol=1e-6)
    assert torch.linalg.eigvalsh(gmm.covariances().double()).min() >= 1e-2 * (1 - 1e-4)
    assert torch.isfinite(gmm.nll(z)).all()


def test_flow_log_det_matches_autograd_jacobian() -> None:
    torch.manual_seed(0)
    flow = RealNVP(4, n_blocks=3, hidden=8)
    for p in flow.blocks.parameters():  # a non-trivial map (the last layers start at zero)
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(3, 4)
    _, log_det = flow(x)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], x[i])
        torch.testing.assert_close(log_det[i], torch.linalg.slogdet(jac).logabsdet, atol=1e-5, rtol=1e-5)
    # change of variables: log p(z) = log N(Flow(std(z))) + log|det| - sum log std
    u, ld = flow(flow.scale(x))
    expected = -0.5 * (u.pow(2).sum(1) + 4 * math.log(2 * math.pi)) + ld - flow.scale.std.log().sum()
    torch.testing.assert_close(flow.log_prob(x), expected)


def test_flow_training_lowers_nll() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.rand(600, generator=g) * 3
    z = torch.stack([t, torch.sin(2 * t) + 0.05 * torch.randn(600, generator=g),
                     0.1 * torch.randn(600, generator=g), t ** 2 / 4], 1)  # curved, non-Gaussian
    flow = RealNVP(4, n_blocks=4, hidden=32)
    flow.scale.fit(z)
    with torch.no_grad():
        before = float(flow.nll(z).mean())
    history = flow.fit(z, epochs=30, batch_size=128)
    with torch.no_grad():
        after = float(flow.nll(z).mean())
    assert after < before - 1.0
    assert history[-1] < history[0]
    assert bool(flow.fitted)


def test_density_bank() -> None:
    z, *_ = _mixture_samples(400)
    bank = DensityBank(3, ("gmm1", "gmm2", "flow"), flow_blocks=2, flow_hidden=8)
    nll = bank.fit(z, flow_epochs=3)
    assert set(nll) == {"gmm1", "gmm2", "flow"} and all(math.isfinite(v) for v in nll.values())
    assert nll["gmm2"] < nll["gmm1"]  # three clusters in truth: two components fit better than one
    assert bank.nll(z[:5], "flow").shape == (5,)
    with pytest.raises(ValueError, match="unknown density"):
        bank.nll(z, "gmm3")
    with pytest.raises(ValueError, match="unknown density"):
        DensityBank(3, ("kde",))


def test_gmm_random_init_is_the_default_and_kmeans_stays_available():
    """CRADL Sec. 4.3: the means start at random; k-means++ is kept for older checkpoints."""
    g = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(200, 3, generator=g) - 4, torch.randn(200, 3, generator=g) + 4])
    lls = {}
    for init in ("random", "kmeans"):
        m = GaussianMixture(3, 2).fit(z, init=init, seed=1)
        lls[init] = float(-m.nll(z).mean())
    assert abs(lls["random"] - lls["kmeans"]) < 0.05  # two well separated blobs: both find them
    with pytest.raises(ValueError, match="unknown GMM init"):
        GaussianMixture(3, 2).fit(z, init="nope")


def test_flow_is_chosen_on_validation_representations_when_given(monkeypatch):
    """CRADL App. D: the flow's epoch is chosen on the validation set; all of z then trains."""
    g = torch.Generator().manual_seed(0)
    z, val = torch.randn(100, 4, generator=g), torch.randn(30, 4, generator=g) + 0.5
    seen = {}
    orig = RealNVP.nll

    def spy(self, x):
        if not torch.is_grad_enabled():
            seen.setdefault("eval_sizes", set()).add(len(x))
        return orig(self, x)

    monkeypatch.setattr(RealNVP, "nll", spy)
    flow = RealNVP(4, 2, 8, seed=0)
    flow.fit(z, epochs=2, val=val)
    assert 30 in seen["eval_sizes"]  # selection on the 30 validation rows, not a 10-row hold-out
    seen.clear()
    RealNVP(4, 2, 8, seed=0).fit(z, epochs=2)
    assert 10 in seen["eval_sizes"]  # without val: 10 % of z held out
    captured = {}
    monkeypatch.setattr(RealNVP, "fit", lambda self, z, **kw: captured.update(kw) or [])
    DensityBank(4, ("flow",)).fit(z, flow_val=val)
    assert captured["val"] is val
