"""The slow (time-axis) AR: a Qwen3-style decoder over text and semantic tokens."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from s2train.ar.config import DualARConfig
from s2train.ar.layers import Block, KVLayerCache, RMSNorm, RotaryTable


class SlowAR(nn.Module):
    """Token + codebook embedding tables, decoder blocks, final norm and (optionally tied) output head.

    The input embedding itself is computed by `DualAR.embed`; this module runs the blocks on it.
    """

    def __init__(self, cfg: DualARConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        # One table for all codebooks; codebook k's rows start at k * codebook_size (the released layout).
        self.codebook_emb = nn.Embedding(cfg.num_codebooks * cfg.codebook_size, cfg.dim)
        self.layers = nn.ModuleList(
            Block(
                cfg.dim,
                cfg.n_heads,
                cfg.n_kv_heads,
                cfg.head_dim,
                cfg.ffn_dim,
                cfg.norm_eps,
                cfg.dropout,
                cfg.qk_norm,
            )  # fmt: skip
            for _ in range(cfg.n_layers)
        )
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = None if cfg.tie_embeddings else nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.rope = RotaryTable(
            cfg.head_dim, cfg.max_seq_len, cfg.rope_base, cfg.rope_bf16_tables, cfg.rope_fp32_angles
        )

    @property
    def output_weight(self) -> Tensor:
        """[V, D] output projection (the token embedding when tied)."""
        return self.tok_emb.weight if self.output is None else self.output.weight

    def forward(
        self,
        x: Tensor,
        positions: Tensor,
        mask: Tensor | None = None,
        caches: Sequence[KVLayerCache] | None = None,
        slots: Tensor | None = None,
        attn_bias: Tensor | None = None,
        bias_layers: Sequence[int] | None = None,
    ) -> Tensor:
        """Run the decoder.

        Args:
            x: [B, L, D] input embeddings (from `DualAR.embed`).
            positions: [L] or [B, L] rotary positions.
            mask: bool [B or 1, 1, L, S] (True = attend) or None for plain causal attention.
            caches: one KV cache per layer (inference), written at `slots` ([L]).
            attn_bias: optional additive attention-logit bias [B, H, L, L] (training only, no cache) for the
                layers in `bias_layers` (None = every layer), on top of `mask` (or the causal mask).
        Returns:
            hidden: [B, L, D], final-normed.
        """
        rot = self.rope(positions)
        biased = None
        if attn_bias is not None:
            if caches is not None:
                raise ValueError(
                    "SlowAR: attn_bias is a training-only prior; it cannot be used with a KV cache"
                )
            n = x.shape[1]
            allowed = mask if mask is not None else torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
            biased = attn_bias.float().masked_fill(~allowed, float("-inf"))
        chosen = range(len(self.layers)) if bias_layers is None else set(bias_layers)
        for i, layer in enumerate(self.layers):
            m = biased if biased is not None and i in chosen else mask
            x = layer(x, rot, m, None if caches is None else caches[i], slots)
        return self.norm(x)

    def logits(self, hidden: Tensor, token_ids: Tensor | None = None) -> Tensor:
        """Output logits; with `token_ids` ([A]) only those columns are computed (constrained decoding).

        Args:
            hidden: [..., D].
        Returns:
            [..., V] or [..., A].
        """
        w = self.output_weight
        if token_ids is not None:
            w = w.index_select(0, token_ids)
        return hidden @ w.t().to(hidden.dtype)

    def range_logits(self, hidden: Tensor, start: int, count: int, extra_ids: Tensor) -> Tensor:
        """`logits(hidden, cat([arange(start, start + count), extra_ids]))` without copying the range's rows.

        The decode loop's constrained vocabulary is the semantic range plus `<|im_end|>`: reading the range as a
        view of the head (not `index_select`, which copied ~1 MB per frame at the demo size) cut the eager CPU
        decode time per frame by ~15%.
        """
        w = self.output_weight
        main = hidden @ w.narrow(0, start, count).t().to(hidden.dtype)
        return torch.cat([main, hidden @ w.index_select(0, extra_ids).t().to(hidden.dtype)], dim=-1)
