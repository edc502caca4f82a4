"""FAE: structural feature auto-encoder (Meissen et al., 2022), as configured in the UPD study
(Lagogiannis et al., Sec. IV-B and V-D; its code's FAEmodel.py / FAEtrainer.py).

- Features: the frozen ResNet-18 (`backbones.py`) layers layer0 (stem), layer1 and layer2 (64 + 64 +
  128 = 256 channels), each resized bilinearly (align_corners=True) to a quarter of the image size
  (32x32 at 128 px) and concatenated.
- Feature auto-encoder: 5x5 stride-2 convolutions with BatchNorm, LeakyReLU and Dropout2d(0.1), a
  final 5x5 convolution; decoder of 6x6 stride-2 transposed convolutions, same normalisation, and a
  1x1 convolution back to 256 channels. Widths (50, 75, 100, 150) = the study's (100, 150, 200, 300)
  halved, so that the checkpoint stays below 15 MB (the study's AE is ~10 M parameters, 41 MB).
- Loss: SSIM between features and their reconstruction, per channel (5x5 Gaussian window, sigma
  1.5, zero padding, C1 = 0.01^2, C2 = 0.03^2), loss = -SSIM averaged (study code's SSIMLoss).
- Map: 1 - SSIM averaged over channels (the study's "anomaly_map + 1"), upsampled bilinearly
  (align_corners=True) to the image size; image score = mean of the map (study, CXR).
- Optimiser (study code): Adam lr 2e-4, no weight decay, batch 32, 10000 steps.

At sizes where four halvings of the feature map would go below 2x2 (images < 128 px), the AE
uses as many levels as fit (e.g. 2 at 32 px).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register
from .backbones import CHANNELS, FeatureConfig, FeatureDetector


def _window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    t = torch.arange(size, device=device, dtype=dtype) - size // 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def channel_ssim(a: torch.Tensor, b: torch.Tensor, window: int = 5, sigma: float = 1.5) -> torch.Tensor:
    """SSIM map per channel (N,C,H,W) of two feature maps (the study code's `_ssim`, zero padding)."""
    a, b = a.float(), b.float()
    c = a.shape[1]
    w = _window(window, sigma, c, a.device, a.dtype)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w, padding=window // 2, groups=c)

    ma, mb = blur(a), blur(b)
    saa, sbb, sab = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return ((2 * ma * mb + c1) * (2 * sab + c2)) / ((ma * ma + mb * mb + c1) * (saa + sbb + c2))


def feature_encoder(cin: int, dims: tuple[int, ...], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d in dims:
        layers += [nn.Conv2d(cin, d, 5, 2, 2, bias=False), nn.BatchNorm2d(d), nn.LeakyReLU()]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        cin = d
    layers.append(nn.Conv2d(cin, cin, 5, 1, 2, bias=False))
    return nn.Sequential(*layers)


def feature_decoder(cout: int, dims: tuple[int, ...], dropout: float) -> nn.Sequential:
    widths = (cout,) + tuple(dims)
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1, 0, -1):
        layers += [nn.ConvTranspose2d(widths[i], widths[i - 1], 6, 2, 2, bias=False),
                   nn.BatchNorm2d(widths[i - 1]), nn.LeakyReLU()]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
    layers.append(nn.Conv2d(cout, cout, 1, bias=False))
    return nn.Sequential(*layers)


@dataclass
class FAEConfig(FeatureConfig):
    hidden_dims: tuple[int, ...] = (50, 75, 100, 150)  # study code: (100, 150, 200, 300); halved for 15 MB
    dropout: float = 0.1  # study code
    ssim_window: int = 5  # study code: SSIMLoss(window_size=5)
    lr: float = 2e-4  # study code: Adam lr 2e-4, weight decay 0
    batch_size: int = 32  # study code
    # Study code: 10000 steps of batch 32 = 34 steps per epoch on Kermany's 1098 normal training
    # images -> 295 epochs; a fixed schedule (no early stopping; the best validation epoch is kept).
    max_epochs: int = 295
    patience: int = 295
    score_reduction: str = "mean"  # UPD study Sec. V-D (CXR)


@register
class FAE(FeatureDetector):
    """Structural feature auto-encoder on frozen ResNet-18 features (layers 0-2 at 1/4 resolution):
    trained with an SSIM loss on the features; map = 1 - SSIM over channels, upsampled; score = mean.
    AE widths halved from the study's to stay < 15 MB."""

    method = "fae"
    title = "FAE"
    paper = ("Meissen et al., Unsupervised anomaly localization with structural feature-autoencoders "
             "(2022); configured as in Lagogiannis et al. (UPD study).")
    Config = FAEConfig
    layers = ("layer0", "layer1", "layer2")

    def __init__(self, config: FAEConfig | None = None, image_size: int = 128) -> None:
        super().__init__(config, image_size)
        c = self.config
        self.feat_size = image_size // 4
        levels = min(len(c.hidden_dims), int(math.log2(self.feat_size)) - 1)  # bottleneck >= 2x2
        dims = tuple(c.hidden_dims[:levels])
        ch = sum(CHANNELS[k] for k in self.layers)
        self.encoder = feature_encoder(ch, dims, c.dropout)
        self.decoder = feature_decoder(ch, dims, c.dropout)

    def feature_stack(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 256, H/4, W/4): the backbone's layers resized and concatenated."""
        f = self.features(x)
        return torch.cat([F.interpolate(f[k], size=(self.feat_size,) * 2, mode="bilinear", align_corners=True)
                          if f[k].shape[-1] != self.feat_size else f[k] for k in self.layers], 1)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"main": torch.optim.Adam(self.trainable_parameters(), lr=self.config.lr,
                                         weight_decay=self.config.weight_decay)}

    def reconstruct_features(self, feats: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(feats))

    def loss(self, x: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        feats = self.feature_stack(x)
        rec = self.reconstruct_features(feats)
        return {"loss": -channel_ssim(rec, feats, self.config.ssim_window).mean()}

    def forward_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.feature_stack(x)
        m = 1 - channel_ssim(self.reconstruct_features(feats), feats, self.config.ssim_window).mean(1, keepdim=True)
        m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=True)
        return {"anomaly_map": m[:, 0]}
