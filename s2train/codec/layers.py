"""Causal convolution building blocks for the codec: Snake, causal (transposed) convs, residual units.

Every module here is causal: output frame ``t`` depends only on inputs up to ``t``. The stride-1 convs and the
transposed convs can also run in streaming mode: while a ``StreamState`` dict is attached (see
``s2train.codec.streaming``) each module prepends its cached left context to the incoming chunk and stores
the new context, so chunked outputs concatenate to exactly the full-sequence output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class StreamingModule(nn.Module):
    """Mixin: a module whose left context can be carried between calls.

    ``_stream`` is ``None`` for ordinary full-sequence calls. A stream decoder sets it to its own dict before
    a ``push`` and clears it after, so several stream decoders can share one model without sharing state.
    """

    _stream: dict | None = None

    def _get_state(self) -> torch.Tensor | None:
        return None if self._stream is None else self._stream.get(id(self))

    def _set_state(self, value: torch.Tensor) -> None:
        assert self._stream is not None
        self._stream[id(self)] = value


class Snake(nn.Module):
    """Snake activation ``x + sin(alpha x)^2 / alpha`` with a learned per-channel ``alpha``.

    Args:
        channels: number of channels C of the ``[B, C, T]`` input.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The epsilon keeps the reciprocal finite if alpha drifts to zero; addcmul saves a full-size pass.
        s = torch.sin(self.alpha * x)
        return torch.addcmul(x, s * s, (self.alpha + 1e-9).reciprocal())


class CausalConv1d(StreamingModule):
    """Conv1d padded on the left only.

    With ``stride == 1`` the output has the input's length; with ``stride > 1`` an input of length
    ``n * stride`` gives ``n`` outputs and output ``t`` sees inputs ``< (t + 1) * stride``.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel_size: kernel width.
        stride: hop between outputs.
        dilation: dilation of the kernel.
        groups: conv groups (``in_ch`` for depthwise).
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, dilation: int = 1, groups: int = 1
    ):
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size, stride=stride, dilation=dilation, groups=groups)
        self.stride = stride
        # Left padding chosen so that input length n*stride maps to exactly n outputs.
        self.pad = (kernel_size - 1) * dilation + 1 - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, C_in, S]. Returns: [B, C_out, S // stride]."""
        if self._stream is None:
            return self.conv(F.pad(x, (self.pad, 0)))
        if x.shape[-1] % self.stride:
            # Chunks that are whole multiples of the stride keep every output aligned with the full pass.
            raise ValueError(
                f"streaming chunk of {x.shape[-1]} steps is not a multiple of stride {self.stride}"
            )
        ctx = self._get_state()
        if ctx is None:
            ctx = x.new_zeros(x.shape[0], x.shape[1], self.pad)
        x = torch.cat([ctx, x], dim=-1)
        if self.pad > 0:
            self._set_state(x[..., x.shape[-1] - self.pad :])
        else:
            self._set_state(x[..., :0])
        return self.conv(x)


class CausalConvTranspose1d(StreamingModule):
    """Transposed conv that upsamples by ``stride`` and trims the right overhang, so it is causal.

    Output block ``t`` (samples ``[t*stride, (t+1)*stride)``) depends only on input frames ``<= t``.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        stride: upsampling factor.
        kernel_size: kernel width (default ``2 * stride``).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, kernel_size: int | None = None):
        super().__init__()
        kernel_size = kernel_size or 2 * stride
        if kernel_size < stride:
            raise ValueError(f"kernel_size {kernel_size} must be >= stride {stride}")
        self.conv = nn.ConvTranspose1d(in_ch, out_ch, kernel_size, stride=stride)
        self.stride = stride
        # Input frames that still overlap the next output block.
        self.ctx_frames = math.ceil(kernel_size / stride) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, C_in, T]. Returns: [B, C_out, T * stride]."""
        n = x.shape[-1]
        if self._stream is None or self.ctx_frames == 0:
            return self.conv(x)[..., : n * self.stride]
        ctx = self._get_state()
        if ctx is None:
            # Zero frames contribute nothing but the bias, which every position gets once anyway.
            ctx = x.new_zeros(x.shape[0], x.shape[1], self.ctx_frames)
        full = torch.cat([ctx, x], dim=-1)
        self._set_state(full[..., full.shape[-1] - self.ctx_frames :])
        start = self.ctx_frames * self.stride
        return self.conv(full)[..., start : start + n * self.stride]


class ResidualUnit(nn.Module):
    """DAC residual unit: Snake -> dilated causal conv (k=7) -> Snake -> 1x1 conv, plus the skip.

    Args:
        channels: channels C of the ``[B, C, T]`` input.
        dilation: dilation of the k=7 conv.
    """

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(
            Snake(channels),
            CausalConv1d(channels, channels, 7, dilation=dilation),
            Snake(channels),
            CausalConv1d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over channels of a ``[B, C, T]`` tensor (per time step, so still causal)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class ConvNeXtBlock(nn.Module):
    """Causal ConvNeXt block: depthwise causal conv (k=7) -> LayerNorm -> 1x1 MLP (GELU) -> LayerScale.

    Args:
        channels: channels C of the ``[B, C, T]`` input.
        mult: hidden expansion of the pointwise MLP.
        layer_scale: initial LayerScale value.
    """

    def __init__(self, channels: int, mult: int = 4, layer_scale: float = 1e-2):
        super().__init__()
        self.dw = CausalConv1d(channels, channels, 7, groups=channels)
        self.norm = ChannelLayerNorm(channels)
        self.pw1 = nn.Conv1d(channels, channels * mult, 1)
        self.pw2 = nn.Conv1d(channels * mult, channels, 1)
        self.gamma = nn.Parameter(torch.full((1, channels, 1), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pw2(F.gelu(self.pw1(self.norm(self.dw(x)))))
        return x + self.gamma * h


def iter_streaming_modules(module: nn.Module):
    """Yield every ``StreamingModule`` inside ``module`` (itself included)."""
    for m in module.modules():
        if isinstance(m, StreamingModule):
            yield m
