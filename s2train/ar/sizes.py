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
        rope_fp32_angles=True,  # upstream computes RoPE angles in fp32
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


def train_step_flops(cfg: DualARConfig, seq_lens: list[int], frames: int) -> dict[str, float]:
    """Model FLOPs of one training step (forward + backward), for MFU.

    Matmul FLOPs are 6 x (matmul weights) x (positions) (2 forward, 4 backward); attention adds
    12 x layers x heads x head_dim x L per position of a sequence of length L (QK^T and AV, causal masking not
    discounted, the PaLM convention; padding not counted). The slow AR runs over the sequences `seq_lens`
    (its output head at every position); the fast AR over `frames` frames x K positions. Embedding lookups
    are not FLOPs.

    Returns:
        {"slow": ..., "fast": ..., "total": ...} FLOPs.
    """

    def block(dim: int, heads: int, kv: int, hd: int, ffn: int) -> int:
        return dim * (heads + 2 * kv) * hd + heads * hd * dim + 3 * dim * ffn

    slow_w = cfg.n_layers * block(cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim)
    slow_w += cfg.dim * cfg.vocab_size  # output head (a matmul also when tied)
    tokens, squares = sum(seq_lens), sum(n * n for n in seq_lens)
    slow = 6 * slow_w * tokens + 12 * cfg.n_layers * cfg.n_heads * cfg.head_dim * squares
    k = cfg.num_codebooks
    fast_w = (
        cfg.fast_n_layers
        * block(cfg.fast_dim, cfg.fast_n_heads, cfg.fast_n_kv_heads, cfg.fast_head_dim, cfg.fast_ffn_dim)
        + cfg.fast_dim * cfg.codebook_size
    )
    if cfg.fast_dim != cfg.dim:
        fast_w += cfg.dim * cfg.fast_dim
    positions = frames * k
    fast = (
        6 * fast_w * positions + 12 * cfg.fast_n_layers * cfg.fast_n_heads * cfg.fast_head_dim * k * positions
    )
    return {"slow": float(slow), "fast": float(fast), "total": float(slow + fast)}


# Dense bf16 tensor-core peaks (TFLOP/s) for MFU, by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1, "4090": 165.2}
