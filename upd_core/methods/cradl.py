"""CRADL: contrastive representations for unsupervised anomaly detection and localization
(Lüth, Zimmerer, Koehler, Jaeger, Isensee, Petersen, Maier-Hein).

Stage 1: a deep convolutional encoder f (CRADL Table 10) with a 2-layer MLP projection head g is
trained with SimCLR's NT-Xent loss (Eq. 4, temperature 0.5) on two augmented views of each normal
image. Stage 2 (`fit_extra`): density models p(z) are fitted on the encoder representations
z = f(x) of the normal training images (no augmentation): Gaussian mixtures with K = 1, 2, 4, 8
(EM) and a RealNVP flow. Image score = NLL of the representation (Eq. 2); heatmap = |d NLL / d x|
(Eq. 3), median pooled (5x5) and Gaussian smoothed (Sec. 4.5).

One checkpoint holds the encoder and all five density heads; choose the head at predict time with
`det.set_density("gmm4")`. The variant ids "cradl-gmm1" ... "cradl-flow" only change the default
head; their checkpoints are derived from a trained "cradl" checkpoint without retraining:

    python -m upd_core.methods.cradl derive --source cradl-kermany-128 --method cradl-gmm4 \
        --out runs/cradl-gmm4-kermany-128 --data kermany

`encode(x) -> (N, latent_dim)` and `features(x) -> [per-block feature maps]` expose the encoder
to other methods (perceptual loss of MorphAEus, Fréchet distance in the app).
"""
from __future__ import annotations

if __name__ == "__main__":  # `python -m upd_core.methods.cradl ...`: run the registered module's CLI
    import sys

    from upd_core.methods.cradl import main

    sys.exit(main())

import argparse
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import scoring
from ..density import DENSITIES, DensityBank
from ..detector import Detector, DetectorConfig, as_batch
from ..registry import register

# ---------------------------------------------------------------- augmentations (batched, torch)


