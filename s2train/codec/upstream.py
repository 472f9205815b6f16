"""The released S2 Pro codec (``codec.pth``, fish-speech's modified DAC) as an s2train ``Codec``.

``UpstreamDACCodec`` rebuilds the module tree of the released codec so that its ``state_dict`` has exactly
the upstream key names, shapes and buffers; ``load_s2_codec`` reads a ``codec.pth`` into it with strict key
checks, ``save_s2_codec`` writes the same layout back (bit-exact round trip), and

    python -m s2train.codec.upstream convert <codec.pth> <out_dir>

writes an s2train codec folder (``save_codec`` layout) that every ``load_codec`` consumer accepts, e.g.
``python -m s2train.data.encode codec=<out_dir> ...``. Design notes and the key table: ``docs/s2codec.md``.

Signal path (all convs causal, left padding only):

    wav [B, 1, S] --encoder (strides 2, 4, 8, 8; 4-layer windowed transformer in the last stage)-->
    [B, 1024, S / 512] --2 x (strided conv + ConvNeXt)--> [B, 1024, S / 2048]
    --8-layer windowed transformer--> z; semantic VQ (1 x 4096) on z, residual VQ (9 x 1024) on
    z - semantic part  ->  codes [B, 10, S / 2048]

    codes --lookup + sum--> [B, 1024, T] --8-layer transformer--> 2 x (transposed conv + ConvNeXt)
    --> decoder (strides 8, 8, 4, 2) --> tanh --> wav [B, 1, T * 2048]

Inference only: no dropout, no quantizer dropout, no losses; train/eval modes compute the same thing.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from s2train.codec.interface import Codec, save_codec, to_plain

log = logging.getLogger(__name__)

#: Buffers upstream keeps in its state dict although they are pure functions of the config. A checkpoint may
#: omit them; they are then recomputed.
REGENERABLE_BUFFERS = ("freqs_cis", "causal_mask")

#: Keys whose presence marks a file as an upstream codec state dict (after unwrapping).
_SIGNATURE_KEYS = (
    "quantizer.semantic_quantizer.quantizers.0.codebook.weight",
    "quantizer.quantizer.quantizers.0.codebook.weight",
)

_WN_NEW = (".parametrizations.weight.original0", ".parametrizations.weight.original1")
_WN_OLD = (".weight_g", ".weight_v")


# ---------------------------------------------------------------------------------------------------------
# Convolutions and activations
# ---------------------------------------------------------------------------------------------------------
def causal_right_pad(length: int, kernel: int, stride: int, left: int) -> int:
    """Right zero padding that lets a strided conv with ``left`` padding cover the last input sample.

    Args:
        length: input length.
        kernel: effective kernel size ``(k - 1) * dilation + 1``.
        stride: conv stride.
        left: left padding already applied.

    Returns:
        Extra samples to pad on the right (0 for stride 1; makes ``length`` a whole number of strides).
    """
    span = length - kernel + left
    frames = -(-span // stride) + 1
    return (frames - 1) * stride + kernel - left - length


class CausalConv(nn.Module):
    """``nn.Conv1d`` behind left padding of ``(k - 1) * dilation + 1 - stride`` (upstream ``CausalConvNet``).

    Output length is ``ceil(S / stride)`` for an input of length ``S``.

    Args:
        in_ch, out_ch: channels.
        kernel: kernel size.
        stride: stride.
        dilation: dilation.
        groups: conv groups.
        normed: weight-norm the kernel through ``torch.nn.utils.parametrizations.weight_norm`` (keys
            ``conv.parametrizations.weight.original0`` [out, 1, 1] = g and ``original1`` = v).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        normed: bool = True,
    ):
        super().__init__()
        conv = nn.Conv1d(in_ch, out_ch, kernel, stride=stride, dilation=dilation, groups=groups)
        self.conv = weight_norm(conv, name="weight", dim=0) if normed else conv
        self.stride = stride
        self.span = (kernel - 1) * dilation + 1
        self.left = self.span - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, in_ch, S]. Returns: [B, out_ch, ceil(S / stride)]."""
        right = causal_right_pad(x.shape[-1], self.span, self.stride, self.left)
        return self.conv(F.pad(x, (self.left, right))).contiguous()


class CausalConvTranspose(nn.Module):
    """``nn.ConvTranspose1d`` minus its last ``kernel - stride`` outputs (upstream ``CausalTransConvNet``).

    Args:
        in_ch, out_ch: channels.
        kernel: kernel size (``2 * stride`` in the decoder, ``stride`` in the quantizer's upsampler).
        stride: upsampling factor.
        normed: weight-norm the kernel (``dim=0``, so ``original0`` is [in_ch, 1, 1]).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, normed: bool = True):
        super().__init__()
        conv = nn.ConvTranspose1d(in_ch, out_ch, kernel, stride=stride)
        self.conv = weight_norm(conv, name="weight", dim=0) if normed else conv
        self.trim = kernel - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, in_ch, T]. Returns: [B, out_ch, T * stride]."""
        y = self.conv(x)
        return y[..., : y.shape[-1] - self.trim].contiguous()


class SnakeAlpha(nn.Module):
    """DAC's Snake ``x + sin(alpha x)^2 / (alpha + 1e-9)``; key ``alpha`` [1, C, 1]."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, C, T]. Returns: [B, C, T]."""
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


