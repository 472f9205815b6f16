"""ResidualVQ: straight-through gradients, quantizer dropout, dead-code reinitialization."""

import torch

from s2train.codec.quantizer import ResidualVQ


def test_straight_through_gradients_reach_the_encoder(tiny_codec):
    tiny_codec.train()
    tiny_codec.zero_grad()
    out = tiny_codec(torch.randn(2, 1, 160) * 0.3)
    out.wav.pow(2).mean().backward()
    first_conv = tiny_codec.encoder.net[0].conv.weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    # Codebook entries get no gradient from the reconstruction alone (argmax is not differentiable)...
    assert tiny_codec.quantizer.stages[0].codebook.weight.grad is None
    tiny_codec.zero_grad()
    out = tiny_codec(torch.randn(2, 1, 160) * 0.3)
    out.codebook_loss.backward()
    # ...but do through the codebook loss.
    assert tiny_codec.quantizer.stages[0].codebook.weight.grad.abs().sum() > 0


def test_dropout_never_drops_the_semantic_codebook():
    torch.manual_seed(0)
    rvq = ResidualVQ(16, [32, 16, 16, 16], quantizer_dropout=1.0).train()
    keep = rvq.keep_mask(4000, torch.device("cpu"))
    assert keep[:, 0].all()
    n_kept = keep.sum(1)
    assert set(n_kept.tolist()) == {1, 2, 3, 4}  # every depth occurs
    # Kept stages are a prefix: once a stage is dropped, all later ones are too.
    assert torch.equal(keep, torch.arange(4)[None] < n_kept[:, None])
    rvq.eval()
    assert rvq.keep_mask(10, torch.device("cpu")).all()


def test_dropout_fraction_and_effect_on_output():
    torch.manual_seed(0)
    rvq = ResidualVQ(16, [32, 16, 16, 16], quantizer_dropout=0.5).train()
    keep = rvq.keep_mask(4000, torch.device("cpu"))
    full = keep.all(1).float().mean()
    # Half the samples keep everything, plus 1/4 of the dropped half draw depth K: ~0.625.
    assert 0.58 < full < 0.67
    z = torch.randn(3, 16, 10)
    rvq.quantizer_dropout = 1.0
    torch.manual_seed(3)
    out = rvq(z)
    rvq.eval()
    ref = rvq(z)
    assert torch.equal(out.codes, ref.codes)  # codes of every stage are still returned
    first_only = rvq.stages[0](z)[0]
    torch.manual_seed(3)
    rvq.train()
    keep = rvq.keep_mask(3, z.device)
    for b in range(3):
        expect = sum(rvq.stages[k].decode_codes(ref.codes[b : b + 1, k]) for k in range(int(keep[b].sum())))
        assert torch.allclose(out.z_q[b : b + 1], expect, atol=1e-5)
    assert first_only.shape == z.shape


def test_dead_codes_are_reinitialized():
    torch.manual_seed(0)
    rvq = ResidualVQ(8, [64], codebook_dim=4, quantizer_dropout=0.0, dead_code_steps=2).train()
    before = rvq.stages[0].codebook.weight.detach().clone()
    z = torch.randn(1, 8, 3)  # 3 frames can use at most 3 of the 64 codes
    for _ in range(4):
        out = rvq(z)
    after = rvq.stages[0].codebook.weight.detach()
    used = set(out.codes.flatten().tolist())
    changed = (after != before).any(1)
    assert changed.sum() >= 64 - 3 - len(used)
    # Replacements come from this step's projected encoder outputs.
    pool = rvq.stages[0].in_proj(z).transpose(1, 2).reshape(-1, 4)
    for row in after[changed]:
        assert (pool - row).abs().sum(1).min() < 1e-5


def test_no_reinit_when_disabled_or_in_eval():
    rvq = ResidualVQ(8, [64], codebook_dim=4, dead_code_steps=0).train()
    before = rvq.stages[0].codebook.weight.detach().clone()
    for _ in range(3):
        rvq(torch.randn(1, 8, 3))
    assert torch.equal(before, rvq.stages[0].codebook.weight)
