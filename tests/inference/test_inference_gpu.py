"""CUDA-only: graph-captured and torch.compile'd decode equal eager decode; skipped cleanly without CUDA."""

import importlib.util
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.gpu


def _bench():
    path = Path(__file__).parents[2] / "scripts" / "bench_inference.py"
    spec = importlib.util.spec_from_file_location("bench_inference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["cudagraph", "compile"])
def test_graph_decode_equals_eager(mode):
    rows = _bench().check_graph_parity("tiny", modes=(mode,))
    assert len(rows) == (2 if mode == "cudagraph" else 1) and all(r["parity"] for r in rows)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graph_sampling_is_seeded():
    from s2train.ar import DualAR
    from s2train.inference import InferenceEngine, SamplingParams

    bench = _bench()
    cfg = bench.SHAPES["tiny"]()
    with torch.device("cuda"):
        model = DualAR(cfg).eval()
    engine = InferenceEngine(model, bench.STOP_ID, mode="cudagraph")
    prompt = bench.make_prompts(cfg, 1, 8, seed=0)
    sp = SamplingParams(temperature=1.0, top_p=0.9)
    a = engine.generate(prompt, sp, 16, seed=1, num_samples=4).codes
    b = engine.generate(prompt, sp, 16, seed=1, num_samples=4).codes
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["cudagraph", "compile"])
def test_guided_graph_decode_equals_eager(mode):
    """Classifier-free guidance (2B slow rows) inside the captured/compiled frame: same codes as eager."""
    from s2train.ar import DualAR
    from s2train.inference import InferenceEngine, SamplingParams
    from s2train.text import Prompt

    bench = _bench()
    cfg = bench.SHAPES["tiny"]()
    prompts = []
    for n in (9, 16, 12):
        tokens, codes, audio = bench.make_prompts(cfg, 1, n, seed=n)[0]
        text = torch.zeros(n, dtype=torch.bool)
        text[-3:-1] = ~audio[-3:-1]  # the final transcript: two text tokens before the end
        prompts.append(Prompt(tokens, codes, audio, torch.zeros(n, dtype=torch.bool), text))
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = DualAR(cfg).eval()
    params = [SamplingParams(do_sample=False, cfg_scale=s) for s in (2.0, 0.0, 1.0)]
    eager = InferenceEngine(model, bench.STOP_ID, mode="eager").generate(prompts, params, 16, min_frames=16)
    engine = InferenceEngine(model, bench.STOP_ID, mode=mode)
    for _ in range(2):  # the second request replays the captured graph
        got = engine.generate(prompts, params, 16, min_frames=16)
        assert all(torch.equal(e, g) for e, g in zip(eager.codes, got.codes))
    sp = SamplingParams(temperature=1.0, top_p=0.9, cfg_scale=2.0)
    a = engine.generate(prompts[:1], sp, 16, seed=1, num_samples=3).codes
    b = engine.generate(prompts[:1], sp, 16, seed=1, num_samples=3).codes
    assert all(torch.equal(x, y) for x, y in zip(a, b))
