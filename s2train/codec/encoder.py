"""Causal DAC-style encoder and decoder (mirror image) of the codec.

Encoder: causal conv -> blocks of (residual units with dilations 1, 3, 9 -> Snake -> strided causal conv that
doubles the channels) -> Snake -> causal conv to ``latent_dim`` -> extra downsampling stages (ConvNeXt block +
strided causal conv) at ``latent_dim`` width. The decoder runs the same path backwards with causal transposed
convs and ends in ``tanh``. Total hop = ``prod(strides) * prod(extra_strides)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from s2train.codec.layers import CausalConv1d, CausalConvTranspose1d, ConvNeXtBlock, ResidualUnit, Snake

DILATIONS = (1, 3, 9)


class Encoder(nn.Module):
    """Waveform ``[B, 1, S]`` -> latent ``[B, latent_dim, S // hop]`` (S a multiple of the hop).

    Args:
        channels: width of the first conv; doubles after every stride.
        strides: downsampling factors of the residual blocks.
        latent_dim: output channels.
        extra_strides: downsampling factors of the extra ConvNeXt stages after the blocks.
    """

    def __init__(self, channels: int, strides: list[int], latent_dim: int, extra_strides: list[int] = ()):
        super().__init__()
        layers: list[nn.Module] = [CausalConv1d(1, channels, 7)]
        ch = channels
        for s in strides:
            layers += [ResidualUnit(ch, d) for d in DILATIONS]
            layers += [Snake(ch), CausalConv1d(ch, 2 * ch, 2 * s, stride=s)]
            ch *= 2
        layers += [Snake(ch), CausalConv1d(ch, latent_dim, 3)]
        for s in extra_strides:
            layers += [ConvNeXtBlock(latent_dim), CausalConv1d(latent_dim, latent_dim, 2 * s, stride=s)]
        self.net = nn.Sequential(*layers)
        self.hop_length = math.prod(strides) * math.prod(extra_strides)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.net(wav)


class Decoder(nn.Module):
    """Latent ``[B, latent_dim, T]`` -> waveform ``[B, 1, T * hop]`` in [-1, 1].

    Args:
        channels: width after the input conv; halves after every upsampling block.
        strides: the encoder's strides (applied here in reverse).
        latent_dim: input channels.
        extra_strides: the encoder's extra strides (applied first, in reverse).
    """

    def __init__(self, channels: int, strides: list[int], latent_dim: int, extra_strides: list[int] = ()):
        super().__init__()
        layers: list[nn.Module] = []
        for s in reversed(list(extra_strides)):
            layers += [CausalConvTranspose1d(latent_dim, latent_dim, s), ConvNeXtBlock(latent_dim)]
        layers.append(CausalConv1d(latent_dim, channels, 7))
        ch = channels
        for s in reversed(list(strides)):
            out = max(ch // 2, 1)
            layers += [Snake(ch), CausalConvTranspose1d(ch, out, s)]
            layers += [ResidualUnit(out, d) for d in DILATIONS]
            ch = out
        layers += [Snake(ch), CausalConv1d(ch, 1, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
