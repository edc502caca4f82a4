"""Density heads on a representation, shared by CRADL (on the SimCLR encoder's f(x)) and RADL
(on the VAE's E[z|x]): GMM K = 1, 2, 4, 8 and RealNVP (`upd_core.density`), NLL scores,
NLL-gradient maps, and the heads as scoring variants (`<checkpoint>@gmm4`).

Percentiles per head: checkpoints calibrated on the calibration split keep one row per variant in
`calib_scores` (used first, see `Detector.reference_scores`); CRADL/RADL checkpoints without them
fall back to the validation NLL of every head in `val_scores_all` (rows in `DENSITIES` order,
`calibrate_heads`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..density import DENSITIES, DensityBank
from ..detector import as_batch


class RepresentationDensityMixin:
    """Density heads on `representation(x)`: fitting, NLL scores and maps, head choice as the
    scoring variant, percentiles per head. Mixed into a `Detector` before it in the bases."""

    densities: DensityBank
    density: str

    def _init_densities(self, dim: int, cfg: Any) -> None:
        self.densities = DensityBank(dim, DENSITIES, cfg.flow_blocks)
        if cfg.density not in DENSITIES:
            raise ValueError(f"density must be one of {DENSITIES}, got {cfg.density!r}")
        self.density = cfg.density
        # Validation NLL of every head (rows in DENSITIES order), filled by `calibrate_heads`.
        self.register_buffer("val_scores_all", torch.zeros(0, 0))

    def fit_extra(self, train: torch.Tensor, progress: bool = True, val: torch.Tensor | None = None) -> None:
        """After network training: fit every head on the representations of the training images."""
        cfg = self.config
        z = self.representations(train).float()
        # CRADL App. D: the flow is chosen on the validation set ("val"); "holdout": on 10 % of the
        # training representations (how checkpoints fitted before this option were selected)
        z_val = self.representations(val).float() if val is not None and getattr(cfg, "flow_selection", "val") == "val" else None
        self.densities.fit(z, reg_covar=cfg.gmm_reg_covar, eig_floor=cfg.gmm_eig_floor, tol=cfg.gmm_tol,
                           flow_epochs=cfg.flow_epochs, gmm_init=getattr(cfg, "gmm_init", "random"),
                           flow_val=z_val, progress=print if progress else None)

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

    def calibrate_heads(self, val_images: Any) -> None:
        """Store the validation NLL of every head in `val_scores_all` (percentiles per head for
        checkpoints without `calib_scores`)."""
        scores = self.score_all(val_images)
        self.val_scores_all = torch.as_tensor(np.stack([scores[n] for n in DENSITIES]), dtype=torch.float32,
                                              device=self.val_scores.device)

    def reference_scores(self) -> torch.Tensor | None:
        """Normal reference scores matching the current head (None when unknown)."""
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
        """Score with the named density head ('gmm1', 'gmm2', 'gmm4', 'gmm8', 'flow'); None: the
        checkpoint's own head."""
        name = self.config.density if name is None else name
        if name not in DENSITIES:
            raise ValueError(f"unknown density {name!r}; choose from {', '.join(DENSITIES)}")
        self.density = name
