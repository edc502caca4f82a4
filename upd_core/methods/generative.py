"""Generative and denoising baselines of the MorphAEus paper (Bercea et al., appendix A.1):
beta-VAE (Burgess et al.), adversarial AE (Pidhorskyi et al., GPND), Soft-Intro VAE
(Daniel & Tamar) and the denoising AE with coarse noise (Kascenas et al.).

All are reconstruction detectors: anomaly map = |x - reconstruction|, image score = mean.
The VAEs reuse `autoencoders.VAE` (encoder, reparameterised latent, decoder) and only change
the objective; widths are scaled down where needed so every model stays below 15 MB.
Validation loss (early stopping) is the pixel MSE/L1 of the deterministic reconstruction the
anomaly map is built from, so it is comparable across epochs whatever the schedules do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register
from .autoencoders import VAE, VAEConfig
from .blocks import ConvDecoder, ConvEncoder, activation, conv_bn_act
from .reconstruction import ReconstructionConfig, ReconstructionDetector, rec_loss
from .vae_helpers import kl_normal, reparameterize


def sse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors per sample (float32)."""
    return (a.float() - b.float()).pow(2).flatten(1).sum(1)


class _MeanReconstructionVAE(VAE):
    """VAE whose validation loss is the MSE of the mean reconstruction (z = mu)."""

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, epoch: int) -> float:
        return float(F.mse_loss(self.reconstruct(x)["reconstruction"].float(), x.float()))


# ---------------------------------------------------------------- beta-VAE

@dataclass
class BetaVAEConfig(VAEConfig):
    # Appendix A.1: 32-filter conv layers, four as proposed plus one for 128 px (3x3 here, BN).
    channels: tuple[int, ...] = (32, 32, 32, 32, 32)
    squeeze_channels: int = 32
    latent_dim: int = 32  # z_dim of the authors' code
    objective: str = "B"  # "B": Burgess et al. capacity objective; "H": Higgins et al.
    beta: float = 4.0  # appendix: beta = 4 (used by objective "H")
    gamma: float = 10.0  # appendix: gamma = 10 (better than 1000)
    lr_plateau_factor: float | None = None  # A.1 describes the plateau scheduler for the VAE only
    c_max: float = 50.0  # appendix: capacity C increased linearly from 0 to 50 nats
    c_ramp_epochs: int = 100  # length of the C ramp (the paper gives none; short runs should shorten it)
    kld_weight: float = 0.008  # authors' code: minibatch weight of the KL term
    lr: float = 5e-4
    batch_size: int = 64
    rec_loss: str = "l2"


