"""Base class of reconstruction methods: anomaly map = residual between input and reconstruction."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import scoring
from ..detector import Detector, DetectorConfig


@dataclass
class ReconstructionConfig(DetectorConfig):
    rec_loss: str = "l1"  # training loss: "l1" or "l2"
    map_kind: str = "l1"  # anomaly map: "l1" residual (UPD study), "ssim" or "l1*ssim"


def rec_loss(x_hat: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean reconstruction error per pixel ('l1' or 'l2')."""
    if kind == "l1":
        return F.l1_loss(x_hat.float(), x.float())
    if kind == "l2":
        return F.mse_loss(x_hat.float(), x.float())
    raise ValueError(f"unknown reconstruction loss {kind!r}")


class ReconstructionDetector(Detector):
    """A detector whose map is |x - x_hat| (or SSIM-based); subclasses implement `reconstruct`."""

    outputs = ("reconstruction",)

    def reconstruct(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return at least {'reconstruction': (N,1,H,W)}; may add 'prior', 'warped', ..."""
        raise NotImplementedError

    def forward_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.reconstruct(x)
        out = {k: v.float() for k, v in out.items()}
        out["anomaly_map"] = scoring.reconstruction_map(x, out["reconstruction"], self.config.map_kind)
        return out
