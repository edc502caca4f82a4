"""CRADL: contrastive representations for unsupervised anomaly detection and localization
(Lüth, Zimmerer, Koehler, Jaeger, Isensee, Petersen, Maier-Hein).

Stage 1: a deep convolutional encoder f (CRADL Table 10) with a 2-layer MLP projection head g is
trained with SimCLR's NT-Xent loss (Eq. 4, temperature 0.5) on two augmented views of each normal
image. Stage 2 (`fit_extra`): density models p(z) are fitted on the encoder representations
z = f(x) of the normal training images (no augmentation): Gaussian mixtures with K = 1, 2, 4, 8
(EM) and a RealNVP flow. Image score = NLL of the representation (Eq. 2); heatmap = |d NLL / d x|
(Eq. 3), median pooled (5x5) and Gaussian smoothed (Sec. 4.5).

One checkpoint holds the encoder and all five density heads (`density_heads.py`); the heads are
its scoring variants: `cradl-kermany-128@gmm4` (or `det.set_variant("gmm4")`) scores with the GMM
with K = 4, and `evaluate` reports every head.

`encode(x) -> (N, latent_dim)` and `features(x) -> [per-block feature maps]` expose the encoder
to other methods (perceptual loss of MorphAEus, Fréchet distance in the app).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import scoring
from ..density import DENSITIES
from ..detector import Detector, DetectorConfig
from ..registry import register
from .augmentations import augment
from .density_heads import RepresentationDensityMixin

# ---------------------------------------------------------------- networks


class DCEncoder(nn.Module):
    """Deep convolutional encoder of CRADL Table 10 (after Radford et al.): 4x4 stride-2
    conv-BN-ReLU blocks down to 4x4, then a 4x4 convolution to a `latent_dim` vector.

    Scaled for CPU training: nf = 32 instead of 64 and widths capped at `max_channels` (paper:
    nf..16nf = 64..1024), latent 256 instead of 512; the number of blocks follows the image size.
    """

    def __init__(self, image_size: int, nf: int = 32, max_channels: int = 128, latent_dim: int = 256) -> None:
        super().__init__()
        n_blocks = int(math.log2(image_size)) - 2
        blocks, c = [], 1
        for i in range(n_blocks):
            cout = min(nf * 2 ** i, max_channels)
            blocks.append(nn.Sequential(nn.Conv2d(c, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout),
                                        nn.ReLU(inplace=True)))
            c = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(c, latent_dim, 4, 1, 0)  # 4x4 map -> 1x1 x latent_dim

    def forward(self, x: torch.Tensor, return_features: bool = False):
        feats = []
        for blk in self.blocks:
            x = blk(x)
            feats.append(x)
        z = self.head(x).flatten(1)
        return (z, feats) if return_features else z


def nt_xent(u1: torch.Tensor, u2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent loss (CRADL Eq. 4): each view's positive is the other view of the same
    image, the other 2N - 2 views are negatives; cosine similarity / temperature; mean over 2N."""
    u = F.normalize(torch.cat([u1, u2]).float(), dim=1)
    n = u1.shape[0]
    sim = u @ u.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=u.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(u.device)
    return F.cross_entropy(sim, target)


# ---------------------------------------------------------------- detector


@dataclass
class CRADLConfig(DetectorConfig):
    # Encoder (Table 10, scaled for CPU; see DCEncoder) and projection head (Sec. 4.2: 2-layer MLP,
    # ReLU, 512 hidden, 256 out; halved with the encoder).
    nf: int = 32
    max_channels: int = 128
    latent_dim: int = 256
    proj_hidden: int = 256
    proj_dim: int = 128
    # Contrastive training (Sec. 4.3): Adam lr 1e-4, weight decay 1e-6, cosine annealing with 10
    # warm-up epochs over 100 epochs, temperature 0.5. Batch size is not given in the paper.
    temperature: float = 0.5
    lr: float = 1e-4
    weight_decay: float = 1e-6
    warmup_epochs: int = 10
    max_epochs: int = 100
    batch_size: int = 64
    # Views (Sec. 4.3): random crop/scale, mirroring, rotation, multiplicative brightness, noise.
    # The paper gives no ranges; these are moderate values for 2D X-ray/MRI slices.
    crop_scale: tuple[float, float] = (0.6, 1.0)
    rotate_deg: float = 15.0
    flip: bool = True
    brightness: float = 0.25
    noise_std: float = 0.05
    # Density heads (Sec. 3.2, 4.3, appendix D). Default head "gmm1": the best head on the
    # clinical data sets (BraTS, ISLES) for detection and localization (Table 4).
    density: str = "gmm1"
    gmm_reg_covar: float = 1e-3  # added to the diagonal of standardised covariances
    gmm_eig_floor: float = 1e-6  # eigenvalue lower bound of the ADM paper (Kim et al., Sec. 2.2: 1e-6); 0 = off
    gmm_tol: float = 0.1  # EM convergence limit (Sec. 4.3)
    gmm_init: str = "random"  # Sec. 4.3: component means randomly initialised ("kmeans": k-means++)
    flow_selection: str = "val"  # App. D: the flow chosen on the validation set ("holdout": 10 % of train)
    flow_blocks: int = 8  # appendix D: 8 coupling blocks, random permutations
    flow_epochs: int = 60  # appendix D: 60 epochs, lr / 10 every 20
    # Heatmap post-processing (Sec. 4.5): 5x5 median pooling, then Gaussian smoothing (the paper
    # gives no sigma; 2 px at 128 px).
    median_size: int = 5
    gauss_sigma: float = 2.0
    all_maps: bool = False  # also return the NLL-gradient map of every head in Prediction.extras


