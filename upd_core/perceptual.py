"""Perceptual loss and LPIPS without downloads.

LPIPS (Zhang et al. 2018) needs ImageNet AlexNet/VGG weights that cannot be fetched on every
machine. Rule of the project (DESIGN.md): use them only when the torch hub cache already holds
them; otherwise use the frozen intermediate features of the project's own self-supervised
encoder (the CRADL SimCLR encoder trained on the same chest X-rays, checkpoint
"cradl-kermany-128"), and say so; otherwise no perceptual term at all. A random backbone is
never presented as LPIPS.

    pl = PerceptualLoss("auto")       # resolves lazily on first use; pl.name says what was used
    loss = pl(x_hat, x)               # scalar, differentiable w.r.t. x_hat
    lpips_available(); reconstruction_lpips(x, y)  # None unless real LPIPS weights are cached
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

SSL_CHECKPOINT = "cradl-kermany-128"  # the project's SimCLR encoder (upd_core/methods/cradl.py)
# torchvision file names of the ImageNet backbones lpips.LPIPS(pretrained=True) loads from the hub cache
_BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
BACKENDS = ("auto", "lpips-alex", "lpips-vgg", "domain-ssl", "none")
NAME_NONE = "none"


def _hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def lpips_cache_file(net: str = "alex") -> Path:
    """Where torchvision keeps the ImageNet backbone that LPIPS(`net`) needs."""
    return _hub_checkpoint_dir() / _BACKBONE_FILES[net]


def lpips_available(net: str = "alex") -> bool:
    """True when the lpips package is installed and its backbone weights are already cached
    (so constructing LPIPS cannot trigger a download)."""
    if net not in _BACKBONE_FILES or not lpips_cache_file(net).is_file():
        return False
    try:
        import lpips  # noqa: F401
    except ImportError:
        return False
    return True


_LPIPS_MODELS: dict[str, nn.Module] = {}


def _lpips_model(net: str) -> nn.Module:
    """A frozen lpips.LPIPS(net); only called after `lpips_available(net)` said the weights are cached."""
    if net not in _LPIPS_MODELS:
        if not lpips_available(net):  # checked BEFORE construction: LPIPS(pretrained=True) would download
            raise RuntimeError(f"LPIPS ({net}) weights are not in the torch hub cache ({lpips_cache_file(net)})")
        import lpips

        m = lpips.LPIPS(net=net, pretrained=True, verbose=False).eval()
        for p in m.parameters():
            p.requires_grad_(False)
        _LPIPS_MODELS[net] = m
    return _LPIPS_MODELS[net]


def _grey3(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@torch.no_grad()
def reconstruction_lpips(x, y, net: str = "alex") -> np.ndarray | None:
    """Per-image LPIPS between images x and y ((N,H,W) or (N,1,H,W) in [0,1]), or None when no
    real LPIPS weights are available on this machine (never a stand-in number)."""
    if not lpips_available(net):
        return None
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    yt = torch.as_tensor(np.asarray(y, dtype=np.float32))
    if xt.ndim == 3:
        xt, yt = xt[:, None], yt[:, None]
    m = _lpips_model(net).cpu()
    out = [m(_grey3(xt[i:i + 32]), _grey3(yt[i:i + 32]), normalize=True).flatten()
           for i in range(0, len(xt), 32)]
    return torch.cat(out).double().numpy()


# ---- domain features: the project's self-supervised encoder ----

def _load_ssl_detector(encoder: str = SSL_CHECKPOINT):
    """The CRADL detector `encoder` (id or folder), or None (reason logged) when it cannot be loaded."""
    try:
        from .checkpoint import load_detector

        return load_detector(encoder, device="cpu")
    except Exception as exc:  # absent, not trained yet, tampered, method not registered...
        log.info("self-supervised encoder %s not available: %s", encoder, exc)
        return None


def _first_conv_in_channels(m: nn.Module) -> int:
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            return mod.in_channels
    return 1


def ssl_feature_fn(det: nn.Module) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """A function image batch -> list of intermediate feature maps of `det`'s encoder.

    Uses `det.features(x)` when the method provides it, else the encoder's per-block outputs
    (a blocks.ConvEncoder's own features, or forward hooks on the encoder's child modules).
    """
    from .methods.blocks import ConvEncoder

    if callable(getattr(det, "features", None)):
        return lambda x: [f for f in det.features(x) if f.ndim == 4]
    enc = getattr(det, "encoder", None)
    if enc is None:
        raise ValueError(f"{type(det).__name__} has no `encoder` to take perceptual features from")
    if isinstance(enc, ConvEncoder):
        return lambda x: enc(x, return_features=True)[1]
    children = list(enc.children()) or [enc]

    def run(x: torch.Tensor) -> list[torch.Tensor]:
        feats: list[torch.Tensor] = []
        hooks = [c.register_forward_hook(lambda _m, _i, o: feats.append(o) if torch.is_tensor(o) else None)
                 for c in children]
        try:
            enc(x)
        finally:
            for h in hooks:
                h.remove()
        return [f for f in feats if f.ndim == 4 and min(f.shape[-2:]) > 1]

    return run


def _unit(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return f / (f.pow(2).sum(1, keepdim=True).sqrt() + eps)


class DomainFeatures(nn.Module):
    """Perceptual distance on frozen features of a self-supervised encoder, LPIPS-style:
    channel-normalised features, squared difference summed over channels, averaged over
    space, summed over layers (the 'lin'-free LPIPS baseline, so alpha keeps its scale)."""

    def __init__(self, det: nn.Module) -> None:
        super().__init__()
        self.det = det.eval()
        for p in self.det.parameters():
            p.requires_grad_(False)
        self.size = int(getattr(det, "image_size", 0) or 0)
        self.in_ch = _first_conv_in_channels(getattr(det, "encoder", det))
        self._features = ssl_feature_fn(det)

    def train(self, mode: bool = True) -> "DomainFeatures":  # the encoder stays frozen in eval mode
        return super().train(False)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.size and x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if self.in_ch != x.shape[1]:
            x = x.expand(-1, self.in_ch, -1, -1)
        return x

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self._features(self._prep(x))
        pred = self._features(self._prep(x_hat))
        if not pred:
            raise ValueError("the self-supervised encoder produced no spatial feature maps")
        return sum((_unit(a.float()) - _unit(b.float())).pow(2).sum(1).mean() for a, b in zip(pred, target))


class _LPIPSLoss(nn.Module):
    def __init__(self, net: str) -> None:
        super().__init__()
        self.model = _lpips_model(net)

    def train(self, mode: bool = True) -> "_LPIPSLoss":
        return super().train(False)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.model(_grey3(x_hat), _grey3(x), normalize=True).mean()


class PerceptualLoss(nn.Module):
    """Perceptual loss with an honest backend; resolved lazily on the first call.

    backend: "auto" (LPIPS alex, else LPIPS vgg, when their weights are cached; else the
    domain SSL encoder; else "none" with a warning), or one of "lpips-alex", "lpips-vgg",
    "domain-ssl", "none" (an explicitly requested backend that is unavailable is an error).
    `name` is what the model card reports: "LPIPS (alex)", "perceptual: domain SSL features
    (cradl-kermany-128)" or "none".
    """

    def __init__(self, backend: str = "auto", encoder: str = "") -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown perceptual backend {backend!r}; choose from {BACKENDS}")
        self.backend = backend
        self.encoder = encoder or SSL_CHECKPOINT  # the SSL encoder checkpoint (id or folder)
        self.impl: nn.Module | None = None
        self.name: str | None = None

    def resolve(self) -> str:
        """Pick the backend (no downloads, ever) and return its display name."""
        if self.name is not None:
            return self.name
        b = self.backend
        for net in ("alex", "vgg"):
            if b in ("auto", f"lpips-{net}") and lpips_available(net):
                self.impl, self.name = _LPIPSLoss(net), f"LPIPS ({net})"
                return self.name
            if b == f"lpips-{net}":
                raise RuntimeError(f"perceptual backend {b!r} requested but the {net} ImageNet weights are not "
                                   f"in the torch hub cache ({lpips_cache_file(net)}); nothing is downloaded. "
                                   "Use backend 'auto' or 'domain-ssl'.")
        if b in ("auto", "domain-ssl"):
            det = _load_ssl_detector(self.encoder)
            if det is not None:
                self.impl = DomainFeatures(det)
                self.name = f"perceptual: domain SSL features ({getattr(det, 'checkpoint_id', '') or self.encoder})"
                return self.name
            if b == "domain-ssl":
                raise RuntimeError(f"perceptual backend 'domain-ssl' requested but checkpoint {self.encoder!r} "
                                   "cannot be loaded (train the CRADL encoder first)")
            warnings.warn("perceptual loss disabled: no LPIPS weights in the torch hub cache and no "
                          f"self-supervised encoder checkpoint {SSL_CHECKPOINT!r}; training without it "
                          "(recorded as 'none' in the model config)", RuntimeWarning, stacklevel=3)
        self.impl, self.name = None, NAME_NONE
        return self.name

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.resolve()
        if self.impl is None:
            return x_hat.new_zeros((), dtype=torch.float32)
        if next(self.impl.parameters(), x).device != x.device:
            self.impl.to(x.device)
        return self.impl(x_hat, x).float()
