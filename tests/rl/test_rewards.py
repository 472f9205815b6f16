import math

import pytest
import torch

from s2train.rl.reward_pool import RewardPool, audio_key
from s2train.rl.rewards import (
    RewardConfigError,
    RewardStack,
    asr_likelihood_reward,
    intelligibility_reward,
    length_penalty,
    repeated_ngram_fraction,
    repetition_penalty,
    speaker_sim_reward,
    tag_reward,
)


def make_sample(value=0.0, frames=10, hit=False, semantic=None):
    codes = torch.zeros(3, frames, dtype=torch.long)
    if semantic is not None:
        codes[0] = torch.tensor(semantic)
    return {
        "wav": torch.full((1, 160), float(value)),
        "sample_rate": 16000,
        "codes": codes,
        "num_frames": frames,
        "hit_max_frames": hit,
    }


def level(samples, batch):
    return torch.tensor([float(s["wav"].mean()) for s in samples])


def test_length_and_repetition_penalties():
    s = [make_sample(hit=True), make_sample(hit=False)]
    assert length_penalty(s, [{"text": "a"}]).tolist() == [-1.0, 0.0]
    assert repeated_ngram_fraction([1, 2, 3, 1, 2, 3, 1, 2], n=3) == pytest.approx(1 - 3 / 6)
    assert repeated_ngram_fraction([1, 2], n=3) == 0.0
    loop = make_sample(frames=12, semantic=[5, 6] * 6)
    varied = make_sample(frames=12, semantic=list(range(12)))
    pen = repetition_penalty([loop, varied], [{"text": "a"}], n=4)
    assert pen[0] < -0.5 and pen[1] == 0.0


class FakeASR:
    def __init__(self, outputs):
        self.outputs = outputs

    def transcribe(self, wavs, sample_rate):
        return [self.outputs[round(float(w.mean()))] for w in wavs]


def test_intelligibility_reward_maps_wer_through_tanh():
    asr = FakeASR({0: "hello there world", 1: "hello world", 2: ""})
    samples = [make_sample(0), make_sample(1), make_sample(2)]
    r = intelligibility_reward(samples, [{"text": "Hello [laugh] there, world!"}] * 3, asr=asr)
    assert r[0] == pytest.approx(1.0)
    assert r[1] == pytest.approx(1 - math.tanh(3 * (1 / 3)))
    assert r[2] == pytest.approx(1 - math.tanh(3.0))


class FakeLikelihoodASR:
    """text_logprob = -(mean level of the clip); records the texts it was asked about."""

    def __init__(self):
        self.texts = []

    def text_logprob(self, wavs, sample_rate, texts):
        self.texts += list(texts)
        return [float("nan") if float(w.mean()) < 0 else -float(w.mean()) for w in wavs]


def test_asr_likelihood_reward_is_linear_in_logprob_and_floored():
    asr = FakeLikelihoodASR()
    samples = [make_sample(v) for v in (0.0, 5.0, 20.0, -1.0)]
    r = asr_likelihood_reward(samples, [{"text": "<|speaker:0|>Hello [laugh] there."}] * 4, asr=asr)
    assert r[:3].tolist() == pytest.approx([1.0, 0.5, 0.0]) and math.isnan(r[3])
    assert asr.texts == ["Hello there."] * 4  # markup stripped before scoring
    assert asr_likelihood_reward(samples[1:2], [{"text": "a"}], asr=asr, floor=-20.0).item() == pytest.approx(
        0.75
    )


def test_asr_likelihood_config_errors_are_not_swallowed_as_failed_samples():
    stack = RewardStack({"asr_likelihood": 1.0}, 2, reward_kwargs={"asr_likelihood": {"asr": FakeASR({})}})
    with pytest.raises(RewardConfigError, match="text_logprob"):
        stack([make_sample(0), make_sample(1)], [{"text": "a"}])
    with pytest.raises(RewardConfigError, match="floor"):
        asr_likelihood_reward([make_sample(0)], [{"text": "a"}], asr=FakeLikelihoodASR(), floor=1.0)


class FakeEncoder:
    def embed(self, wav, sample_rate):
        return torch.tensor([1.0, float(wav.mean())])


def test_speaker_sim_reward_is_cosine_to_reference():
    batch = [{"text": "a", "reference_wav": torch.zeros(1, 100), "reference_sample_rate": 16000}]
    r = speaker_sim_reward([make_sample(0), make_sample(1)], batch, encoder=FakeEncoder())
    assert r[0] == pytest.approx(1.0)
    assert r[1] == pytest.approx(1 / math.sqrt(2))
    with pytest.raises(ValueError, match="reference_wav"):
        speaker_sim_reward([make_sample(0)], [{"text": "a"}], encoder=FakeEncoder())


def test_tag_reward_zero_without_baseline_and_uses_scorer():
    calls = []

    def scorer(wav, untagged, tags, sr, sr_u):
        calls.append(tags)
        return 0.75

    s = [make_sample(0), make_sample(1)]
    assert tag_reward(s, [{"text": "a", "tags": ["whisper"]}], scorer=scorer).tolist() == [0.0, 0.0]
    assert tag_reward(s, [{"text": "a", "untagged_wav": torch.zeros(10)}], scorer=scorer).tolist() == [
        0.0,
        0.0,
    ]
    r = tag_reward(s, [{"text": "a", "tags": ["whisper"], "untagged_wav": torch.zeros(10)}], scorer=scorer)
    assert r.tolist() == [0.75, 0.75] and calls == [["whisper"], ["whisper"]]


