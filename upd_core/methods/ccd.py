"""CCD pre-training (Tian et al., MICCAI 2021) as the UPD study uses it (Lagogiannis et al.,
Sec. VI-D): a ResNet-18 learns domain-specific representations of the normal training images by
SimCLR's contrastive loss over distribution-shifted data plus the prediction of the shift. Its
main role is the "ccd" backbone of PaDiM, RD, FAE and CFLOW-AD (`backbones.py`).

- Strong, distribution-shifting transformations (study code default: CutPerm, 4 classes: k // 2
  swaps the top and bottom halves, k % 2 the left and right halves; "rotation": rot90 by k). Each
  image gets one random shift k; a shifted image is a sample of its own, so shifted versions are
  negatives of each other and of other images in the contrastive loss (CCD's "contrastive
  distribution" learning), and a classification head predicts k (the transformation prediction
  task; cross-entropy, both views).
- Weak views (the study code's SimCLR transforms): random resized crop (area 0.1-1), horizontal
  flip, brightness/contrast jitter 0.4 with p = 0.8, one cut-out square of side <= 75 px at 128 px.
- Loss: NT-Xent (temperature 0.2) on a 2-layer MLP projection (256 -> 256 -> 128) of the pooled
  layer3 features + shift cross-entropy on a head 256 -> 128 -> cosine classifier (4).
- Optimiser (study code): SGD lr 0.01, momentum 0.9, weight decay 3e-4, batch 32, cosine annealing
  to lr / 1000 over 200 epochs (a fixed schedule: no early stopping).

The ResNet-18 is truncated after layer3 (the deepest layer the four feature methods use; layer4
would make the checkpoint 45 MB instead of 11.7 MB), so the contrastive heads sit on globally
pooled layer3 features (256-d; study: layer4, 512-d). It starts from ImageNet weights when they
are cached (as in the study code), else from a random initialisation; `init_used` records which.

The contract's score (so that `ccd` is a detector like every other): per-position cosine distance
of the layer2 and layer3 features to their mean over the normal training images (`fit_extra`),
upsampled and averaged; image score = mean of the map.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..detector import Detector, DetectorConfig
from ..registry import register
from .augmentations import random_affine
from .backbones import ResNet18Features, imagenet_cache_file, imagenet_state
from .cradl import nt_xent

SHIFTS = ("cutperm", "rotation")
INITS = ("auto", "imagenet", "random")


def shift(x: torch.Tensor, k: torch.Tensor, kind: str = "cutperm") -> torch.Tensor:
    """Distribution-shifting transformation number k[i] (0..3) of each image x[i] (square images)."""
    k = k.to(x.device).view(-1, 1, 1, 1)
    if kind == "cutperm":
        h, w = x.shape[-2:]
        y = torch.where(k // 2 == 1, x.roll(h // 2, dims=2), x)
        return torch.where(k % 2 == 1, y.roll(w // 2, dims=3), y)
    if kind == "rotation":
        rots = torch.stack([torch.rot90(x, i, (2, 3)) for i in range(4)])
        return rots[k.view(-1), torch.arange(x.shape[0], device=x.device)]
    raise ValueError(f"shift must be one of {SHIFTS}, got {kind!r}")


def weak_view(x: torch.Tensor, crop_area: tuple[float, float], jitter: float, jitter_p: float,
              cutout_frac: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The study code's SimCLR view of grey images in [0, 1]: resized crop + flip, brightness and
    contrast jitter, one cut-out square (zeros) of random side up to `cutout_frac` of the image."""
    n, _, h, w = x.shape
    side = (math.sqrt(crop_area[0]), math.sqrt(crop_area[1]))  # area fraction -> side fraction
    y = random_affine(x, side, 0.0, True, generator)

    def u(shape) -> torch.Tensor:
        return torch.rand(shape, generator=generator).to(x.device)

    on = (u((n, 1, 1, 1)) < jitter_p).float()
    b = 1 + on * jitter * (2 * u((n, 1, 1, 1)) - 1)
    c = 1 + on * jitter * (2 * u((n, 1, 1, 1)) - 1)
    y = y * b
    m = y.mean((2, 3), keepdim=True)
    y = ((y - m) * c + m).clamp(0, 1)
    length = (1 + u((n,)) * (cutout_frac * h - 1)).floor()
    cy, cx = u((n,)) * h, u((n,)) * w
    yy = torch.arange(h, device=x.device, dtype=torch.float32)[None, :, None]
    xx = torch.arange(w, device=x.device, dtype=torch.float32)[None, None, :]
    half = (length // 2)[:, None, None]
    hole = ((yy >= cy[:, None, None] - half) & (yy < cy[:, None, None] + half) &
            (xx >= cx[:, None, None] - half) & (xx < cx[:, None, None] + half))
    return y * (~hole)[:, None].to(y.dtype)


class CosineClassifier(nn.Module):
    """Linear layer with unit-norm class weights (the study code's NormalizedLinear; here the
    normalisation is differentiable, the study code computes it under no_grad)."""

    def __init__(self, d_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, d_in))
        self.bias = nn.Parameter(torch.zeros(n_out))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight / self.weight.norm(dim=1, keepdim=True).clamp_min(1e-8), self.bias)


