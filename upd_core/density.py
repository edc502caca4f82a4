"""Density models on low-dimensional representations: Gaussian mixtures (EM) and a RealNVP flow.

Used by CRADL (Lüth et al. 2023, Sec. 3.2) and RADL to model the representations of normal images;
the anomaly score is the negative log-likelihood (NLL), and because every model here is written in
PyTorch the NLL can be back-propagated to the input image (the CRADL heatmap).

All fitted parameters are registered buffers / parameters of fixed shape (set from the dimension
and number of components alone), so checkpoints reload without knowing the data.
"""
from __future__ import annotations

import math

import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)


def eigenvalue_floor(cov: torch.Tensor, eps: float) -> torch.Tensor:
    """Lower bound for covariance eigenvalues (the ADM paper, Kim et al., Sec. 2.2): Q (ReLU(L - eps) + eps) Q^T.

    Guarantees a positive definite covariance (no GMM singularity); `cov` may be batched (..., D, D).
    """
    if eps <= 0:
        return cov
    lam, q = torch.linalg.eigh(0.5 * (cov + cov.transpose(-1, -2)))
    lam = torch.relu(lam - eps) + eps
    return (q * lam.unsqueeze(-2)) @ q.transpose(-1, -2)


class Standardizer(nn.Module):
    """Per-dimension standardisation with the training mean and standard deviation (buffers)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, z: torch.Tensor, eps: float = 1e-6) -> None:
        self.mean.copy_(z.mean(0))
        self.std.copy_(z.std(0) + eps)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.mean) / self.std


class GaussianMixture(nn.Module):
    """Full-covariance GMM fitted by EM (Dempster et al.), NLL differentiable w.r.t. the input.

    Inputs are standardised first (as in the CRADL code). Covariances get `reg_covar` added to the
    diagonal and, optionally, the eigenvalue lower bound `eig_floor` (`eigenvalue_floor`). Stored as the Cholesky
    factor of the precision (sklearn's parametrisation), so log N(z) is one matrix product.
    """

    def __init__(self, dim: int, n_components: int) -> None:
        super().__init__()
        self.dim, self.k = dim, n_components
        self.scale = Standardizer(dim)
        self.register_buffer("log_weights", torch.full((n_components,), -math.log(n_components)))
        self.register_buffer("means", torch.zeros(n_components, dim))
        self.register_buffer("prec_chol", torch.eye(dim).repeat(n_components, 1, 1))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    # ---- likelihood ----
    def component_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log pi_k + log N(z | mu_k, Sigma_k) for standardised z: (N, K)."""
        y = torch.einsum("nd,kde->nke", z, self.prec_chol) - torch.einsum("kd,kde->ke", self.means, self.prec_chol)
        log_det = torch.diagonal(self.prec_chol, dim1=-2, dim2=-1).log().sum(-1)  # = -0.5 log|Sigma|
        return self.log_weights - 0.5 * (self.dim * LOG_2PI + y.pow(2).sum(-1)) + log_det

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) per row of z (N, D) in the original (unstandardised) feature space."""
        s = self.scale(z.to(self.means.dtype))
        return torch.logsumexp(self.component_log_prob(s), dim=1) - self.scale.std.log().sum()

    def nll(self, z: torch.Tensor) -> torch.Tensor:
        return -self.log_prob(z)

    # ---- EM ----
    def _set(self, weights: torch.Tensor, means: torch.Tensor, covs: torch.Tensor) -> None:
        chol = torch.linalg.cholesky(covs)
        eye = torch.eye(self.dim, dtype=covs.dtype, device=covs.device).expand_as(covs)
        prec_chol = torch.linalg.solve_triangular(chol, eye, upper=False).transpose(-1, -2)
        self.log_weights.copy_(weights.clamp_min(1e-12).log())
        self.means.copy_(means)
        self.prec_chol.copy_(prec_chol)

    @torch.no_grad()
    def fit(self, z: torch.Tensor, *, reg_covar: float = 1e-3, eig_floor: float = 0.0, tol: float = 0.1,
            max_iter: int = 200, kmeans_iter: int = 10, seed: int = 0,
            init: str = "random") -> "GaussianMixture":
        """EM on rows of z (N, D), in float64; `tol` is the change of the mean log-likelihood that
        counts as converged (CRADL Sec. 4.3: convergence limit 0.1). `init="random"`: the means
        start at K training points drawn at random (CRADL Sec. 4.3: "the means of the components
        are randomly initialized"); `"kmeans"`: k-means++ seeds refined by a few k-means steps
        (how checkpoints fitted before this option were initialised)."""
        z = z.detach().to(torch.float64)
        n = z.shape[0]
        if n < 2:
            raise ValueError("a Gaussian mixture needs at least 2 samples")
        self.scale.fit(z.float())
        x = (z - self.scale.mean.double()) / self.scale.std.double()
        g = torch.Generator().manual_seed(seed)
        if init == "random":
            means = x[torch.randperm(n, generator=g)[: self.k]].clone()
        elif init == "kmeans":
            means = _kmeans(x, self.k, kmeans_iter, g)
        else:
            raise ValueError(f"unknown GMM init {init!r}; use 'random' or 'kmeans'")
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        resp = torch.nn.functional.one_hot(torch.cdist(x, means).argmin(1), self.k).to(x.dtype)
        prev = -math.inf
        work = GaussianMixture(self.dim, self.k).to(device=x.device, dtype=torch.float64)
        for _ in range(max_iter):
            # M-step
            nk = resp.sum(0) + 10 * torch.finfo(x.dtype).eps
            means = (resp.T @ x) / nk[:, None]
            diff = x[None] - means[:, None]  # (K, N, D)
            covs = torch.einsum("kn,knd,kne->kde", resp.T, diff, diff) / nk[:, None, None] + reg_covar * eye
            covs = eigenvalue_floor(covs, eig_floor)
            work._set(nk / n, means, covs)
            # E-step
            lp = work.component_log_prob(x)
            ll = torch.logsumexp(lp, 1, keepdim=True)
            resp = (lp - ll).exp()
            mean_ll = float(ll.mean())
            if abs(mean_ll - prev) < tol:
                break
            prev = mean_ll
        self.log_weights.copy_(work.log_weights.to(self.log_weights.dtype))
        self.means.copy_(work.means.to(self.means.dtype))
        self.prec_chol.copy_(work.prec_chol.to(self.prec_chol.dtype))
        self.fitted.fill_(True)
        return self

    def covariances(self) -> torch.Tensor:
        """Component covariances in standardised space (K, D, D), for inspection and tests."""
        p = self.prec_chol.double()
        return torch.linalg.inv(p @ p.transpose(-1, -2)).to(self.means.dtype)


def _kmeans(x: torch.Tensor, k: int, iters: int, g: torch.Generator) -> torch.Tensor:
    """k-means++ seeding and a few Lloyd steps (initial means for EM)."""
    n = x.shape[0]
    idx = [int(torch.randint(n, (1,), generator=g))]
    for _ in range(1, k):
        d2 = torch.cdist(x, x[idx]).pow(2).min(1).values
        p = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / n)
        idx.append(int(torch.multinomial(p.float().cpu(), 1, generator=g)))
    means = x[idx].clone()
    for _ in range(iters):
        assign = torch.cdist(x, means).argmin(1)
        for j in range(k):
            sel = assign == j
            if sel.any():
                means[j] = x[sel].mean(0)
    return means


class AffineCoupling(nn.Module):
    """RealNVP affine coupling on a vector: the second half is scaled and shifted by an MLP of the
    first half (CRADL appendix D: Linear(c_in, c_block), ReLU, Linear(c_block, c_out))."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.d1 = dim // 2
        self.net = nn.Sequential(nn.Linear(self.d1, hidden), nn.ReLU(), nn.Linear(hidden, 2 * (dim - self.d1)))
        nn.init.zeros_(self.net[-1].weight)  # start as the identity map
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1, x2 = x[:, :self.d1], x[:, self.d1:]
        s, t = self.net(x1).chunk(2, dim=1)
        s = torch.tanh(s)  # bounded log-scales keep training stable
        return torch.cat([x1, x2 * s.exp() + t], 1), s.sum(1)


class RealNVP(nn.Module):
    """RealNVP flow (Dinh et al.) on representations: `n_blocks` affine couplings, each followed by a
    fixed random permutation of the dimensions (a seeded buffer), standard normal prior (CRADL Eq. 6)."""

    def __init__(self, dim: int, n_blocks: int = 8, hidden: int | None = None, seed: int = 0) -> None:
        super().__init__()
        self.dim = dim
        self.scale = Standardizer(dim)
        self.blocks = nn.ModuleList(AffineCoupling(dim, hidden or dim) for _ in range(n_blocks))
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("perms", torch.stack([torch.randperm(dim, generator=g) for _ in range(n_blocks)]))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent u = Flow(z) of standardised z, and log|det dFlow/dz|."""
        log_det = z.new_zeros(z.shape[0])
        for blk, perm in zip(self.blocks, self.perms):
            z, ld = blk(z)
            z = z[:, perm]
            log_det = log_det + ld
        return z, log_det

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) per row, in the original feature space (includes the standardisation Jacobian)."""
        u, log_det = self(self.scale(z.float()))
        return -0.5 * (u.pow(2).sum(1) + self.dim * LOG_2PI) + log_det - self.scale.std.log().sum()

    def nll(self, z: torch.Tensor) -> torch.Tensor:
        return -self.log_prob(z)

    def fit(self, z: torch.Tensor, *, epochs: int = 60, batch_size: int = 256, lr: float = 1e-3,
            weight_decay: float = 1e-4, noise: float = 1e-3, clip: float = 5.0, holdout: float = 0.1,
            seed: int = 0, val: torch.Tensor | None = None) -> list[float]:
        """Maximum likelihood training (CRADL appendix D: Adam lr 1e-3, weight decay 1e-4, gradient
        clipping 5, noise 1e-3, 60 epochs, lr / 10 every 20 epochs, the epoch with the lowest
        validation NLL kept). `val`: validation representations (the paper's selection; all of z
        trains); without it a `holdout` share of z is held out instead. Returns the mean training
        NLL per epoch."""
        z = z.detach().float()
        self.scale.fit(z)
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(z), generator=g)
        if val is not None and len(val):
            hold, train, n_hold = val.detach().float().to(z.device), z[perm], len(val)
        else:
            n_hold = int(len(z) * holdout) if len(z) >= 20 else 0
            hold, train = z[perm[:n_hold]], z[perm[n_hold:]]
        opt = torch.optim.Adam(self.blocks.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.1)
        history, best, best_state = [], math.inf, None
        was_training = self.training
        self.train()
        with torch.enable_grad():
            for _ in range(epochs):
                order = torch.randperm(len(train), generator=g)
                total = 0.0
                for i in range(0, len(train), batch_size):
                    xb = train[order[i:i + batch_size]]
                    xb = xb + noise * self.scale.std * torch.randn(xb.shape, generator=g)
                    loss = self.nll(xb).mean() / self.dim
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_(self.blocks.parameters(), clip)
                    opt.step()
                    total += float(loss.detach()) * len(xb)
                sched.step()
                history.append(total / len(train))
                with torch.no_grad():
                    val = float(self.nll(hold).mean()) if n_hold else history[-1] * self.dim
                if val < best:
                    best = val
                    best_state = {k: v.detach().clone() for k, v in self.blocks.state_dict().items()}
        if best_state is not None:
            self.blocks.load_state_dict(best_state)
        self.train(was_training)
        self.fitted.fill_(True)
        return history


