"""The ResNet-18 feature extractor of the UPD study's feature-modeling family (PaDiM, RD, FAE,
CFLOW-AD) and of its CCD pre-training, and where its weights come from. Nothing is downloaded, ever.

The study uses a frozen, pre-trained encoder for every feature-modeling method (Sec. IV-B), a
Wide ResNet-50-2 for PaDiM, RD and CFLOW-AD (Sec. VI-E) and a ResNet-18 for FAE; its code offers
ResNet-18 for all of them. Here it is always torchvision's ResNet-18 architecture, truncated after
the deepest layer a method uses (layer3 at most: layer4 alone holds 8.4 of its 11.2 M parameters
and would not fit the 15 MB checkpoint limit). Layers, named as in the study's code:

    layer0  stem (conv1, bn1, relu, maxpool)   64 ch, stride 4  (32x32 at 128 px)
    layer1                                      64 ch, stride 4  (32x32)
    layer2                                     128 ch, stride 8  (16x16)
    layer3                                     256 ch, stride 16 (8x8)

Origin of the weights (config field `backbone`; every checkpoint records the one used in
`backbone_used`, shown in its model card and in every evaluation):

- "imagenet": torchvision's ImageNet weights, only when the file `resnet18-f37072fd.pth` already
  lies in the torch hub cache (`torch.hub.get_dir()/checkpoints`; an online machine downloads it
  with `torchvision.models.resnet18(weights="DEFAULT")`); otherwise a clear error. Input: ImageNet
  mean/std normalisation of the grey image repeated to 3 channels.
- "ccd": the project's own CCD pre-training on normal images of the same data (method `ccd`,
  checkpoint id or folder in `backbone_checkpoint`, default "ccd-kermany-128"). Input: grey repeated
  to 3 channels, centred to [-1, 1] as the study's ResNet-18 CCD code does (`config.center`).
- "random": torchvision's initialisation under a fixed seed (`backbone_seed`). Input as for "ccd".
- "auto" (default): "imagenet" when cached, else "ccd" when its checkpoint loads, else "random"
  with a RuntimeWarning. A random backbone is reported as "random", never as pre-trained.

Frozen extractors are kept in eval mode (BatchNorm statistics fixed) and their large weights are
rounded to and stored as float16 (computed in float32): a frozen ResNet-18 up to layer3 is 11.1 MB
in float32, 5.6 MB in float16, which leaves room in 15 MB for the method's own part. The rounding
happens when the weights are loaded, so training and inference use exactly the stored values.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..detector import Detector, DetectorConfig
from ..errors import UPDError

LAYERS = ("layer0", "layer1", "layer2", "layer3")
CHANNELS = {"layer0": 64, "layer1": 64, "layer2": 128, "layer3": 256}
STRIDES = {"layer0": 4, "layer1": 4, "layer2": 8, "layer3": 16}
BACKBONES = ("auto", "ccd", "imagenet", "random")
IMAGENET_FILE = "resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1 file name
CCD_CHECKPOINT = "ccd-kermany-128"  # the project's CCD-pretrained ResNet-18 (method `ccd`)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FP16_MIN_NUMEL = 1024  # frozen tensors at least this large (the conv weights) are stored as float16


class BackboneUnavailable(UPDError, RuntimeError):
    """The requested pre-trained weights are not on this machine (nothing is downloaded)."""


def imagenet_cache_file() -> Path:
    """Where torchvision keeps the ImageNet ResNet-18 weights once downloaded."""
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE


def _fp16_state_hook(module: nn.Module, state: dict, prefix: str, _meta: Any) -> None:
    """state_dict post-hook of a frozen extractor: its large float tensors as float16."""
    for k, v in list(state.items()):
        if k.startswith(prefix) and torch.is_floating_point(v) and v.numel() >= FP16_MIN_NUMEL:
            state[k] = v.detach().to(torch.float16)


class ResNet18Features(nn.Module):
    """torchvision's ResNet-18, truncated after the deepest of `layers`; `forward(x)` takes grey
    (N,1,H,W) (or RGB) images in [0, 1] and returns {layer name: feature map} for `layers`.

    `norm`: "imagenet" (ImageNet mean/std) or "center" ((x - 0.5) * 2). `frozen`: no gradients,
    always in eval mode, large weights stored as float16 (see the module docstring)."""

    def __init__(self, layers: tuple[str, ...] = ("layer1", "layer2", "layer3"), norm: str = "center",
                 frozen: bool = True, seed: int = 0) -> None:
        super().__init__()
        from torchvision.models import resnet18

        unknown = set(layers) - set(LAYERS)
        if unknown or not layers:
            raise ValueError(f"layers must be a non-empty subset of {LAYERS}, got {layers}")
        if norm not in ("imagenet", "center"):
            raise ValueError(f"norm must be 'imagenet' or 'center', got {norm!r}")
        self.layers = tuple(sorted(layers, key=LAYERS.index))
        self.norm = norm
        self.frozen = frozen
        with torch.random.fork_rng(devices=[]):  # the same random weights for a seed, whoever calls
            torch.manual_seed(seed)
            net = resnet18(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        depth = LAYERS.index(self.layers[-1])
        for i in range(1, depth + 1):
            setattr(self, f"layer{i}", getattr(net, f"layer{i}"))
        self.depth = depth
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if norm == "imagenet" else ((0.5,) * 3, (0.5,) * 3)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        if frozen:
            for p in self.parameters():
                p.requires_grad_(False)
            self.register_state_dict_post_hook(_fp16_state_hook)
            self.round_to_storage()
            super().train(False)

    @property
    def channels(self) -> dict[str, int]:
        return {k: CHANNELS[k] for k in self.layers}

    def train(self, mode: bool = True) -> "ResNet18Features":
        return super().train(False if self.frozen else mode)

    @torch.no_grad()
    def round_to_storage(self) -> None:
        """Round the tensors stored as float16 to float16 precision (frozen extractors only)."""
        if not self.frozen:
            return
        for t in list(self.parameters()) + list(self.buffers()):
            if torch.is_floating_point(t) and t.numel() >= FP16_MIN_NUMEL:
                t.copy_(t.to(torch.float16).to(t.dtype))

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load a torchvision-named ResNet-18 state dict (extra keys, e.g. layer4 and fc, ignored)."""
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise BackboneUnavailable(f"the backbone weights lack {len(missing)} tensors (e.g. {missing[0]!r})")
        with torch.no_grad():
            for k, t in {**dict(self.named_parameters()), **dict(self.named_buffers())}.items():
                if k in state:
                    src = state[k]
                    if tuple(src.shape) != tuple(t.shape):
                        raise BackboneUnavailable(f"backbone tensor {k!r} has shape {tuple(src.shape)}, "
                                                  f"expected {tuple(t.shape)}")
                    t.copy_(src.to(t.dtype))
        self.round_to_storage()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out: dict[str, torch.Tensor] = {}
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        if "layer0" in self.layers:
            out["layer0"] = x
        for i in range(1, self.depth + 1):
            x = getattr(self, f"layer{i}")(x)
            if f"layer{i}" in self.layers:
                out[f"layer{i}"] = x
        return out


