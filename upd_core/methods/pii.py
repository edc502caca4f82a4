"""PII: Poisson image interpolation (Tan, Hou, Day, Simpson, Rueckert, Kainz, "Detecting outliers
with Poisson image interpolation") and its predecessor FPI (foreign patch
interpolation, Tan et al. 2020).

Self-supervised task: a random patch of another normal training image is blended into each
training image with a random interpolation factor alpha (Poisson blending with mixed gradients
for PII, a convex combination for FPI; upd_core.poisson). A wide residual encoder-decoder with a
sigmoid output regresses alpha per pixel with binary cross-entropy (PII Eq. 9). At test time the
network output is the anomaly map; the image score is its mean ("mean-top25" as in the PII code
is available through `score_reduction`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..detector import Detector, DetectorConfig
from ..poisson import make_samples
from ..registry import register


class WideBlock(nn.Module):
    """Pre-activation wide residual block (Zagoruyko & Komodakis): BN-ReLU-conv3x3 twice plus a
    shortcut. direction 'down' strides the first conv; 'up' upsamples x2 after the first conv
    (as the PII reference decoder)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, direction: str = "down") -> None:
        super().__init__()
        self.stride, self.direction = stride, direction
        down_stride = stride if direction == "down" else 1
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cin, cout, 3, down_stride, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.short = nn.Conv2d(cin, cout, 1, down_stride, 0, bias=False) if cin != cout else None

    def _up(self, t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, scale_factor=self.stride, mode="nearest") if self.direction == "up" and self.stride > 1 else t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn1(x))
        h = self._up(self.conv1(a))
        h = self.conv2(F.relu(self.bn2(h)))
        if self.short is not None:
            s = self._up(self.short(a))
        elif self.stride > 1 and self.direction == "down":
            s = F.avg_pool2d(x, self.stride)
        else:
            s = self._up(x)
        return h + s


class WideResEncoderDecoder(nn.Module):
    """The FPI/PII network: a wide residual encoder (stages 16, 16k, 32k, 64k, 64k, 64k; four
    halvings) and a lighter decoder (32k, 16k, 16, out; four doublings); logits out."""

    def __init__(self, width: int = 2, blocks_per_stage: int = 1, out_ch: int = 1) -> None:
        super().__init__()
        k = width
        st = [16, 16 * k, 32 * k, 64 * k, 64 * k, 64 * k]
        self.stem = nn.Conv2d(1, st[0], 3, 1, 1, bias=False)
        enc = []
        for i in range(1, len(st)):
            stride = 1 if i == 1 else 2
            enc.append(WideBlock(st[i - 1], st[i], stride))
            enc += [WideBlock(st[i], st[i]) for _ in range(blocks_per_stage - 1)]
        self.encoder = nn.Sequential(*enc)
        dec_ch = [st[-1], st[2], st[1], st[0], out_ch]
        self.decoder = nn.Sequential(*[WideBlock(dec_ch[i], dec_ch[i + 1], 2, "up") for i in range(4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(self.stem(x)))


@dataclass
class PIIConfig(DetectorConfig):
    # Wide residual encoder-decoder (PII Sec. 2 / FPI): width 4 in the paper; 2 here keeps the
    # model < 15 MB and trainable on a CPU (width 4 would be ~17 MB).
    width: int = 2
    blocks_per_stage: int = 1
    # Self-supervised task (PII Sec. 2): patch side U(0.1N, 0.4N), centre U(0.1N, 0.9N),
    # alpha U(0.05, 0.95), gradient mixing of Eq. 8.
    patch_size: tuple[float, float] = (0.1, 0.4)
    patch_center: tuple[float, float] = (0.1, 0.9)
    alpha_range: tuple[float, float] = (0.05, 0.95)
    gradient_mixing: bool = True
    # PII Sec. 3: images "normalized to have zero mean and unit standard deviation". Done on the
    # network input only (per image), so blending and labels stay in the [0, 1] contract.
    standardize: bool = True
    # Training (PII Sec. 2): Adam lr 1e-3, 50 epochs; reference code: batch 32 and L2 5e-4 on
    # conv kernels (= Adam weight decay 1e-3 on those weights).
    lr: float = 1e-3
    max_epochs: int = 50
    batch_size: int = 32
    weight_decay: float = 1e-3
    score_reduction: str = "mean"  # UPD study (chest X-ray): mean of the map; PII code: "mean-top25"


@register
class PII(Detector):
    """Self-supervised patch-interpolation detector: the network output is the anomaly map."""

    method = "pii"
    title = "PII"
    paper = "Tan et al., Detecting Outliers with Poisson Image Interpolation, MICCAI 2021."
    Config = PIIConfig
    blend = "poisson"

    def __init__(self, config: PIIConfig | None = None, image_size: int = 128) -> None:
        super().__init__(config, image_size)
        c = self.config
        self.net = WideResEncoderDecoder(c.width, c.blocks_per_stage)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        convs = [m.weight for m in self.modules() if isinstance(m, nn.Conv2d)]
        ids = {id(p) for p in convs}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return {"main": torch.optim.Adam([{"params": convs, "weight_decay": self.config.weight_decay},
                                          {"params": rest, "weight_decay": 0.0}], lr=self.config.lr)}

    def samples(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training inputs with one interpolated foreign patch each, and their alpha labels."""
        c = self.config
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            return make_samples(x.float(), self.blend, generator, tuple(c.alpha_range), tuple(c.patch_size),
                                tuple(c.patch_center), c.gradient_mixing)

    def loss(self, x: torch.Tensor, epoch: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        xt, y = self.samples(x, generator)
        logits = self.net(self.net_input(xt).contiguous(memory_format=torch.channels_last))
        return {"loss": F.binary_cross_entropy_with_logits(logits.float(), y)}  # PII Eq. 9

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, epoch: int) -> float:
        return float(self.loss(x, epoch, torch.Generator().manual_seed(1234))["loss"])

    def net_input(self, x: torch.Tensor) -> torch.Tensor:
        """The image as the network sees it: per-image zero mean, unit std (PII Sec. 3) when
        `standardize`, else the [0, 1] image."""
        if not self.config.standardize:
            return x
        return (x - x.mean((2, 3), keepdim=True)) / (x.std((2, 3), keepdim=True) + 1e-6)

    def forward_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"anomaly_map": torch.sigmoid(self.net(self.net_input(x)).float())[:, 0]}


@register
class FPI(PII):
    """Foreign patch interpolation: as PII but with a convex combination of the two patches."""

    method = "fpi"
    title = "FPI"
    paper = "Tan et al., Detecting Outliers with Foreign Patch Interpolation (arXiv:2011.04197)."
    blend = "linear"
