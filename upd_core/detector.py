"""The method contract: `Detector` (a torch module with training hooks) and `Prediction`.

Every method subclasses `Detector`, sets `method`/`Config`, builds its networks in `__init__` from
the config alone, and implements `loss` (for the one training loop) and `forward_maps` (for
inference). Input checking, batching, devices, scores and percentiles live here, once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from . import scoring
from .errors import ImageError

OPTIONAL_OUTPUTS = ("reconstruction", "prior", "warped", "deformation")
FOREGROUND_LEVEL = 0.02  # intensity above which a pixel counts as foreground (brain mask = image > 0)


@dataclass
class DetectorConfig:
    """Settings shared by all methods; subclasses add their own with the paper's defaults."""

    lr: float = 5e-4
    batch_size: int = 64
    max_epochs: int = 1000  # papers train "up to 1000 epochs" with early stopping
    patience: int = 25  # early-stopping rounds without improvement (MorphAEus appendix)
    weight_decay: float = 0.0
    # Learning rate x factor after `lr_plateau_patience` + 1 epochs without a relative improvement of
    # 1e-4 in the validation loss (torch's ReduceLROnPlateau rule, replayed from the loss history so
    # that a resumed run decides alike). None: off (most papers use a constant rate).
    lr_plateau_factor: float | None = None
    lr_plateau_patience: int = 10  # torch's default (the papers do not give one)
    # Image score from the anomaly map (UPD study: mean for CXR, max inside brain mask for MRI).
    score_reduction: str = "mean"
    # CRADL post-processing of maps: median pooling then Gaussian smoothing (0 = off).
    median_size: int = 0
    gauss_sigma: float = 0.0


@dataclass
class Prediction:
    """What a detector says about N images; maps are (N,H,W), deformation (N,2,H,W)."""

    score: np.ndarray
    anomaly_map: np.ndarray
    reconstruction: np.ndarray | None = None
    prior: np.ndarray | None = None
    warped: np.ndarray | None = None
    deformation: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    percentile: np.ndarray | None = None  # vs. the normal validation scores of the checkpoint

    def __len__(self) -> int:
        return int(self.score.shape[0])