@register
class BetaVAE(_MeanReconstructionVAE):
    """beta-VAE with controlled capacity increase: rec + gamma * |KL - C|, C rising linearly.
    Strongly regularised latent: reconstructions look like the training data, but blurry."""

    method = "beta-vae"
    title = "beta-VAE"
    paper = ("Higgins et al., ICLR 2017; Burgess et al., arXiv:1804.03599; configured as in "
             "Bercea et al. (MorphAEus), appendix A.1.")
    Config = BetaVAEConfig

    def selection_start_epoch(self) -> int:
        """The capacity C rises for `c_ramp_epochs`; selection starts once it is at c_max."""
        return self.config.c_ramp_epochs if self.config.gamma > 0 else 0

    def capacity(self, epoch: int) -> float:
        c = self.config
        return c.c_max * min(1.0, epoch / max(1, c.c_ramp_epochs))

    def loss(self, x: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        c = self.config
        mu, logvar = self.encode(x)
        x_hat = self.decode(reparameterize(mu, logvar))
        rec = rec_loss(x_hat, x, c.rec_loss)
        kl = kl_normal(mu, logvar).mean()
        if c.objective == "H":
            reg = c.beta * c.kld_weight * kl
        elif c.objective == "B":
            reg = c.gamma * c.kld_weight * (kl - self.capacity(epoch)).abs()
        else:
            raise ValueError(f"unknown beta-VAE objective {c.objective!r}; use 'B' or 'H'")
        return {"loss": rec + reg, "rec": rec, "kl": kl}


# ---------------------------------------------------------------- Soft-Intro VAE

@dataclass
class SoftIntroVAEConfig(VAEConfig):
    # Appendix A.1: (64,128,256,512,512) for 128 px; halved here so the model is < 15 MB.
    channels: tuple[int, ...] = (32, 64, 128, 256, 256)
    squeeze_channels: int = 64
    latent_dim: int = 256  # appendix A.1: "a bottleneck of 256 filters" for CXR
    beta_kl: float = 1.0  # appendix: beta_KL = 1, beta_rec = 1, beta_neg = 256
    beta_rec: float = 1.0
    beta_neg: float = 256.0
    gamma_r: float = 1e-8  # Daniel & Tamar: weight of the reconstruction-of-reconstruction term
    lr_plateau_factor: float | None = None  # A.1 describes the plateau scheduler for the VAE only
    lr: float = 2e-4  # appendix: Adam 2e-4, batch 32
    batch_size: int = 32
    rec_loss: str = "l2"


@register
class SoftIntroVAE(_MeanReconstructionVAE):
    """Soft-Intro VAE: the encoder also acts as a soft discriminator (it raises the ELBO gap
    between real and generated images); the decoder learns to fool it. Adversarially sharp,
    but reconstructions are not pixel-accurate."""

    method = "soft-intro-vae"
    title = "Soft-Intro VAE"
    paper = "Daniel & Tamar, CVPR 2021; configured as in Bercea et al. (MorphAEus), appendix A.1."
    Config = SoftIntroVAEConfig

    def _enc_params(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.fc_mu.parameters(), *self.fc_logvar.parameters()]

    def _dec_params(self) -> list[nn.Parameter]:
        return [*self.from_latent.parameters(), *self.decoder.parameters()]

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        lr = self.config.lr
        return {"encoder": torch.optim.Adam(self._enc_params(), lr=lr),
                "decoder": torch.optim.Adam(self._dec_params(), lr=lr)}

    def loss(self, x: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        """The ELBO part alone (used where a single loss is needed); training uses training_step."""
        c = self.config
        mu, logvar = self.encode(x)
        rec = self.decode(reparameterize(mu, logvar))
        scale = 1.0 / x[0].numel()
        loss = scale * (c.beta_rec * sse(x, rec).mean() + c.beta_kl * kl_normal(mu, logvar).mean())
        return {"loss": loss}

    def training_step(self, x: torch.Tensor, epoch: int, optimizers: dict, amp) -> dict[str, float]:
        c = self.config
        scale = 1.0 / x[0].numel()  # per-pixel normalisation of the official code
        noise = torch.randn(x.shape[0], c.latent_dim, device=x.device)
        enc_p, dec_p = self._enc_params(), self._dec_params()
        try:
            # ---- encoder step: real ELBO up, ELBO of reconstructions and samples down (soft, exp)
            for p in dec_p:
                p.requires_grad_(False)
            with amp():
                fake = self.decode(noise)
                mu, logvar = self.encode(x)
                z = reparameterize(mu, logvar)
                rec = self.decode(z)
                loss_rec = sse(x, rec).mean()
                kl_real = kl_normal(mu, logvar).mean()
                rmu, rlv = self.encode(rec.detach())
                rec_rec = self.decode(reparameterize(rmu, rlv))
                fmu, flv = self.encode(fake.detach())
                rec_fake = self.decode(reparameterize(fmu, flv))
                elbo_rec = c.beta_rec * sse(rec, rec_rec) + c.beta_neg * kl_normal(rmu, rlv)
                elbo_fake = c.beta_rec * sse(fake, rec_fake) + c.beta_neg * kl_normal(fmu, flv)
                exp_rec = (-2 * scale * elbo_rec).exp().mean()
                exp_fake = (-2 * scale * elbo_fake).exp().mean()
                loss_e = scale * (c.beta_rec * loss_rec + c.beta_kl * kl_real) + 0.25 * (exp_rec + exp_fake)
            optimizers["encoder"].zero_grad(set_to_none=True)
            loss_e.backward()
            optimizers["encoder"].step()
            for p in dec_p:
                p.requires_grad_(True)
            # ---- decoder step: reconstruct, and make samples/reconstructions look real to the encoder
            for p in enc_p:
                p.requires_grad_(False)
            with amp():
                fake = self.decode(noise)
                rec = self.decode(z.detach())
                loss_rec_d = sse(x, rec).mean()
                rmu, rlv = self.encode(rec)
                fmu, flv = self.encode(fake)
                rec_rec = self.decode(reparameterize(rmu, rlv).detach())
                rec_fake = self.decode(reparameterize(fmu, flv).detach())
                kl_rec, kl_fake = kl_normal(rmu, rlv).mean(), kl_normal(fmu, flv).mean()
                loss_d = scale * (c.beta_rec * loss_rec_d + 0.5 * c.beta_kl * (kl_rec + kl_fake)
                                  + c.gamma_r * 0.5 * c.beta_rec * (sse(rec.detach(), rec_rec).mean()
                                                                    + sse(fake.detach(), rec_fake).mean()))
            optimizers["decoder"].zero_grad(set_to_none=True)
            loss_d.backward()
            optimizers["decoder"].step()
        finally:
            for p in (*enc_p, *dec_p):
                p.requires_grad_(True)
        return {"loss": float(loss_e.detach() + loss_d.detach()), "rec": float(loss_rec.detach() * scale),
                "kl_real": float(kl_real.detach()), "kl_fake": float(kl_fake.detach()),
                "exp_elbo_fake": float(exp_fake.detach())}


# ---------------------------------------------------------------- adversarial AE (GPND)

@dataclass
class AAEConfig(ReconstructionConfig):
    # Pidhorskyi et al. (GPND) with d = 64 and z = 256 at 128 px in the authors' configuration;
    # halved (d = 32, z = 128) to stay small and fast on CPUs. 3x3 convs + BN from blocks.py.
    width: int = 32
    latent_dim: int = 128
    rec_weight: float = 2.0  # appendix: L_error = 2.0
    zd_weight: float = 2.0  # appendix: L_adv-dz when optimising D_z = 2.0
    e_adv_weight: float = 1.0
    # Appendix A.1: at 128x128 "tripling the first layer of the encoder and discriminator and the
    # last layer of the discriminator": D's last (4d) block is repeated this many times in all.
    d_last_repeats: int = 3
    lr: float = 5e-4  # appendix
    adam_beta1: float = 0.5  # GPND
    batch_size: int = 128  # appendix
    rec_loss: str = "l2"  # validation metric only; training uses BCE as GPND


@register
class AAE(ReconstructionDetector):
    """Adversarial auto-encoder (GPND): encoder E, generator G, an image discriminator D (G's
    samples vs real images) and a latent discriminator Dz (E(x) vs N(0, I)). Learns to produce
    training-like images, but not pixel-accurate reconstructions."""

    method = "aae"
    title = "Adversarial AE (GPND)"
    paper = ("Pidhorskyi et al., NeurIPS 2018 (GPND); configured as in Bercea et al. (MorphAEus), "
             "appendix A.1.")
    Config = AAEConfig

    def __init__(self, config: AAEConfig | None = None, image_size: int = 128) -> None:
        super().__init__(config, image_size)
        c = self.config
        d, n = c.width, int(math.log2(image_size)) - 2  # n stride-2 levels down to 4x4
        self.E = nn.Sequential(ConvEncoder((d,) * (n - 2) + (4 * d, 4 * d), 3, "leaky"),
                               nn.Conv2d(4 * d, c.latent_dim, 4), nn.Flatten())
        self.G_in = nn.Sequential(nn.Unflatten(1, (c.latent_dim, 1, 1)),
                                  nn.ConvTranspose2d(c.latent_dim, 4 * d, 4, bias=False),
                                  nn.BatchNorm2d(4 * d), activation("relu"))
        self.G = ConvDecoder((4 * d,) + (2 * d,) * (n - 2) + (d,), 3, "relu", in_ch=4 * d, out_act="none")
        repeats = [conv_bn_act(4 * d, 4 * d, 3) for _ in range(c.d_last_repeats - 1)]  # stride 1, 4x4
        self.D = nn.Sequential(ConvEncoder((d,) * (n - 2) + (2 * d, 4 * d), 3, "leaky"), *repeats,
                               nn.Conv2d(4 * d, 1, 4), nn.Flatten())
        self.Dz = nn.Sequential(nn.Linear(c.latent_dim, 4 * d), activation("leaky"),
                                nn.Linear(4 * d, 4 * d), activation("leaky"), nn.Linear(4 * d, 1))

    def generate_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.G(self.G_in(z))

    def reconstruct(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"reconstruction": torch.sigmoid(self.generate_logits(self.E(x)))}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        kw = dict(lr=c.lr, betas=(c.adam_beta1, 0.999))
        gen = [*self.G_in.parameters(), *self.G.parameters()]
        return {"d": torch.optim.Adam(self.D.parameters(), **kw), "g": torch.optim.Adam(gen, **kw),
                "dz": torch.optim.Adam(self.Dz.parameters(), **kw),
                "ge": torch.optim.Adam([*self.E.parameters(), *gen], **kw)}

    def loss(self, x: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        """Reconstruction part (BCE, as GPND) + latent adversarial term; see training_step."""
        z = self.E(x)
        rec = F.binary_cross_entropy_with_logits(self.generate_logits(z).float(), x.float())
        adv = F.binary_cross_entropy_with_logits(self.Dz(z).float(), torch.ones(len(x), 1, device=x.device))
        return {"loss": self.config.rec_weight * rec + self.config.e_adv_weight * adv, "rec": rec, "e_adv": adv}

    def training_step(self, x: torch.Tensor, epoch: int, optimizers: dict, amp) -> dict[str, float]:
        c = self.config
        n = x.shape[0]
        ones, zeros = torch.ones(n, 1, device=x.device), torch.zeros(n, 1, device=x.device)
        bce = F.binary_cross_entropy_with_logits

        def step(name: str, loss: torch.Tensor) -> float:
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
            return float(loss.detach())

        with amp():  # image discriminator: real vs generated from z ~ N(0, I)
            fake = torch.sigmoid(self.generate_logits(torch.randn(n, c.latent_dim, device=x.device))).detach()
            d_loss = bce(self.D(x).float(), ones) + bce(self.D(fake).float(), zeros)
        d = step("d", d_loss)
        with amp():  # generator fools D
            fake = torch.sigmoid(self.generate_logits(torch.randn(n, c.latent_dim, device=x.device)))
            g_loss = bce(self.D(fake).float(), ones)
        g = step("g", g_loss)
        with amp():  # latent discriminator: prior samples vs encodings
            dz_loss = c.zd_weight * (bce(self.Dz(torch.randn(n, c.latent_dim, device=x.device)).float(), ones)
                                     + bce(self.Dz(self.E(x).detach()).float(), zeros))
        dz = step("dz", dz_loss)
        with amp():  # encoder + generator: reconstruct, and make E(x) look like N(0, I)
            losses = self.loss(x, epoch)
        ge = step("ge", losses["loss"])
        return {"loss": ge, "rec": float(losses["rec"].detach()), "e_adv": float(losses["e_adv"].detach()),
                "d": d, "g": g, "dz": dz}

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, epoch: int) -> float:
        return float(F.mse_loss(self.reconstruct(x)["reconstruction"].float(), x.float()))


# ---------------------------------------------------------------- denoising AE (coarse noise)

def coarse_noise(x: torch.Tensor, res: int = 16, std: float = 0.2, generator: torch.Generator | None = None,
                 foreground: float = 0.01) -> torch.Tensor:
    """Kascenas et al.: Gaussian noise drawn at res x res (for 128 px; scaled with the image
    size), bilinearly up-sampled, randomly rolled, and kept on the foreground (x > 0.01)."""
    n, ch, h, w = x.shape
    r = max(2, round(res * h / 128))
    ns = torch.randn(n, ch, r, r, generator=generator, device="cpu").to(x.device) * std
    ns = F.interpolate(ns, size=(h, w), mode="bilinear", align_corners=False)
    sy, sx = (int(v) for v in torch.randint(0, max(h, w), (2,), generator=generator))
    ns = torch.roll(ns, shifts=(sy % h, sx % w), dims=(-2, -1))
    return ns * (x.sum(1, keepdim=True) > foreground)


class UNet(nn.Module):
    """Small U-Net (two conv-BN-swish per level, average-pool down, transposed-conv up, skips)."""

    def __init__(self, channels: tuple[int, ...], act: str = "swish") -> None:
        super().__init__()

        def double(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(conv_bn_act(cin, cout, 3, 1, act), conv_bn_act(cout, cout, 3, 1, act))

        self.down = nn.ModuleList()
        c = 1
        for cout in channels:
            self.down.append(double(c, cout))
            c = cout
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for cout in reversed(channels[:-1]):
            self.up.append(nn.ConvTranspose2d(c, cout, 2, stride=2))
            self.merge.append(double(2 * cout, cout))
            c = cout
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, blk in enumerate(self.down):
            x = blk(x if i == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            x = merge(torch.cat([up(x), skip], 1))
        return self.head(x)


@dataclass
class DAEConfig(ReconstructionConfig):
    # Kascenas et al.: U-Net of depth 4 with 64..512 filters at 128 px; halved to stay < 15 MB.
    channels: tuple[int, ...] = (32, 64, 128, 256)
    noise_res: int = 16  # coarse noise: 16x16 at 128 px, std 0.2 (authors' configuration)
    noise_std: float = 0.2
    lr: float = 1e-4  # appendix: Adam 1e-4, batch 16, L1 loss
    batch_size: int = 16
    rec_loss: str = "l1"


@register
class DAE(ReconstructionDetector):
    """Denoising AE with coarse noise: trained to remove low-resolution Gaussian noise added to
    normal images (L1 to the clean image). At test time the input is not corrupted; the map is
    |x - denoised|: what the network 'cleans away'. Self-supervised by its noise model."""

    method = "dae"
    title = "Denoising AE (coarse noise)"
    paper = "Kascenas et al., MIDL 2022; configured as in Bercea et al. (MorphAEus), appendix A.1."
    Config = DAEConfig

    def __init__(self, config: DAEConfig | None = None, image_size: int = 128) -> None:
        super().__init__(config, image_size)
        depth = len(self.config.channels)
        if image_size < 2 ** (depth - 1):
            raise ValueError(f"{self.method}: image_size {image_size} too small for depth {depth}")
        self.net = UNet(self.config.channels)

    def reconstruct(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"reconstruction": self.net(x).float().clamp(0, 1)}

    def noisy(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x + coarse_noise(x, self.config.noise_res, self.config.noise_std, generator)

    def loss(self, x: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        return {"loss": rec_loss(self.net(self.noisy(x)), x, self.config.rec_loss)}

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, epoch: int) -> float:
        """Denoising L1 with the same noise every epoch (fixed generator), so epochs compare."""
        g = torch.Generator().manual_seed(1234 + int(x.float().sum().item() * 997) % 2 ** 31)
        return float(rec_loss(self.net(self.noisy(x, g)), x, self.config.rec_loss))
