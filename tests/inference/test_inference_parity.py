"""Cached decode vs the full-recompute reference, batching, prefix sharing, voice-prefix cache."""

import pytest
import torch

from s2train.ar import DualAR
from s2train.inference import InferenceEngine, SamplingParams, VoicePrefixCache, generate, naive_generate
from tests.inference.conftest import STOP, make_prompt

GREEDY = SamplingParams(do_sample=False)


def test_greedy_cached_matches_naive_batched_different_lengths(tiny_model, stopping_model):
    prompts = [make_prompt(9, 1), make_prompt(16, 2), make_prompt(4, 3)]
    for model in (tiny_model, stopping_model):
        ref = naive_generate(model, prompts, GREEDY, 24, stop_token_id=STOP)
        got = generate(model, prompts, GREEDY, 24, stop_token_id=STOP)
        assert [r.shape for r in ref] == [g.shape for g in got]
        for r, g in zip(ref, got):
            assert torch.equal(r, g)
    # The stopping model must actually stop some rows early for this to test per-row stops.
    lengths = [g.shape[1] for g in generate(stopping_model, prompts, GREEDY, 24, stop_token_id=STOP)]
    assert min(lengths) < 24, lengths


def test_batched_equals_per_request(tiny_model):
    prompts = [make_prompt(n, s) for n, s in ((7, 4), (13, 5), (10, 6), (3, 7))]
    batched = generate(tiny_model, prompts, GREEDY, 16, stop_token_id=STOP)
    for p, b in zip(prompts, batched):
        assert torch.equal(generate(tiny_model, [p], GREEDY, 16, stop_token_id=STOP)[0], b)


def test_prefix_shared_groups_equal_independent_prefills(tiny_model):
    prompts = [make_prompt(8, 8), make_prompt(12, 9)]
    grouped = generate(tiny_model, prompts, GREEDY, 12, stop_token_id=STOP, num_samples=3)
    assert len(grouped) == 6
    for p, prompt in enumerate(prompts):
        alone = generate(tiny_model, [prompt], GREEDY, 12, stop_token_id=STOP)[0]
        for g in range(3):
            assert torch.equal(grouped[p * 3 + g], alone)


def test_sampled_groups_differ_but_are_seeded(tiny_model):
    prompt = [make_prompt(8, 10)]
    sp = SamplingParams(temperature=1.0, top_p=1.0, ras_window=0)
    a = generate(tiny_model, prompt, sp, 12, seed=3, stop_token_id=STOP, num_samples=4)
    b = generate(tiny_model, prompt, sp, 12, seed=3, stop_token_id=STOP, num_samples=4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(a[0], x) for x in a[1:])


def test_voice_prefix_cache_hit_is_identical_and_counted(tiny_model):
    ref_prompt = make_prompt(14, 11, system_end=8)
    other_text = make_prompt(14, 12, system_end=8)
    # Same system turn (voice) as ref_prompt, different user text after it.
    other = tuple(torch.cat([r[..., :9], o[..., 9:]], dim=-1) for r, o in zip(ref_prompt, other_text))
    cache = VoicePrefixCache(max_entries=4)
    engine = InferenceEngine(tiny_model, STOP, voice_cache=cache)
    first = engine.generate([ref_prompt], GREEDY, 10).codes[0]
    assert (cache.hits, cache.misses) == (0, 1)
    second = engine.generate([ref_prompt], GREEDY, 10).codes[0]
    assert (cache.hits, cache.misses) == (1, 1) and cache.hit_rate == 0.5
    assert torch.equal(first, second)
    third = engine.generate([other], GREEDY, 10).codes[0]
    assert cache.hits == 2
    assert torch.equal(third, naive_generate(tiny_model, [other], GREEDY, 10, stop_token_id=STOP)[0])
    assert torch.equal(first, generate(tiny_model, [ref_prompt], GREEDY, 10, stop_token_id=STOP)[0])


def test_voice_cache_lru_eviction_and_model_binding(tiny_model, tiny_cfg):
    cache = VoicePrefixCache(max_entries=1)
    engine = InferenceEngine(tiny_model, STOP, voice_cache=cache)
    engine.generate([make_prompt(10, 13, system_end=5)], GREEDY, 2)
    engine.generate([make_prompt(10, 14, system_end=5)], GREEDY, 2)
    assert len(cache) == 1
    engine.generate([make_prompt(10, 13, system_end=5)], GREEDY, 2)
    assert cache.hits == 0  # evicted
    with pytest.raises(ValueError, match="another model"):
        InferenceEngine(DualAR(tiny_cfg), STOP, voice_cache=cache)