@dataclass
class CCDConfig(DetectorConfig):
    init: str = "auto"  # study code: ImageNet-pretrained ResNet-18 start; "auto" = that when cached, else random
    init_used: str = ""  # filled when the model is built
    shift: str = "cutperm"  # study code default ("cutperm works best"); "rotation" also offered
    n_shifts: int = 4  # study code: 4 strong-augmentation classes
    temperature: float = 0.2  # study code: SimCLRLoss(temperature=0.2)
    proj_dim: int = 128  # study code: features_dim = 128
    cls_hidden: int = 128  # study code: cls_head_number = 2 -> Linear(dim, 128), ReLU, NormalizedLinear(128, 4)
    crop_area: tuple[float, float] = (0.1, 1.0)  # study code: RandomResizedCrop(scale=[0.1, 1.0])
    jitter: float = 0.4  # study code: ColorJitter(0.4, 0.4, 0.4, 0.1) with p = 0.8 (brightness, contrast here)
    jitter_p: float = 0.8
    cutout_frac: float = 75 / 128  # study code: Cutout1(n_holes=1, length=75) at 128 px
    lr: float = 0.01  # study code: SGD lr 0.01, momentum 0.9, weight decay 3e-4
    momentum: float = 0.9
    weight_decay: float = 3e-4
    lr_min_factor: float = 1e-3  # cosine annealing to lr * 0.1 ** 3
    batch_size: int = 32  # study code
    max_epochs: int = 200  # study code: --max-epochs 200 (cosine schedule length); fixed schedule
    patience: int = 200  # no early stopping (the study trains a fixed schedule)
    score_reduction: str = "mean"  # UPD study Sec. V-D (CXR)