class LegacyWNConv1x1(nn.Module):
    """1x1 conv with the old weight-norm keys ``weight_g`` [out, 1, 1], ``weight_v`` [out, in, 1], ``bias``.

    The quantizer projections of the released codec come from ``descript-audio-codec``, which uses
    ``torch.nn.utils.weight_norm``; this module stores the same three tensors without the deprecated hook.
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        v = torch.empty(out_ch, in_ch, 1)
        nn.init.kaiming_uniform_(v, a=math.sqrt(5))
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(v.detach().flatten(1).norm(dim=1).view(out_ch, 1, 1).clone())
        bound = 1.0 / math.sqrt(in_ch)
        self.bias = nn.Parameter(torch.empty(out_ch).uniform_(-bound, bound))

    @property
    def weight(self) -> torch.Tensor:
        """The effective kernel ``g * v / ||v||`` (norm over all but dim 0): [out, in, 1]."""
        return torch._weight_norm(self.weight_v, self.weight_g, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, in, T]. Returns: [B, out, T]."""
        return F.conv1d(x, self.weight, self.bias)


class ResidualUnit(nn.Module):
    """``x + conv1x1(snake(conv7_dilated(snake(x))))``; keys ``block.{0..3}``."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(
            SnakeAlpha(dim),
            CausalConv(dim, dim, 7, dilation=dilation),
            SnakeAlpha(dim),
            CausalConv(dim, dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, dim, T]. Returns: [B, dim, T]."""
        y = self.block(x)
        cut = x.shape[-1] - y.shape[-1]
        return (x[..., : x.shape[-1] - cut] if cut > 0 else x) + y


