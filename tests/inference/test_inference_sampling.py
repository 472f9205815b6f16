"""Sampling filters, constrained decoding, stop conditions and bad-input errors."""

import pytest
import torch

from s2train.inference import (
    DecodeCaches,
    DecodeConsts,
    DecodeState,
    InferenceEngine,
    SamplingParams,
    SamplingTensors,
    decode_frame,
    generate,
    prefill,
)
from s2train.inference.sampling import draw, filter_logits, repetition_aware, sample
from tests.inference.conftest import SEM_START, STOP, make_prompt

GREEDY = SamplingParams(do_sample=False)


def test_top_k_mask():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0], [1.0, 5.0, 3.0, 4.0, 2.0]])
    out = filter_logits(logits, torch.tensor([2, 0]), torch.tensor([1.0, 1.0]))
    assert torch.isinf(out[0]).tolist() == [True, False, True, False, True]
    assert not torch.isinf(out[1]).any()  # top_k=0 is off


def test_top_p_mask_keeps_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = filter_logits(probs.log(), torch.tensor([0]), torch.tensor([0.75]))
    assert torch.isinf(out[0]).tolist() == [False, False, True, True]
    # A tiny top_p still keeps the best token.
    out = filter_logits(probs.log(), torch.tensor([0]), torch.tensor([1e-6]))
    assert torch.isinf(out[0]).tolist() == [False, True, True, True]


def test_draw_matches_distribution():
    torch.manual_seed(0)
    probs = torch.tensor([0.1, 0.6, 0.3]).expand(20000, 3).contiguous()
    freq = torch.bincount(draw(probs), minlength=3).float() / 20000
    assert torch.allclose(freq, torch.tensor([0.1, 0.6, 0.3]), atol=0.02)


def test_sample_greedy_rows_take_argmax():
    torch.manual_seed(0)
    logits = torch.randn(4, 50)
    tok, _ = sample(logits, torch.ones(4), torch.zeros(4, dtype=torch.long), torch.ones(4),
                    torch.tensor([True, False, True, False]))  # fmt: skip
    assert tok[0] == logits[0].argmax() and tok[2] == logits[2].argmax()


def test_repetition_aware_redraws_only_repeats():
    torch.manual_seed(0)
    full = torch.full((2, 10), 0.1)
    window = torch.tensor([[7, 7, 7, 1], [7, 2, 3, 1]])
    tok = torch.tensor([7, 7])
    out = [
        repetition_aware(tok, full, window, torch.tensor([2.0, 2.0]), torch.zeros(2, dtype=torch.bool))
        for _ in range(30)
    ]
    assert any(int(o[0]) != 7 for o in out)
    assert all(int(o[1]) == 7 for o in out)


def _decode_setup(model, prompt, params=GREEDY, batch=1):
    cfg = model.config
    tokens, codes, audio = prompt
    max_len = tokens.numel() + 20
    caches = DecodeCaches.allocate(cfg, batch, max_len, torch.float32, "cpu")
    state = DecodeState.allocate(batch, cfg.dim, cfg.num_codebooks, 4, torch.float32, "cpu")
    consts = DecodeConsts.build(model, STOP, max_len, "cpu", return_logprobs=False)
    sp = SamplingTensors.build([params] * batch, cfg.num_codebooks, torch.device("cpu"))
    with torch.no_grad():
        h = prefill(model, tokens[None], codes[None], audio[None], caches.row(0))
    state.reset(h.expand(batch, -1), torch.zeros(batch, dtype=torch.long), tokens.numel())
    return state, caches, sp, consts


def test_constrained_decoding_never_emits_text_tokens(tiny_model):
    # Make text tokens win any unconstrained argmax.
    with torch.no_grad():
        tiny_model.slow.tok_emb.weight[4:SEM_START] *= 50.0
    prompt = make_prompt(8, 20)
    state, caches, sp, consts = _decode_setup(
        tiny_model, prompt, SamplingParams(temperature=1.0, top_p=1.0), 4
    )
    with torch.no_grad():
        assert int(tiny_model.slow.logits(state.hidden[:1]).argmax()) < SEM_START  # the test has teeth
        for _ in range(8):
            decode_frame(tiny_model, state, caches, sp, consts)
            tok = state.token
            assert bool(((tok >= SEM_START) & (tok < SEM_START + 64) | (tok == STOP)).all()), tok