@register
class CCD(Detector):
    """CCD pre-training of a ResNet-18 (up to layer3) on normal images: contrastive loss over
    CutPerm-shifted samples plus shift prediction. A backbone checkpoint first; its own score is the
    cosine distance of layer2/layer3 features to their normal mean (a simple floor, not the study's)."""

    method = "ccd"
    title = "CCD pre-training"
    paper = ("Tian et al., Constrained contrastive distribution learning for unsupervised anomaly detection "
             "and localisation in medical images (MICCAI 2021); as used by Lagogiannis et al. (UPD study).")
    Config = CCDConfig
    score_layers = ("layer2", "layer3")

    def __init__(self, config: CCDConfig | None = None, image_size: int = 128) -> None:
        super().__init__(config, image_size)
        c = self.config
        if c.shift not in SHIFTS:
            raise ValueError(f"shift must be one of {SHIFTS}, got {c.shift!r}")
        if c.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {c.init!r}")
        if c.n_shifts != 4:
            raise ValueError("CutPerm and rotation have 4 classes (n_shifts = 4)")
        self.backbone = ResNet18Features(("layer1", "layer2", "layer3"), "center", frozen=False)
        if not c.init_used:
            init = c.init if c.init != "auto" else ("imagenet" if imagenet_cache_file().is_file() else "random")
            if init == "imagenet":
                self.backbone.load_weights(imagenet_state())
            c.init_used = "ImageNet (torchvision)" if init == "imagenet" else "random"
        dim = 256
        self.projector = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, c.proj_dim))
        self.classifier = nn.Sequential(nn.Linear(dim, c.cls_hidden), nn.ReLU(inplace=True),
                                        CosineClassifier(c.cls_hidden, c.n_shifts))
        for name in self.score_layers:  # mean normal feature maps (fit_extra), unit length per position
            side = image_size // {"layer2": 8, "layer3": 16}[name]
            ch = self.backbone.channels[name]
            self.register_buffer(f"mean_{name}", torch.zeros(1, ch, side, side))

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backbone feature maps {layer1, layer2, layer3} of images (N,1,H,W) in [0, 1]."""
        return self.backbone(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled layer3 features (N, 256): what the heads see."""
        return self.backbone(x)["layer3"].mean((2, 3))

    # ---- training ----
    def loss(self, x: torch.Tensor, epoch: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        c = self.config
        n = x.shape[0]
        k = torch.randint(0, c.n_shifts, (n,), generator=generator).to(x.device)
        xs = shift(x, k, c.shift)
        v1 = weak_view(xs, c.crop_area, c.jitter, c.jitter_p, c.cutout_frac, generator)
        v2 = weak_view(xs, c.crop_area, c.jitter, c.jitter_p, c.cutout_frac, generator)
        h = self.embed(torch.cat([v1, v2]).contiguous(memory_format=torch.channels_last))
        u = self.projector(h)
        con = nt_xent(u[:n], u[n:], c.temperature)
        cls = F.cross_entropy(self.classifier(h).float(), k.repeat(2))
        return {"loss": con + cls, "contrastive": con, "shift_ce": cls}

    def lr_factor(self, epoch: int) -> float:
        """Cosine annealing from lr to lr * lr_min_factor over max_epochs (study code's adjust_lr)."""
        c = self.config
        lo = c.lr_min_factor
        return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * min(1.0, epoch / max(1, c.max_epochs))))

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {"main": torch.optim.SGD(self.parameters(), lr=c.lr, momentum=c.momentum,
                                        weight_decay=c.weight_decay)}

    def training_step(self, x: torch.Tensor, epoch: int, optimizers: dict, amp) -> dict[str, float]:
        for group in optimizers["main"].param_groups:
            group["lr"] = self.config.lr * self.lr_factor(epoch)
        return super().training_step(x, epoch, optimizers, amp)

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, epoch: int) -> float:
        # The same shifts and views every epoch, so validation losses are comparable.
        return float(self.loss(x, epoch, torch.Generator().manual_seed(1234))["loss"])

    @torch.no_grad()
    def fit_extra(self, train: torch.Tensor, progress: bool = True, val: torch.Tensor | None = None) -> None:
        """Mean unit-length layer2/layer3 feature maps of the normal training images (the score)."""
        was = self.training
        self.eval()
        sums = {k: 0.0 for k in self.score_layers}
        for i in range(0, len(train), 64):
            f = self.backbone(train[i:i + 64].to(self.device).float())
            for k in self.score_layers:
                sums[k] = sums[k] + F.normalize(f[k].float(), dim=1).sum(0, keepdim=True)
        self.train(was)
        for k in self.score_layers:
            setattr(self, f"mean_{k}", F.normalize(sums[k] / len(train), dim=1).contiguous())

    # ---- inference: cosine distance to the normal mean feature maps ----
    def forward_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.backbone(x)
        maps = []
        for k in self.score_layers:
            d = 1 - F.cosine_similarity(f[k].float(), getattr(self, f"mean_{k}"), dim=1)
            maps.append(F.interpolate(d[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False))
        return {"anomaly_map": torch.stack(maps).mean(0)[:, 0]}