@register
class CRADL(RepresentationDensityMixin, Detector):
    """SimCLR encoder (DCGAN-style, scaled for CPU: 256-d representation) with all five density
    heads in one checkpoint (GMM K = 1, 2, 4, 8 and RealNVP, fitted on the normal training images).
    Score = NLL of the representation under the chosen head (`@gmm4`, ...); heatmap = |d NLL / d x|,
    5x5 median pooled and Gaussian smoothed. `encode`/`features` expose the encoder."""

    method = "cradl"
    title = "CRADL"
    paper = ("Lüth et al., CRADL: Contrastive Representations for unsupervised Anomaly Detection and "
             "Localization (2023).")
    Config = CRADLConfig
    needs_grad = True

    def __init__(self, config: CRADLConfig | None = None, image_size: int = 128) -> None:
        super().__init__(config, image_size)
        c = self.config
        self.encoder = DCEncoder(image_size, c.nf, c.max_channels, c.latent_dim)
        self.projector = nn.Sequential(nn.Linear(c.latent_dim, c.proj_hidden), nn.ReLU(inplace=True),
                                       nn.Linear(c.proj_hidden, c.proj_dim))
        self._init_densities(c.latent_dim, c)

    # ---- representation API used by other methods ----
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Representation z = f(x) (N, latent_dim) of images (N,1,H,W) in [0,1] at the model's size."""
        return self.encoder(x)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate feature maps of the encoder (one per block, resolution halving each time)."""
        return self.encoder(x, return_features=True)[1]

    # ---- stage 1: contrastive training ----
    def views(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        c = self.config
        return augment(x, tuple(c.crop_scale), c.rotate_deg, c.flip, c.brightness, c.noise_std, generator)

    def loss(self, x: torch.Tensor, epoch: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        v1, v2 = self.views(x, generator), self.views(x, generator)
        u = self.projector(self.encoder(torch.cat([v1, v2]).contiguous(memory_format=torch.channels_last)))
        return {"loss": nt_xent(u[:len(x)], u[len(x):], self.config.temperature)}

    def lr_factor(self, epoch: int) -> float:
        """Linear warm-up, then cosine annealing to 0 at `max_epochs` (Sec. 4.3)."""
        c = self.config
        if epoch < c.warmup_epochs:
            return (epoch + 1) / (c.warmup_epochs + 1)
        t = (epoch - c.warmup_epochs) / max(1, c.max_epochs - c.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    def training_step(self, x: torch.Tensor, epoch: int, optimizers: dict, amp) -> dict[str, float]:
        for group in optimizers["main"].param_groups:
            group["lr"] = self.config.lr * self.lr_factor(epoch)
        return super().training_step(x, epoch, optimizers, amp)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        params = list(self.encoder.parameters()) + list(self.projector.parameters())
        return {"main": torch.optim.Adam(params, lr=self.config.lr, weight_decay=self.config.weight_decay)}

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, epoch: int) -> float:
        # The same random views every epoch, so validation losses are comparable for early stopping.
        return float(self.loss(x, epoch, torch.Generator().manual_seed(1234))["loss"])

    # ---- stage 2 (`fit_extra`, RepresentationDensityMixin): densities on representations ----

    # ---- inference ----
    def forward_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        names = DENSITIES if c.all_maps else (self.density,)
        scores, maps = self.nll_maps(x, names)
        out = {"anomaly_map": maps[self.density], "score": scores[self.density]}
        if c.all_maps:
            for n in names:
                out[f"nll_grad_{n}"] = scoring.postprocess(maps[n], c.median_size, c.gauss_sigma)
        return out