def random_affine(x: torch.Tensor, scale: tuple[float, float] = (0.6, 1.0), rotate_deg: float = 15.0,
                  flip: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random resized crop / scaling, mirroring and rotation in one `grid_sample` per batch.

    A scale s < 1 zooms in on a random window of relative side s (random crop + resize), s > 1
    zooms out; borders are replicated.
    """
    n = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    s = u(*scale)
    a = torch.deg2rad(u(-rotate_deg, rotate_deg))
    fl = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    room = (1 - s).clamp_min(0)
    tx, ty = u(-1, 1) * room, u(-1, 1) * room
    theta = torch.stack([torch.stack([s * a.cos() * fl, -s * a.sin(), tx], 1),
                         torch.stack([s * a.sin() * fl, s * a.cos(), ty], 1)], 1).to(x.device)
    with torch.autocast(device_type=x.device.type, enabled=False):
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment(x: torch.Tensor, scale: tuple[float, float] = (0.6, 1.0), rotate_deg: float = 15.0,
            flip: bool = True, brightness: float = 0.25, noise_std: float = 0.05,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """CRADL's views (Sec. 4.3): crop/scale, mirror, rotate, multiplicative brightness, Gaussian noise.

    Batched and vectorised (one affine resampling per batch); output clipped to [0, 1].
    """
    n = x.shape[0]
    y = random_affine(x, scale, rotate_deg, flip, generator)
    b = 1 + brightness * (2 * torch.rand(n, 1, 1, 1, generator=generator) - 1)
    sigma = noise_std * torch.rand(n, 1, 1, 1, generator=generator)
    noise = torch.randn(y.shape, generator=generator)
    return (y * b.to(y.device) + sigma.to(y.device) * noise.to(y.device)).clamp(0, 1)


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
    gmm_eig_floor: float = 1e-6  # ADM eigenvalue lower bound (Kim et al., Sec. 2.2: 1e-6); 0 = off
    gmm_tol: float = 0.1  # EM convergence limit (Sec. 4.3)
    flow_blocks: int = 8  # appendix D: 8 coupling blocks, random permutations
    flow_epochs: int = 60  # appendix D: 60 epochs, lr / 10 every 20
    # Heatmap post-processing (Sec. 4.5): 5x5 median pooling, then Gaussian smoothing (the paper
    # gives no sigma; 2 px at 128 px).
    median_size: int = 5
    gauss_sigma: float = 2.0
    all_maps: bool = False  # also return the NLL-gradient map of every head in Prediction.extras


class RepresentationDensityMixin:
    """Density heads on a representation `encode(x)`: NLL scores, NLL-gradient maps, head choice,
    and percentiles per head (shared by CRADL and RADL)."""

    densities: DensityBank
    density: str

    def _init_densities(self, dim: int, cfg: Any) -> None:
        self.densities = DensityBank(dim, DENSITIES, cfg.flow_blocks)
        if cfg.density not in DENSITIES:
            raise ValueError(f"density must be one of {DENSITIES}, got {cfg.density!r}")
        self.density = cfg.density
        # Validation NLL of every head (rows in DENSITIES order), filled by `calibrate`.
        self.register_buffer("val_scores_all", torch.zeros(0, 0))

    def set_density(self, name: str) -> None:
        """Choose the density head used by `predict` ('gmm1', 'gmm2', 'gmm4', 'gmm8', 'flow')."""
        if name not in DENSITIES:
            raise ValueError(f"unknown density {name!r}; choose from {', '.join(DENSITIES)}")
        self.density = name

    def _fit_densities(self, z: torch.Tensor, progress: bool) -> dict[str, float]:
        cfg = self.config
        log = print if progress else None
        return self.densities.fit(z.float(), reg_covar=cfg.gmm_reg_covar, eig_floor=cfg.gmm_eig_floor,
                                  tol=cfg.gmm_tol, flow_epochs=cfg.flow_epochs, progress=log)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """The vector the density heads model (CRADL: f(x); VAE: E[z|x])."""
        return self.encode(x)

    @torch.no_grad()
    def representations(self, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """representation() of (N,1,H,W) images in eval mode, batched, float32."""
        was = self.training
        self.eval()
        try:
            return torch.cat([self.representation(x[i:i + batch_size].to(self.device)).float()
                              for i in range(0, len(x), batch_size)])
        finally:
            self.train(was)

    def nll_maps(self, x: torch.Tensor, names: tuple[str, ...]) -> tuple[dict, dict]:
        """NLL (N,) and |d NLL / d x| (N,H,W) for the given heads, sharing one encoder pass."""
        x = x.detach().float().requires_grad_(True)
        with torch.enable_grad():
            z = self.representation(x).float()
            scores, maps = {}, {}
            for i, name in enumerate(names):
                nll = self.densities.nll(z, name)
                (g,) = torch.autograd.grad(nll.sum(), x, retain_graph=i < len(names) - 1)
                scores[name], maps[name] = nll.detach(), g.abs()[:, 0]
        return scores, maps

    def score_all(self, images: Any, batch_size: int = 64) -> dict[str, np.ndarray]:
        """NLL of every density head (no gradients, cheap), images as for `predict`."""
        x = as_batch(images)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1)
        z = self.representations(x, batch_size)
        with torch.no_grad():
            return {n: self.densities.nll(z, n).cpu().numpy().astype(np.float64) for n in DENSITIES}

    def calibrate(self, val_images: Any) -> None:
        """Store the validation NLL of every head (for percentiles after `set_density`)."""
        scores = self.score_all(val_images)
        self.val_scores_all = torch.as_tensor(np.stack([scores[n] for n in DENSITIES]), dtype=torch.float32,
                                              device=self.val_scores.device)

    def reference_scores(self) -> torch.Tensor | None:
        """Normal validation scores matching the current head (None when unknown)."""
        if self.calib_scores.numel():  # calibrated: every variant has its own reference scores
            return super().reference_scores()
        if not self._score_uses_density() or self.density == self.config.density:
            return self.val_scores if self.val_scores.numel() else None
        if self.val_scores_all.numel() and self._score_is_nll():
            return self.val_scores_all[DENSITIES.index(self.density)]
        return None

    def _score_uses_density(self) -> bool:
        """Does the image score depend on the chosen density head?"""
        return True

    def _score_is_nll(self) -> bool:
        """Is the image score the head's NLL (so `val_scores_all` rows apply)?"""
        return True

    # Scoring variants = density heads (the checkpoint's own head first).
    def variant_names(self) -> tuple[str, ...]:
        return (self.config.density, *[d for d in DENSITIES if d != self.config.density])

    @property
    def variant(self) -> str | None:
        return self.density

    def set_variant(self, name: str | None) -> None:
        self.set_density(self.config.density if name is None else name)


@register
class CRADL(RepresentationDensityMixin, Detector):
    """SimCLR encoder (DCGAN-style, scaled for CPU: 256-d representation) with all five density
    heads in one checkpoint (GMM K = 1, 2, 4, 8 and RealNVP, fitted on the normal training images).
    Score = NLL of the representation under the chosen head (`set_density`); heatmap = |d NLL / d x|,
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

    # ---- stage 2: densities on representations ----
    def fit_extra(self, train: torch.Tensor, progress: bool = True) -> None:
        self._fit_densities(self.representations(train), progress)

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


def _variant(density: str) -> type[CRADL]:
    cfg = dataclasses.make_dataclass(f"CRADL{density.upper()}Config",
                                     [("density", str, dataclasses.field(default=density))], bases=(CRADLConfig,))
    cfg.__module__ = __name__
    cls = type(f"CRADL_{density}", (CRADL,), {
        "method": f"cradl-{density}", "Config": cfg, "title": f"CRADL ({density.upper()})",
        "__doc__": f"CRADL with the '{density}' density head by default (derive from a 'cradl' checkpoint).",
        "__module__": __name__})
    return register(cls)


CRADL_VARIANTS = {d: _variant(d) for d in DENSITIES}


# ---------------------------------------------------------------- derived checkpoints (no retraining)


def derive(source: str, method: str, out: str, checkpoint_id: str | None = None, overrides: dict | None = None,
           data: str = "kermany", layout: str = "auto", calibrate: bool = True) -> str:
    """Write a checkpoint of `method` that reuses all weights of the trained `source` checkpoint
    with other scoring settings (e.g. cradl -> cradl-gmm4, cevae -> radl). Validation scores are
    recomputed on the validation split of `data`, so percentiles stay honest."""
    from ..checkpoint import load_detector, load_state, read_config, save_checkpoint
    from ..data import load_split
    from ..registry import get_method

    src = load_detector(source, device="cpu")
    src_cfg = read_config(src.checkpoint_dir)
    cls = get_method(method)
    names = {f.name for f in dataclasses.fields(cls.Config)}
    values = {k: v for k, v in dataclasses.asdict(src.config).items() if k in names}
    if method != src.method:  # the target's own scoring defaults (e.g. cradl-gmm4's head)
        for key in ("density", "score_kind", "image_score"):
            values.pop(key, None)
    values.update(overrides or {})
    det = cls(cls.Config(**values), image_size=src.image_size)
    load_state(det, src.state_dict())
    _, x_val, _, _, _ = load_split(data, layout, "val", det.image_size)
    if calibrate and isinstance(det, RepresentationDensityMixin):
        det.calibrate(x_val)
    det.val_scores = torch.as_tensor(det.predict(x_val).score, dtype=torch.float32)
    training = dict(src_cfg.get("training", {}), derived_from=src_cfg.get("id"),
                    derived_note=f"weights of {src_cfg.get('id')} ({src.method}); scoring settings of {method}")
    save_checkpoint(det, out, checkpoint_id=checkpoint_id, dataset=src_cfg.get("dataset"), training=training)
    return out


def calibrate_checkpoint(checkpoint: str, data: str = "kermany", layout: str = "auto") -> None:
    """Add the validation NLL of every density head to a trained checkpoint (re-saved in place)."""
    from ..checkpoint import load_detector, save_checkpoint
    from ..data import load_split

    det = load_detector(checkpoint, device="cpu")
    if not isinstance(det, RepresentationDensityMixin):
        raise SystemExit(f"{det.method} has no density heads to calibrate")
    _, x_val, _, _, _ = load_split(data, layout, "val", det.image_size)
    det.calibrate(x_val)
    save_checkpoint(det, det.checkpoint_dir)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m upd_core.methods.cradl",
                                description="Helpers for checkpoints with density heads (CRADL, RADL).")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("calibrate", help="store validation NLLs of all density heads in a checkpoint")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--data", default="kermany")
    s.add_argument("--layout", default="auto")
    s = sub.add_parser("derive", help="new checkpoint of another method id from a trained one's weights")
    s.add_argument("--source", required=True, help="trained checkpoint id or folder")
    s.add_argument("--method", required=True, help="target method id, e.g. cradl-gmm4 or radl")
    s.add_argument("--out", required=True)
    s.add_argument("--id")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--data", default="kermany")
    s.add_argument("--layout", default="auto")
    args = p.parse_args(argv)
    if args.cmd == "calibrate":
        calibrate_checkpoint(args.checkpoint, args.data, args.layout)
        print(f"calibrated {args.checkpoint}")
    else:
        from ..cli import method_config

        cfg = method_config(args.method, args.set)
        overrides = {k.partition("=")[0]: getattr(cfg, k.partition("=")[0]) for k in args.set}
        print(derive(args.source, args.method, args.out, args.id, overrides, args.data, args.layout))
    return 0

