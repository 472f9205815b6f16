"""Named model sizes (mirrors `configs/model/*.yaml`, usable without Hydra) and parameter counting."""

from __future__ import annotations

from typing import Any

import torch

from s2train.ar.config import DualARConfig

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        vocab_size=None, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, ffn_dim=192,
        max_seq_len=2048, num_codebooks=4, codebook_size=64, semantic_start=None, num_semantic=None,
        fast_dim=64, fast_n_layers=1, fast_n_heads=4, fast_n_kv_heads=2, fast_head_dim=16, fast_ffn_dim=192,
    ),
    "demo": dict(
        vocab_size=None, dim=256, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=64, ffn_dim=768,
        max_seq_len=4096, num_codebooks=8, codebook_size=1024, semantic_start=None, num_semantic=None,
        fast_dim=256, fast_n_layers=2, fast_n_heads=4, fast_n_kv_heads=2, fast_head_dim=64, fast_ffn_dim=768,
    ),
    "s2pro": dict(
        vocab_size=155776, dim=2560, n_layers=36, n_heads=32, n_kv_heads=8, head_dim=128, ffn_dim=9728,
        max_seq_len=32768, num_codebooks=10, codebook_size=4096,
        codebook_sizes=[4096] + [1024] * 9, semantic_start=151678, num_semantic=4096,
        fast_dim=2560, fast_n_layers=4, fast_n_heads=32, fast_n_kv_heads=8, fast_head_dim=128, fast_ffn_dim=9728,
        fast_qk_norm=False,  # as released: QK-norm in the slow AR only
    ),
}  # fmt: skip


def preset(name: str, **overrides: Any) -> DualARConfig:
    """A named size with overrides (e.g. vocab_size/semantic_start/num_semantic for tiny/demo)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model size {name!r}; choose from {sorted(PRESETS)}")
    return DualARConfig.from_dict(PRESETS[name], **overrides)


def count_params(cfg: DualARConfig) -> dict[str, int]:
    """Parameter counts by part, built on the meta device (no memory).

    Returns:
        {"slow": ..., "fast": ..., "codebook_emb": ..., "total": ...} (slow excludes the codebook table).
    """
    from s2train.ar.dual_ar import DualAR

    with torch.device("meta"):
        model = DualAR(cfg)
    cb = model.slow.codebook_emb.weight.numel()
    slow = sum(p.numel() for p in model.slow.parameters()) - cb
    fast = sum(p.numel() for p in model.fast.parameters())
    return {"slow": slow, "fast": fast, "codebook_emb": cb, "total": slow + fast + cb}


def weight_bytes_per_frame(cfg: DualARConfig, bytes_per_param: int = 2) -> int:
    """Weight bytes a batch-1 decode reads per frame: slow blocks + constrained head rows, fast AR x (K-1).

    Used for memory-bandwidth utilization in the benchmark.
    """
    counts = count_params(cfg)
    slow_blocks = counts["slow"] - cfg.vocab_size * cfg.dim * (1 if cfg.tie_embeddings else 2)
    head_rows = (cfg.num_semantic + 1) * cfg.dim
    fast_once = counts["fast"] - cfg.codebook_size * cfg.fast_dim  # embedding rows are gathered, not streamed
    slow_emb_rows = (1 + cfg.num_codebooks) * cfg.dim
    return bytes_per_param * (slow_blocks + head_rows + slow_emb_rows + fast_once * (cfg.num_codebooks - 1))
