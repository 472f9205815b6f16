"""Every recipe runs in-process through `s2train.entry.train` on tiny settings, chained like the demo:
tiny demo corpus -> tiny codec (recipe=codec, exported) -> codes -> pretrain -> finetune / lora -> grpo."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.conftest import compose_config

TINY = ["codec=tiny", "model=tiny", "logger=csv", "callbacks=none", "trainer.val_check_interval=null"]


def _train(out: Path, *overrides: str) -> dict:
    from s2train.entry import train

    cfg = compose_config("train", [*TINY, *overrides], out)
    return train(cfg)


@pytest.fixture(scope="module")
def chain(tiny_corpus, tmp_path_factory):
    """Codec trained for 2 steps and exported, the corpus encoded with it, a 4-step pretrained bundle."""
    from s2train.data.encode import encode_manifest

    root = tmp_path_factory.mktemp("chain")
    _train(
        root / "codec",
        "recipe=codec",
        f"data.manifest={tiny_corpus}",
        "trainer.max_steps=2",
        "data.batch_size=2",
        "module.mel_warmup_steps=1",
        f"export_dir={root / 'codec_export'}",
    )
    summary = encode_manifest(root / "codec_export", tiny_corpus, root / "codes", batch_size=4)
    assert summary["encoded"] >= 30
    metrics = _train(
        root / "pretrain",
        "recipe=pretrain",
        f"data.dataset_dir={root / 'codes'}",
        f"data.tokenizer_dir={root / 'tok'}",
        "data.vocab_size=300",
        "data.batch_size=4",
        "trainer.max_steps=4",
        f"export_dir={root / 'base'}",
        # the tiny codec runs at 1000 frames/s: a 3 s reference is 3000 positions
        "model.max_seq_len=8192",
    )
    assert metrics["train/loss"] > 0
    return {
        "root": root,
        "codes": root / "codes",
        "tok": root / "tok",
        "base": root / "base",
        "corpus": tiny_corpus,
    }


def test_codec_export_loads_and_encodes(chain):
    import torch

    from s2train.codec import load_codec

    codec = load_codec(chain["root"] / "codec_export")
    codes = codec.encode(torch.zeros(1, 1, 1600) + 0.01 * torch.randn(1, 1, 1600))
    assert codes.shape[:2] == (1, codec.num_codebooks)


def test_pretrain_bundle_loads_with_codec(chain):
    from s2train import load_pretrained

    model, tok, codec_dir = load_pretrained(chain["base"])
    assert tok.vocab_size <= model.config.vocab_size
    assert codec_dir is not None and Path(codec_dir).exists()


@pytest.mark.parametrize("recipe", ["finetune", "lora"])
def test_recipe_from_pretrained_bundle(chain, recipe, tmp_path):
    metrics = _train(
        tmp_path,
        f"recipe={recipe}",
        f"init_from={chain['base']}",
        f"data.dataset_dir={chain['codes']}",
        f"data.tokenizer_dir={chain['tok']}",
        "data.batch_size=4",
        "debug=fast_dev_run",
    )
    assert metrics["train/loss"] > 0


def test_validate_only_scores_the_initial_weights_without_training(chain, tmp_path):
    import torch
    from safetensors.torch import load_file

    args = [
        "recipe=finetune",
        f"init_from={chain['base']}",
        f"data.dataset_dir={chain['codes']}",
        f"data.tokenizer_dir={chain['tok']}",
        "data.batch_size=4",
        "model.max_seq_len=8192",  # as in the chain: the tiny codec's frames are long
        "data.val_splits=[val,test]",  # the tiny corpus's val split has one sentence; the text gap needs two
        "++trainer.limit_val_batches=2",
        f"export_dir={tmp_path / 'export'}",
    ]
    before = load_file(str(chain["base"] / "model.safetensors"))
    a = _train(tmp_path / "a", *args, "validate_only=true")
    b = _train(tmp_path / "b", *args, "validate_only=true")
    assert a["val/loss"] > 0 and a == b  # the same weights and batches: the same numbers
    # the recipe's TextGapMonitor (kept by callbacks=none: it belongs to the recipe) logs the text gap
    assert math.isfinite(a["val/text_gap"]) and a["val/text_gap_loss_shuffled"] > 0
    assert not (tmp_path / "export").exists()  # nothing trained, nothing exported
    after = load_file(str(chain["base"] / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_finetune_requires_init_from(chain, tmp_path):
    from s2train.entry import ConfigError

    with pytest.raises(ConfigError, match="init_from"):
        _train(tmp_path, "recipe=finetune", f"data.dataset_dir={chain['codes']}")


def test_grpo_recipe_from_bundle(chain, tmp_path):
    metrics = _train(
        tmp_path,
        "recipe=grpo",
        f"init_from={chain['base']}",
        f"data.manifest={chain['corpus']}",
        "module.max_frames=16",
        "module.group_size=2",
        "data.batch_size=1",
        "debug=fast_dev_run",
    )
    assert any(k.startswith("rl/reward") for k in metrics)


def test_eval_quick_generates_through_tts_and_scores(chain, tmp_path):
    from s2train.entry import evaluate

    cfg = compose_config(
        "eval",
        [
            f"ckpt={chain['base']}",
            "suite=quick",
            f"suite.evalset.path={chain['corpus']}",
            "suite.evalset.max_items=1",
            "suite.generator.max_seconds=0.05",
            "logger=none",
        ],
        tmp_path,
    )
    metrics = evaluate(cfg)
    # An untrained model babbles: the judges must still score it (WER high but finite, SIM in [-1, 1]).
    assert metrics["eval/wer"] >= 0.5
    assert -1.0 <= metrics["eval/sim"] <= 1.0
    out = next(tmp_path.rglob("metrics.json")).parent
    assert (out / "report.md").exists() and list(out.rglob("*.wav"))


def test_eval_speed_suite_times_the_engine(chain, tmp_path):
    from s2train.entry import evaluate

    cfg = compose_config(
        "eval",
        [
            f"ckpt={chain['base']}",
            "suite=speed",
            "suite.benchmark.frames=8",
            "suite.benchmark.batch_sizes=[1,2]",
            "logger=none",
        ],
        tmp_path,
    )
    metrics = evaluate(cfg)
    assert metrics["eval/b2/frames_per_s"] > 0 and metrics["eval/speedup_vs_naive"] > 0


def test_eval_accepts_a_lightning_checkpoint(chain, tmp_path):
    from s2train.eval.generators import resolve_bundle

    _train(
        tmp_path / "ft",
        "recipe=finetune",
        f"init_from={chain['base']}",
        f"data.dataset_dir={chain['codes']}",
        f"data.tokenizer_dir={chain['tok']}",
        "data.batch_size=4",
        "trainer.max_steps=1",
        "+callbacks.ckpt._target_=pytorch_lightning.callbacks.ModelCheckpoint",
        f"+callbacks.ckpt.dirpath={tmp_path / 'ckpts'}",
        "+callbacks.ckpt.every_n_train_steps=1",
    )
    ckpt = next((tmp_path / "ckpts").glob("*.ckpt"))
    bundle = resolve_bundle(ckpt)
    from s2train import load_pretrained

    model, _, codec_dir = load_pretrained(bundle)
    assert codec_dir is not None and model.config.num_codebooks == 4
    assert resolve_bundle(ckpt) == bundle  # exported once, reused


def test_a_lightning_checkpoint_exports_with_the_codec_of_its_codes(chain, tmp_path):
    # eval.py ckpt=<.ckpt> exports the checkpoint to a bundle outside the training run: the codec that made
    # the training codes (named in the code dataset's summary) must come along, recorded in the checkpoint
    from s2train.bundle import read_bundle_config
    from s2train.lit.ar import DualARLitModule

    _train(
        tmp_path / "run", "recipe=pretrain", f"data.dataset_dir={chain['codes']}",
        f"data.tokenizer_dir={chain['tok']}", "data.batch_size=4", "model.max_seq_len=8192", "trainer.max_steps=1",
        "callbacks=default", "~callbacks.progress_bar", "~callbacks.text_gap", f"export_dir={tmp_path / 'export'}",
    )  # fmt: skip
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    module = DualARLitModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False)
    assert module.hparams.codec_dir is None and not module.hparams.init_from  # only the checkpoint knows
    out = module.export(tmp_path / "from_ckpt")
    codec = read_bundle_config(out)["codec"]
    assert codec and Path(codec["path"]).resolve() == (chain["root"] / "codec_export").resolve()
