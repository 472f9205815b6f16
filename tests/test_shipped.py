"""The checkpoints shipped in checkpoints/demo load, keep their contract, and do not regress.

The quick tests check the files and the interface; the slow one re-measures the shipped codec's resynthesis
with the real judges (faster-whisper tiny.en, resemblyzer) against the figures in
checkpoints/demo/codec/README.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "demo"


def test_checkpoints_stay_under_the_size_budget():
    total = sum(f.stat().st_size for f in (ROOT / "checkpoints").rglob("*") if f.is_file())
    assert total < 60e6, f"checkpoints/ holds {total / 1e6:.1f} MB (budget ~60 MB, issue 10)"


def test_shipped_codec_contract(one_thread):
    from s2train.codec import load_codec

    codec = load_codec(SHIPPED / "codec")
    assert (codec.sample_rate, codec.frame_rate, codec.num_codebooks) == (16000, 25.0, 8)
    assert list(codec.codebook_sizes) == [1024] * 8
    assert all(p.dtype == torch.float32 for p in codec.parameters())  # stored fp16, loaded fp32
    wav = 0.1 * torch.randn(1, 1, 16000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        codes = codec.encode(wav)
        out = codec.decode(codes)
    assert codes.shape == (1, 8, 25) and int(codes.min()) >= 0 and int(codes.max()) < 1024
    assert out.shape[-1] >= 16000 and torch.isfinite(out).all()
    assert "python train.py recipe=codec" in (SHIPPED / "codec" / "README.md").read_text()


def test_eval_codec_suite_takes_a_codec_dir(tmp_path):
    # `codec` is a config group of train.py, so the eval key is codec_dir (codec=<dir> would not parse)
    cfg = compose_config("eval", ["suite=codec", f"codec_dir={SHIPPED / 'codec'}"], tmp_path)
    assert cfg.codec_dir.endswith("codec") and cfg.suite.generator is None


@pytest.mark.slow  # ~1 min: 8 resyntheses scored by faster-whisper tiny.en and resemblyzer
def test_shipped_codec_resynthesis_does_not_regress(tiny_corpus, tmp_path, one_thread):
    from s2train.eval.suite import evaluate_from_config

    cfg = compose_config(
        "eval",
        [
            "suite=codec",
            f"codec_dir={SHIPPED / 'codec'}",
            f"suite.evalset.path={tiny_corpus}",
            "suite.evalset.max_items=4",
        ],
        tmp_path,
    )
    m = evaluate_from_config(cfg)
    # measured 2026-11-26 on these 4 items (CPU): mel 6.93, SIM 0.722, WER 2.10 (README: 7.44 / 0.708 / 1.70
    # on 24 small-corpus items). WER is not asserted: the shipped codec is not intelligible yet.
    msg = f"mel {m['eval/mel_distance']:.2f}, SIM {m['eval/sim']:.3f}, WER {m['eval/wer']:.2f}"
    assert m["eval/n_utterances"] >= 4, msg
    assert m["eval/mel_distance"] < 8.0, msg
    assert m["eval/sim"] > 0.65, msg
