"""Causal sliding-window transformer (RoPE, LayerScale) that runs on ``[B, C, T]`` codec latents.

Each position attends to itself and the previous ``window - 1`` positions. In streaming mode every attention
layer keeps the rotated keys/values of the last ``window - 1`` positions and a position counter, so chunked
calls give the same result as one full call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from s2train.codec.layers import StreamingModule


def rope_rotate(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``x`` by position-dependent angles.

    Args:
        x: [B, H, T, Dh] with even Dh.
        positions: [T] integer positions.
        base: RoPE frequency base.

    Returns:
        [B, H, T, Dh] rotated tensor.
    """
    dh = x.shape[-1]
    inv = base ** (-torch.arange(0, dh, 2, device=x.device, dtype=torch.float32) / dh)
    ang = positions.to(torch.float32)[:, None] * inv[None, :]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.flatten(-2)


class SlidingWindowAttention(StreamingModule):
    """Multi-head causal self-attention limited to a window of past positions.

    Args:
        dim: model width.
        num_heads: attention heads (``dim % num_heads == 0``; head dim even).
        window: positions visible to each query, itself included.
    """

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        if dim % num_heads or (dim // num_heads) % 2:
            raise ValueError(f"dim {dim} must split into {num_heads} heads of even size")
        self.num_heads, self.window = num_heads, window
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, T, D]. Returns: [B, T, D]."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        state = self._get_state()
        offset = 0 if state is None else int(state["pos"])
        pos = torch.arange(offset, offset + t, device=x.device)
        q, k = rope_rotate(q, pos), rope_rotate(k, pos)
        past = 0
        if self._stream is not None:
            if state is not None:
                k = torch.cat([state["k"], k], dim=2)
                v = torch.cat([state["v"], v], dim=2)
                past = state["k"].shape[2]
            keep = self.window - 1
            self._set_state(
                {
                    "k": k[:, :, k.shape[2] - min(keep, k.shape[2]) :],
                    "v": v[:, :, v.shape[2] - min(keep, v.shape[2]) :],
                    "pos": offset + t,
                }
            )
        qi = torch.arange(t, device=x.device)[:, None] + past
        kj = torch.arange(k.shape[2], device=x.device)[None, :]
        mask = (kj <= qi) & (qi - kj < self.window)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class TransformerLayer(nn.Module):
    """Pre-norm block: attention and GELU MLP, each scaled by a learned LayerScale vector."""

    def __init__(self, dim: int, num_heads: int, window: int, ff_mult: int = 4, layer_scale: float = 1e-2):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SlidingWindowAttention(dim, num_heads, window)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))
        self.scale1 = nn.Parameter(torch.full((dim,), layer_scale))
        self.scale2 = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale1 * self.attn(self.norm1(x))
        return x + self.scale2 * self.ff(self.norm2(x))


class CausalTransformer(nn.Module):
    """Stack of sliding-window layers on a ``[B, C, T]`` latent (channels first, like the convs).

    Args:
        dim: latent channels C.
        num_layers: number of layers.
        num_heads: attention heads.
        window: attention window in frames.
        ff_mult: MLP expansion.
        layer_scale: initial LayerScale value.
    """

    def __init__(
        self,
        dim: int,
        num_layers: int,
        num_heads: int = 8,
        window: int = 128,
        ff_mult: int = 4,
        layer_scale: float = 1e-2,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            [TransformerLayer(dim, num_heads, window, ff_mult, layer_scale) for _ in range(num_layers)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: [B, C, T]. Returns: [B, C, T]."""
        h = x.transpose(1, 2)
        for layer in self.layers:
            h = layer(h)
        return h.transpose(1, 2)
