"""MorphAEus: deformable auto-encoders (Bercea, Rueckert, Schnabel, "What do we learn? Debunking
the myth of unsupervised outlier detection"), its two ablations, and the paper's Fig. 5
"curse of resolution" series of plain AEs with 32x32 ... 1x1 latents.

A deep AE (latent 1x1) gives a *global prior*: an image from the training distribution, blurry
but free of pathology. A small deformation estimator reads the shared encoder/decoder features
and predicts a dense displacement field that locally moves the prior to match the input
(a spatial transformer, as in VoxelMorph). It can move tissue but cannot paint new intensities,
so pathology stays in the residual |x - x_warp| while healthy detail lines up.

Loss (Sec. 3, Eq. 1-2):  MSE(x, x_prior) + alpha * PL(x_prior, x)
                        + [epoch >= warp_start_epoch] * (LNCC(x_warp, x) + beta(epoch) * R(Phi))
with LNCC = 1 - local squared NCC (window 9), R = mean squared spatial gradient of Phi (the
smoothness term; ||Phi||^2 with deformation_penalty="l2"), beta ramped linearly 1e-3 -> 3 over
`beta_ramp_epochs`, and the prior treated as a constant inside L_warp (see the config).
Early stopping uses this full loss with L_warp always on and beta fixed at its final value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, make_dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import scoring
from ..perceptual import PerceptualLoss
from ..registry import register
from .blocks import ConvDecoder, ConvEncoder, activation
from .reconstruction import ReconstructionConfig, ReconstructionDetector, rec_loss


# ---------------------------------------------------------------- building blocks

def identity_grid(h: int, w: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (ys, xs), each (H,W) float32."""
    ys = torch.arange(h, device=device, dtype=torch.float32)
    xs = torch.arange(w, device=device, dtype=torch.float32)
    return torch.meshgrid(ys, xs, indexing="ij")


def warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Spatial transformer: out(p) = img(p + flow(p)), bilinear, border padding, in float32.

    `flow` is (N,2,H,W) in pixels; channel 0 = horizontal (x, +right), channel 1 = vertical
    (y, +down). A zero field returns `img` unchanged.
    """
    n, _, h, w = flow.shape
    with torch.autocast(device_type=flow.device.type, enabled=False):
        flow = flow.float()
        ys, xs = identity_grid(h, w, flow.device)
        gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
        gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
        grid = torch.stack((gx, gy), dim=-1)
        return F.grid_sample(img.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)


def lncc_loss(a: torch.Tensor, b: torch.Tensor, window: int = 9, eps: float = 1e-5) -> torch.Tensor:
    """1 - mean local squared normalised cross-correlation (VoxelMorph's NCC, window 9).

    Computed in float32. With eps in numerator and denominator every local term is <= 1 by
    Cauchy-Schwarz and equals 1 for identical images, so LNCC(x, x) = 0 is the exact optimum.
    """
    with torch.autocast(device_type=a.device.type, enabled=False):
        a, b = a.float(), b.float()
        k = torch.ones(1, a.shape[1], window, window, device=a.device)
        pad = window // 2
        n = float(window * window * a.shape[1])

        def box(t: torch.Tensor) -> torch.Tensor:
            return F.conv2d(t, k, padding=pad)

        sa, sb = box(a), box(b)
        cross = box(a * b) - sa * sb / n
        va = (box(a * a) - sa * sa / n).clamp_min(0)
        vb = (box(b * b) - sb * sb / n).clamp_min(0)
        cc = (cross * cross + eps) / (va * vb + eps)
        return 1.0 - cc.mean()


def smoothness(flow: torch.Tensor) -> torch.Tensor:
    """Mean squared spatial gradient of a displacement field (the smoothness term, 'grad-l2')."""
    flow = flow.float()
    dx = flow[..., :, 1:] - flow[..., :, :-1]
    dy = flow[..., 1:, :] - flow[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


def deformation_penalty(flow: torch.Tensor, kind: str) -> torch.Tensor:
    """'grad-l2': ||grad Phi||^2 (smoothness; the paper's prose and reference code) or
    'l2': ||Phi||^2 (magnitude; Eq. 2 read literally). Both in pixel units."""
    if kind == "grad-l2":
        return smoothness(flow)
    if kind == "l2":
        return flow.float().pow(2).mean()
    raise ValueError(f"unknown deformation penalty {kind!r}; use 'grad-l2' or 'l2'")


class PriorAE(nn.Module):
    """Conv AE with max-pool down-sampling and bilinear up-sampling (MorphAEus Sec. 3, network
    architecture); `depth` pooling levels, so the latent is (image_size / 2**depth)^2 x latent_channels.
    Returns the prior and the per-level encoder/decoder features the deformation estimator shares."""

    def __init__(self, channels: tuple[int, ...], depth: int, latent_channels: int, kernel: int = 3,
                 act: str = "swish") -> None:
        super().__init__()
        if not 1 <= depth <= len(channels):
            raise ValueError(f"depth {depth} needs 1..{len(channels)} channel entries")
        enc = tuple(channels[:depth])
        self.enc_channels = enc
        self.dec_channels = tuple(reversed(enc[:-1])) + (enc[0],)  # mirrored; decoder[j] doubles the size
        self.encoder = ConvEncoder(enc, kernel, act, down="maxpool")
        self.to_latent = nn.Conv2d(enc[-1], latent_channels, 1)
        self.from_latent = nn.Conv2d(latent_channels, enc[-1], 1)
        self.decoder = ConvDecoder(self.dec_channels, kernel, act, in_ch=enc[-1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        h, enc_feats = self.encoder(x, return_features=True)  # enc_feats[k]: size / 2**(k+1)
        prior, dec_feats = self.decoder(self.from_latent(self.to_latent(h)), return_features=True)
        return prior, enc_feats, dec_feats  # dec_feats[j]: latent side * 2**(j+1)


class DeformationEstimator(nn.Module):
    """Three transposed convolutions (32 filters, 3x3, stride 2, BN, swish) from the shared encoder
    and decoder features at 1/8, 1/4 and 1/2 resolution to a full-resolution 2D displacement field."""

    def __init__(self, enc_channels: tuple[int, ...], dec_channels: tuple[int, ...], depth: int,
                 width: int = 32, layers: int = 3, kernel: int = 3, act: str = "swish") -> None:
        super().__init__()
        if layers > depth:
            raise ValueError(f"{layers} deformation layers need at least {layers} pooling levels")
        self.depth, self.layers = depth, layers
        blocks = []
        for i in range(layers):
            k = layers - i  # input at size / 2**k
            cin = enc_channels[k - 1] + dec_channels[depth - k - 1] + (width if i else 0)
            blocks.append(nn.Sequential(
                nn.ConvTranspose2d(cin, width, kernel, stride=2, padding=kernel // 2, output_padding=1, bias=False),
                nn.BatchNorm2d(width), activation(act)))
        self.blocks = nn.ModuleList(blocks)
        self.flow = nn.Conv2d(width, 2, 3, padding=1)
        nn.init.normal_(self.flow.weight, 0.0, 1e-5)  # start near the identity (VoxelMorph)
        nn.init.zeros_(self.flow.bias)

    def forward(self, enc_feats: list[torch.Tensor], dec_feats: list[torch.Tensor]) -> torch.Tensor:
        d = None
        for i, blk in enumerate(self.blocks):
            k = self.layers - i
            parts = [enc_feats[k - 1], dec_feats[self.depth - k - 1]] + ([d] if d is not None else [])
            d = blk(torch.cat(parts, dim=1))
        return self.flow(d).float()


# ---------------------------------------------------------------- MorphAEus and ablations

@dataclass
class MorphAEusConfig(ReconstructionConfig):
    # Sec. 3 "Network architecture": 3x3 convs, BN, swish, max-pool; 128x128 -> 1x1x128 latent.
    # Smaller images use the first log2(image_size) entries so the latent stays 1x1.
    channels: tuple[int, ...] = (16, 32, 64, 128, 256, 256, 256)
    latent_channels: int = 128
    kernel: int = 3
    deform_width: int = 32  # deformation estimator: three transposed convs with 32 filters
    deform_layers: int = 3
    alpha: float = 0.05  # Eq. 1: weight of the perceptual loss
    perceptual: str = "auto"  # backend request, see upd_core.perceptual.PerceptualLoss
    # The self-supervised encoder behind "domain-ssl" (checkpoint id or folder; "" = the shipped
    # cradl-kermany-128). The campaign sets it to the CRADL encoder trained on the same data.
    perceptual_encoder: str = ""
    perceptual_used: str = ""  # filled in at training time: the backend actually used (for the card)
    lncc_window: int = 9  # VoxelMorph's default window for the local NCC in Eq. 2
    # Eq. 2: beta rises linearly from 1e-3 to 3 (Sec. 3). The paper does not give the length of the
    # ramp; the authors' code uses 200 epochs for chest X-rays. Short runs should shorten it.
    beta_start: float = 1e-3
    beta_end: float = 3.0
    beta_ramp_epochs: int = 200
    deformation_penalty: str = "grad-l2"  # smoothness ("grad-l2", paper prose + code) or "l2" (||Phi||^2)
    warp_start_epoch: int = 10  # Sec. 3: deformation loss switched on after 10 epochs
    # Eq. 2 lists only the deformer and the shared encoder/decoder parameters, so the prior image is
    # a constant in L_warp by default; True lets LNCC also reshape the prior (the authors' code).
    warp_grad_to_prior: bool = False
    lr: float = 5e-4  # authors' configuration for chest X-rays
    batch_size: int = 64
    rec_loss: str = "l2"  # Eq. 1: MSE
    map_kind: str = "l1"  # anomaly map |x - x_warp|


def beta_schedule(cfg: MorphAEusConfig, epoch: int) -> float:
    """Linear ramp of the deformation penalty weight from beta_start, at the epoch L_warp is
    switched on (`warp_start_epoch`, Sec. 3), to beta_end `beta_ramp_epochs` later (Sec. 3: "beta
    increases linearly from 1e-3 to 3"); `epoch` is 0-based as in the training loop."""
    t = min(1.0, max(0.0, (epoch - cfg.warp_start_epoch) / max(1, cfg.beta_ramp_epochs)))
    return cfg.beta_start + t * (cfg.beta_end - cfg.beta_start)


@register
class MorphAEus(ReconstructionDetector):
    """Deformable auto-encoder: a global prior from a 1x1 latent, locally morphed to the input by
    a dense deformation field. Anomaly map = |x - warped prior|; the prior residual |x - prior| is
    an extra map ('prior_residual'). Deformation fields are in pixels (channel 0 horizontal,
    channel 1 vertical). The perceptual backend actually used in training is recorded in the
    configuration ('perceptual_used'): "LPIPS (alex)" only with real ImageNet weights,
    "perceptual: domain SSL features (...)" for the project's own encoder, or "none"."""

    method = "morphaeus"
    title = "MorphAEus"
    paper = "Bercea, Rueckert, Schnabel: What do we learn? Debunking the myth of unsupervised outlier detection."
    Config = MorphAEusConfig
    outputs = ("reconstruction", "prior", "warped", "deformation")
    use_warp: ClassVar[bool] = True  # ablations switch the deformation branch off entirely

    def selection_start_epoch(self) -> int:
        """L_warp is switched on after `warp_start_epoch` and beta ramps for `beta_ramp_epochs`
        (Sec. 3); before that the objective changes every epoch, so selection starts after it."""
        return self.config.warp_start_epoch + self.config.beta_ramp_epochs if self.use_warp else 0

    def __init__(self, config: MorphAEusConfig | None = None, image_size: int = 128) -> None:
        super().__init__(config, image_size)
        c = self.config
        depth = int(math.log2(image_size))
        if len(c.channels) < depth:
            raise ValueError(f"{self.method} needs {depth} channel entries for {image_size} px, got {len(c.channels)}")
        if c.alpha <= 0:
            c.perceptual_used = "none (alpha = 0)"
        self.ae = PriorAE(c.channels, depth, c.latent_channels, c.kernel, "swish")
        self.deformer = (DeformationEstimator(self.ae.enc_channels, self.ae.dec_channels, depth, c.deform_width,
                                              c.deform_layers, c.kernel, "swish") if self.use_warp else None)

    def _pl(self) -> PerceptualLoss:
        pl = self.__dict__.get("_perceptual_loss")
        if pl is None:
            pl = PerceptualLoss(self.config.perceptual, self.config.perceptual_encoder)
            object.__setattr__(self, "_perceptual_loss", pl)  # not a submodule: never saved with the weights
            self.config.perceptual_used = pl.resolve()
        return pl

    def forward_all(self, x: torch.Tensor, with_warp: bool = True) -> dict[str, torch.Tensor]:
        prior, enc, dec = self.ae(x)
        out = {"prior": prior}
        if with_warp and self.deformer is not None:
            flow = self.deformer(enc, dec)
            out["deformation"] = flow
            out["warped"] = warp(prior, flow)
        return out

    def reconstruct(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.forward_all(x)
        out["reconstruction"] = out.get("warped", out["prior"])
        return out

    def forward_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().forward_maps(x)
        if self.deformer is not None:
            out["prior_residual"] = scoring.residual_map(x, out["prior"])
        return out

    def loss(self, x: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        c = self.config
        warp_on = self.deformer is not None and epoch >= c.warp_start_epoch
        out = self.forward_all(x, with_warp=warp_on)
        prior = out["prior"]
        mse = F.mse_loss(prior.float(), x.float())
        losses = {"mse": mse}
        total = mse
        if c.alpha > 0:
            pl = self._pl()(prior, x)
            total = total + c.alpha * pl
            losses["pl"] = pl
        if warp_on:
            # Eq. 2 optimises the deformer and the *shared* encoder/decoder parameters: the prior
            # image enters L_warp as a constant, so LNCC cannot trade the prior's MSE for local
            # contrast (in 5-min CPU runs that trade made the prior worse: val MSE 0.018 -> 0.025).
            src = prior if c.warp_grad_to_prior else prior.detach()
            ncc = lncc_loss(warp(src, out["deformation"]), x, c.lncc_window)
            reg = deformation_penalty(out["deformation"], c.deformation_penalty)
            beta = beta_schedule(c, epoch)
            total = total + ncc + beta * reg
            losses.update(lncc=ncc, reg=reg, beta=torch.tensor(beta))
        losses["loss"] = total
        return losses

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, epoch: int) -> float:
        """The full objective at its final weights (L_warp always on, beta = beta_end), whatever
        the epoch: comparable across epochs, and an epoch before the deformation was trained
        cannot win early stopping (with an MSE-only criterion a 10-min run kept such an epoch)."""
        c = self.config
        out = self.forward_all(x)
        val = F.mse_loss(out["prior"].float(), x.float())
        if c.alpha > 0:
            val = val + c.alpha * self._pl()(out["prior"], x)
        if "warped" in out:
            val = val + lncc_loss(out["warped"], x, c.lncc_window)
            val = val + c.beta_end * deformation_penalty(out["deformation"], c.deformation_penalty)
        return float(val)


@dataclass
class MorphAEusNoWarpConfig(MorphAEusConfig):
    pass


@register
class MorphAEusNoWarp(MorphAEus):
    """MorphAEus ablation without L_warp (Table 2): only the perceptually trained global prior;
    anomaly map = |x - prior|."""

    method = "morphaeus-no-warp"
    title = "MorphAEus w/o L_warp"
    Config = MorphAEusNoWarpConfig
    outputs = ("reconstruction", "prior")
    use_warp = False


@dataclass
class MorphAEusNoWarpNoPLConfig(MorphAEusConfig):
    alpha: float = 0.0  # no perceptual loss


@register
class MorphAEusNoWarpNoPL(MorphAEusNoWarp):
    """MorphAEus ablation without L_warp and without the perceptual loss (Table 2): a deep MSE
    auto-encoder with a 1x1 latent; anomaly map = |x - prior|."""

    method = "morphaeus-no-warp-no-pl"
    title = "MorphAEus w/o L_warp, w/o PL"
    Config = MorphAEusNoWarpNoPLConfig


# ---------------------------------------------------------------- curse of resolution (Fig. 5)

@dataclass
class LatentAEConfig(ReconstructionConfig):
    # The MorphAEus prior AE (3x3, BN, swish, max-pool, bilinear up-sampling), cut at a depth.
    channels: tuple[int, ...] = (16, 32, 64, 128, 256, 256, 256)
    latent_channels: int = 128
    kernel: int = 3
    latent_size: int = 1  # latent side at 128x128 input; depth = log2(128 / latent_size)
    lr: float = 5e-4
    batch_size: int = 64
    rec_loss: str = "l2"


class LatentAE(ReconstructionDetector):
    """Plain AE of the curse-of-resolution series (Fig. 5): shallow latents copy everything,
    pathology included; deep latents learn the training distribution but blur the details.
    The id names the latent side at 128x128 input; smaller inputs keep the same depth
    (capped so the latent is at least 1x1)."""

    Config = LatentAEConfig
    paper = "Bercea, Rueckert, Schnabel (MorphAEus paper), Sec. 6.1 / Fig. 5 'curse of resolution'."

    def __init__(self, config: LatentAEConfig | None = None, image_size: int = 128) -> None:
        super().__init__(config, image_size)
        c = self.config
        if c.latent_size < 1 or c.latent_size & (c.latent_size - 1) or c.latent_size > 64:
            raise ValueError(f"latent_size must be a power of two in 1..64, got {c.latent_size}")
        depth = min(int(math.log2(128 // c.latent_size)), int(math.log2(image_size)))
        self.ae = PriorAE(c.channels, depth, c.latent_channels, c.kernel, "swish")

    def reconstruct(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"reconstruction": self.ae(x)[0]}

    def loss(self, x: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        return {"loss": rec_loss(self.reconstruct(x)["reconstruction"], x, self.config.rec_loss)}


def _latent_ae(side: int) -> type[LatentAE]:
    """Register the thin subclass "ae-latent-<side>" whose config defaults to that latent size."""
    cfg = make_dataclass(f"LatentAE{side}Config", [("latent_size", int, side)], bases=(LatentAEConfig,))
    cfg.__module__ = __name__
    cls = type(f"LatentAE{side}", (LatentAE,), {
        "method": f"ae-latent-{side}", "title": f"AE, {side}x{side} latent (curse of resolution)",
        "Config": cfg, "__doc__": LatentAE.__doc__, "__module__": __name__})
    return register(cls)


AELatent32, AELatent16, AELatent8, AELatent4, AELatent1 = (_latent_ae(s) for s in (32, 16, 8, 4, 1))
