"""CFLOW-AD: conditional normalizing flows on pre-trained features (Gudovskiy et al., WACV 2022),
as configured in the UPD study (Lagogiannis et al., Sec. IV-B; its code's CFtrainer.py / model.py).

- Features: the frozen ResNet-18 (`backbones.py`) at three layers, layer1, layer2, layer3 (the
  CFLOW-AD paper's and the study's MRI/RF choice; the study's CXR runs use layers 2-4 of a Wide
  ResNet-50-2, but layer4 is outside this project's 15 MB backbone).
- One conditional flow per layer models every feature vector (C channels) given a 2D sin/cos
  positional encoding of its location (128 dims): 8 coupling blocks, each an affine coupling of
  one half of the vector conditioned on the other half and the encoding (MLP: Linear, ReLU,
  Linear), soft-clamped log-scales (alpha = 1.9, atan clamp), a learned global affine
  (softplus scale) and a fixed random permutation (FrEIA's AllInOneBlock as the study uses it).
- Loss: per layer, log p per dimension = (C log N(z; 0, I) + log|det J|) / C; loss =
  -log sigmoid(log p), mean over all positions of the batch, summed over the layers (the study
  trains the three flows with one optimiser; their parameters are disjoint).
- Map: per layer exp(log p - max log p over the normal training images), upsampled bilinearly
  (align_corners=True) to the image size, averaged over the layers; anomaly map = 1 - that; image
  score = mean of the map (study, CXR). The study takes the max from a training batch at
  evaluation time; here it is the max over all training images, fitted after training (`fit_extra`)
  and stored with the weights.
- Optimiser (study code): Adam lr 2e-4, batch 32, 3000 steps, all B*H*W vectors of a batch per step.

Scaled to the 15 MB checkpoint limit: the coupling MLPs' hidden width is 1x their input (study
code: 2x); with 2x the three flows alone are 14.7 MB.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register
from .backbones import CHANNELS, FeatureConfig, FeatureDetector

LOG_2PI_HALF = 0.5 * math.log(2 * math.pi)


def positional_encoding_2d(dim: int, h: int, w: int) -> torch.Tensor:
    """(dim, h, w) sin/cos encoding: the first half of the channels encodes the column, the second
    half the row (CFLOW-AD, after Vaswani et al.)."""
    if dim % 4:
        raise ValueError(f"positional encoding needs a multiple of 4 channels, got {dim}")
    half = dim // 2
    freq = torch.exp(torch.arange(0.0, half, 2) * -(math.log(1e4) / half))
    col = torch.arange(w, dtype=torch.float32)[:, None] * freq  # (w, half/2)
    row = torch.arange(h, dtype=torch.float32)[:, None] * freq
    p = torch.zeros(dim, h, w)
    p[0:half:2] = col.sin().T[:, None, :].expand(-1, h, -1)
    p[1:half:2] = col.cos().T[:, None, :].expand(-1, h, -1)
    p[half::2] = row.sin().T[:, :, None].expand(-1, -1, w)
    p[half + 1::2] = row.cos().T[:, :, None].expand(-1, -1, w)
    return p


class CouplingBlock(nn.Module):
    """Conditional affine coupling + global affine + fixed permutation (AllInOneBlock-style)."""

    def __init__(self, dim: int, cond: int, hidden_ratio: float, clamp: float, seed: int) -> None:
        super().__init__()
        self.d1 = dim // 2
        d2 = dim - self.d1
        hidden = max(1, int(round(hidden_ratio * (self.d1 + cond))))
        self.subnet = nn.Sequential(nn.Linear(self.d1 + cond, hidden), nn.ReLU(), nn.Linear(hidden, 2 * d2))
        nn.init.zeros_(self.subnet[-1].weight)  # start at the identity
        nn.init.zeros_(self.subnet[-1].bias)
        self.clamp = clamp
        self.global_scale = nn.Parameter(torch.full((dim,), math.log(math.e - 1)))  # softplus -> 1
        self.global_offset = nn.Parameter(torch.zeros(dim))
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("perm", torch.randperm(dim, generator=g))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1, x2 = x[:, :self.d1], x[:, self.d1:]
        s, t = self.subnet(torch.cat([x1, c], 1)).chunk(2, 1)
        s = self.clamp * 0.636 * torch.atan(s / self.clamp)  # soft clamp of the log-scale (CFLOW Eq. 2)
        y = torch.cat([x1, x2 * s.exp() + t], 1)
        scale = F.softplus(self.global_scale)
        y = y * scale + self.global_offset
        logdet = s.sum(1) + scale.log().sum()
        return y[:, self.perm], logdet


class ConditionalFlow(nn.Module):
    """A stack of coupling blocks mapping feature vectors (M, C) given conditions (M, P) to z."""

    def __init__(self, dim: int, cond: int, blocks: int, hidden_ratio: float, clamp: float, seed: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(CouplingBlock(dim, cond, hidden_ratio, clamp, seed * 1000 + i)
                                    for i in range(blocks))

    def log_prob_per_dim(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        logdet = x.new_zeros(x.shape[0])
        for blk in self.blocks:
            x, ld = blk(x, c)
            logdet = logdet + ld
        dim = x.shape[1]
        return (-dim * LOG_2PI_HALF - 0.5 * x.pow(2).sum(1) + logdet) / dim


@dataclass
class CFLOWConfig(FeatureConfig):
    coupling_blocks: int = 8  # study code: -cb 8
    condition_dim: int = 128  # study code: condition_vec = 128
    clamp_alpha: float = 1.9  # study code / CFLOW-AD Eq. 2
    hidden_ratio: float = 1.0  # coupling MLP hidden width / input (study code: 2); reduced for 15 MB
    lr: float = 2e-4  # study code: Adam lr 2e-4
    batch_size: int = 32  # study code
    # Study code: 3000 steps of batch 32 = 34 steps per epoch on Kermany's 1098 normal training
    # images -> 89 epochs; a fixed schedule (no early stopping; the best validation epoch is kept).
    max_epochs: int = 89
    patience: int = 89
    score_reduction: str = "mean"  # UPD study Sec. V-D (CXR)


@register
class CFLOWAD(FeatureDetector):
    """CFLOW-AD on a frozen ResNet-18 (layers 1-3): a conditional normalizing flow per layer models
    each feature vector given its position; map = 1 - mean over layers of the normalised likelihood,
    upsampled; score = mean of the map. Coupling MLPs narrowed to stay < 15 MB."""

    method = "cflow-ad"
    title = "CFLOW-AD"
    paper = ("Gudovskiy et al., CFLOW-AD: real-time unsupervised anomaly detection with localization via "
             "conditional normalizing flows (WACV 2022); configured as in Lagogiannis et al. (UPD study).")
    Config = CFLOWConfig
    layers = ("layer1", "layer2", "layer3")

    def __init__(self, config: CFLOWConfig | None = None, image_size: int = 128) -> None:
        super().__init__(config, image_size)
        c = self.config
        self.flows = nn.ModuleList(ConditionalFlow(CHANNELS[k], c.condition_dim, c.coupling_blocks, c.hidden_ratio,
                                                   c.clamp_alpha, seed=i) for i, k in enumerate(self.layers))
        self.register_buffer("logp_max", torch.zeros(()))  # max log p per dim on the training images
        self._enc: dict[tuple, torch.Tensor] = {}

    def encoding(self, h: int, w: int, device) -> torch.Tensor:
        """(h*w, condition_dim) positional conditions, cached."""
        key = (h, w, str(device))
        if key not in self._enc:
            p = positional_encoding_2d(self.config.condition_dim, h, w).to(device)
            self._enc[key] = p.flatten(1).T.contiguous()
        return self._enc[key]

    def log_probs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per layer, log p per dimension of every feature vector, (N, h, w), float32."""
        out = []
        feats = self.features(x)
        with torch.autocast(device_type=x.device.type, enabled=False):  # flows in float32
            for k, flow in zip(self.layers, self.flows):
                f = feats[k].float()
                n, ch, h, w = f.shape
                e = f.permute(0, 2, 3, 1).reshape(-1, ch)
                cond = self.encoding(h, w, f.device).repeat(n, 1)
                out.append(flow.log_prob_per_dim(e, cond).reshape(n, h, w))
        return out

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"main": torch.optim.Adam(self.trainable_parameters(), lr=self.config.lr,
                                         weight_decay=self.config.weight_decay)}

    def loss(self, x: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        parts = [-F.logsigmoid(lp).mean() for lp in self.log_probs(x)]
        out = {"loss": sum(parts)}
        out.update({f"nll_{k}": p for k, p in zip(self.layers, parts)})
        return out

    @torch.no_grad()
    def fit_extra(self, train: torch.Tensor, progress: bool = True, val: torch.Tensor | None = None) -> None:
        """The normalising constant of the maps: max log p over all training positions and layers."""
        was = self.training
        self.eval()
        best = -math.inf
        for i in range(0, len(train), 32):
            best = max(best, max(float(lp.max()) for lp in self.log_probs(train[i:i + 32].to(self.device).float())))
        self.train(was)
        self.logp_max = torch.tensor(best, device=self.logp_max.device)

    def forward_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        probs = [F.interpolate((lp - self.logp_max).exp()[:, None], size=x.shape[-2:], mode="bilinear",
                               align_corners=True) for lp in self.log_probs(x)]
        return {"anomaly_map": 1 - torch.stack(probs).mean(0)[:, 0]}