def test_logprobs_match_training_forward(tiny_model):
    prompt = make_prompt(9, 15)
    engine = InferenceEngine(tiny_model, STOP)
    res = engine.generate([prompt], GREEDY, 6, return_logprobs=True)
    codes = res.codes[0]
    t = codes.shape[1]
    tokens, pcodes, audio = prompt
    full_tokens = torch.cat([tokens, 40 + codes[0]])
    full_codes = torch.cat([pcodes, codes], dim=1)
    full_audio = torch.cat([audio, torch.ones(t, dtype=torch.bool)])
    with torch.no_grad():
        out = tiny_model(full_tokens[None], full_codes[None], full_audio[None])
        n = tokens.numel()
        slow_lp = (
            out.logits[0, n - 1 : n - 1 + t].log_softmax(-1).gather(-1, full_tokens[n : n + t, None])[:, 0]
        )
        fast = tiny_model.fast_forward(out.hidden[0, n - 1 : n - 1 + t], codes.t()).log_softmax(-1)
        fast_lp = fast.gather(-1, codes.t()[:, :, None])[:, :, 0].t()
    assert torch.allclose(res.slow_logprobs[0][:t], slow_lp, atol=1e-4)
    assert torch.allclose(res.fast_logprobs[0], fast_lp, atol=1e-4)


def test_training_and_generate_both_call_embed(tiny_model, monkeypatch):
    calls = {"n": 0}
    original = DualAR.embed

    def counting(self, *a, **k):
        calls["n"] += 1
        return original(self, *a, **k)

    monkeypatch.setattr(DualAR, "embed", counting)
    tokens, codes, audio = make_prompt(8, 16)
    tiny_model(tokens[None], codes[None], audio[None])
    assert calls["n"] == 1
    calls["n"] = 0
    out = generate(tiny_model, [make_prompt(8, 16)], GREEDY, 5, stop_token_id=STOP)
    # One prefill + one slow step per frame, all through DualAR.embed.
    assert calls["n"] == 1 + 5 and out[0].shape[1] == 5


def test_stream_chunks_concatenate_to_generate(stopping_model, tiny_model):
    for model, n, seed in ((tiny_model, 20, 30), (stopping_model, 16, 2)):
        engine = InferenceEngine(model, STOP)
        prompt = make_prompt(n, seed)
        full = engine.generate([prompt], GREEDY, 21).codes[0]
        chunks = list(engine.stream(prompt, GREEDY, 21, chunk_frames=4))
        assert all(c.shape[1] <= 4 for c in chunks)
        assert torch.equal(torch.cat(chunks, dim=1), full)


def test_bf16_generation_runs_with_logprobs(tiny_cfg):
    torch.manual_seed(0)
    model = DualAR(tiny_cfg).to(torch.bfloat16).eval()
    engine = InferenceEngine(model, STOP)
    res = engine.generate(
        [make_prompt(9, 1), make_prompt(5, 2)], SamplingParams(), 6, seed=0, return_logprobs=True
    )
    assert all(c.shape[0] == 4 for c in res.codes)
    assert all(torch.isfinite(lp).all() for lp in res.slow_logprobs + res.fast_logprobs)


@pytest.mark.slow
def test_decode_frame_traces_as_one_graph(tiny_model):
    """fullgraph=True: no graph breaks or host syncs inside a frame (what CUDA-graph capture needs)."""
    from s2train.inference import (
        DecodeCaches,
        DecodeConsts,
        DecodeState,
        SamplingTensors,
        decode_frame,
        prefill,
    )

    cfg = tiny_model.config
    tokens, codes, audio = make_prompt(8, 1)
    caches = DecodeCaches.allocate(cfg, 2, 32, torch.float32, "cpu")
    state = DecodeState.allocate(2, cfg.dim, cfg.num_codebooks, 16, torch.float32, "cpu")
    consts = DecodeConsts.build(tiny_model, STOP, 32, "cpu", return_logprobs=True)
    sp = SamplingTensors.build([SamplingParams()] * 2, cfg.num_codebooks, torch.device("cpu"))
    with torch.no_grad():
        for b in range(2):
            h = prefill(tiny_model, tokens[None], codes[None], audio[None], caches.row(b))
        state.reset(h.expand(2, -1), torch.zeros(2, dtype=torch.long), 8)
        compiled = torch.compile(
            lambda: decode_frame(tiny_model, state, caches, sp, consts), backend="aot_eager", fullgraph=True
        )
        compiled()
        compiled()
    assert int(state.step) == 2 and bool((state.codes < cfg.codebook_size).all())


def test_warmup_prepares_the_session_generate_uses(tiny_model):
    engine = InferenceEngine(tiny_model, STOP)
    engine.warmup(batch=2, prompt_len=9, max_frames=10, params=GREEDY)
    assert len(engine._sessions) == 1
    engine.generate([make_prompt(9, 1), make_prompt(5, 2)], GREEDY, 10)
    assert len(engine._sessions) == 1
