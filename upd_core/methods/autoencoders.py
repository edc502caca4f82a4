"""Plain auto-encoders: spatial and dense AE (Baur et al. 2018) and the VAE (Zimmerer et al.).

Configured as in the MorphAEus paper's appendix (Bercea et al.): spatial/dense AE trained with
L1 loss, Adam lr 5e-4, batch 64, early stopping after 25 epochs; VAE with L2 loss, latent 512,
lr 5e-4, batch 64. Sizes are scaled so every shipped model stays below 15 MB.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..registry import register
from .blocks import ConvDecoder, ConvEncoder
from .reconstruction import ReconstructionConfig, ReconstructionDetector, rec_loss
from .vae_helpers import GAUSS_SIGMA, MEDIAN_SIZE, VARIANTS, kl_normal, reparameterize, table9


def mirrored_decoder(channels: tuple[int, ...], kernel: int, last_width: int | None = None) -> ConvDecoder:
    """The decoder of the plain AEs and the VAE: the encoder's widths in reverse, then one more
    up-sampling block to full resolution of `last_width` filters (default: half the first
    width), leaky ReLU."""
    last = channels[0] // 2 if last_width is None else last_width
    return ConvDecoder(tuple(reversed(channels[:-1])) + (last,), kernel, "leaky", in_ch=channels[-1])


@dataclass
class AEConfig(ReconstructionConfig):
    # Baur et al.: 5x5 strided convolutions with leaky ReLU + BN; first block 64x64x32 at 128 px.
    channels: tuple[int, ...] = (32, 64, 128, 128)
    kernel: int = 5
    latent_channels: int = 16  # spatial AE: bottleneck 8x8x16 at 128 px
    latent_dim: int = 512  # dense AE: fully connected bottleneck (Baur et al.)
    decoder_last_width: int = 32  # MorphAEus A.1: "the last block (128x128x32)" at CXR size
    lr: float = 5e-4  # MorphAEus appendix: batch 64, lr 5e-4 gave better results than 1e-4
    batch_size: int = 64
    rec_loss: str = "l1"


@register
class SpatialAE(ReconstructionDetector):
    """Convolutional AE with a spatial bottleneck: detailed reconstructions that tend to copy
    the input, pathology included (the "myth" of the MorphAEus paper)."""

    method = "spatial-ae"
    title = "Spatial AE"
    paper = "Baur et al., MICCAI BrainLes 2018; configured as in Bercea et al. (MorphAEus), appendix."
    Config = AEConfig

    def __init__(self, config: AEConfig | None = None, image_size: int = 128) -> None:
        super().__init__(config, image_size)
        c = self.config
        self.encoder = ConvEncoder(c.channels, c.kernel, "leaky")
        self.to_latent = nn.Conv2d(c.channels[-1], c.latent_channels, 1)
        self.from_latent = nn.Conv2d(c.latent_channels, c.channels[-1], 1)
        self.decoder = mirrored_decoder(c.channels, c.kernel, c.decoder_last_width)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.from_latent(z))

    def reconstruct(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"reconstruction": self.decode(self.encode(x))}

    def loss(self, x: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        return {"loss": rec_loss(self.reconstruct(x)["reconstruction"], x, self.config.rec_loss)}


@dataclass
class DenseAEConfig(AEConfig):
    channels: tuple[int, ...] = (32, 64, 128, 128, 64)  # to 4x4x64 so the dense layers stay small (<15 MB)


@register
class DenseAE(SpatialAE):
    """Convolutional AE with a dense (vector) bottleneck: constrained, but blurry."""

    method = "dense-ae"
    title = "Dense AE"
    Config = DenseAEConfig

    def __init__(self, config: DenseAEConfig | None = None, image_size: int = 128) -> None:
        super().__init__(config, image_size)
        c = self.config
        self.side = image_size // 2 ** len(c.channels)
        flat = c.channels[-1] * self.side ** 2
        self.to_latent = nn.Sequential(nn.Flatten(), nn.Linear(flat, c.latent_dim))
        self.from_latent = nn.Sequential(nn.Linear(c.latent_dim, flat),
                                         nn.Unflatten(1, (c.channels[-1], self.side, self.side)))


@dataclass
class VAEConfig(ReconstructionConfig):
    channels: tuple[int, ...] = (32, 64, 128, 256, 256)  # Zimmerer et al.; last 256 layer duplicated for 128 px
    kernel: int = 3
    squeeze_channels: int = 32  # 1x1 conv before the dense layers keeps the model under 15 MB
    latent_dim: int = 512  # MorphAEus appendix
    kl_weight: float = 1.0
    lr: float = 5e-4
    batch_size: int = 64
    rec_loss: str = "l2"
    # MorphAEus appendix A.1 (VAE): "a plateau learning rate scheduler (multiplies with 0.1 on
    # plateaus)", kept from the original implementation; the subclasses' papers do not use it.
    lr_plateau_factor: float | None = 0.1


@register
class VAE(ReconstructionDetector):
    """Variational AE (Kingma & Welling; Zimmerer et al. for anomaly detection). The map is the
    residual of the mean reconstruction (z = mu)."""

    method = "vae"
    title = "VAE"
    paper = "Zimmerer et al., 2019 (ceVAE code); configured as in Bercea et al. (MorphAEus), appendix."
    Config = VAEConfig

    def __init__(self, config: VAEConfig | None = None, image_size: int = 128) -> None:
        super().__init__(config, image_size)
        c = self.config
        side = image_size // 2 ** len(c.channels)
        flat = c.squeeze_channels * side ** 2
        self.encoder = nn.Sequential(ConvEncoder(c.channels, c.kernel, "leaky"),
                                     nn.Conv2d(c.channels[-1], c.squeeze_channels, 1), nn.Flatten())
        self.fc_mu = nn.Linear(flat, c.latent_dim)
        self.fc_logvar = nn.Linear(flat, c.latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(c.latent_dim, flat), nn.Unflatten(1, (c.squeeze_channels, side, side)),
                                         nn.Conv2d(c.squeeze_channels, c.channels[-1], 1))
        self.decoder = mirrored_decoder(c.channels, c.kernel)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h).clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.from_latent(z))

    def reconstruct(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, _ = self.encode(x)
        return {"reconstruction": self.decode(mu)}

    # ---- scoring variants of the CRADL paper (Table 9) from the same weights ----
    # 'rec' (default): the residual map as configured; 'kl-grad': |d KL / d x| map, KL score;
    # 'combi': kl-grad x residual map, its mean as score; 'elbo': combi map, ELBO score. Computed by
    # `vae_helpers.table9`, as for the ceVAE.
    def variant_names(self) -> tuple[str, ...]:
        return tuple(VARIANTS)

    @property
    def variant(self) -> str | None:
        return getattr(self, "_variant", "rec")

    def set_variant(self, name: str | None) -> None:
        super().set_variant(name)
        self._variant = name or "rec"

    def reference_scores(self) -> torch.Tensor | None:
        if self.calib_scores.numel():  # calibrated: every variant has its own reference scores
            return super().reference_scores()
        # validation scores were stored for the default ('rec') scoring only
        return super().reference_scores() if self.variant == "rec" else None

    def forward_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.variant == "rec":
            return super().forward_maps(x)
        map_kind, image_score = VARIANTS[self.variant]
        out = table9(self, x, map_kind, image_score, (MEDIAN_SIZE, GAUSS_SIGMA), rec_kind=self.config.rec_loss)
        # This config's own post-processing (none, for the MorphAEus 'rec' map) is what `predict`
        # applies; the Table-9 map gets CRADL's (Sec. 4.5) here instead.
        out["anomaly_map"] = out[map_kind.replace("-", "_")]
        return out

    def loss(self, x: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(x)
        x_hat = self.decode(reparameterize(mu, logvar))
        rec = rec_loss(x_hat, x, self.config.rec_loss)  # per pixel
        kl = kl_normal(mu, logvar).mean() / x[0].numel()  # per pixel
        return {"loss": rec + self.config.kl_weight * kl, "rec": rec, "kl": kl}
