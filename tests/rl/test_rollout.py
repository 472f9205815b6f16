import pytest
import torch

from s2train.rl.logprobs import completion_logprobs, pack_completions
from s2train.rl.rollout import RolloutEngine, normalize_generation


@pytest.fixture(scope="module")
def parts(tiny_bundle):
    from s2train.bundle import load_pretrained
    from s2train.codec import load_codec
    from s2train.rl.prompts import read_prompts

    model, tok, codec_dir = load_pretrained(tiny_bundle / "bundle")
    return model.eval(), tok, load_codec(codec_dir), read_prompts(tiny_bundle / "prompts.jsonl")[:2]


def test_rollout_batch_layout(parts):
    model, tok, codec, prompts = parts
    eng = RolloutEngine(tok, codec, group_size=2, max_frames=3, sampling={"temperature": 1.0, "top_p": 1.0})
    ro = eng(model, prompts, seed=0)
    assert len(ro.samples) == 4 and ro.packed.tokens.shape[0] == 4
    for s, n, ended in zip(ro.samples, ro.packed.num_frames.tolist(), ro.packed.ended.tolist()):
        assert s["num_frames"] == n == s["codes"].shape[1] <= 3
        assert s["wav"].shape == (1, n * codec.hop_length) and s["sample_rate"] == codec.sample_rate
        assert s["hit_max_frames"] == (not ended)
    assert ro.items[0]["reference_wav"].shape[0] == 1 and "reference_wav" not in prompts[0]
    # rows of one group share the prompt prefix
    start = int(ro.packed.start[0])
    assert torch.equal(ro.packed.tokens[0, :start], ro.packed.tokens[1, :start])


def test_group_rollout_matches_independent_greedy_rollouts(parts):
    model, tok, codec, prompts = parts
    greedy = {"do_sample": False}
    grouped = RolloutEngine(tok, codec, group_size=2, max_frames=3, sampling=greedy)(
        model, prompts[:1], seed=1
    )
    alone = RolloutEngine(tok, codec, group_size=1, max_frames=3, sampling=greedy)(model, prompts[:1], seed=7)
    for g in range(2):
        assert torch.equal(grouped.samples[g]["codes"], alone.samples[0]["codes"])
        assert torch.equal(grouped.samples[g]["wav"], alone.samples[0]["wav"])


def test_prefix_shared_sampling_logprobs_match_teacher_forcing(parts):
    """The engine's per-token log-probs (KV copied to G rows) equal a fresh teacher-forced pass."""
    from s2train.inference import InferenceEngine, SamplingParams

    model, tok, codec, prompts = parts
    eng = RolloutEngine(tok, codec, group_size=3, max_frames=4)
    built = [eng.build(it) for it in prompts]
    res = InferenceEngine(model, tok.im_end_id, mode="eager").generate(
        built, SamplingParams(temperature=1.0, top_p=1.0, ras_window=0), max_frames=4, seed=3, num_samples=3,
        return_logprobs=True,
    )  # fmt: skip
    comps = normalize_generation(res, 2, 3)
    rows = [built[i // 3] for i in range(6)]
    packed = pack_completions(
        [r.tokens for r in rows], [r.codes for r in rows], [r.audio_mask for r in rows],
        [c.codes for c in comps], [c.ended for c in comps], tok.semantic_start, tok.im_end_id, tok.pad_id,
    )  # fmt: skip
    with torch.no_grad():
        lp = completion_logprobs(model, packed)  # full vocabulary, temperature 1: the engine's convention
    assert len({tuple(c.codes.flatten().tolist()) for c in comps[:3]}) > 1  # siblings differ
    for i in range(6):
        n_slow = int(lp.slow_mask[i].sum())
        t = comps[i].codes.shape[1]
        assert torch.allclose(lp.slow[i, :n_slow], res.slow_logprobs[i].float(), atol=1e-4)
        assert torch.allclose(lp.fast[i, :t], res.fast_logprobs[i][1:].T.float(), atol=1e-4)


def test_normalize_generation_formats():
    codes = torch.zeros(2, 3, dtype=torch.long)
    flat = normalize_generation([{"codes": codes, "hit_max_frames": True}, codes], 1, 2)
    assert [c.ended for c in flat] == [False, True]
    nested = normalize_generation(
        [[{"codes": codes[None], "stopped": True}], [{"codes": codes, "stopped": False}]], 2, 1
    )
    assert [c.ended for c in nested] == [True, False] and nested[0].codes.shape == (2, 3)
    with pytest.raises(ValueError, match="3 results for 1 prompts x 2"):
        normalize_generation([codes] * 3, 1, 2)


def test_untagged_baseline_rendered_for_tagged_prompts(parts):
    from .conftest import fake_generate

    model, tok, codec, prompts = parts
    calls = []

    def spy(model, prompts, params, max_frames, seed, num_samples=1):
        calls.append((len(prompts), num_samples))
        return fake_generate(model, prompts, params, max_frames, seed, num_samples)

    batch = [dict(prompts[0], text="[whisper] see you soon"), dict(prompts[1])]
    eng = RolloutEngine(tok, codec, group_size=2, max_frames=3, generate_fn=spy, untagged_baseline=True)
    ro = eng(model, batch, seed=0)
    assert calls == [(2, 2), (1, 1)]  # one extra untagged rendition, for the tagged prompt only
    assert ro.items[0]["untagged_wav"].shape[0] == 1 and "untagged_wav" not in ro.items[1]