# ---------------------------------------------------------------------------------------------------------
# Transformer (RMSNorm, GQA attention with interleaved-pair RoPE, SwiGLU, LayerScale, windowed causal mask)
# ---------------------------------------------------------------------------------------------------------
def rope_table(length: int, head_dim: int, base: float) -> torch.Tensor:
    """Rotary table ``[length, head_dim // 2, 2]`` of (cos, sin), rounded to bfloat16 as upstream stores it.

    Args:
        length: number of positions (upstream ``block_size``).
        head_dim: attention head size (even).
        base: RoPE base (10000).
    """
    exponents = torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim
    inv_freq = 1.0 / (base**exponents)
    angles = torch.outer(torch.arange(length), inv_freq)
    unit = torch.polar(torch.ones_like(angles), angles)
    return torch.stack([unit.real, unit.imag], dim=-1).to(torch.bfloat16)


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs ``(x[2i], x[2i+1])`` of each head by the table's angles, in float32.

    Args:
        x: [B, T, H, D].
        table: [T, D // 2, 2] (cos, sin), any float dtype.

    Returns:
        [B, T, H, D] in ``x``'s dtype.
    """
    pairs = x.float().unflatten(-1, (-1, 2))
    cos = table[..., 0].float()[None, :, None]
    sin = table[..., 1].float()[None, :, None]
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1)
    return rotated.flatten(3).type_as(x)


class RMSNorm(nn.Module):
    """RMS normalization over the last dim, computed in float32; key ``weight`` [dim]."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [..., dim]. Returns: [..., dim]."""
        h = x.float()
        h = h * torch.rsqrt(torch.mean(h * h, dim=-1, keepdim=True) + self.eps)
        return h.type_as(x) * self.weight


class LayerScale(nn.Module):
    """Per-channel residual-branch scale; key ``gamma`` [dim]."""

    def __init__(self, dim: int, init: float = 1e-2):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class GroupedAttention(nn.Module):
    """Bias-free multi-head attention with a fused ``wqkv`` and optional grouped K/V heads.

    Args:
        dim: model width.
        heads: query heads.
        kv_heads: key/value heads (divides ``heads``; the released codec uses ``heads``).
        head_dim: per-head size.
    """

    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int):
        super().__init__()
        if heads % kv_heads:
            raise ValueError(f"attention: heads={heads} is not a multiple of kv_heads={kv_heads}")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.wqkv = nn.Linear(dim, (heads + 2 * kv_heads) * head_dim, bias=False)
        self.wo = nn.Linear(heads * head_dim, dim, bias=False)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, T, dim]; rope: [T, head_dim // 2, 2]; mask: bool [T, T] (True = attend).

        Returns: [B, T, dim].
        """
        b, t, _ = x.shape
        hd = self.head_dim
        q, k, v = self.wqkv(x).split([self.heads * hd, self.kv_heads * hd, self.kv_heads * hd], dim=-1)
        q = apply_rope(q.view(b, t, self.heads, hd), rope).transpose(1, 2)
        k = apply_rope(k.view(b, t, self.kv_heads, hd), rope).transpose(1, 2)
        v = v.view(b, t, self.kv_heads, hd).transpose(1, 2)
        if self.kv_heads != self.heads:
            rep = self.heads // self.kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[None, None])
        return self.wo(y.transpose(1, 2).reshape(b, t, self.heads * hd))


class SwiGLU(nn.Module):
    """``w2(silu(w1 x) * w3 x)``, bias-free."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerLayer(nn.Module):
    """Pre-norm block: ``h = x + ls_a(attn(norm_a(x)))``, ``out = h + ls_f(ffn(norm_f(h)))``."""

    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int, hidden: int, eps: float):
        super().__init__()
        self.attention = GroupedAttention(dim, heads, kv_heads, head_dim)
        self.feed_forward = SwiGLU(dim, hidden)
        self.ffn_norm = RMSNorm(dim, eps)
        self.attention_norm = RMSNorm(dim, eps)
        self.attention_layer_scale = LayerScale(dim)
        self.ffn_layer_scale = LayerScale(dim)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, T, dim]; rope: [T, head_dim // 2, 2]; mask: bool [T, T]. Returns: [B, T, dim]."""
        h = x + self.attention_layer_scale(self.attention(self.attention_norm(x), rope, mask))
        return h + self.ffn_layer_scale(self.feed_forward(self.ffn_norm(h)))


class WindowedTransformer(nn.Module):
    """Causal transformer over ``[B, C, T]`` features, each step attending to the last ``window`` steps.

    Keys: ``layers.{i}.*``, ``norm.weight``, the buffers ``freqs_cis`` [block_size, head_dim / 2, 2]
    (bf16) and ``causal_mask`` [block_size, block_size] (bool, unused by the forward, kept for the layout),
    and biased ``input_proj`` / ``output_proj`` only when ``input_dim != dim``.

    Args:
        input_dim: channels of the input/output features.
        dim: model width.
        layers: number of blocks.
        heads: query heads.
        head_dim: per-head size.
        hidden: SwiGLU hidden size.
        window: attention window in steps (``None``: plain causal).
        block_size: length of the position tables, the longest supported input.
        rope_base: RoPE base.
        eps: RMSNorm epsilon.
        kv_heads: key/value heads (``None``: ``heads``).
    """

    def __init__(
        self,
        input_dim: int,
        dim: int,
        layers: int,
        heads: int,
        head_dim: int,
        hidden: int,
        window: int | None,
        block_size: int,
        rope_base: float = 10000,
        eps: float = 1e-5,
        kv_heads: int | None = None,
    ):
        super().__init__()
        self.window, self.block_size, self.head_dim, self.rope_base = window, block_size, head_dim, rope_base
        kv = heads if kv_heads is None else kv_heads
        self.layers = nn.ModuleList(
            TransformerLayer(dim, heads, kv, head_dim, hidden, eps) for _ in range(layers)
        )
        self.norm = RMSNorm(dim, eps)
        self.register_buffer("freqs_cis", rope_table(block_size, head_dim, rope_base))
        self.register_buffer("causal_mask", torch.tril(torch.ones(block_size, block_size, dtype=torch.bool)))
        self.input_proj = nn.Linear(input_dim, dim) if input_dim != dim else nn.Identity()
        self.output_proj = nn.Linear(dim, input_dim) if input_dim != dim else nn.Identity()

    def fill_buffers(self, device: str | torch.device = "cpu") -> None:
        """Recompute ``freqs_cis`` / ``causal_mask`` (for checkpoints that omit them) on ``device``."""
        self.freqs_cis = rope_table(self.block_size, self.head_dim, self.rope_base).to(device)
        self.causal_mask = torch.tril(torch.ones(self.block_size, self.block_size, dtype=torch.bool)).to(
            device
        )

    def attention_mask(self, length: int, device: torch.device) -> torch.Tensor:
        """Bool [length, length]: step ``i`` sees steps ``j`` with ``i - window < j <= i``."""
        i = torch.arange(length, device=device)[:, None]
        j = torch.arange(length, device=device)[None, :]
        mask = j <= i
        return mask & (j > i - self.window) if self.window is not None else mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, input_dim, T] with T <= block_size. Returns: [B, input_dim, T]."""
        t = x.shape[-1]
        if t > self.block_size:
            raise ValueError(
                f"sequence of {t} steps exceeds this transformer's position table ({self.block_size} steps, "
                "upstream block_size); split the audio into shorter pieces"
            )
        h = self.input_proj(x.transpose(1, 2))
        rope, mask = self.freqs_cis[:t], self.attention_mask(t, x.device)
        for layer in self.layers:
            h = layer(h, rope, mask)
        return self.output_proj(self.norm(h)).transpose(1, 2)


# ---------------------------------------------------------------------------------------------------------
# Encoder / decoder
# ---------------------------------------------------------------------------------------------------------
class EncoderStage(nn.Module):
    """3 residual units at ``dim // 2``, Snake, strided conv to ``dim``, then an optional transformer.

    Keys ``block.{0..4}`` (+ ``block.5.*`` when ``transformer`` is given).
    """

    def __init__(self, dim: int, stride: int, transformer: nn.Module | None = None):
        super().__init__()
        half = dim // 2
        parts = [ResidualUnit(half, d) for d in (1, 3, 9)]
        parts += [SnakeAlpha(half), CausalConv(half, dim, 2 * stride, stride=stride)]
        parts.append(transformer if transformer is not None else nn.Identity())
        self.block = nn.Sequential(*parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, dim // 2, S]. Returns: [B, dim, ceil(S / stride)]."""
        return self.block(x)


