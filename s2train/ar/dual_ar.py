"""The Dual-AR model: slow AR over time + fast AR over codebooks, with the one shared embedding function."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from s2train.ar.config import DualARConfig
from s2train.ar.fast import FastAR
from s2train.ar.layers import KVLayerCache, RotaryTable, causal_mask
from s2train.ar.slow import SlowAR


@dataclass
class DualAROutput:
    """Slow-AR outputs.

    Attributes:
        logits: [B, L, V] next-token logits (None when `compute_logits=False`).
        hidden: [B, L, D] final-normed hidden states (the fast AR's input).
    """

    logits: Tensor | None
    hidden: Tensor


def document_positions(document_ids: Tensor) -> Tensor:
    """Rotary positions that restart at 0 at each packed document.

    Args:
        document_ids: [B, L] (documents contiguous).
    Returns:
        [B, L] long positions.
    """
    b, n = document_ids.shape
    idx = torch.arange(n, device=document_ids.device).expand(b, n)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    first = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
    return idx - first


class DualAR(nn.Module):
    """Slow AR + fast AR (S2-style). Build with `DualAR(cfg)` where cfg is a `DualARConfig` or a dict."""

    def __init__(self, cfg: DualARConfig | dict[str, Any]) -> None:
        super().__init__()
        if not isinstance(cfg, DualARConfig):
            cfg = DualARConfig.from_dict(cfg)
        self.config = cfg.validate()
        self.slow = SlowAR(cfg)
        self.fast = FastAR(cfg)
        offsets = torch.arange(cfg.num_codebooks) * cfg.codebook_size
        self.register_buffer("codebook_offsets", offsets, persistent=False)
        self.embed_scale = 1.0 / math.sqrt(cfg.num_codebooks + 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random init (std 0.02 normals, unit norms) and recomputed rotary tables / offsets."""
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
            elif isinstance(m, RotaryTable):
                m.reset()
            elif hasattr(m, "weight") and m.__class__.__name__ == "RMSNorm":
                nn.init.ones_(m.weight)
        cfg = self.config
        self.codebook_offsets = (
            torch.arange(cfg.num_codebooks, device=self.codebook_offsets.device) * cfg.codebook_size
        )

    def embed(self, tokens: Tensor, codes: Tensor, audio_mask: Tensor) -> Tensor:
        """The one input-embedding function, used by training and inference alike.

        `x = (E_tok[tok] + sum_k E_k[q_k]) / sqrt(K + 1)` at audio positions, `E_tok[tok]` elsewhere. In
        training mode with `config.audio_input_dropout = p > 0`, each audio position's `x` is zeroed with
        probability p (the frame's content is hidden from the positions after it; targets are unchanged).

        Args:
            tokens: [B, L] token ids (semantic_start + q0 at audio positions).
            codes: [B, K, L] codes (ignored where `audio_mask` is False; any value allowed there).
            audio_mask: [B, L] bool.
        Returns:
            x: [B, L, D].
        """
        k = self.config.num_codebooks
        if codes.dim() != 3 or codes.shape[1] != k or codes.shape[2] != tokens.shape[1]:
            raise ValueError(
                f"DualAR.embed: codes shape {tuple(codes.shape)} != [B, {k}, L={tokens.shape[1]}]"
            )
        x = self.slow.tok_emb(tokens)
        mask = audio_mask.bool()
        idx = codes.masked_fill(~mask[:, None, :], 0) + self.codebook_offsets[None, :, None]
        table = self.slow.codebook_emb
        if torch.is_grad_enabled():
            # A loop over K keeps the autograd peak at [B, L, D] instead of [B, K, L, D].
            cb = table(idx[:, 0])
            for i in range(1, k):
                cb = cb + table(idx[:, i])
        else:
            cb = table(idx).sum(dim=1)
        fused = (x + cb) * self.embed_scale
        p = self.config.audio_input_dropout
        if p > 0 and self.training:
            keep = torch.rand(mask.shape, device=mask.device) >= p
            fused = fused * keep[..., None].to(fused.dtype)
        return torch.where(mask[..., None], fused, x)

    def forward(
        self,
        tokens: Tensor,
        codes: Tensor,
        audio_mask: Tensor,
        attn_mask: Tensor | None = None,
        document_ids: Tensor | None = None,
        positions: Tensor | None = None,
        kv_caches: Sequence[KVLayerCache] | None = None,
        cache_slots: Tensor | None = None,
        compute_logits: bool = True,
        attn_bias: Tensor | None = None,
        bias_layers: Sequence[int] | None = None,
    ) -> DualAROutput:
        """Slow-AR forward.

        Args:
            tokens: [B, L]; codes: [B, K, L]; audio_mask: [B, L] bool.
            attn_mask: optional bool mask, True = attend: [B, L, L] or [B, 1, L, S]. Default causal.
            document_ids: optional [B, L] packed-document ids -> block-causal mask, positions restart per doc.
            positions: optional [L] or [B, L] rotary positions (inference: per-row positions).
            kv_caches / cache_slots: inference only (see `s2train.inference.kv_cache`).
            compute_logits: skip the output head (inference computes constrained logits itself).
            attn_bias / bias_layers: training-only additive attention prior for some slow layers
                (`s2train.ar.prior.attention_prior_bias`; see `SlowAR.forward`).
        Returns:
            DualAROutput(logits [B, L, V] or None, hidden [B, L, D]).
        """
        b, n = tokens.shape
        if kv_caches is None and n > self.config.max_seq_len:
            raise ValueError(f"DualAR.forward: sequence length {n} > max_seq_len={self.config.max_seq_len}")
        x = self.embed(tokens, codes, audio_mask)
        if positions is None:
            if document_ids is not None:
                positions = document_positions(document_ids)
            else:
                positions = torch.arange(n, device=tokens.device)
        mask = attn_mask
        if mask is None and document_ids is not None:
            mask = causal_mask(document_ids, n, tokens.device)
        elif mask is not None and mask.dim() == 3:
            mask = mask[:, None]
        hidden = self.slow(x, positions, mask, kv_caches, cache_slots, attn_bias, bias_layers)
        logits = self.slow.logits(hidden) if compute_logits else None
        return DualAROutput(logits=logits, hidden=hidden)

    def fast_inputs(self, hidden: Tensor, codes: Tensor) -> Tensor:
        """Fast-AR input sequence `[proj(h), emb(q_0), ..., emb(q_{J-2})]`.

        Args:
            hidden: [N, D]; codes: [N, J-1] (J-1 <= K-1 codes to embed).
        Returns:
            [N, J, fast_dim].
        """
        h = self.fast.input_proj(hidden)[:, None]
        return torch.cat([h, self.fast.code_emb(codes).to(h.dtype)], dim=1)

    def fast_forward(self, hidden: Tensor, codes: Tensor) -> Tensor:
        """Teacher-forced fast AR.

        Args:
            hidden: [N, D] slow hidden states (final-normed) at the position before each frame.
            codes: [N, K] the frame's codes.
        Returns:
            logits: [N, K, codebook_size]; entry k predicts codes[:, k].
        """
        k = self.config.num_codebooks
        if codes.dim() != 2 or codes.shape[1] != k or hidden.shape[0] != codes.shape[0]:
            raise ValueError(
                f"DualAR.fast_forward: hidden {tuple(hidden.shape)} / codes {tuple(codes.shape)} "
                f"must be [N, D] / [N, {k}]"
            )
        x = self.fast_inputs(hidden, codes[:, : k - 1])
        return self.fast(x, torch.arange(k, device=hidden.device))

    def num_params(self) -> int:
        """Number of parameters (tied tables counted once)."""
        return sum(p.numel() for p in self.parameters())