def as_batch(images: Any) -> torch.Tensor:
    """Turn (H,W), (N,H,W) or (N,1,H,W) numpy/tensor input in [0,1] into a float32 (N,1,H,W)."""
    if isinstance(images, (list, tuple)):
        images = np.stack([np.asarray(i, dtype=np.float32) for i in images])
    if isinstance(images, np.ndarray):
        if images.dtype == object or not np.issubdtype(images.dtype, np.number):
            raise ImageError("images must be a numeric array, got dtype %s" % images.dtype)
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    elif isinstance(images, torch.Tensor):
        x = images.detach().to(torch.float32).cpu()
    else:
        raise ImageError(f"images must be a numpy array or torch tensor, got {type(images).__name__}")
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[:, None]
    elif x.ndim != 4 or x.shape[1] != 1:
        raise ImageError(f"images must have shape (H,W), (N,H,W) or (N,1,H,W); got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ImageError("no images given")
    if min(x.shape[-2:]) < 8:
        raise ImageError(f"images are too small ({x.shape[-2]}x{x.shape[-1]} pixels)")
    if not torch.isfinite(x).all():
        raise ImageError("images contain NaN or infinite values")
    if x.min() < -1e-3 or x.max() > 1 + 1e-3:
        raise ImageError(
            f"image values must lie in [0, 1] (got {float(x.min()):.3g}..{float(x.max()):.3g}); "
            "use upd_core.load_image to read and normalise files"
        )
    return x.clamp_(0, 1)


class Detector(nn.Module):
    """Base class of every method. Subclasses set `method`, `Config`, `outputs`, `paper`."""

    method: ClassVar[str] = ""
    Config: ClassVar[type] = DetectorConfig
    title: ClassVar[str] = ""  # human-readable name
    paper: ClassVar[str] = ""  # short citation
    outputs: ClassVar[tuple[str, ...]] = ()  # which OPTIONAL_OUTPUTS the method produces
    needs_grad: ClassVar[bool] = False  # maps need a backward pass (gradient heatmaps)

    def __init__(self, config: Any = None, image_size: int = 128) -> None:
        super().__init__()
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise TypeError(f"{self.method} expects {self.Config.__name__}, got {type(config).__name__}")
        if image_size < 32 or image_size & (image_size - 1):
            raise ValueError(f"image_size must be a power of two >= 32, got {image_size}")
        self.image_size = image_size
        # Scores of the normal validation images, filled after training (early-stopping split).
        self.register_buffer("val_scores", torch.zeros(0))
        # Scores of the normal calibration images (a split used neither for gradient steps nor
        # for early stopping), one row per scoring variant in `variant_names()` order (one row
        # for methods without variants); filled by `calibrate_percentiles`, the basis of every percentile.
        self.register_buffer("calib_scores", torch.zeros(0, 0))

    # ---- training hooks (used by upd_core.training.fit) ----
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers by name; the default is one Adam over all parameters."""
        return {"main": torch.optim.Adam(self.parameters(), lr=self.config.lr,
                                         weight_decay=self.config.weight_decay)}

    def loss(self, x: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        """Training losses for a batch (N,1,H,W); must contain the key 'loss'."""
        raise NotImplementedError

    def training_step(self, x: torch.Tensor, epoch: int, optimizers: dict, amp) -> dict[str, float]:
        """One optimisation step; adversarial methods override this to alternate optimizers."""
        with amp():
            losses = self.loss(x, epoch)
        opt = optimizers["main"]
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, epoch: int) -> float:
        """Loss on held-out normal images, for early stopping."""
        return float(self.loss(x, epoch)["loss"])

    def selection_start_epoch(self) -> int:
        """Epochs (1-based, inclusive) during which the loss schedule still changes the objective;
        model selection and early stopping start after them. 0 for a fixed objective."""
        return 0

    def fit_extra(self, train: torch.Tensor, progress: bool = True, val: torch.Tensor | None = None) -> None:
        """Hook run after network training (e.g. fit a density model on representations). `val`:
        the normal validation images, for model selection inside the hook (CRADL App. D chooses
        the flow on the validation set); never abnormal images."""

    # ---- inference ----
    def forward_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return 'anomaly_map' (N,H,W) and optional outputs / 'score' / extra maps."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        return self.val_scores.device

    def score_from_map(self, amap: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        return scoring.reduce_map(amap, self.config.score_reduction, masks)

    def predict(self, images: Any, batch_size: int = 32, masks: Any = None) -> Prediction:
        """Scores and maps for images in [0,1]; resized to the model's size when needed.

        `masks` (optional, (N,H,W)) restricts the image score to a region such as a brain mask;
        with a 'masked-*' score reduction and no masks, the foreground (image > 0.02) is used.
        """
        x_all = as_batch(images)
        n, h, w = x_all.shape[0], x_all.shape[-2], x_all.shape[-1]
        m_all = None if masks is None else torch.as_tensor(np.asarray(masks), dtype=torch.float32).reshape(n, h, w)
        was_training = self.training
        self.eval()
        self.to(memory_format=torch.channels_last)  # ~2x faster convolutions on CPU, same results
        parts: dict[str, list[torch.Tensor]] = {}
        try:
            for i in range(0, n, batch_size):
                x = x_all[i:i + batch_size].to(self.device).contiguous(memory_format=torch.channels_last)
                if (h, w) != (self.image_size, self.image_size):
                    x = nn.functional.interpolate(x, size=(self.image_size,) * 2, mode="bilinear",
                                                  antialias=True, align_corners=False).clamp(0, 1)
                with torch.set_grad_enabled(self.needs_grad):
                    out = self.forward_maps(x)
                amap = scoring.postprocess(out["anomaly_map"].float(), self.config.median_size,
                                           self.config.gauss_sigma)
                out["anomaly_map"] = amap
                if "score" not in out:
                    if m_all is not None:
                        mb = nn.functional.interpolate(m_all[i:i + batch_size, None], size=amap.shape[-2:],
                                                       mode="nearest")[:, 0].to(amap.device)
                    else:  # default region for masked reductions: the foreground (e.g. brain > 0)
                        mb = (x[:, 0] > FOREGROUND_LEVEL).float()
                    out["score"] = self.score_from_map(amap, mb)
                for k, v in out.items():
                    parts.setdefault(k, []).append(v.detach().float().cpu())
        finally:
            self.train(was_training)
        cat = {k: torch.cat(v) for k, v in parts.items()}
        if (h, w) != (self.image_size, self.image_size):  # maps back to the input's size
            for k, v in cat.items():
                if v.ndim == 3:
                    cat[k] = nn.functional.interpolate(v[:, None], size=(h, w), mode="bilinear")[:, 0]
                elif v.ndim == 4:
                    cat[k] = nn.functional.interpolate(v, size=(h, w), mode="bilinear")
        score = cat.pop("score").numpy().astype(np.float64)
        pred = Prediction(score=score, anomaly_map=cat.pop("anomaly_map").numpy())
        for k in OPTIONAL_OUTPUTS:
            if k in cat:
                v = cat.pop(k)
                setattr(pred, k, (v[:, 0] if v.ndim == 4 and k != "deformation" else v).numpy())
        pred.extras = {k: v.numpy() for k, v in cat.items()}
        pred.percentile = self.percentile(score)
        return pred

    # ---- scoring variants (other scores/maps from the same weights, no retraining) ----
    def variant_names(self) -> tuple[str, ...]:
        """Named scoring variants of this checkpoint, default first (e.g. CRADL's density heads);
        () when the method has only one way to score. Select one with `set_variant`."""
        return ()

    @property
    def variant(self) -> str | None:
        """The scoring variant in use (None for methods without variants)."""
        return None

    def set_variant(self, name: str | None) -> None:
        """Score with the named variant from `variant_names()` (None: the checkpoint's default)."""
        if name is not None and name not in self.variant_names():
            avail = ", ".join(self.variant_names()) or "none"
            raise ValueError(f"{self.method} has no scoring variant {name!r} (available: {avail})")

    def reference_scores(self) -> torch.Tensor | None:
        """Normal reference scores matching the current scoring (None when unknown): the
        calibration split's when the checkpoint has them, else the validation split's."""
        if self.calib_scores.numel():
            names = self.variant_names()
            return self.calib_scores[names.index(self.variant) if names else 0]
        return self.val_scores if self.val_scores.numel() else None

    def calibrate_percentiles(self, images: Any) -> None:
        """Store the scores of normal calibration images for every scoring variant."""
        names = self.variant_names()
        current = self.variant
        rows = []
        try:
            for name in names or (None,):
                if names:
                    self.set_variant(name)
                rows.append(self.predict(images).score)
        finally:
            if names:
                self.set_variant(current)
        self.calib_scores = torch.as_tensor(np.stack(rows), dtype=torch.float32, device=self.val_scores.device)

    def percentile(self, scores: np.ndarray) -> np.ndarray | None:
        """Percent of normal reference scores at or below each score (None when unknown)."""
        ref = self.reference_scores()
        if ref is None:
            return None
        ref = np.sort(ref.detach().cpu().numpy())
        lo = np.searchsorted(ref, scores, side="left")
        hi = np.searchsorted(ref, scores, side="right")
        return 100.0 * (lo + hi) / (2.0 * ref.size)