# ---------------------------------------------------------------- where the weights come from


def used_kind(backbone_used: str) -> str:
    """'imagenet', 'ccd' or 'random' from a `backbone_used` label (how the input is normalised)."""
    if backbone_used.startswith("ImageNet"):
        return "imagenet"
    return "ccd" if backbone_used.startswith("CCD") else "random"


def imagenet_state() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet ResNet-18 weights from the hub cache; BackboneUnavailable otherwise."""
    path = imagenet_cache_file()
    if not path.is_file():
        raise BackboneUnavailable(
            f"backbone 'imagenet' requested, but torchvision's ImageNet ResNet-18 weights are not in the "
            f"torch hub cache ({path}); nothing is downloaded here. On a machine with internet access run "
            "`python -c \"import torchvision; torchvision.models.resnet18(weights='DEFAULT')\"` (or copy "
            f"{IMAGENET_FILE} there, or set TORCH_HOME), or use backbone 'ccd' (the project's own "
            "CCD pre-training) or 'random'.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only, no code
    except Exception as exc:  # truncated or not a state dict
        raise BackboneUnavailable(f"{path} cannot be read as ResNet-18 weights ({exc})") from None
    if not isinstance(state, dict):
        raise BackboneUnavailable(f"{path} does not hold a ResNet-18 state dict")
    return state


def ccd_state(checkpoint: str) -> tuple[dict[str, torch.Tensor], str]:
    """The backbone weights of a trained `ccd` checkpoint (id or folder) and its label
    "CCD on <data> normal (<id>, sha256 <12 hex>; init <...>)"; BackboneUnavailable otherwise."""
    from ..checkpoint import WEIGHTS, load_detector, read_config, resolve

    try:
        det = load_detector(checkpoint, device="cpu")
        folder, expected = resolve(checkpoint)
        cfg = read_config(folder)
    except (UPDError, OSError, ValueError) as exc:
        raise BackboneUnavailable(
            f"backbone 'ccd' requested, but the CCD checkpoint {checkpoint!r} cannot be loaded ({exc}); "
            "train it first (`python -m upd_core train --method ccd ...`) and pass its folder or id as "
            "backbone_checkpoint") from None
    if det.method != "ccd":
        raise BackboneUnavailable(f"backbone_checkpoint {checkpoint!r} is a {det.method} checkpoint, not ccd")
    data = cfg.get("dataset", {}).get("name") or "unrecorded data"
    sha = expected.get(WEIGHTS, "")
    init = getattr(det.config, "init_used", "") or "init not recorded"
    label = f"CCD on {data} normal ({cfg.get('id') or folder.name}, sha256 {sha[:12] or '?'}; init {init})"
    return det.backbone.state_dict(), label


def load_backbone(extractor: ResNet18Features, kind: str, checkpoint: str = CCD_CHECKPOINT,
                  seed: int = 0) -> str:
    """Fill `extractor` with the weights of `kind` and return the label to record ("ImageNet
    (...)", "CCD on <data> normal (...)", "random (seed N)"). The extractor's input normalisation
    must match (`backbone_norm(kind)`); "auto" is resolved by `resolve_kind` first."""
    if kind == "imagenet":
        extractor.load_weights(imagenet_state())
        return f"ImageNet (torchvision {IMAGENET_FILE})"
    if kind == "ccd":
        state, label = ccd_state(checkpoint)
        extractor.load_weights(state)
        return label
    if kind == "random":
        return f"random (torchvision initialisation, seed {seed})"
    raise ValueError(f"backbone must be one of {BACKBONES}, got {kind!r}")


def resolve_kind(kind: str, checkpoint: str = CCD_CHECKPOINT) -> str:
    """'auto' -> 'imagenet' when cached, else 'ccd' when its checkpoint loads, else 'random' (with a
    RuntimeWarning); any other kind unchanged (checked)."""
    if kind not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {kind!r}")
    if kind != "auto":
        return kind
    if imagenet_cache_file().is_file():
        return "imagenet"
    try:
        ccd_state(checkpoint)
        return "ccd"
    except BackboneUnavailable:
        pass
    warnings.warn(f"backbone 'auto': no ImageNet ResNet-18 weights in the torch hub cache and no CCD checkpoint "
                  f"{checkpoint!r}; using a RANDOM backbone (recorded as 'random' in the model config)",
                  RuntimeWarning, stacklevel=5)  # the line that built the detector
    return "random"


def backbone_norm(kind: str) -> str:
    """Input normalisation of a resolved backbone kind: ImageNet statistics only for ImageNet weights."""
    return "imagenet" if kind == "imagenet" else "center"


def frozen_backbone(layers: tuple[str, ...], cfg: Any) -> ResNet18Features:
    """The frozen extractor of a feature-modeling method from its config (`backbone`,
    `backbone_checkpoint`, `backbone_seed`, `backbone_used`). A fresh config (empty
    `backbone_used`) loads the weights now and records their origin; a config read from a
    checkpoint only builds the architecture (the weights come from the checkpoint)."""
    if cfg.backbone_used:
        kind = used_kind(cfg.backbone_used)
        return ResNet18Features(layers, backbone_norm(kind), frozen=True, seed=cfg.backbone_seed)
    kind = resolve_kind(cfg.backbone, cfg.backbone_checkpoint)
    ext = ResNet18Features(layers, backbone_norm(kind), frozen=True, seed=cfg.backbone_seed)
    cfg.backbone_used = load_backbone(ext, kind, cfg.backbone_checkpoint, cfg.backbone_seed)
    return ext


def resize_to(f: torch.Tensor, size: int, align_corners: bool | None = False) -> torch.Tensor:
    """Feature map resized to size x size: average pooling to shrink, bilinear to enlarge."""
    if f.shape[-1] == size:
        return f
    if f.shape[-1] > size:
        return F.adaptive_avg_pool2d(f, size)
    return F.interpolate(f, size=(size, size), mode="bilinear", align_corners=align_corners)


# ---------------------------------------------------------------- the shared base of the family


@dataclass
class FeatureConfig(DetectorConfig):
    """Backbone settings shared by PaDiM, RD, FAE and CFLOW-AD (see the module docstring)."""

    # The study's backbones are ImageNet-pretrained [U §IV-B, §VI-E], or CCD-pretrained for [U Tab. IV/V].
    # "auto": ImageNet when its weights are cached, else the CCD checkpoint, else random (warning).
    backbone: str = "auto"  # "auto" | "imagenet" | "ccd" | "random"
    backbone_checkpoint: str = CCD_CHECKPOINT  # the `ccd` checkpoint (id or folder) for backbone "ccd"
    backbone_seed: int = 0  # torchvision initialisation seed of a "random" backbone
    backbone_used: str = ""  # filled when the model is built: the origin of the frozen weights


class FeatureDetector(Detector):
    """A detector on the frozen ResNet-18 features of `layers` (`self.backbone`)."""

    layers: tuple[str, ...] = ("layer1", "layer2", "layer3")
    Config = FeatureConfig

    def __init__(self, config: Any = None, image_size: int = 128) -> None:
        super().__init__(config, image_size)
        self.backbone = frozen_backbone(self.layers, self.config)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Frozen features of images (N,1,H,W) in [0, 1], float32, no gradients."""
        with torch.no_grad():
            return {k: v.float() for k, v in self.backbone(x).items()}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("backbone.")]