def test_stack_weights_and_sums():
    reg = {"level": level, "length": length_penalty}
    stack = RewardStack({"level": 2.0, "length": 0.5}, group_size=2, registry=reg)
    res = stack([make_sample(1), make_sample(3, hit=True)], [{"text": "a"}])
    assert res.total.tolist() == [2.0, 5.5]
    assert res.num_failures == 0 and set(res.components) == {"level", "length"}


def test_failing_or_nan_reward_gets_group_min_and_is_counted():
    def flaky(samples, batch):
        out = []
        for s in samples:
            v = float(s["wav"].mean())
            if v == 9:
                raise RuntimeError("asr crashed")
            out.append(float("nan") if v == 7 else v)
        return torch.tensor(out)

    stack = RewardStack({"flaky": 1.0}, group_size=3, registry={"flaky": flaky})
    samples = [make_sample(v) for v in (2, 9, 5, 7, 4, 1)]
    res = stack(samples, [{"text": "a"}, {"text": "b"}])
    assert res.total.tolist() == [2.0, 2.0, 5.0, 1.0, 4.0, 1.0]
    assert res.failures == {"flaky": 2}
    # a group where everything fails gets 0 (no information), not NaN
    res_all = stack([make_sample(9)] * 3, [{"text": "a"}])
    assert res_all.total.tolist() == [0.0, 0.0, 0.0] and res_all.num_failures == 3


def test_config_errors_before_training():
    with pytest.raises(RewardConfigError, match="group_size"):
        RewardStack({"length": 1.0}, group_size=1)
    with pytest.raises(RewardConfigError, match="unknown reward.*'wer'"):
        RewardStack({"wer": 1.0, "length": 1.0}, group_size=4)
    with pytest.raises(RewardConfigError, match="reward_kwargs"):
        RewardStack({"length": 1.0}, group_size=4, reward_kwargs={"nope": {}})
    with pytest.raises(RewardConfigError, match="no reward"):
        RewardStack({}, group_size=4)


def test_reward_kwargs_are_bound():
    stack = RewardStack({"repetition": 1.0}, group_size=2, reward_kwargs={"repetition": {"n": 2}})
    loop = make_sample(frames=6, semantic=[1, 2] * 3)
    res = stack([loop, loop], [{"text": "a"}])
    assert res.total[0] == pytest.approx(-(1 - 2 / 5))


def test_reward_pool_cache_hits_and_async():
    calls = []

    def counting(samples, batch):
        calls.append(len(samples))
        return level(samples, batch)

    stack = RewardStack({"level": 1.0}, group_size=2, registry={"level": counting})
    with RewardPool(stack, max_workers=1) as pool:
        samples = [make_sample(1), make_sample(2), make_sample(1), make_sample(5)]
        batch = [{"text": "a"}, {"text": "b"}]
        res = pool.submit(samples, batch).result(timeout=10)
        assert res.total.tolist() == [1.0, 2.0, 1.0, 5.0]
        assert calls == [4] and pool.cache.misses == 4
        # same audio for the same prompt text: served from the cache
        res2 = pool.submit(samples[:2], batch[:1]).result(timeout=10)
        assert res2.total.tolist() == [1.0, 2.0] and calls == [4] and pool.cache.hits == 2
        # same audio, different prompt text: a different key
        pool.score(samples[:2], [{"text": "other"}])
        assert calls == [4, 2]


def test_audio_key_depends_on_bytes_and_rate():
    a = torch.zeros(1, 100)
    assert audio_key(a, 16000) == audio_key(a.clone(), 16000)
    assert audio_key(a, 16000) != audio_key(a, 22050)
    b = a.clone()
    b[0, 5] = 1e-3
    assert audio_key(a, 16000) != audio_key(b, 16000)


def test_feature_tag_scorer_on_synthetic_loudness_change():
    from s2train.rl.rewards import feature_tag_scorer

    g = torch.Generator().manual_seed(0)
    t = torch.arange(16000) / 16000
    # a 150 Hz buzz with a 4 Hz syllable-like envelope
    quiet = (0.05 * torch.sin(2 * math.pi * 150 * t) * (0.6 + 0.4 * torch.sin(2 * math.pi * 4 * t))).numpy()
    quiet = quiet + 1e-4 * torch.randn(16000, generator=g).numpy()
    loud = 4 * quiet
    assert feature_tag_scorer(loud, quiet, ["[loud]"], 16000, 16000) == 1.0
    assert feature_tag_scorer(quiet, loud, ["loud"], 16000, 16000) == 0.0
    assert (
        feature_tag_scorer(loud, quiet, ["[sarcastic]"], 16000, 16000) == 0.0
    )  # unknown tag: nothing to check


def test_tag_reward_reads_tags_from_text():
    seen = []
    s = [make_sample(0), make_sample(1)]
    batch = [{"text": "[whisper] hi there", "untagged_wav": torch.zeros(10)}]
    tag_reward(s, batch, scorer=lambda w, u, tags, a, b: seen.append(tags) or 1.0)
    assert seen == [["whisper"], ["whisper"]]
