"""Context-encoding VAE (ceVAE, Zimmerer et al. 2018) with CRADL's scoring functions, and RADL:
CRADL's density models fitted on the ceVAE's representations (Lüth et al., Sec. 5.3).

ceVAE loss (CRADL appendix B, Eq. 7-8): L1 reconstruction + beta * KL (beta = 1), plus gamma = 1
times the L1 error of restoring the image from a copy with random cut-out boxes,
x_restore = Dec(E[z | x_masked]); gamma = 0 is the CRADL paper's VAE baseline. Training views:
scaling, mirroring, rotation, multiplicative brightness and Gaussian noise (CRADL Sec. 4.4).

Scoring: CRADL Table 9 (`vae_helpers.table9`, shared with the VAE), all maps in one pass and
returned in `Prediction.extras` ('rec', 'kl_grad', 'combi', 'nll_grad'). `score_kind` picks the
anomaly map, `image_score` the image score; the ceVAE's scoring variants are elbo, combi, rec and
kl-grad. The density heads (GMM K = 1, 2, 4, 8 and RealNVP on mu) are always fitted after
training, so a "radl" checkpoint is derived from a trained "cevae" one without retraining
(`python -m upd_core.derived derive`); RADL's scoring variants are the heads.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..registry import register
from .augmentations import augment, cutout
from .autoencoders import VAE, VAEConfig
from .density_heads import RepresentationDensityMixin
from .reconstruction import rec_loss
from .vae_helpers import GAUSS_SIGMA, IMAGE_SCORES, MAP_KINDS, MEDIAN_SIZE, VARIANTS, table9

# The ceVAE's variant order (rows of `calib_scores` in trained checkpoints follow it).
VARIANT_ORDER = ("elbo", "combi", "rec", "kl-grad")


@dataclass
class CEVAEConfig(VAEConfig):
    # Architecture: the project's VAE (autoencoders.py) scaled for CPU and for the density heads
    # to fit in 15 MB: widths capped at 128, latent 256 (CRADL: DCGAN-style, nz = 512).
    channels: tuple[int, ...] = (32, 64, 128, 128, 128)
    latent_dim: int = 256
    rec_loss: str = "l1"  # CRADL appendix B: L1 reconstruction
    kl_weight: float = 1.0  # beta = 1 (Eq. 7)
    ce_weight: float = 1.0  # gamma = 1 (Eq. 8); 0 = plain VAE
    ce_boxes: int = 3
    ce_size: tuple[float, float] = (0.1, 0.4)
    lr: float = 1e-4  # CRADL Sec. 4.4: Adam lr 1e-4, 100 epochs
    lr_plateau_factor: float | None = None  # a constant rate (the plateau scheduler is the MorphAEus VAE's)
    max_epochs: int = 100
    batch_size: int = 64
    augment: bool = True  # Sec. 4.4 training views (no cropping)
    aug_scale: tuple[float, float] = (0.9, 1.1)
    rotate_deg: float = 15.0
    flip: bool = True
    brightness: float = 0.25
    noise_std: float = 0.05
    # Scoring: ceVAE's best localization map is 'combi', its best detection score the ELBO
    # (CRADL Table 4, all three data sets).
    score_kind: str = "combi"
    image_score: str = "elbo"
    # RADL density heads on mu (as CRADLConfig).
    density: str = "gmm1"
    gmm_reg_covar: float = 1e-3
    gmm_eig_floor: float = 1e-6
    gmm_tol: float = 0.1
    gmm_init: str = "random"
    flow_selection: str = "val"  # App. D: the flow chosen on the validation set ("holdout": 10 % of train)
    flow_blocks: int = 8
    flow_epochs: int = 60
    # Sec. 4.5: the same post-processing for all methods (5x5 median, Gaussian smoothing).
    median_size: int = MEDIAN_SIZE
    gauss_sigma: float = GAUSS_SIGMA


@register
class CEVAE(RepresentationDensityMixin, VAE):
    """Context-encoding VAE; maps/scores: reconstruction, KL gradient, combi, ELBO, RADL NLL."""

    method = "cevae"
    title = "ceVAE"
    paper = ("Zimmerer et al., Context-encoding Variational Autoencoder for Unsupervised Anomaly "
             "Detection (arXiv:1812.05941); scoring as in Lüth et al. (CRADL).")
    Config = CEVAEConfig
    needs_grad = True

    def __init__(self, config: CEVAEConfig | None = None, image_size: int = 128) -> None:
        super().__init__(config, image_size)
        c = self.config
        if c.score_kind not in MAP_KINDS:
            raise ValueError(f"score_kind must be one of {MAP_KINDS}, got {c.score_kind!r}")
        if c.image_score not in IMAGE_SCORES:
            raise ValueError(f"image_score must be one of {IMAGE_SCORES}, got {c.image_score!r}")
        self._init_densities(c.latent_dim, c)
        self._default_scoring = (c.score_kind, c.image_score)

    # ---- scoring variants: CRADL Table 9's maps/scores, or (RADL) the density heads ----
    def _uses_heads(self) -> bool:
        return self._default_scoring[1] == "nll" or self._default_scoring[0] == "nll-grad"

    def variant_names(self) -> tuple[str, ...]:
        if self._uses_heads():
            return super().variant_names()
        own = [n for n in VARIANT_ORDER if VARIANTS[n] == self._default_scoring]
        return tuple(own + [n for n in VARIANT_ORDER if n not in own])

    @property
    def variant(self) -> str | None:
        if self._uses_heads():
            return self.density
        now = (self.config.score_kind, self.config.image_score)
        return next((n for n in VARIANT_ORDER if VARIANTS[n] == now), None)

    def set_variant(self, name: str | None) -> None:
        if self._uses_heads():
            return super().set_variant(name)
        if name is not None and name not in VARIANTS:
            raise ValueError(f"{self.method} has no scoring variant {name!r} (available: {', '.join(VARIANT_ORDER)})")
        self.config.score_kind, self.config.image_score = self._default_scoring if name is None else VARIANTS[name]

    def reference_scores(self) -> torch.Tensor | None:
        if self.calib_scores.numel():  # calibrated: every variant has its own reference scores
            return super().reference_scores()
        if not self._uses_heads() and (self.config.score_kind, self.config.image_score) != self._default_scoring:
            return None  # validation scores were stored for the default scoring only
        return super().reference_scores()

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]

    def _score_uses_density(self) -> bool:
        c = self.config
        return c.image_score == "nll" or (c.image_score == "map" and c.score_kind == "nll-grad")

    def _score_is_nll(self) -> bool:
        return self.config.image_score == "nll"

    # ---- training ----
    def loss(self, x: torch.Tensor, epoch: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        c = self.config
        if c.augment and self.training:
            x = augment(x, tuple(c.aug_scale), c.rotate_deg, c.flip, c.brightness, c.noise_std, generator)
        out = super().loss(x, epoch)
        if c.ce_weight > 0:
            xm = cutout(x, c.ce_boxes, tuple(c.ce_size), generator)
            restored = self.decode(self.encode(xm)[0])
            out["ce"] = rec_loss(restored, x, c.rec_loss)
            out["loss"] = out["loss"] + c.ce_weight * out["ce"]
        return out

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, epoch: int) -> float:
        with torch.random.fork_rng(devices=[]):  # same noise and cut-outs every epoch
            torch.manual_seed(1234)
            return float(self.loss(x, epoch, torch.Generator().manual_seed(1234))["loss"])

    # ---- inference: CRADL Table 9, plus RADL's NLL-gradient map when the heads are fitted ----
    def forward_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        fitted = self.densities.fitted(self.density)
        nll = (lambda mu: self.densities.nll(mu, self.density)) if fitted else None
        return table9(self, x, c.score_kind, c.image_score, (c.median_size, c.gauss_sigma), nll)


@dataclass
class RADLConfig(CEVAEConfig):
    score_kind: str = "nll-grad"  # RADL: NLL of the representation, NLL-gradient map (Sec. 5.3)
    image_score: str = "nll"
    density: str = "gmm1"  # ceVAE representations: GMM 1 best on BraTS and ISLES (Table 4)


@register
class RADL(CEVAE):
    """Representation-based detection on a ceVAE: density heads on mu, NLL score, NLL-gradient map."""

    method = "radl"
    title = "RADL (ceVAE representations)"
    paper = "Lüth et al., CRADL, Sec. 5.3 (RADL on ceVAE representations)."
    Config = RADLConfig
