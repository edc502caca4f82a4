"""Anomaly maps and image scores, following the UPD study's conventions.

Residual |x - x_hat| and SSIM-based maps; image score = mean of the map (chest X-ray) or the max
inside a brain mask (MRI); optional median + Gaussian post-processing (CRADL, Sec. 3).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

REDUCTIONS = ("mean", "max", "mean-top25", "masked-max", "masked-mean")


def residual_map(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """|x - x_hat| as (N,H,W)."""
    return (x - x_hat).abs().reshape(x.shape[0], *x.shape[-2:])


def _gaussian_kernel(sigma: float, device, dtype) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    return k / k.sum()


def gaussian_blur(m: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of (N,H,W) maps with reflect padding."""
    if sigma <= 0:
        return m
    k = _gaussian_kernel(sigma, m.device, m.dtype)
    r = k.numel() // 2
    x = m[:, None]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return x[:, 0]


def median_filter(m: torch.Tensor, size: int) -> torch.Tensor:
    """Median pooling with a size x size window, stride 1, same output size."""
    if size <= 1:
        return m
    r = size // 2
    x = F.pad(m[:, None], (r, r, r, r), mode="reflect")
    patches = x.unfold(2, size, 1).unfold(3, size, 1)
    return patches.reshape(*patches.shape[:4], -1).median(dim=-1).values[:, 0]


def postprocess(m: torch.Tensor, median_size: int = 0, gauss_sigma: float = 0.0) -> torch.Tensor:
    """CRADL post-processing: median pooling, then Gaussian smoothing (both optional)."""
    return gaussian_blur(median_filter(m, median_size), gauss_sigma)


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Local SSIM (Wang et al. 2004) for images in [0,1], as (N,H,W)."""
    k = _gaussian_kernel(sigma, x.device, x.dtype)
    k = k[: window] if k.numel() > window else k
    r = k.numel() // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(F.pad(t, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
        return F.conv2d(F.pad(t, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))

    x = x.reshape(x.shape[0], 1, *x.shape[-2:])
    y = y.reshape(y.shape[0], 1, *y.shape[-2:])
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s[:, 0]


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image, (N,)."""
    return ssim_map(x, y).flatten(1).mean(1)


def ssim_anomaly_map(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """1 - SSIM, clipped to [0, 1]: high where local structure differs."""
    return (1 - ssim_map(x, x_hat)).clamp(0, 1)


def reconstruction_map(x: torch.Tensor, x_hat: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Anomaly map of a reconstruction method: 'l1', 'ssim' or 'l1*ssim' (product)."""
    if kind == "l1":
        return residual_map(x, x_hat)
    if kind == "ssim":
        return ssim_anomaly_map(x, x_hat)
    if kind == "l1*ssim":
        return residual_map(x, x_hat) * ssim_anomaly_map(x, x_hat)
    raise ValueError(f"unknown map kind {kind!r}; use 'l1', 'ssim' or 'l1*ssim'")


def reduce_map(m: torch.Tensor, how: str = "mean", masks: torch.Tensor | None = None) -> torch.Tensor:
    """Image score from an (N,H,W) map.

    'mean' (CXR convention of the UPD study), 'max', 'mean-top25' (mean of values above the 75th
    percentile, as the PII reference code), and 'masked-max'/'masked-mean' inside `masks`
    (e.g. a brain mask; falls back to the whole image where a mask is empty or absent).
    """
    flat = m.flatten(1)
    if how in ("masked-max", "masked-mean"):
        if masks is None:
            masks = torch.ones_like(m)
        mk = masks.flatten(1) > 0.5
        mk = torch.where(mk.any(1, keepdim=True), mk, torch.ones_like(mk))
        if how == "masked-max":
            return flat.masked_fill(~mk, float("-inf")).amax(1)
        return (flat * mk).sum(1) / mk.sum(1)
    if how == "mean":
        return flat.mean(1)
    if how == "max":
        return flat.amax(1)
    if how == "mean-top25":
        q = torch.quantile(flat, 0.75, dim=1, keepdim=True)
        sel = flat >= q
        return (flat * sel).sum(1) / sel.sum(1)
    raise ValueError(f"unknown score reduction {how!r}; choose from {REDUCTIONS}")
