import pytest
import torch

from s2train.ar import DualAR, preset
from s2train.rl.logprobs import completion_logprobs, pack_completions

SEM, EOS, PAD, V, K = 20, 5, 6, 20 + 64, 4


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = preset("tiny", vocab_size=V, semantic_start=SEM, num_semantic=64, n_layers=1, max_seq_len=128)
    return DualAR(cfg).eval()


def make_rows():
    g = torch.Generator().manual_seed(1)
    prompts, comps, ended = [], [], []
    for lp, t, e in [(7, 3, True), (5, 5, False), (9, 0, True)]:
        tok = torch.randint(0, 10, (lp,), generator=g)
        cod = torch.zeros(K, lp, dtype=torch.long)
        am = torch.zeros(lp, dtype=torch.bool)
        am[2:4] = True  # two reference frames inside the prompt
        cod[:, 2:4] = torch.randint(0, 64, (K, 2), generator=g)
        tok[2:4] = SEM + cod[0, 2:4]
        prompts.append((tok, cod, am))
        comps.append(torch.randint(0, 64, (K, t), generator=g))
        ended.append(e)
    return prompts, comps, ended


def brute_force(model, prompt, comp, ended):
    """Score one row alone, position by position."""
    tok, cod, am = prompt
    t = comp.shape[1]
    full_tok = torch.cat([tok, SEM + comp[0]] + ([torch.tensor([EOS])] if ended else []))
    full_cod = torch.cat([cod, comp] + ([torch.zeros(K, 1, dtype=torch.long)] if ended else []), dim=1)
    full_am = torch.cat(
        [am, torch.ones(t, dtype=torch.bool)] + ([torch.zeros(1, dtype=torch.bool)] if ended else [])
    )
    out = model(full_tok[None], full_cod[None], full_am[None])
    lp = len(tok)
    slow, fast = [], []
    for j in range(t + int(ended)):
        logp = torch.log_softmax(out.logits[0, lp + j - 1].float(), -1)
        slow.append(logp[full_tok[lp + j]])
        if j < t:
            fl = torch.log_softmax(
                model.fast_forward(out.hidden[0, lp + j - 1][None], comp[:, j][None])[0], -1
            )
            fast.append(torch.stack([fl[k, comp[k, j]] for k in range(1, K)]))
    return torch.stack(slow) if slow else torch.zeros(0), torch.stack(fast) if fast else torch.zeros(0, K - 1)


def test_pack_layout():
    prompts, comps, ended = make_rows()
    packed = pack_completions(*zip(*prompts), comps, ended, SEM, EOS, PAD)
    assert packed.tokens.shape == (3, 11) and packed.codes.shape == (3, K, 11)
    assert packed.tokens[0, 7:10].tolist() == (SEM + comps[0][0]).tolist() and packed.tokens[0, 10] == EOS
    assert packed.tokens[1, 10] != EOS and packed.tokens[2, 9] == EOS and packed.tokens[2, 10] == PAD
    assert packed.audio_mask[0, 7:10].all() and not packed.audio_mask[0, 10]
    assert packed.start.tolist() == [7, 5, 9] and packed.num_frames.tolist() == [3, 5, 0]


def test_teacher_forced_logprobs_match_brute_force(model):
    prompts, comps, ended = make_rows()
    packed = pack_completions(*zip(*prompts), comps, ended, SEM, EOS, PAD)
    with torch.no_grad():
        lp = completion_logprobs(model, packed)
        assert lp.slow.shape == (3, 5) and lp.fast.shape == (3, 5, K - 1)
        assert lp.slow_mask.sum(1).tolist() == [4, 5, 1] and lp.fast_mask[:, :, 0].sum(1).tolist() == [
            3,
            5,
            0,
        ]
        for i in range(3):
            slow, fast = brute_force(model, prompts[i], comps[i], ended[i])
            n = slow.shape[0]
            assert torch.allclose(lp.slow[i, :n], slow, atol=1e-5)
            assert torch.all(lp.slow[i, n:] == 0)
            assert torch.allclose(lp.fast[i, : fast.shape[0]], fast, atol=1e-5)


def test_temperature_and_constraint(model):
    prompts, comps, ended = make_rows()
    packed = pack_completions(*zip(*prompts), comps, ended, SEM, EOS, PAD)
    with torch.no_grad():
        plain = completion_logprobs(model, packed)
        hot = completion_logprobs(model, packed, temperature=2.0)
        constrained = completion_logprobs(model, packed, eos_id=EOS)
    m = plain.slow_mask
    assert not torch.allclose(plain.slow[m], hot.slow[m])
    # renormalising over the allowed tokens only can only raise each sampled token's probability
    assert torch.all(constrained.slow[m] >= plain.slow[m] - 1e-6) and torch.isfinite(constrained.slow).all()
    with pytest.raises(ValueError, match="temperature"):
        completion_logprobs(model, packed, temperature=0.0)


def test_gradient_reaches_slow_and_fast_weights(model):
    prompts, comps, ended = make_rows()
    packed = pack_completions(*zip(*prompts), comps, ended, SEM, EOS, PAD)
    model.zero_grad()
    lp = completion_logprobs(model, packed)
    (lp.slow.sum() + lp.fast.sum()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.fast.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.slow.parameters())
    model.zero_grad()


def test_pack_rejects_mismatched_codebooks():
    prompts, comps, ended = make_rows()
    comps[1] = torch.zeros(K + 1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="row 1"):
        pack_completions(*zip(*prompts), comps, ended, SEM, EOS, PAD)


def test_constrained_logprobs_match_masked_softmax(model):
    prompts, comps, ended = make_rows()
    packed = pack_completions(*zip(*prompts), comps, ended, SEM, EOS, PAD)
    with torch.no_grad():
        lp = completion_logprobs(model, packed, eos_id=EOS, temperature=0.7)
        out = model(packed.tokens, packed.codes, packed.audio_mask)
    allowed = torch.zeros(V, dtype=torch.bool)
    allowed[SEM : SEM + 64] = True
    allowed[EOS] = True
    for i in range(3):
        start, n = int(packed.start[i]), int(lp.slow_mask[i].sum())
        for j in range(n):
            logits = (out.logits[i, start + j - 1] / 0.7).masked_fill(~allowed, float("-inf"))
            expected = torch.log_softmax(logits, -1)[packed.tokens[i, start + j]]
            assert float(lp.slow[i, j]) == pytest.approx(float(expected), abs=1e-5)
    assert lp.slow[0, 3] < 0 and packed.tokens[0, 10] == EOS  # the EOS column is scored, not masked