def test_codebook_sizes_mask_fast_vocabulary(tiny_cfg):
    from s2train.ar import DualAR, DualARConfig

    cfg = DualARConfig.from_dict(tiny_cfg.to_dict(), codebook_sizes=[64, 8, 8, 8])
    model = DualAR(cfg).eval()
    out = generate(
        model,
        [make_prompt(6, 21)],
        SamplingParams(temperature=1.5, top_p=1.0),
        10,
        seed=0,
        stop_token_id=STOP,
    )
    assert out[0].shape[1] > 0 and int(out[0][1:].max()) < 8


def test_per_row_stop_and_early_exit(stopping_model):
    prompts = [make_prompt(n, s) for n, s in ((9, 1), (16, 2))]  # these two stop at different frames
    engine = InferenceEngine(stopping_model, STOP, stop_check_interval=4)
    res = engine.generate(prompts, GREEDY, 200)
    lengths = [c.shape[1] for c in res.codes]
    assert len(set(lengths)) > 1 and all(res.stopped), lengths
    # The loop exits within one check interval of the last row's stop instead of running 200 frames.
    assert res.stats["frames"] <= max(lengths) + 1 + 4
    assert res.stats["frames"] < 200


def test_max_frames_without_stop(tiny_model):
    res = InferenceEngine(tiny_model, STOP).generate([make_prompt(6, 22)], GREEDY, 7)
    assert res.codes[0].shape == (4, 7) and res.stopped == [False]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(fast_temperature=[0.5, 0.5]), "codebooks"),
        (dict(ras_threshold=2.0), "ras_threshold"),
        (dict(cfg_scale=-0.5), "cfg_scale"),
        (dict(cfg_scale=float("nan")), "cfg_scale"),
        (dict(cfg_scale=float("inf")), "cfg_scale"),
        (dict(cfg_scale="2"), "cfg_scale"),
    ],
)
def test_bad_sampling_params(tiny_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(tiny_model, [make_prompt(6, 23)], SamplingParams(**kwargs), 4, stop_token_id=STOP)


def test_bad_requests(tiny_model, tiny_cfg):
    p = make_prompt(6, 24)
    with pytest.raises(ValueError, match="no prompts"):
        generate(tiny_model, [], GREEDY, 4, stop_token_id=STOP)
    with pytest.raises(ValueError, match="max_seq_len"):
        generate(tiny_model, [p], GREEDY, tiny_cfg.max_seq_len, stop_token_id=STOP)
    with pytest.raises(ValueError, match="prompt 1"):
        generate(tiny_model, [p, (p[0], p[1][:2], p[2])], GREEDY, 4, stop_token_id=STOP)
    with pytest.raises(ValueError, match="non-empty"):
        generate(tiny_model, [(p[0][:0], p[1][:, :0], p[2][:0])], GREEDY, 4, stop_token_id=STOP)
    with pytest.raises(ValueError, match="token ids"):
        generate(tiny_model, [(p[0] + 1000, p[1], p[2])], GREEDY, 4, stop_token_id=STOP)
    with pytest.raises(ValueError, match="stop_token_id"):
        generate(tiny_model, [p], GREEDY, 4, stop_token_id=10_000)
    with pytest.raises(ValueError, match="max_frames"):
        generate(tiny_model, [p], GREEDY, 0, stop_token_id=STOP)
    with pytest.raises(ValueError, match="CUDA"):
        InferenceEngine(tiny_model, STOP, mode="cudagraph")


def test_min_frames_blocks_stop(stopping_model):
    prompt = [make_prompt(16, 2)]  # stops after 6 frames without min_frames
    free = generate(stopping_model, prompt, GREEDY, 30, stop_token_id=STOP)[0]
    forced = generate(stopping_model, prompt, GREEDY, 30, stop_token_id=STOP, min_frames=12)[0]
    assert free.shape[1] < 12 <= forced.shape[1]
    assert torch.equal(forced[:, : free.shape[1]], free)


def test_inference_config_matches_code():
    import dataclasses
    import inspect
    from pathlib import Path

    import yaml

    from s2train.inference.tts import TTS

    cfg = yaml.safe_load((Path(__file__).parents[2] / "configs" / "inference" / "default.yaml").read_text())
    params = SamplingParams(**cfg["sampling"]).validate(4)
    assert {f.name for f in dataclasses.fields(SamplingParams)} == set(cfg["sampling"])
    assert params.temperature == cfg["sampling"]["temperature"]
    tts_args = set(inspect.signature(TTS.__init__).parameters)
    assert {"mode", "voice_cache_size", "max_seconds"} <= tts_args
    assert {"mode", "stop_check_interval"} <= set(inspect.signature(InferenceEngine.__init__).parameters)
