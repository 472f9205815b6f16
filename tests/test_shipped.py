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
# teacher-forced val loss of the shipped Dual-AR on the tiny demo corpus (train+val+test items of the 8
# training voices, codes from the shipped codec), measured 2026-11-27 on the CPU box (the session-2 base: 6.74)
MEASURED_TINY_VAL_LOSS = 6.43


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


def test_shipped_dualar_contract():
    from s2train import load_pretrained

    model, tok, codec_dir = load_pretrained(SHIPPED / "dualar")
    cfg = model.config
    assert (cfg.num_codebooks, cfg.codebook_size, tok.num_semantic) == (8, 1024, 1024)
    assert (
        codec_dir is not None and codec_dir.resolve() == (SHIPPED / "codec").resolve()
    )  # ../codec, portable
    assert all(p.dtype == torch.float32 for p in model.parameters())  # stored bf16, loaded fp32
    ids = tok.encode("A sentence the tokenizer never saw: zyxwv, naïve café.")
    assert ids and max(ids) < tok.semantic_start  # byte fallback, no semantic ids in text
    assert "python train.py recipe=pretrain" in (SHIPPED / "dualar" / "README.md").read_text()


def test_eval_codec_suite_takes_a_codec_dir(tmp_path):
    # `codec` is a config group of train.py, so the eval key is codec_dir (codec=<dir> would not parse)
    cfg = compose_config("eval", ["suite=codec", f"codec_dir={SHIPPED / 'codec'}"], tmp_path)
    assert cfg.codec_dir.endswith("codec") and cfg.suite.generator is None


@pytest.mark.slow  # ~1 min: 4 originals + 4 resyntheses scored by faster-whisper tiny.en and resemblyzer
def test_shipped_codec_meets_the_issue_3_targets_on_held_out_items(tiny_corpus, tmp_path, one_thread):
    from s2train.eval.suite import evaluate_from_config

    def run(suite: str, *overrides: str) -> dict:
        common = [f"suite={suite}", f"suite.evalset.path={tiny_corpus}", "suite.evalset.max_items=4"]
        return evaluate_from_config(compose_config("eval", [*common, *overrides], tmp_path / suite))

    original = run("quick")  # no ckpt: the ground-truth audio of the same items
    m = run("codec", f"codec_dir={SHIPPED / 'codec'}")
    # measured 2026-11-27 on these 4 items (CPU): originals WER 0.085, resynthesis WER 0.17, SIM 0.822,
    # mel 4.15 (README: WER 0.381 vs 0.174, SIM 0.847 on 24 small-corpus items)
    msg = f"mel {m['eval/mel_distance']:.2f}, SIM {m['eval/sim']:.3f}, WER {m['eval/wer']:.2f} vs {original['eval/wer']:.2f}"
    assert m["eval/n_utterances"] == original["eval/n_utterances"] >= 4, msg
    assert m["eval/wer"] <= original["eval/wer"] + 0.10, msg  # issue 3: within 10 points of the originals
    assert m["eval/sim"] >= 0.80, msg
    assert m["eval/mel_distance"] < 5.0, msg
    assert m["eval/cb_perplexity_min"] > 64, m  # every codebook in use (measured: 168 of 1024 at least)


@pytest.mark.slow  # ~1 min: encode the tiny corpus with the shipped codec, score it teacher-forced
def test_shipped_dualar_validation_loss_does_not_regress(tiny_corpus, tmp_path, one_thread):
    from s2train.data.encode import encode_manifest
    from s2train.entry import train

    encode_manifest(SHIPPED / "codec", tiny_corpus, tmp_path / "codes", batch_size=4)
    overrides = [
        "recipe=finetune",
        f"init_from={SHIPPED / 'dualar'}",
        "validate_only=true",
        f"data.dataset_dir={tmp_path / 'codes'}",
        f"data.tokenizer_dir={SHIPPED / 'dualar' / 'tokenizer'}",
        "data.val_splits=[train,val,test]",
        "model=demo",
        "model.num_codebooks=8",
        "model.codebook_size=1024",
        "codec=demo",
        "logger=none",
        "callbacks=none",
    ]
    m = train(compose_config("train", overrides, tmp_path / "run"))
    # the shipped base: 6.43 (2026-11-27); an untrained model of this size starts at ~14.5
    assert m["val/loss"] < MEASURED_TINY_VAL_LOSS + 0.5, m
