"""Qwen3-style transformer building blocks shared by the slow and the fast AR.

RMSNorm, interleaved-pair rotary embeddings, grouped-query attention with per-head QK-norm and an optional
static KV cache, SwiGLU MLP and a pre-norm block. Pure PyTorch.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain, computed in fp32 for stability."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            return F.rms_norm(x.float(), self.weight.shape, self.weight.float(), self.eps).to(x.dtype)
        return F.rms_norm(x, self.weight.shape, self.weight.to(x.dtype), self.eps)


class RotaryTable(nn.Module):
    """Precomputed cos/sin tables for rotary embeddings over adjacent (interleaved) pairs.

    Args:
        head_dim: per-head size (even).
        max_len: number of positions.
        base: RoPE base (1e6 for S2).
        bf16_tables: round the tables to bf16 (as S2 trained) even when the model runs in fp32.
        fp32_angles: compute frequencies and angles in fp32 as upstream fish-speech does (the tables released
            S2 Pro weights were trained with); False computes them in fp64, which after bf16 rounding differs
            by one bf16 step in ~2% of a long table's entries.
    """

    def __init__(
        self, head_dim: int, max_len: int, base: float, bf16_tables: bool = True, fp32_angles: bool = False
    ) -> None:
        super().__init__()
        self.head_dim, self.max_len, self.base, self.bf16_tables = head_dim, max_len, base, bf16_tables
        self.fp32_angles = fp32_angles
        # Built on the default device, so `with torch.device("cuda"|"meta"):` construction keeps it with the
        # parameters (after `to_empty`, call `reset()` to recompute it).
        cos, sin = self._build(torch.get_default_device())
        # Non-persistent: derived from the config, never stored in checkpoints. Real (not complex) storage so
        # `model.to(bf16)` keeps it intact: the values are bf16-rounded already, hence exact in bf16.
        self.register_buffer("cos_sin", torch.stack((cos, sin), dim=-1), persistent=False)

    def _build(self, device: torch.device) -> tuple[Tensor, Tensor]:
        dt = torch.float32 if self.fp32_angles else torch.float64
        inv = 1.0 / (
            self.base ** (torch.arange(0, self.head_dim, 2, dtype=dt, device=device) / self.head_dim)
        )
        ang = torch.arange(self.max_len, dtype=dt, device=device)[:, None] * inv[None, :]
        cos, sin = ang.cos().float(), ang.sin().float()
        if self.bf16_tables:
            cos, sin = cos.bfloat16().float(), sin.bfloat16().float()
        return cos, sin

    def reset(self, device: torch.device | str | None = None) -> None:
        """Recompute the tables in place (after `to_empty`, or after changing `fp32_angles`), on `device`
        (default: where they are); a meta table materialized elsewhere comes out in fp32."""
        old = self.cos_sin
        device = old.device if device is None else torch.device(device)
        cos, sin = self._build(device)
        dtype = torch.float32 if old.is_meta and device.type != "meta" else old.dtype
        self.cos_sin = torch.stack((cos, sin), dim=-1).to(dtype)

    @property
    def cos(self) -> Tensor:
        return self.cos_sin[..., 0]

    @property
    def sin(self) -> Tensor:
        return self.cos_sin[..., 1]

    def forward(self, positions: Tensor) -> Tensor:
        """(cos, sin) at `positions` ([L] or [B, L]) -> fp32 [L, hd/2, 2] or [B, L, hd/2, 2]."""
        return self.cos_sin[positions].float()


def apply_rope(x: Tensor, rot: Tensor) -> Tensor:
    """Rotate adjacent pairs (x[2i], x[2i+1]) of the last dim, computed in fp32.

    Args:
        x: [B, L, H, hd] (heads after positions).
        rot: (cos, sin) from `RotaryTable`, [L, hd/2, 2] (shared positions) or [B, L, hd/2, 2] (per row).
    """
    rot = rot.unsqueeze(-3)  # broadcast over heads
    xf = x.float().unflatten(-1, (-1, 2))
    if not torch.compiler.is_compiling():
        # Eager: a pair is exactly a complex number, so one complex multiply does the rotation in few kernels.
        out = torch.view_as_real(torch.view_as_complex(xf.contiguous()) * torch.view_as_complex(rot))
    else:
        # Compiled: inductor fuses real arithmetic but not complex ops. Same formulas as the complex product.
        x0, x1, cos, sin = xf[..., 0], xf[..., 1], rot[..., 0], rot[..., 1]
        out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)


class KVLayerCache(Protocol):
    """What attention needs from a cache: write new keys/values at slots, return the whole buffers."""

    def update(self, slots: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]: ...


class Attention(nn.Module):
    """Grouped-query self-attention with a fused q|k|v projection and per-head QK RMSNorm before RoPE
    (``qk_norm=False``: no q/k norm, as in the released S2 Pro fast AR)."""

    def __init__(
        self,
        dim: int,
        n_heads: int,
        n_kv_heads: int,
        head_dim: int,
        eps: float,
        dropout: float,
        qk_norm: bool = True,
    ) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.qkv = nn.Linear(dim, (n_heads + 2 * n_kv_heads) * head_dim, bias=False)
        self.o = nn.Linear(n_heads * head_dim, dim, bias=False)
        self.q_norm: nn.Module = RMSNorm(head_dim, eps) if qk_norm else nn.Identity()
        self.k_norm: nn.Module = RMSNorm(head_dim, eps) if qk_norm else nn.Identity()
        self.dropout = dropout
        # Set by training code that needs this layer's attention pattern (the alignment-prior loss): the
        # forward then keeps its rotated (q [B, H, L, hd], k [B, Hkv, L, hd]) in `captured`.
        self.capture = False
        self.captured: tuple[Tensor, Tensor] | None = None

    def forward(
        self,
        x: Tensor,
        rot: Tensor,
        mask: Tensor | None = None,
        cache: KVLayerCache | None = None,
        slots: Tensor | None = None,
    ) -> Tensor:
        """Attend.

        Args:
            x: [B, L, D].
            rot: rotary (cos, sin) at the query positions ([L, hd/2, 2] or [B, L, hd/2, 2]).
            mask: bool [B or 1, 1, L, S], True = may attend; or an additive float mask [B or 1, H or 1, L, S]
                (-inf = may not attend; training-only attention priors); None = plain causal over the L new tokens.
            cache: static KV cache of this layer; new keys are written at `slots` ([L]) before attending
                over the whole buffer (S = cache length), so `mask` is required with a cache.
        Returns:
            [B, L, D].
        """
        b, n, _ = x.shape
        h, hkv = self.n_heads, self.n_kv_heads
        q, k, v = self.qkv(x).view(b, n, h + 2 * hkv, self.head_dim).split([h, hkv, hkv], dim=2)
        # One rotary call for q and k together (fewer kernels per decode step).
        qk = apply_rope(torch.cat([self.q_norm(q), self.k_norm(k)], dim=2), rot).transpose(1, 2)
        q, k = qk.split([h, hkv], dim=1)
        v = v.transpose(1, 2)
        if self.capture:
            self.captured = (q, k)
        if cache is not None:
            if mask is None or slots is None:
                raise ValueError("Attention: a KV cache needs both `slots` and an explicit `mask`")
            k, v = cache.update(slots, k, v)
        if mask is not None and mask.is_floating_point():
            mask = mask.to(q.dtype)  # SDPA wants an additive mask in the query's dtype (bf16 under autocast)
        drop = self.dropout if self.training else 0.0
        if hkv != h and mask is not None and x.is_cuda:
            # CUDA kernels that take a mask (memory-efficient) lack GQA support: fold each query group into the
            # query length rather than expanding K/V (which copies the whole cache every layer and frame).
            y = folded_gqa_attention(q, k, v, mask, drop)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=drop, is_causal=mask is None, enable_gqa=hkv != h
            )
        return self.o(y.transpose(1, 2).reshape(b, n, self.n_heads * self.head_dim))


def folded_gqa_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, dropout_p: float = 0.0) -> Tensor:
    """Grouped-query attention with a mask, as plain multi-head SDPA over `Hkv` heads.

    Query head `j * G + g` uses K/V head `j` (G = H / Hkv, the `repeat_interleave` layout), so the G query
    heads of a group are stacked along the query length: K/V are read once, never expanded.

    Args:
        q: [B, H, L, hd]; k, v: [B, Hkv, S, hd]; mask: bool (True = attend) or additive float,
            [B or 1, 1 or H, L, S].
    Returns:
        [B, H, L, hd].
    """
    b, h, n, hd = q.shape
    hkv, s = k.shape[1], k.shape[2]
    g = h // hkv
    qf = q.reshape(b, hkv, g * n, hd)
    mb = mask.shape[0]
    if mask.shape[1] == h:
        mf = mask.reshape(mb, hkv, g * n, s)
    else:
        mf = mask.expand(mb, 1, n, s)[:, :, None].expand(mb, 1, g, n, s).reshape(mb, 1, g * n, s)
    y = F.scaled_dot_product_attention(qf, k, v, attn_mask=mf, dropout_p=dropout_p)
    return y.view(b, h, n, hd)


class SwiGLU(nn.Module):
    """Gated MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(
        self,
        dim: int,
        n_heads: int,
        n_kv_heads: int,
        head_dim: int,
        ffn_dim: int,
        eps: float,
        dropout: float,
        qk_norm: bool = True,
    ) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(dim, eps)
        self.attn = Attention(dim, n_heads, n_kv_heads, head_dim, eps, dropout, qk_norm)
        self.mlp_norm = RMSNorm(dim, eps)
        self.mlp = SwiGLU(dim, ffn_dim)
        self.dropout = dropout

    def forward(
        self,
        x: Tensor,
        rot: Tensor,
        mask: Tensor | None = None,
        cache: KVLayerCache | None = None,
        slots: Tensor | None = None,
    ) -> Tensor:
        h = self.attn(self.attn_norm(x), rot, mask, cache, slots)
        if self.dropout and self.training:
            h = F.dropout(h, self.dropout, training=True)
        x = x + h
        h = self.mlp(self.mlp_norm(x))
        if self.dropout and self.training:
            h = F.dropout(h, self.dropout, training=True)
        return x + h


def causal_mask(document_ids: Tensor | None, length: int, device: torch.device) -> Tensor | None:
    """Boolean attention mask for training forwards.

    Args:
        document_ids: optional [B, L] ids of packed documents; attention stays within a document.
        length: L.
    Returns:
        None for plain causal attention (SDPA's fast path), else bool [B, 1, L, L] block-causal mask.
    """
    if document_ids is None:
        return None
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    same = document_ids[:, :, None] == document_ids[:, None, :]
    return (same & causal)[:, None]
