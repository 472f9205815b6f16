"""The benchmark script runs end to end on CPU (tiny shape) and its numbers are consistent."""

import importlib.util
import json
from pathlib import Path

import pytest


def _bench():
    path = Path(__file__).parents[2] / "scripts" / "bench_inference.py"
    spec = importlib.util.spec_from_file_location("bench_inference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_tiny_cpu(tmp_path, capsys):
    rows = _bench().main(["--shapes", "tiny", "--batches", "1", "2", "--frames", "6", "--prompt-len", "8",
                          "--device", "cpu", "--ttfa-ref-frames", "8", "--ttfa-text", "4", "--ttfa-chunk", "2",
                          "--ttfa-repeats", "1", "--json", str(tmp_path / "b.json")])  # fmt: skip
    assert [r["batch"] for r in rows] == [1, 2]
    for r in rows:
        assert r["frames"] == 6  # min_frames = max_frames: no early stop
        assert r["codebook_tokens_per_s"] == pytest.approx(r["frames_per_s"] * 4)
        assert r["speedup_vs_naive"] > 0
        # bytes per frame = weights + the KV the frame reads; the rate is that over the time per frame
        per_frame = r["weight_GB_per_frame"] + r["kv_GB_per_frame"]
        assert r["hbm_GB_per_s"] == pytest.approx(per_frame / (r["ms_per_frame"] / 1000))
    # same session length, twice the rows: twice the KV, the same weights
    assert rows[1]["kv_GB_per_frame"] == pytest.approx(2 * rows[0]["kv_GB_per_frame"])
    assert rows[1]["weight_GB_per_frame"] == rows[0]["weight_GB_per_frame"]
    assert rows[0]["ttfa_ms"] > 0 and "ttfa_ms" not in rows[1]  # time to first audio at batch 1
    out = capsys.readouterr().out
    assert "| tiny | 1 |" in out
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(rows)) and saved["environment"]["torch"]


def test_warmup_uses_the_timed_session():
    """The untimed run is the timed request itself: one decode session, nothing else in peak memory."""
    from s2train.ar import DualAR
    from s2train.inference import InferenceEngine, SamplingParams
    from s2train.inference.benchmark import time_generation

    bench = _bench()
    cfg = bench.SHAPES["tiny"]()
    engine = InferenceEngine(DualAR(cfg).eval(), bench.STOP_ID, mode="eager")
    prompts = bench.make_prompts(cfg, 1, 8, seed=0)
    t = time_generation(
        engine, prompts, SamplingParams(), 70, 21.5
    )  # 8 + 70 + 1 slots: past one 64-slot step
    assert t["frames"] == 70 and len(engine._sessions) == 1


def test_parity_helper_refuses_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present: covered by the gpu tests")
    with pytest.raises((RuntimeError, AssertionError, ValueError)):
        _bench().check_graph_parity("tiny", modes=("cudagraph",), dtypes=("float32",), frames=2)


def test_first_mismatch_names_the_row_and_frame():
    import torch

    first_mismatch = _bench()._first_mismatch
    a = [torch.zeros(4, 6, dtype=torch.long), torch.ones(4, 5, dtype=torch.long)]
    b = [x.clone() for x in a]
    assert first_mismatch(a, b) is None
    b[1][2, 3] = 7
    assert first_mismatch(a, b) == "row 1: first differing frame 3 of 5"
    assert "(4, 6) vs (4, 2)" in first_mismatch(a, [a[0][:, :2], a[1]])