class DecoderStage(nn.Module):
    """Snake, causal transposed conv ``in_dim -> out_dim`` (x stride), 3 residual units (``block.{0..4}``)."""

    def __init__(self, in_dim: int, out_dim: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(
            SnakeAlpha(in_dim),
            CausalConvTranspose(in_dim, out_dim, 2 * stride, stride),
            *[ResidualUnit(out_dim, d) for d in (1, 3, 9)],
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, in_dim, T]. Returns: [B, out_dim, T * stride]."""
        return self.block(x)


class UpstreamEncoder(nn.Module):
    """``block``: conv7 (1 -> d), stages doubling the width, Snake, conv3 to the latent width."""

    def __init__(
        self, dim: int, rates: Sequence[int], latent_dim: int, transformers: Sequence[nn.Module | None]
    ):
        super().__init__()
        parts: list[nn.Module] = [CausalConv(1, dim, 7)]
        for stride, tf in zip(rates, transformers):
            dim *= 2
            parts.append(EncoderStage(dim, stride, tf))
        parts += [SnakeAlpha(dim), CausalConv(dim, latent_dim, 3)]
        self.block = nn.Sequential(*parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, 1, S]. Returns: [B, latent_dim, ceil(S / prod(rates))]."""
        return self.block(x)


class UpstreamDecoder(nn.Module):
    """``model``: conv7 (latent -> channels), stages halving the width, Snake, conv7 to 1 channel, tanh."""

    def __init__(self, latent_dim: int, channels: int, rates: Sequence[int]):
        super().__init__()
        parts: list[nn.Module] = [CausalConv(latent_dim, channels, 7)]
        width = channels
        for i, stride in enumerate(rates):
            width = channels // 2 ** (i + 1)
            parts.append(DecoderStage(channels // 2**i, width, stride))
        parts += [SnakeAlpha(width), CausalConv(width, 1, 7), nn.Tanh()]
        self.model = nn.Sequential(*parts)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Args: z: [B, latent_dim, T]. Returns: wav [B, 1, T * prod(rates)] in [-1, 1]."""
        return self.model(z)


# ---------------------------------------------------------------------------------------------------------
# Quantizer
# ---------------------------------------------------------------------------------------------------------
class ConvNeXt(nn.Module):
    """Causal depthwise conv7, LayerNorm, ``dim -> 4 dim -> dim`` GELU MLP scaled by ``gamma``, residual."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.dwconv = CausalConv(dim, dim, 7, groups=dim, normed=False)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, int(mlp_ratio * dim))
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(int(mlp_ratio * dim), dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, dim, T]. Returns: [B, dim, T]."""
        h = self.norm(self.dwconv(x).permute(0, 2, 1))
        h = self.gamma * self.pwconv2(self.act(self.pwconv1(h)))
        return x + h.permute(0, 2, 1)


class FactorizedVQ(nn.Module):
    """One codebook: 1x1 ``in_proj`` to ``codebook_dim``, cosine nearest neighbour, 1x1 ``out_proj`` back.

    Keys ``in_proj.{weight_g,weight_v,bias}``, ``out_proj.{...}``, ``codebook.weight`` [size, codebook_dim].
    """

    def __init__(self, dim: int, size: int, codebook_dim: int):
        super().__init__()
        self.size = size
        self.in_proj = LegacyWNConv1x1(dim, codebook_dim)
        self.out_proj = LegacyWNConv1x1(codebook_dim, dim)
        self.codebook = nn.Embedding(size, codebook_dim)

    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x: [B, dim, T]. Returns: (quantized [B, dim, T], codes [B, T] int64)."""
        z_e = self.in_proj(x)
        flat = F.normalize(z_e.transpose(1, 2).reshape(-1, z_e.shape[1]))
        book = F.normalize(self.codebook.weight)
        # Same expression (and so the same rounding and ties) as the released code's squared distance.
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.t() + book.pow(2).sum(1, keepdim=True).t()
        codes = (-dist).max(1).indices.view(x.shape[0], -1)
        z_q = F.embedding(codes, self.codebook.weight).transpose(1, 2)
        # z_e + (z_q - z_e) is z_q up to rounding; kept so the residual matches upstream bit for bit.
        return self.out_proj(z_e + (z_q - z_e)), codes

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Args: codes: [B, T] int64 in [0, size). Returns: [B, dim, T] (raw, un-normalized entries)."""
        return self.out_proj(F.embedding(codes, self.codebook.weight).transpose(1, 2))


class ResidualStack(nn.Module):
    """``quantizers.{i}``: each codebook quantizes what the previous ones left."""

    def __init__(self, dim: int, n_codebooks: int, size: int, codebook_dim: int):
        super().__init__()
        self.size = size
        self.quantizers = nn.ModuleList(FactorizedVQ(dim, size, codebook_dim) for _ in range(n_codebooks))

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: z: [B, dim, T]. Returns: (sum of quantized parts [B, dim, T], codes [B, n, T])."""
        total, residual, codes = 0, z, []
        for q in self.quantizers:
            part, idx = q.quantize(residual)
            total = total + part
            residual = residual - part
            codes.append(idx)
        return total, torch.stack(codes, dim=1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor | float:
        """Args: codes: [B, n' <= n, T]. Returns: [B, dim, T] (0.0 when n' == 0)."""
        total = 0.0
        for i in range(codes.shape[1]):
            total = total + self.quantizers[i].lookup(codes[:, i])
        return total


class SplitRVQ(nn.Module):
    """Downsampling, pre-transformer, semantic codebook then residual codebooks; the inverse on decode.

    Keys ``semantic_quantizer.*``, ``quantizer.*``, ``downsample.{i}.{0,1}``, ``upsample.{i}.{0,1}``,
    ``pre_module.*``, ``post_module.*``.
    """

    def __init__(
        self,
        dim: int,
        n_codebooks: int,
        codebook_size: int,
        semantic_codebook_size: int,
        codebook_dim: int,
        factors: Sequence[int],
        make_transformer,
    ):
        super().__init__()
        self.semantic_quantizer = ResidualStack(dim, 1, semantic_codebook_size, codebook_dim)
        self.quantizer = ResidualStack(dim, n_codebooks, codebook_size, codebook_dim)
        self.downsample = nn.Sequential(
            *[nn.Sequential(CausalConv(dim, dim, f, stride=f, normed=False), ConvNeXt(dim)) for f in factors]
        )
        self.upsample = nn.Sequential(
            *[
                nn.Sequential(CausalConvTranspose(dim, dim, f, f, normed=False), ConvNeXt(dim))
                for f in reversed(list(factors))
            ]
        )
        self.pre_module = make_transformer()
        self.post_module = make_transformer()

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Args: z: [B, dim, T_enc] encoder latent. Returns: codes [B, 1 + n, ceil(T_enc / prod(factors))]."""
        z = self.pre_module(self.downsample(z))
        semantic, first = self.semantic_quantizer.quantize(z)
        _, rest = self.quantizer.quantize(z - semantic)
        return torch.cat([first, rest], dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Args: codes: [B, 1 <= K <= 1 + n, T] in range. Returns: [B, dim, T * prod(factors)]."""
        z = self.semantic_quantizer.lookup(codes[:, :1]) + self.quantizer.lookup(codes[:, 1:])
        return self.upsample(self.post_module(z))


# ---------------------------------------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------------------------------------
class UpstreamDACCodec(Codec):
    """fish-speech's modified DAC (the S2 Pro ``codec.pth``) with upstream state-dict keys.

    Defaults are the released sizes (``fish_speech/configs/modded_dac_vq.yaml``): 44.1 kHz, hop
    ``512 * 4 = 2048`` samples (21.53 frames/s), codebooks ``[4096] + [1024] * 9``.

    Args:
        sample_rate: audio rate in Hz.
        encoder_dim: width of the first encoder conv (doubles per stage).
        encoder_rates: encoder strides.
        decoder_dim: width of the first decoder conv (halves per stage).
        decoder_rates: decoder upsampling factors (product must equal the encoder's).
        latent_dim: encoder output width (``None``: ``encoder_dim * 2 ** len(encoder_rates)``).
        encoder_transformer_layers: transformer layers after each encoder stage (0: none). A stage of width
            ``d`` gets ``d // head_dim`` heads and a ``3 d`` SwiGLU (upstream writes ``d // 64`` with
            ``head_dim = 64``).
        encoder_window: attention window of the encoder transformers (frames at ``sample_rate / 512``).
        encoder_block_size: position-table length of the encoder transformers.
        n_codebooks: residual codebooks after the semantic one.
        codebook_size: entries per residual codebook.
        semantic_codebook_size: entries of the semantic codebook (codebook 0).
        codebook_dim: factorized lookup dimension.
        downsample_factor: strides of the quantizer's conv + ConvNeXt downsampling stages.
        rvq_layers / rvq_dim / rvq_heads / rvq_hidden / rvq_window / rvq_block_size: the pre- and
            post-quantizer transformers (``input_proj`` / ``output_proj`` exist only if
            ``rvq_dim != latent_dim``).
        rvq_kv_heads: key/value heads of those transformers (``None``: ``rvq_heads``).
        head_dim: attention head size of all transformers.
        rope_base: RoPE base.
        norm_eps: RMSNorm epsilon.
    """

    def __init__(
        self,
        sample_rate: int = 44100,
        encoder_dim: int = 64,
        encoder_rates: Sequence[int] = (2, 4, 8, 8),
        decoder_dim: int = 1536,
        decoder_rates: Sequence[int] = (8, 8, 4, 2),
        latent_dim: int | None = None,
        encoder_transformer_layers: Sequence[int] = (0, 0, 0, 4),
        encoder_window: int | None = 512,
        encoder_block_size: int = 16384,
        n_codebooks: int = 9,
        codebook_size: int = 1024,
        semantic_codebook_size: int = 4096,
        codebook_dim: int = 8,
        downsample_factor: Sequence[int] = (2, 2),
        rvq_layers: int = 8,
        rvq_dim: int = 1024,
        rvq_heads: int = 16,
        rvq_hidden: int = 3072,
        rvq_window: int | None = 128,
        rvq_block_size: int = 4096,
        rvq_kv_heads: int | None = None,
        head_dim: int = 64,
        rope_base: float = 10000,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.config = to_plain({k: v for k, v in locals().items() if k not in ("self", "__class__")})
        if len(encoder_transformer_layers) != len(encoder_rates):
            raise ValueError(
                f"encoder_transformer_layers has {len(encoder_transformer_layers)} entries for "
                f"{len(encoder_rates)} encoder_rates"
            )
        if math.prod(encoder_rates) != math.prod(decoder_rates):
            raise ValueError(
                f"decoder_rates {list(decoder_rates)} upsample by {math.prod(decoder_rates)} but "
                f"encoder_rates {list(encoder_rates)} downsample by {math.prod(encoder_rates)}"
            )
        latent = encoder_dim * 2 ** len(encoder_rates) if latent_dim is None else latent_dim
        self._sample_rate = int(sample_rate)
        self._hop = math.prod(encoder_rates) * math.prod(downsample_factor)
        self._sizes = [int(semantic_codebook_size)] + [int(codebook_size)] * int(n_codebooks)

        transformers: list[nn.Module | None] = []
        width = encoder_dim
        for n_layers in encoder_transformer_layers:
            width *= 2
            if n_layers == 0:
                transformers.append(None)
                continue
            heads = width // head_dim
            if heads < 1:
                raise ValueError(f"encoder stage of width {width} has no attention head of size {head_dim}")
            transformers.append(
                WindowedTransformer(
                    width, width, n_layers, heads, head_dim, 3 * width, encoder_window, encoder_block_size,
                    rope_base, norm_eps,
                )
            )  # fmt: skip
        self.encoder = UpstreamEncoder(encoder_dim, encoder_rates, latent, transformers)

        def rvq_transformer() -> nn.Module:
            if rvq_layers == 0:
                return nn.Identity()
            return WindowedTransformer(
                latent, rvq_dim, rvq_layers, rvq_heads, head_dim, rvq_hidden, rvq_window, rvq_block_size,
                rope_base, norm_eps, rvq_kv_heads,
            )  # fmt: skip

        self.quantizer = SplitRVQ(
            latent, n_codebooks, codebook_size, semantic_codebook_size, codebook_dim, downsample_factor,
            rvq_transformer,
        )  # fmt: skip
        self.decoder = UpstreamDecoder(latent, decoder_dim, decoder_rates)

    # --- Codec interface ----------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def hop_length(self) -> int:
        """Samples per code frame: ``prod(encoder_rates) * prod(downsample_factor)`` (2048 released)."""
        return self._hop

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self._sizes)

    @property
    def delay(self) -> int:
        return 0

    @property
    def weight_dtype(self) -> torch.dtype:
        """Dtype the forward runs in (that of the first encoder conv)."""
        return self.encoder.block[0].conv.bias.dtype

    def _prepare(self, wav: torch.Tensor, sample_rate: int | None) -> torch.Tensor:
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            raise ValueError(
                f"encode got audio at {sample_rate} Hz but this codec runs at {self.sample_rate} Hz; "
                "resample first (torchaudio.functional.resample)"
            )
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"expected wav of shape [B, 1, S], got {tuple(wav.shape)}")
        if not torch.isfinite(wav).all():
            raise ValueError("wav contains NaN or Inf samples; clean the audio before encoding")
        # Upstream pads on the right to whole code frames (4 * 512 samples); shorter than one frame -> one.
        frames = max(1, -(-wav.shape[-1] // self._hop))
        return F.pad(wav, (0, frames * self._hop - wav.shape[-1])).to(self.weight_dtype)

    def check_codes(self, codes: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the codebook and value of any out-of-range code in ``codes[B, K, T]``.

        Upstream clamps too-large codes to ``size - 1`` instead; here they are an error.
        """
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.num_codebooks:
            raise ValueError(
                f"expected codes [B, 1 <= K <= {self.num_codebooks}, T], got {tuple(codes.shape)}"
            )
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got {codes.dtype}")
        for k in range(codes.shape[1]):
            size = self._sizes[k]
            bad = (codes[:, k] < 0) | (codes[:, k] >= size)
            if bad.any():
                value = int(codes[:, k][bad][0])
                raise ValueError(f"codebook {k}: code {value} out of range [0, {size})")

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """Encode audio to codes.

        Args:
            wav: [B, 1, S] at ``self.sample_rate`` (padded on the right to whole frames).
            sample_rate: optional check; must equal ``self.sample_rate``.

        Returns:
            codes: [B, K, max(1, ceil(S / hop))] int64; row 0 is the semantic codebook.
        """
        x = self._prepare(wav, sample_rate)
        return self.quantizer.encode(self.encoder(x)).long()

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode codes to audio.

        Args:
            codes: [B, K', T] with 1 <= K' <= K (fewer codebooks give a coarser decode).

        Returns:
            wav: [B, 1, T * hop] float32 in [-1, 1].
        """
        self.check_codes(codes)
        return self.decoder(self.quantizer.decode(codes.long())).float()

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Resynthesis ``decode(encode(wav))``. Args: wav: [B, 1, S]. Returns: [B, 1, ceil(S / hop) * hop]."""
        return self.decode(self.encode(wav))

    def stream_decoder(self) -> PrefixStreamDecoder:
        """A ``PrefixStreamDecoder`` (re-decodes the whole prefix per push: exact, but O(T^2))."""
        return PrefixStreamDecoder(self)


class PrefixStreamDecoder:
    """Frame-by-frame decoding for ``UpstreamDACCodec`` by re-decoding every frame received so far.

    The decode path is causal, so ``decode(codes[..., :t])`` already holds the final audio of frames ``< t``;
    each ``push`` returns the newly completed part. The result equals ``decode`` of the whole sequence up to
    float rounding, without per-module state, at O(T^2) cost and for at most the post-quantizer transformer's
    ``block_size`` frames (4096, about 190 s released). Meant for previews, not real-time use.

    Args:
        codec: the ``UpstreamDACCodec``.
    """

    def __init__(self, codec: UpstreamDACCodec):
        self.codec = codec
        self.codes: torch.Tensor | None = None

    @property
    def frames(self) -> int:
        """Frames pushed since the last reset."""
        return 0 if self.codes is None else self.codes.shape[-1]

    @torch.no_grad()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """Args: codes: [B, K, t] of the next ``t >= 1`` frames (same B and K every push).

        Returns: wav [B, 1, t * hop].
        """
        self.codec.check_codes(codes)
        if self.codes is not None and self.codes.shape[:2] != codes.shape[:2]:
            raise ValueError(
                f"push got codes {tuple(codes.shape)} after {tuple(self.codes.shape)}: B and K differ"
            )
        start = self.frames * self.codec.hop_length
        self.codes = codes.long() if self.codes is None else torch.cat([self.codes, codes.long()], dim=-1)
        return self.codec.decode(self.codes)[..., start:]

    def reset(self) -> None:
        """Forget all frames (start a new utterance)."""
        self.codes = None


# ---------------------------------------------------------------------------------------------------------
# codec.pth I/O
# ---------------------------------------------------------------------------------------------------------
def _read_pth(path: Path) -> dict:
    """``torch.load`` with ``weights_only=True`` (memory-mapped when the file format allows it)."""
    if not path.is_file():
        raise FileNotFoundError(f"codec checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err) and "zip" not in str(err):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def _unwrap(obj, source: str) -> dict[str, torch.Tensor]:
    """``{key: tensor}`` from a raw state dict, a ``{"state_dict": ...}`` wrapper or ``generator.`` keys."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source}: expected a state dict (mapping), got {type(obj).__name__}")
    if isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if any(str(k).startswith("generator.") for k in obj):
        dropped = sum(not str(k).startswith("generator.") for k in obj)
        if dropped:
            log.info(
                "%s: keeping the generator.* entries, dropping %d others (e.g. discriminators)",
                source,
                dropped,
            )
        obj = {str(k)[len("generator.") :]: v for k, v in obj.items() if str(k).startswith("generator.")}
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{source}: entries that are not tensors: {not_tensors[:20]}")
    return dict(obj)


def _swap_weight_norm_spelling(key: str) -> str | None:
    """``x.weight_g`` <-> ``x.parametrizations.weight.original0`` (same for ``_v`` / ``original1``)."""
    for new, old in zip(_WN_NEW, _WN_OLD):
        if key.endswith(new):
            return key[: -len(new)] + old
        if key.endswith(old):
            return key[: -len(old)] + new
    return None


def _is_regenerable(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in REGENERABLE_BUFFERS


def _key_report(names: list[str]) -> str:
    head = ", ".join(names[:20])
    return f"{len(names)}: {head}{', ...' if len(names) > 20 else ''}"


def _match_state(
    state: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor], source: str
) -> list[str]:
    """Rename alternate weight-norm spellings in ``state`` in place and check keys and shapes.

    Returns:
        The regenerable buffer keys the file lacks.

    Raises:
        ValueError: listing unexpected keys, missing keys and shape mismatches.
    """
    renamed = 0
    for key in [k for k in state if k not in expected]:
        alt = _swap_weight_norm_spelling(key)
        if alt is not None and alt in expected and alt not in state:
            state[alt] = state.pop(key)
            renamed += 1
    if renamed:
        log.info(
            "%s: read %d weight-norm tensors stored under the other weight_g/original0 spelling",
            source,
            renamed,
        )
    unexpected = sorted(k for k in state if k not in expected)
    missing = sorted(k for k in expected if k not in state and not _is_regenerable(k))
    problems = []
    if unexpected:
        problems.append(f"unexpected keys {_key_report(unexpected)}")
    if missing:
        problems.append(f"missing keys {_key_report(missing)}")
    shapes = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if shapes:
        problems.append(f"shape mismatches {_key_report(shapes)}")
    if problems:
        raise ValueError(
            f"{source} does not match UpstreamDACCodec (pass config= with the checkpoint's sizes if it is "
            "not the released S2 Pro codec): " + "; ".join(problems)
        )
    return sorted(k for k in expected if k not in state)


def load_s2_codec(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    config: Mapping | None = None,
) -> UpstreamDACCodec:
    """Load a released ``codec.pth`` (fish-speech ``DAC`` state dict) into an ``UpstreamDACCodec``.

    Accepts a raw state dict, a ``{"state_dict": ...}`` wrapper and ``generator.``-prefixed keys (other
    entries are dropped). ``weight_g``/``weight_v`` and ``parametrizations.weight.original0/1`` spellings of
    the same weight-normed conv are both read. The buffers ``freqs_cis`` / ``causal_mask`` may be absent
    (recomputed). Tensors keep their stored dtype unless ``dtype`` is given.

    Args:
        path: the ``codec.pth``.
        device: where the returned model lives.
        dtype: cast the floating-point parameters to this dtype (the bf16 RoPE tables stay as stored).
        config: ``UpstreamDACCodec`` constructor args (default: the released sizes).

    Returns:
        The codec in eval mode.

    Raises:
        ValueError: unknown or missing keys, or shapes that do not fit ``config`` (listing them).
    """
    path = Path(path)
    state = _unwrap(_read_pth(path), str(path))
    with torch.device("meta"):
        codec = UpstreamDACCodec(**dict(config or {}))
    regenerate = _match_state(state, codec.state_dict(), str(path))
    if dtype is not None:
        buffers = {name for name, _ in codec.named_buffers()}
        state = {
            k: v.to(dtype) if v.is_floating_point() and k not in buffers else v for k, v in state.items()
        }
    codec.load_state_dict(state, strict=False, assign=True)
    if regenerate:
        log.info("%s: recomputing %d buffers the file omits (%s)", path, len(regenerate), regenerate[0])
        for module in codec.modules():
            if isinstance(module, WindowedTransformer) and module.freqs_cis.is_meta:
                module.fill_buffers()
    leftover = [name for name, t in [*codec.named_parameters(), *codec.named_buffers()] if t.is_meta]
    if leftover:  # pragma: no cover - guarded by _match_state
        raise RuntimeError(f"{path}: tensors left unloaded: {leftover[:20]}")
    n = sum(p.numel() for p in codec.parameters())
    log.info("loaded %s: %d tensors, %.1fM parameters, %s", path, len(state), n / 1e6, codec.weight_dtype)
    return codec.to(device).eval()


def save_s2_codec(codec: UpstreamDACCodec, path: str | Path) -> Path:
    """Write ``codec.state_dict()`` as a plain upstream-layout ``codec.pth`` (dtypes kept, CPU tensors).

    Args:
        codec: the codec.
        path: output file (parent folders created).

    Returns:
        The path.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in codec.state_dict().items()}, out)
    return out


def is_upstream_codec_file(path: str | Path) -> bool:
    """Whether ``path`` is a torch checkpoint holding an upstream codec state dict (after unwrapping).

    Reads the pickle (memory-mapped for zip checkpoints), never raises for unreadable files.
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        state = _unwrap(_read_pth(path), str(path))
    except Exception:  # noqa: BLE001 - any unreadable or foreign file is simply "not a codec.pth"
        return False
    return all(k in state for k in _SIGNATURE_KEYS) and any(k.startswith("encoder.block.0.") for k in state)


def convert(pth: str | Path, out_dir: str | Path, fp16: bool = False, config: Mapping | None = None) -> Path:
    """Load ``pth`` and write it as an s2train codec folder (``save_codec``) for ``load_codec`` consumers.

    Args:
        pth: the ``codec.pth``.
        out_dir: output folder (``config.json`` + ``model.safetensors``).
        fp16: store float16 weights (half the size, rounds fp32 weights; default float32, exact for fp32 and
            bf16 checkpoints).
        config: constructor args when the checkpoint is not the released size.

    Returns:
        The output folder.
    """
    codec = load_s2_codec(pth, config=config)
    return save_codec(codec, out_dir, fp16=fp16)


def _parse_config(text: str | None) -> dict | None:
    """``--config`` value: inline JSON, or the path of a JSON file."""
    if text is None:
        return None
    source = Path(text).read_text() if not text.lstrip().startswith("{") else text
    try:
        config = json.loads(source)
    except json.JSONDecodeError as err:
        raise ValueError(f"--config {text!r}: not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise ValueError(f"--config {text!r}: expected a JSON object of UpstreamDACCodec arguments")
    return config


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m s2train.codec.upstream convert <codec.pth> <out_dir>`` (or ``info <codec.pth>``)."""
    parser = argparse.ArgumentParser(
        prog="python -m s2train.codec.upstream", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="write an s2train codec folder (config.json + model.safetensors)")
    conv.add_argument("pth", help="the released codec.pth")
    conv.add_argument("out_dir", help="output folder")
    conv.add_argument("--fp16", action="store_true", help="store float16 weights (not exact)")
    info = sub.add_parser("info", help="load a codec.pth and report its size")
    info.add_argument("pth")
    for p in (conv, info):
        p.add_argument("--config", help="constructor args as JSON or a .json file (default: released sizes)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = _parse_config(args.config)
    if args.command == "convert":
        out = convert(args.pth, args.out_dir, fp16=args.fp16, config=config)
        log.info("wrote %s (load with s2train.codec.load_codec)", out)
    else:
        codec = load_s2_codec(args.pth, config=config)
        n = sum(p.numel() for p in codec.parameters())
        log.info(
            "%s: %d keys, %d parameters, %s, %d Hz, hop %d, codebooks %s",
            args.pth, len(codec.state_dict()), n, codec.weight_dtype, codec.sample_rate, codec.hop_length,
            codec.codebook_sizes,
        )  # fmt: skip


if __name__ == "__main__":
    main()
