"""The benchmark script runs end to end on CPU (tiny shape) and its numbers are consistent."""

import importlib.util
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
                          "--device", "cpu", "--json", str(tmp_path / "b.json")])  # fmt: skip
    assert [r["batch"] for r in rows] == [1, 2]
    for r in rows:
        assert r["frames"] == 6  # min_frames = max_frames: no early stop
        assert r["codebook_tokens_per_s"] == pytest.approx(r["frames_per_s"] * 4)
        assert r["speedup_vs_naive"] > 0
    out = capsys.readouterr().out
    assert "| tiny | 1 |" in out and (tmp_path / "b.json").is_file()


def test_parity_helper_refuses_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present: covered by the gpu tests")
    with pytest.raises((RuntimeError, AssertionError, ValueError)):
        _bench().check_graph_parity("tiny", modes=("cudagraph",), dtypes=("float32",), frames=2)
