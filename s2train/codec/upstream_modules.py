"""Building blocks of the released S2 Pro codec (fish-speech's modified DAC), with upstream key names.

Causal (weight-normed) convs, Snake, residual units, the window-limited RoPE transformer, the encoder and
decoder stages, ConvNeXt, and the semantic + residual factorized VQ. ``s2train.codec.upstream`` assembles
them into ``UpstreamDACCodec`` and reads/writes ``codec.pth``. Pure torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


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
