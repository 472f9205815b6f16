"""Classifier-free guidance in the cached decode path: parity at cfg_scale=1, equality with the uncached
reference (both prompts recomputed, guided logits, greedy), batching, streaming, input checks."""

import pytest
import torch

from s2train.inference import InferenceEngine, SamplingParams, VoicePrefixCache, generate, naive_generate
from s2train.inference.sampling import guide
from s2train.text import Prompt
from tests.inference.conftest import STOP, make_prompt

GREEDY = SamplingParams(do_sample=False)


def guided(scale: float) -> SamplingParams:
    return SamplingParams(do_sample=False, cfg_scale=scale)


def text_prompt(n: int, seed: int, n_text: int = 4, system_end: int | None = None) -> Prompt:
    """`make_prompt` as a `Prompt` whose final transcript (text_mask) is `n_text` text tokens before the end."""
    tokens, codes, audio = make_prompt(n, seed, system_end=system_end)
    text = torch.zeros(n, dtype=torch.bool)
    text[n - 1 - n_text : n - 1] = True
    assert not (text & audio).any()
    return Prompt(tokens, codes, audio, torch.zeros(n, dtype=torch.bool), text)


def test_guide_formula_and_log_softmax_equivalence():
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)
    scale = torch.tensor([1.0, 0.0, 2.5])
    out = guide(cond, uncond, scale)
    assert torch.equal(out[0], cond[0]) and torch.equal(out[1], uncond[1])
    torch.testing.assert_close(out[2], uncond[2] + 2.5 * (cond[2] - uncond[2]))
    # Combining log-softmaxes instead gives the same distribution (a per-row shift).
    lsm = guide(cond.log_softmax(-1), uncond.log_softmax(-1), scale)
    torch.testing.assert_close(lsm.softmax(-1), out.softmax(-1))


def test_cfg_scale_one_is_exactly_the_unguided_path(tiny_model, stopping_model):
    prompts = [text_prompt(12, 1), text_prompt(16, 2), text_prompt(9, 3)]
    for model in (tiny_model, stopping_model):
        plain = generate(model, prompts, GREEDY, 16, stop_token_id=STOP)
        one = generate(model, prompts, guided(1.0), 16, stop_token_id=STOP)
        ref = naive_generate(model, prompts, guided(1.0), 16, stop_token_id=STOP)
        assert all(torch.equal(a, b) and torch.equal(a, r) for a, b, r in zip(plain, one, ref))
    # cfg_scale=1 needs no text_mask: plain (tokens, codes, audio_mask) triples still work
    triple = make_prompt(10, 4)
    assert torch.equal(
        generate(tiny_model, [triple], guided(1.0), 8, stop_token_id=STOP)[0],
        generate(tiny_model, [triple], GREEDY, 8, stop_token_id=STOP)[0],
    )


@pytest.mark.parametrize("scale", [0.0, 3.0])
def test_guided_cached_matches_uncached_reference(tiny_model, scale):
    prompts = [text_prompt(12, 5), text_prompt(17, 6, n_text=6), text_prompt(9, 7, n_text=2)]
    ref = naive_generate(tiny_model, prompts, guided(scale), 10, stop_token_id=STOP, min_frames=10)
    got = generate(tiny_model, prompts, guided(scale), 10, stop_token_id=STOP, min_frames=10)
    plain = generate(tiny_model, prompts, GREEDY, 10, stop_token_id=STOP, min_frames=10)
    assert [r.shape for r in ref] == [g.shape for g in got] == [(4, 10)] * 3
    assert all(torch.equal(r, g) for r, g in zip(ref, got))
    assert any(not torch.equal(g, p) for g, p in zip(got, plain))  # guidance changed something


def test_guided_rows_are_independent_of_batch_samples_and_voice_cache(tiny_model):
    a, b = text_prompt(14, 8, system_end=6), text_prompt(11, 9)
    alone = [naive_generate(tiny_model, [p], guided(2.0), 8, stop_token_id=STOP)[0] for p in (a, b)]
    # per-prompt params: b unguided in the same (guided) batch; G=2 samples per prompt; voice-prefix cache
    engine = InferenceEngine(tiny_model, STOP, voice_cache=VoicePrefixCache(4))
    res = engine.generate([a, b], [guided(2.0), GREEDY], 8, num_samples=2)
    assert torch.equal(res.codes[0], alone[0]) and torch.equal(res.codes[1], alone[0])
    b_plain = generate(tiny_model, [b], GREEDY, 8, stop_token_id=STOP)[0]
    assert torch.equal(res.codes[2], b_plain) and torch.equal(res.codes[3], b_plain)
    # a's unconditional prompt shares its system turn: the second lookup is a hit
    assert engine.voice_cache.hits >= 1
    again = engine.generate([a], guided(2.0), 8)
    assert torch.equal(again.codes[0], alone[0])


def test_guided_stream_and_logprobs(tiny_model):
    p = text_prompt(13, 10)
    engine = InferenceEngine(tiny_model, STOP)
    res = engine.generate([p], guided(2.0), 9, return_logprobs=True)
    streamed = torch.cat(list(engine.stream(p, guided(2.0), 9, chunk_frames=4)), dim=1)
    assert torch.equal(streamed, res.codes[0])
    lp = res.slow_logprobs[0]
    assert lp.shape[0] >= res.codes[0].shape[1] and torch.isfinite(lp).all() and (lp <= 0).all()


def test_guidance_needs_a_text_mask(tiny_model):
    with pytest.raises(ValueError, match="text_mask"):
        generate(tiny_model, [make_prompt(8, 11)], guided(2.0), 4, stop_token_id=STOP)
    with pytest.raises(ValueError, match="text_mask"):
        naive_generate(tiny_model, [make_prompt(8, 11)], guided(2.0), 4, stop_token_id=STOP)


def test_guidance_on_a_real_prompt_with_reference_and_cli_option():
    from s2train.ar import DualAR, preset
    from s2train.infer import parse_args
    from s2train.text import Reference, S2Tokenizer, build_prompt

    tok = S2Tokenizer.train(
        ["hello there, how are you?", "the quick brown fox."] * 8, vocab_size=280, num_semantic=32
    )
    cfg = preset("tiny", vocab_size=tok.vocab_size, semantic_start=tok.semantic_start, num_semantic=32)
    torch.manual_seed(0)
    model = DualAR(cfg).eval()
    ref = Reference("the quick fox", torch.randint(0, 32, (cfg.num_codebooks, 5)))
    prompts = [
        build_prompt(tok, t, references=[ref], num_codebooks=cfg.num_codebooks)
        for t in ("hello", "how are you")
    ]
    stop = tok.im_end_id
    got = generate(model, prompts, guided(2.0), 6, stop_token_id=stop, min_frames=6)
    ref_codes = naive_generate(model, prompts, guided(2.0), 6, stop_token_id=stop, min_frames=6)
    assert all(torch.equal(a, b) for a, b in zip(got, ref_codes))
    assert parse_args(["bundle=b", "text=t", "cfg_scale=2.5"])["cfg_scale"] == "2.5"
