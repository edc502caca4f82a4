"""Convolutional building blocks shared by the method families (encoders, decoders)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def activation(name: str) -> nn.Module:
    """'swish' (SiLU, MorphAEus), 'leaky' (LeakyReLU 0.2, Baur et al.), 'relu'."""
    if name == "swish":
        return nn.SiLU(inplace=True)
    if name == "leaky":
        return nn.LeakyReLU(0.2, inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


def conv_bn_act(cin: int, cout: int, kernel: int = 3, stride: int = 1, act: str = "leaky") -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(cout), activation(act))


class ConvEncoder(nn.Module):
    """Stack of conv-BN-act blocks, each halving the resolution (strided conv or max-pool)."""

    def __init__(self, channels: Sequence[int], kernel: int = 3, act: str = "leaky",
                 down: str = "stride", in_ch: int = 1) -> None:
        super().__init__()
        layers, c = [], in_ch
        for cout in channels:
            if down == "stride":
                layers.append(conv_bn_act(c, cout, kernel, 2, act))
            elif down == "maxpool":
                layers.append(nn.Sequential(conv_bn_act(c, cout, kernel, 1, act), nn.MaxPool2d(2)))
            else:
                raise ValueError(f"unknown down-sampling {down!r}")
            c = cout
        self.blocks = nn.ModuleList(layers)
        self.out_channels = c

    def forward(self, x: torch.Tensor, return_features: bool = False):
        feats = []
        for blk in self.blocks:
            x = blk(x)
            feats.append(x)
        return (x, feats) if return_features else x


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: bilinear up-sampling x2 then conv-BN-act; a final 1-channel conv."""

    def __init__(self, channels: Sequence[int], kernel: int = 3, act: str = "leaky", in_ch: int | None = None,
                 out_ch: int = 1, out_act: str = "sigmoid") -> None:
        super().__init__()
        layers, c = [], in_ch if in_ch is not None else channels[0]
        for cout in channels:
            layers.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                        conv_bn_act(c, cout, kernel, 1, act)))
            c = cout
        self.blocks = nn.ModuleList(layers)
        self.head = nn.Conv2d(c, out_ch, kernel, 1, kernel // 2)
        self.out_act = {"sigmoid": nn.Sigmoid(), "none": nn.Identity()}[out_act]

    def forward(self, z: torch.Tensor, return_features: bool = False):
        feats = []
        for blk in self.blocks:
            z = blk(z)
            feats.append(z)
        y = self.out_act(self.head(z))
        return (y, feats) if return_features else y