DENSITIES = ("gmm1", "gmm2", "gmm4", "gmm8", "flow")


class DensityBank(nn.Module):
    """Several density models on the same representation space, chosen by name at predict time:
    'gmm<K>' (Gaussian mixture with K components) and 'flow' (RealNVP)."""

    def __init__(self, dim: int, names: tuple[str, ...] = DENSITIES, flow_blocks: int = 8,
                 flow_hidden: int | None = None, seed: int = 0) -> None:
        super().__init__()
        self.dim = dim
        models = {}
        for name in names:
            if name == "flow":
                models[name] = RealNVP(dim, flow_blocks, flow_hidden, seed=seed)
            elif name.startswith("gmm") and name[3:].isdigit() and int(name[3:]) > 0:
                models[name] = GaussianMixture(dim, int(name[3:]))
            else:
                raise ValueError(f"unknown density {name!r}; use 'gmm<K>' or 'flow'")
        self.models = nn.ModuleDict(models)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.models.keys())

    def fitted(self, name: str) -> bool:
        return bool(self.models[name].fitted)

    def fit(self, z: torch.Tensor, *, reg_covar: float = 1e-3, eig_floor: float = 0.0, tol: float = 0.1,
            flow_epochs: int = 60, seed: int = 0, gmm_init: str = "random", flow_val: torch.Tensor | None = None,
            progress=None) -> dict[str, float]:
        """Fit every model on z (N, D); returns the mean training NLL of each. `flow_val`: validation
        representations on which the flow's epoch is chosen (else a hold-out of z)."""
        out = {}
        for name, m in self.models.items():
            if isinstance(m, GaussianMixture):
                m.fit(z, reg_covar=reg_covar, eig_floor=eig_floor, tol=tol, seed=seed, init=gmm_init)
            else:
                m.fit(z, epochs=flow_epochs, seed=seed, val=flow_val)
            with torch.no_grad():
                out[name] = float(m.nll(z).mean())
            if progress:
                progress(f"fitted {name}: mean NLL {out[name]:.4g}")
        return out

    def nll(self, z: torch.Tensor, name: str) -> torch.Tensor:
        if name not in self.models:
            raise ValueError(f"unknown density {name!r}; available: {', '.join(self.models)}")
        return self.models[name].nll(z)
