"""Model-FLOPs count used for MFU (scripts/bench_train.py)."""

from s2train.ar import preset
from s2train.ar.sizes import train_step_flops


def test_train_step_flops_by_hand():
    cfg = preset("tiny", vocab_size=300, semantic_start=100, num_semantic=64, codebook_size=64)
    block = 64 * (4 + 2 * 2) * 16 + 4 * 16 * 64 + 3 * 64 * 192  # qkv + o + SwiGLU (tiny sizes)
    assert (cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim) == (64, 4, 2, 16, 192)
    slow_w = cfg.n_layers * block + 64 * 300
    fast_block = cfg.fast_dim * (cfg.fast_n_heads + 2 * cfg.fast_n_kv_heads) * cfg.fast_head_dim
    fast_block += cfg.fast_n_heads * cfg.fast_head_dim * cfg.fast_dim + 3 * cfg.fast_dim * cfg.fast_ffn_dim
    fast_w = cfg.fast_n_layers * fast_block + cfg.fast_dim * 64
    k = cfg.num_codebooks
    f = train_step_flops(cfg, [10, 30], frames=5)
    assert f["slow"] == 6 * slow_w * 40 + 12 * cfg.n_layers * 4 * 16 * (100 + 900)
    assert (
        f["fast"]
        == 6 * fast_w * 5 * k + 12 * cfg.fast_n_layers * cfg.fast_n_heads * cfg.fast_head_dim * k * 5 * k
    )
    assert f["total"] == f["slow"] + f["fast"]
    # linear in the number of positions for the matmul part, quadratic in the sequence length for attention
    assert train_step_flops(cfg, [10, 30, 10, 30], 10)["total"] == 2 * f["total"]
