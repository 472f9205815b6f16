"""Forward-pass attention prior (s2train.ar.prior): schedule, bias values, model wiring, diagnostics."""

import math

import pytest
import torch

from s2train.ar import DualAR
from s2train.ar.prior import AttnPrior, alignment_stats, attention_prior_bias

TINY = dict(dim=32, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=16, ffn_dim=64, num_codebooks=2,
            codebook_size=16, fast_dim=32, fast_n_layers=1, fast_n_heads=2, fast_n_kv_heads=1,
            fast_head_dim=16, fast_ffn_dim=64, max_seq_len=64, vocab_size=80, semantic_start=40,
            num_semantic=16)  # fmt: skip


def _batch(n_text=4, n_frames=8, drop_text_of_second=False):
    """Two prompts: 2 scaffold tokens, n_text transcript tokens, 1 scaffold, n_frames target frames."""
    n = 3 + n_text + n_frames
    text = torch.zeros(2, n, dtype=torch.bool)
    text[:, 2 : 2 + n_text] = True
    if drop_text_of_second:
        text[1] = False
    audio = torch.zeros(2, n, dtype=torch.bool)
    audio[:, 3 + n_text :] = True
    return {"text_mask": text, "audio_mask": audio, "loss_mask": audio.clone()}, n


def test_schedule_holds_then_anneals_linearly():
    p = AttnPrior(hold_steps=10, anneal_steps=20)
    assert [p.weight(s) for s in (0, 10, 15, 20, 99)] == [1.0, 1.0, 0.5, 0.0, 0.0]
    assert AttnPrior(hold_steps=5, anneal_steps=5).weight(6) == 0.0


def test_config_errors_name_the_key():
    assert AttnPrior.from_config(None, 4, 4) is None and AttnPrior.from_config({}, 4, 4) is None
    p = AttnPrior.from_config({"heads": 2, "layers": [0, 3], "hold_steps": 1, "anneal_steps": 2}, 4, 4)
    assert p.layers == (0, 3)
    for bad, key in [({"heads": 5}, "heads"), ({"layers": [4]}, "layers"), ({"sigma": 0.0}, "sigma"),
                     ({"hold_steps": 9, "anneal_steps": 3}, "hold_steps"), ({"width": 1}, "width")]:  # fmt: skip
        with pytest.raises(ValueError, match=key):
            AttnPrior.from_config(bad, 4, 4)


def test_bias_peaks_on_the_diagonal_token_for_frame_queries_only():
    batch, n = _batch(drop_text_of_second=True)
    prior = AttnPrior(heads=1, sigma=0.1, floor=-30.0)
    bias = attention_prior_bias(batch, prior, n_heads=2, weight=0.5)
    assert bias.shape == (2, 2, n, n)
    assert bias[:, 1].abs().sum() == 0  # unbiased head
    assert bias[1].abs().sum() == 0  # the item whose transcript was dropped
    text_pos = [2, 3, 4, 5]
    for f in range(8):  # query 6 + f predicts frame f, which speaks token f // 2
        row = bias[0, 0, 6 + f]
        assert row[text_pos].argmax().item() == f // 2
        assert row[text_pos].max().item() > -3.0  # near the diagonal: close to log 1 = 0
        others = [j for j in range(n) if j not in text_pos]
        assert torch.all(row[others] == -15.0)  # weight * floor on every non-transcript key
    # non-frame queries (scaffold, transcript, and the last frame predicting nothing) get no bias
    assert bias[0, 0, :6].abs().sum() == 0 and bias[0, 0, n - 1].abs().sum() == 0


def test_zero_bias_is_a_no_op_and_a_bias_steers_attention():
    torch.manual_seed(0)
    model = DualAR(TINY).eval()
    batch, n = _batch()
    tokens = torch.randint(0, 40, (2, n))
    codes = torch.randint(0, 16, (2, 2, n))
    plain = model(tokens, codes, batch["audio_mask"]).hidden
    zero = torch.zeros(2, 2, n, n)
    assert torch.allclose(model(tokens, codes, batch["audio_mask"], attn_bias=zero).hidden, plain, atol=1e-5)
    bias = attention_prior_bias(batch, AttnPrior(heads=1), 2, 1.0)
    only_last = model(tokens, codes, batch["audio_mask"], attn_bias=bias, bias_layers=[1]).hidden
    both = model(tokens, codes, batch["audio_mask"], attn_bias=bias).hidden
    assert not torch.allclose(only_last, plain, atol=1e-4) and not torch.allclose(both, only_last, atol=1e-4)
    # positions before the first frame query see no bias and are unchanged
    assert torch.allclose(both[:, :6], plain[:, :6], atol=1e-5)
    with pytest.raises(ValueError, match="KV cache"):
        model.slow(torch.zeros(2, n, 32), torch.arange(n), None, caches=[object(), object()], attn_bias=bias)


def _qk_attending(n, targets, hd=16, scale=40.0):
    k = torch.zeros(2, 1, n, hd)
    k[:, 0, torch.arange(n), torch.arange(n) % hd] = 1.0
    q = torch.zeros(2, 1, n, hd)
    q[:, 0, torch.arange(n), torch.as_tensor(targets) % hd] = scale * math.sqrt(hd)
    return q, k


def test_alignment_stats_tell_an_aligned_head_from_a_scrambled_one():
    batch, n = _batch(n_text=4, n_frames=8)
    text_pos = [2, 3, 4, 5]
    diag, rev = list(range(n)), list(range(n))
    for f in range(8):
        diag[6 + f] = text_pos[f // 2]
        rev[6 + f] = text_pos[3 - f // 2]
    good = alignment_stats(*_qk_attending(n, diag), batch, heads=1)
    bad = alignment_stats(*_qk_attending(n, rev), batch, heads=1)
    assert good["mass"] == pytest.approx(1.0, abs=1e-3)
    assert good["monotonic"] == 1.0 and good["diag_err"] < 0.1
    assert bad["monotonic"] < 0.7 and bad["diag_err"] > 0.3
