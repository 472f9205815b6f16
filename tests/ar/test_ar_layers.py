import pytest
import torch

from s2train.ar.layers import Attention, RMSNorm, RotaryTable, apply_rope, causal_mask


def test_rmsnorm_unit_rms():
    x = torch.randn(3, 5, 16) * 7
    y = RMSNorm(16)(x)
    assert torch.allclose(y.pow(2).mean(-1), torch.ones(3, 5), atol=1e-4)


def test_rope_rotates_adjacent_pairs():
    rope = RotaryTable(8, 16, base=10000.0, bf16_tables=False)
    x = torch.zeros(1, 1, 1, 8)
    x[..., 0] = 1.0  # only the first element of pair 0
    y = apply_rope(x, rope(torch.tensor([3])))
    # Interleaved layout: element 0 rotates into element 1 (half-split layout would use element 4).
    assert torch.allclose(
        y[0, 0, 0, :2], torch.tensor([torch.cos(torch.tensor(3.0)), torch.sin(torch.tensor(3.0))])
    )
    assert torch.all(y[0, 0, 0, 2:] == 0)


def test_rope_relative_position_invariance():
    rope = RotaryTable(16, 64, base=1e6, bf16_tables=False)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(pq, pk):
        return (apply_rope(q, rope(torch.tensor([pq]))) * apply_rope(k, rope(torch.tensor([pk])))).sum()

    assert torch.allclose(score(5, 2), score(40, 37), atol=1e-4)
    assert not torch.allclose(score(5, 2), score(5, 4), atol=1e-4)


def test_rope_tables_rounded_to_bf16():
    t = RotaryTable(16, 128, base=1e6, bf16_tables=True)
    assert torch.equal(t.cos, t.cos.bfloat16().float())
    f = RotaryTable(16, 128, base=1e6, bf16_tables=False)
    assert not torch.equal(f.cos, f.cos.bfloat16().float())


def test_attention_gqa_shares_kv_heads_and_qk_norm():
    torch.manual_seed(0)
    att = Attention(dim=32, n_heads=4, n_kv_heads=2, head_dim=8, eps=1e-6, dropout=0.0)
    assert att.qkv.out_features == (4 + 2 * 2) * 8
    x = torch.randn(2, 6, 32)
    rope = RotaryTable(8, 16, 1e6)
    rot = rope(torch.arange(6))
    y = att(x, rot)
    # QK-norm makes attention invariant to scaling the q/k projections.
    with torch.no_grad():
        att.qkv.weight[: 4 * 8 + 2 * 8] *= 5.0
    assert torch.allclose(att(x, rot), y, atol=1e-4)


def test_block_causal_mask_separates_documents():
    doc = torch.tensor([[0, 0, 1, 1, 1]])
    m = causal_mask(doc, 5, torch.device("cpu"))[0, 0]
    assert m[1, 0] and not m[2, 1] and m[4, 2] and not m[0, 1]
    assert causal_mask(None, 5, torch.device("cpu")) is None


def test_attention_cache_requires_mask():
    att = Attention(16, 2, 1, 8, 1e-6, 0.0)
    rot = RotaryTable(8, 4, 1e6)(torch.arange(1))
    with pytest.raises(ValueError, match="mask"):
        att(torch.randn(1, 1, 16), rot, cache=object(), slots=torch.tensor([0]))


def test_rope_table_survives_dtype_casts():
    t = RotaryTable(16, 32, base=1e6, bf16_tables=True)
    before = t(torch.arange(32))
    assert torch.equal(t.to(torch.bfloat16)(torch.arange(32)), before)


def test_rope_compiled_branch_matches_eager():
    rope = RotaryTable(16, 32, base=1e6)
    x = torch.randn(2, 5, 3, 16)
    rot = rope(torch.arange(5))
    traced = torch.compile(apply_rope, backend="eager", fullgraph=True)(x, rot)
    assert torch.allclose(traced, apply_rope(x, rot), atol=1e-6)


@pytest.mark.parametrize("float_mask", [False, True])
def test_folded_gqa_attention_equals_expanded_heads(float_mask):
    from s2train.ar.layers import folded_gqa_attention

    torch.manual_seed(0)
    b, h, hkv, n, s, hd = 2, 6, 2, 3, 7, 8
    q, k, v = torch.randn(b, h, n, hd), torch.randn(b, hkv, s, hd), torch.randn(b, hkv, s, hd)
    allowed = torch.rand(b, 1, n, s) > 0.3
    allowed[..., 0] = True
    if float_mask:  # per-head additive mask (the training-time attention prior)
        mask = torch.randn(b, h, n, s).masked_fill(~allowed, float("-inf"))
    else:
        mask = allowed
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(h // hkv, 1), v.repeat_interleave(h // hkv, 1), attn_mask=mask
    )
    assert torch.allclose(folded_gqa_attention(q, k, v, mask), ref, atol=1e-5)
