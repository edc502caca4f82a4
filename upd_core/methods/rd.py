"""RD: anomaly detection via reverse distillation from a one-class embedding (Deng & Li, CVPR
2022), as configured in the UPD study (Lagogiannis et al., Sec. IV-B; its code's ResNet-18 setting).

- Teacher: the frozen backbone (`backbones.py`), features of layer1, layer2, layer3 (64@32x32,
  128@16x16, 256@8x8 at 128 px).
- One-class bottleneck embedding (OCBE), trainable: multi-scale feature fusion (layer1 through two
  stride-2 3x3 convs, layer2 through one, concatenated with layer3) and a one-class embedding
  block (residual block(s) with stride 2) to a compact embedding (4x4 at 128 px).
- Student decoder, trainable: the teacher in reverse (de-ResNet blocks with 2x2 transposed convs),
  producing maps shaped like teacher layer3, layer2, layer1.
- Loss: sum over the three scales of 1 - cosine similarity between the flattened teacher and
  student maps of each image (the study's/RD4AD code's `loss_fucntion`).
- Map: sum over scales of the per-position 1 - cosine similarity (over channels), each upsampled
  bilinearly to the image size; image score = mean of the map (study, CXR).
- Optimiser (study code): Adam lr 0.005, betas (0.5, 0.999), batch 4, 10000 steps.

Scaled to the 15 MB checkpoint limit (the study's ResNet-18 RD is ~15 M trainable parameters,
60 MB): fusion widths 32/64 instead of 128/256, embedding 128 channels (paper, ResNet-18: 512),
one residual block in the OCBE and per decoder stage (paper: 2). See docs/fidelity.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register
from .backbones import CHANNELS, FeatureConfig, FeatureDetector


def _bn_relu(c: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]


class ResBlock(nn.Module):
    """torchvision's BasicBlock (3x3 convs, BN, ReLU, 1x1 projection shortcut when shapes change)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), *_bn_relu(cout),
                                  nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.short(x))


class DeBlock(nn.Module):
    """The de-ResNet block of RD: the first conv (and the shortcut) a stride-2 2x2 transposed conv
    when it upsamples."""

    def __init__(self, cin: int, cout: int, upsample: bool = True) -> None:
        super().__init__()
        first = (nn.ConvTranspose2d(cin, cout, 2, 2, bias=False) if upsample
                 else nn.Conv2d(cin, cout, 3, 1, 1, bias=False))
        self.body = nn.Sequential(first, *_bn_relu(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.short = (nn.Sequential(nn.ConvTranspose2d(cin, cout, 2, 2, bias=False), nn.BatchNorm2d(cout))
                      if upsample else nn.Identity() if cin == cout else
                      nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.short(x))


class OCBE(nn.Module):
    """Multi-scale feature fusion + one-class embedding (RD Sec. 3.2)."""

    def __init__(self, ch: tuple[int, int, int], mff: int, embed: int, blocks: int) -> None:
        super().__init__()
        self.l1 = nn.Sequential(nn.Conv2d(ch[0], mff // 2, 3, 2, 1, bias=False), *_bn_relu(mff // 2),
                                nn.Conv2d(mff // 2, mff, 3, 2, 1, bias=False), *_bn_relu(mff))
        self.l2 = nn.Sequential(nn.Conv2d(ch[1], mff, 3, 2, 1, bias=False), *_bn_relu(mff))
        self.oce = nn.Sequential(ResBlock(2 * mff + ch[2], embed, 2),
                                 *[ResBlock(embed, embed) for _ in range(blocks - 1)])

    def forward(self, f1: torch.Tensor, f2: torch.Tensor, f3: torch.Tensor) -> torch.Tensor:
        return self.oce(torch.cat([self.l1(f1), self.l2(f2), f3], 1))


class StudentDecoder(nn.Module):
    """Embedding -> maps shaped like teacher layer3, layer2, layer1 (returned shallow first)."""

    def __init__(self, ch: tuple[int, int, int], embed: int, blocks: int) -> None:
        super().__init__()
        stages, cin = [], embed
        for c in reversed(ch):
            stages.append(nn.Sequential(DeBlock(cin, c, True), *[DeBlock(c, c, False) for _ in range(blocks - 1)]))
            cin = c
        self.stages = nn.ModuleList(stages)

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for st in self.stages:
            z = st(z)
            outs.append(z)
        return outs[::-1]


@dataclass
class RDConfig(FeatureConfig):
    mff_channels: int = 64  # fusion width (paper ResNet-18: 128/256 per branch); reduced for 15 MB
    embed_dim: int = 128  # one-class embedding channels (paper ResNet-18: 512); reduced for 15 MB
    ocbe_blocks: int = 1  # residual blocks of the OCE (paper: 2); reduced for 15 MB
    decoder_blocks: int = 1  # de-ResNet blocks per decoder stage (paper: 2); reduced for 15 MB
    lr: float = 0.005  # study code (RDtrainer.py): Adam lr 0.005, betas (0.5, 0.999)
    beta1: float = 0.5
    batch_size: int = 4  # study code: batch 4 (RD4AD: 16)
    # Study code: 10000 steps of batch 4 = 40000 images ~ 37 passes over Kermany's 1098 normal
    # training images; a fixed schedule (no early stopping; the best validation epoch is kept).
    max_epochs: int = 37
    patience: int = 37
    score_reduction: str = "mean"  # UPD study Sec. V-D (CXR); "masked-max" for MRI, "max" for RF
    gauss_sigma: float = 0.0  # study Sec. V-D: no post-processing (RD4AD/study code option: sigma 4)


@register
class RD(FeatureDetector):
    """Reverse distillation on a frozen ResNet-18 teacher (layers 1-3): a trainable one-class
    bottleneck and student decoder reproduce the teacher's features of normal images; map = sum over
    scales of 1 - cosine similarity, upsampled; score = mean of the map. Scaled to < 15 MB."""

    method = "rd"
    title = "RD"
    paper = ("Deng & Li, Anomaly detection via reverse distillation from one-class embedding (CVPR 2022); "
             "configured as in Lagogiannis et al. (UPD study).")
    Config = RDConfig
    layers = ("layer1", "layer2", "layer3")

    def __init__(self, config: RDConfig | None = None, image_size: int = 128) -> None:
        super().__init__(config, image_size)
        c = self.config
        ch = tuple(CHANNELS[k] for k in self.layers)
        self.ocbe = OCBE(ch, c.mff_channels, c.embed_dim, c.ocbe_blocks)
        self.decoder = StudentDecoder(ch, c.embed_dim, c.decoder_blocks)

    def student(self, feats: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return self.decoder(self.ocbe(*(feats[k] for k in self.layers)))

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"main": torch.optim.Adam(self.trainable_parameters(), lr=self.config.lr,
                                         betas=(self.config.beta1, 0.999), weight_decay=self.config.weight_decay)}

    def loss(self, x: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        feats = self.features(x)
        out = self.student(feats)
        loss = sum((1 - F.cosine_similarity(t.flatten(1), s.float().flatten(1), dim=1)).mean()
                   for t, s in zip((feats[k] for k in self.layers), out))
        return {"loss": loss}

    def forward_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(x)
        amap = 0
        for t, s in zip((feats[k] for k in self.layers), self.student(feats)):
            d = 1 - F.cosine_similarity(t, s.float(), dim=1)
            amap = amap + F.interpolate(d[:, None], size=x.shape[-2:], mode="bilinear", align_corners=True)
        return {"anomaly_map": amap[:, 0]}
