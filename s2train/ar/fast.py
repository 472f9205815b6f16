"""The fast (codebook-axis) AR: a short depth transformer that emits the K codes of one frame."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from s2train.ar.config import DualARConfig
from s2train.ar.layers import Block, KVLayerCache, RMSNorm, RotaryTable


class FastAR(nn.Module):
    """Depth transformer with its own weights, final norm, output head and short rotary table.

    Sequence per frame: position 0 = projected slow hidden state, position j >= 1 = embedding of q_{j-1};
    the output at position j predicts q_j. One vocabulary (`codebook_size`) is shared by all codebooks; the
    codebook identity is given only by the position.
    """

    def __init__(self, cfg: DualARConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_proj = (
            nn.Identity()
            if cfg.fast_dim == cfg.dim
            else nn.Linear(cfg.dim, cfg.fast_dim, bias=cfg.fast_input_bias)
        )
        self.code_emb = nn.Embedding(cfg.codebook_size, cfg.fast_dim)
        self.layers = nn.ModuleList(
            Block(
                cfg.fast_dim,
                cfg.fast_n_heads,
                cfg.fast_n_kv_heads,
                cfg.fast_head_dim,
                cfg.fast_ffn_dim,
                cfg.norm_eps,
                cfg.dropout,
                cfg.fast_qk_norm,
            )  # fmt: skip
            for _ in range(cfg.fast_n_layers)
        )
        self.norm = RMSNorm(cfg.fast_dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.fast_dim, cfg.codebook_size, bias=False)
        self.rope = RotaryTable(
            cfg.fast_head_dim,
            cfg.num_codebooks + 1,
            cfg.rope_base,
            cfg.rope_bf16_tables,
            cfg.rope_fp32_angles,
        )

    def forward(
        self,
        x: Tensor,
        positions: Tensor,
        mask: Tensor | None = None,
        caches: Sequence[KVLayerCache] | None = None,
        slots: Tensor | None = None,
    ) -> Tensor:
        """Run the depth transformer on already-built inputs.

        Args:
            x: [N, J, fast_dim] (position 0 = projected hidden, then code embeddings).
            positions: [J] positions in 0..K.
            mask, caches, slots: as in `SlowAR.forward` (inference uses a K+1-slot cache).
        Returns:
            logits: [N, J, codebook_size].
        """
        rot = self.rope(positions)
        for i, layer in enumerate(self.layers):
            x = layer(x, rot, mask, None if caches is None else caches[i], slots)
        return self.output(self.norm(x))
