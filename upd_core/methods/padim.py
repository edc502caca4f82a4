"""PaDiM: patch distribution modeling (Defard et al., 2021), as configured in the UPD study
(Lagogiannis et al., Sec. IV-B; its code's ResNet-18 setting).

One forward pass of the normal training images through the frozen backbone (`backbones.py`):
layer1, layer2 and layer3 (64 + 128 + 256 = 448 channels), brought to one grid and concatenated,
a seeded random subset of d = 100 channels kept (the study's/PaDiM's ResNet-18 value). At every
grid position a Gaussian N(mu, Sigma + eps I) with eps = 0.01 is fitted (no gradients). Test
patches are scored by their Mahalanobis distance to the Gaussian of their position, batched; the
map is upsampled to the image size (bilinear) and Gaussian smoothed (sigma 4, PaDiM paper); image
score = mean of the map (the study's CXR convention; max for MRI/RF: `score_reduction`).

Size: the study concatenates at layer1 resolution (32x32 at 128 px). A 100x100 inverse
covariance per position at 32x32 is 41 MB, so the grid here is 16x16 (`feature_stride` 8: layer1
average-pooled 2x2, layer2 as is, layer3 upsampled), and the inverse covariances are stored as
their packed triangular factors W (Sigma^-1 = W^T W, d(d+1)/2 floats per position): 5.2 MB, plus
the mean (0.1 MB) and the float16 backbone (5.6 MB): 10.9 MB at 128 px.

Fitting happens in `fit_extra` (the one training loop's hook after network training): the method
has nothing to optimise, so its config asks for 1 epoch whose steps do nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..registry import register
from .backbones import CHANNELS, FeatureConfig, FeatureDetector, resize_to


@dataclass
class PaDiMConfig(FeatureConfig):
    n_features: int = 100  # PaDiM / UPD study code, ResNet-18: d = 100 of t_d = 448 channels
    channel_seed: int = 0  # seed of the random channel subset (PaDiM: random dimensionality reduction)
    feature_stride: int = 8  # grid of image_size / 8 positions (16x16 at 128 px; study: 32x32, see docstring)
    cov_eps: float = 0.01  # Sigma + 0.01 I (PaDiM Sec. 3.2; UPD study code)
    gauss_sigma: float = 4.0  # PaDiM paper / study code's --gaussian-blur option (sigma 4); 0 = study's default
    score_reduction: str = "mean"  # UPD study Sec. V-D: mean for CXR ("masked-max" for MRI, "max" for RF)
    # No gradient training: one pass over the training images (fit_extra) after 1 empty epoch.
    max_epochs: int = 1
    patience: int = 1
    batch_size: int = 32  # study code: batch 32 for the feature pass


@register
class PaDiM(FeatureDetector):
    """PaDiM on a frozen ResNet-18 (layers 1-3, d = 100 random channels, 16x16 grid at 128 px):
    a Gaussian per position fitted in one pass over the normal images; map = Mahalanobis distance,
    upsampled and Gaussian smoothed (sigma 4); score = mean of the map."""

    method = "padim"
    title = "PaDiM"
    paper = ("Defard et al., PaDiM: a patch distribution modeling framework for anomaly detection and "
             "localization (ICPR workshops 2021); configured as in Lagogiannis et al. (UPD study).")
    Config = PaDiMConfig
    layers = ("layer1", "layer2", "layer3")

    def __init__(self, config: PaDiMConfig | None = None, image_size: int = 128) -> None:
        super().__init__(config, image_size)
        c = self.config
        total = sum(CHANNELS[k] for k in self.layers)
        if not 1 <= c.n_features <= total:
            raise ValueError(f"n_features must be in 1..{total}, got {c.n_features}")
        if c.feature_stride < 4 or image_size % c.feature_stride:
            raise ValueError(f"feature_stride must be >= 4 and divide the image size, got {c.feature_stride}")
        self.grid = image_size // c.feature_stride
        g = torch.Generator().manual_seed(c.channel_seed)
        idx = torch.randperm(total, generator=g)[: c.n_features].sort().values
        d, p = c.n_features, self.grid ** 2
        self.register_buffer("channel_idx", idx)
        self.register_buffer("mean", torch.zeros(p, d))
        # Packed lower-triangular W per position, Sigma^-1 = W^T W (rows/cols of torch.tril_indices).
        self.register_buffer("prec_factor", torch.zeros(p, d * (d + 1) // 2))
        self.register_buffer("n_fitted", torch.zeros((), dtype=torch.long))

    # ---- features ----
    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(N, P, d) patch embeddings: the chosen channels of layers 1-3 on the grid."""
        f = self.features(x)
        emb = torch.cat([resize_to(f[k], self.grid) for k in self.layers], 1)
        emb = emb.index_select(1, self.channel_idx.to(emb.device))
        return emb.flatten(2).transpose(1, 2).contiguous()

    # ---- "training": nothing to optimise; statistics in fit_extra ----
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def training_step(self, x: torch.Tensor, epoch: int, optimizers: dict, amp) -> dict[str, float]:
        return {"loss": 0.0}

    def validation_loss(self, x: torch.Tensor, epoch: int) -> float:
        return 0.0

    @torch.no_grad()
    def fit_extra(self, train: torch.Tensor, progress: bool = True, val: torch.Tensor | None = None) -> None:
        """One pass over the training images: per-position mean and covariance (float64), the
        covariance regularised with eps I, its inverse stored as a packed triangular factor."""
        was = self.training
        self.eval()
        d, p = self.config.n_features, self.grid ** 2
        s1 = torch.zeros(p, d, dtype=torch.float64)
        s2 = torch.zeros(p, d, d, dtype=torch.float64)
        n = 0
        bs = self.config.batch_size
        for i in range(0, len(train), bs):
            e = self.embedding(train[i:i + bs].to(self.device).float()).double().cpu()
            s1 += e.sum(0)
            s2 += torch.einsum("npi,npj->pij", e, e)
            n += e.shape[0]
        self.train(was)
        mu = s1 / n
        cov = (s2 - n * mu[:, :, None] * mu[:, None, :]) / max(n - 1, 1)
        cov = cov + self.config.cov_eps * torch.eye(d, dtype=torch.float64)
        chol = torch.linalg.cholesky(cov)  # Sigma = C C^T  ->  Sigma^-1 = C^-T C^-1, W = C^-1
        eye = torch.eye(d, dtype=torch.float64).expand(p, d, d)
        w = torch.linalg.solve_triangular(chol, eye, upper=False)
        r, c = torch.tril_indices(d, d)
        dev = self.mean.device
        self.mean = mu.float().to(dev)
        self.prec_factor = w[:, r, c].float().to(dev)
        self.n_fitted = torch.tensor(n, device=dev)

    def precision_factor(self) -> torch.Tensor:
        """(P, d, d) lower-triangular W with Sigma^-1 = W^T W, unpacked from the stored buffer
        (cached until the buffer changes: fitting or loading replaces or rewrites it)."""
        packed = self.prec_factor
        key = (packed.data_ptr(), packed._version, packed.device, packed.dtype)
        cached = self.__dict__.get("_w_cache")
        if cached is None or cached[0] != key:
            d = self.config.n_features
            r, c = torch.tril_indices(d, d, device=packed.device)
            w = packed.new_zeros(packed.shape[0], d, d)
            w[:, r, c] = packed
            cached = (key, w.transpose(1, 2).contiguous())  # W^T, as the batched product needs it
            self.__dict__["_w_cache"] = cached
        return cached[1].transpose(1, 2)

    # ---- inference ----
    def mahalanobis(self, emb: torch.Tensor) -> torch.Tensor:
        """(N, P) Mahalanobis distances of embeddings (N, P, d), batched over positions."""
        delta = (emb - self.mean).transpose(0, 1).contiguous()  # (P, N, d); contiguous: fast bmm
        z = torch.bmm(delta, self.precision_factor().transpose(1, 2))  # rows: W @ delta (W^T is contiguous)
        return z.pow(2).sum(-1).clamp_min(0).sqrt().transpose(0, 1)

    def forward_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        dist = self.mahalanobis(self.embedding(x))
        m = dist.reshape(x.shape[0], 1, self.grid, self.grid)
        m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"anomaly_map": m[:, 0]}
