"""ReadingMonitor: val/wer of greedy decodes through s2train.inference, the run's codec and an ASR.

The quick tests use a tiny DualAR, a tiny random codec and a fake ASR (they check the wiring: which items,
what audio, the WER arithmetic, the skip paths, train mode and RNG left as found). The slow test hears real
audio with the real judge (faster-whisper tiny.en): ground-truth codes from the shipped codec must read
back with a low WER, swapped ones with a high WER, and the shipped base must get a finite score.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml

from s2train.data.codes import CodesDataModule, write_synthetic_codes
from s2train.eval.normalize import normalize_text, strip_markup
from s2train.lit.ar import DualARLitModule
from s2train.lit.callbacks import ReadingMonitor

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "checkpoints" / "demo"
TINY = dict(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16, ffn_dim=64, num_codebooks=4,
            codebook_size=64, fast_dim=32, fast_n_layers=1, fast_n_heads=2, fast_n_kv_heads=1,
            fast_head_dim=16, fast_ffn_dim=64, max_seq_len=512)  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Single-threaded tiny models (see tests/conftest.py::one_thread)."""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A synthetic code dataset whose summary.json names a tiny random codec (4 codebooks of 64)."""
    from s2train.codec import build_codec, save_codec

    root = tmp_path_factory.mktemp("reading")
    cfg = yaml.safe_load((ROOT / "configs" / "codec" / "tiny.yaml").read_text())
    cfg["codebook_sizes"] = [64] * 4
    torch.manual_seed(0)
    codec_dir = save_codec(build_codec(cfg).eval(), root / "codec")
    codes = write_synthetic_codes(root / "codes", num_items=24, num_codebooks=4)
    (codes / "summary.json").write_text(json.dumps({"codec": str(codec_dir)}))
    return {"codes": codes, "tok": root / "tok", "codec": Path(codec_dir)}


class FakeASR:
    """Returns the given transcripts in order; records what it heard."""

    def __init__(self, hyps: list[str]):
        self.hyps, self.calls = hyps, []

    def transcribe(self, wavs, sample_rate):
        self.calls.append(([np.asarray(w) for w in wavs], sample_rate))
        return list(self.hyps[: len(wavs)]) + [""] * max(0, len(wavs) - len(self.hyps))


class ModeSpy(pl.Callback):
    """Around the monitor (callbacks run in list order): puts the model in train mode before it, records the
    mode of every module called during it and whether it left the mode and the torch RNG as it found them."""

    def __init__(self):
        self.during: set[bool] = set()
        self.after: list[tuple[bool, bool]] = []
        self._on = False
        self._rng = None

    def attach(self, model):
        def hook(module, args):
            if self._on:
                self.during.add(module.training)

        for m in model.modules():
            m.register_forward_pre_hook(hook)

    def before(self, pl_module):
        pl_module.model.train()
        self._rng, self._on = torch.get_rng_state(), True

    def after_(self, pl_module):
        self._on = False
        self.after.append((pl_module.model.training, torch.equal(torch.get_rng_state(), self._rng)))


class _Before(pl.Callback):
    def __init__(self, spy):
        self.spy = spy

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.spy.before(pl_module)


class _After(_Before):
    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.spy.after_(pl_module)


def _fit(run, tmp_path, callbacks, steps=1, **module_kw):
    """`steps` training steps of a tiny DualAR with a validation (one batch) after each."""
    dm = CodesDataModule(
        str(run["codes"]), str(run["tok"]), batch_size=4, num_semantic=64, vocab_size=300, ref_prob=0.0
    )
    module = DualARLitModule(TINY, str(run["tok"]), warmup_steps=1, **module_kw)
    trainer = pl.Trainer(
        max_steps=steps, val_check_interval=1, limit_val_batches=1, num_sanity_val_steps=0, accelerator="cpu",
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=callbacks, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, datamodule=dm)
    return trainer, module, dm


def _words(text: str) -> int:
    return len(normalize_text(text).split())


def test_val_wer_is_the_corpus_wer_of_the_first_items_every_n_validations(tiny_run, tmp_path):
    dm = CodesDataModule(str(tiny_run["codes"]), str(tiny_run["tok"]), num_semantic=64, vocab_size=300)
    dm.setup()
    texts = [it["text"] for it in dm.val_set.items[:3]]
    # item 0 read right (case, punctuation and markup differ: normalization), item 1 silent, item 2 one extra word
    hyps = [strip_markup(texts[0]).upper() + " !", "", strip_markup(texts[2]) + " banana"]
    asr = FakeASR(hyps)
    spy = ModeSpy()
    monitor = ReadingMonitor(max_items=3, every_n_validations=2, asr=asr)
    trainer, module, _ = _fit(tiny_run, tmp_path, [_Before(spy), monitor, _After(spy)], steps=3)

    assert len(asr.calls) == 2 and monitor.validations == 3  # validations 1 and 3 of 3
    expected = (_words(texts[1]) + 1) / sum(_words(t) for t in texts)
    assert trainer.callback_metrics["val/wer"].item() == pytest.approx(expected)
    assert spy.after == [(True, True)] * 3  # train mode and the RNG stream as found, measured or not

    codec_hop = 16  # configs/codec/tiny.yaml: strides 2*4 and extra 2
    wavs, sr = asr.calls[0]
    assert sr == 16000 and len(wavs) == 3
    for wav, item in zip(wavs, dm.val_set.items[:3]):
        # at most max_length_ratio x the ground-truth frames of audio, finite
        assert wav.ndim == 1 and wav.size <= 2 * item["codes"].shape[1] * codec_hop and np.isfinite(wav).all()

    spy.attach(module.model)
    module.model.train()
    spy._on = True
    res = monitor.measure(trainer, module)
    spy._on = False
    assert spy.during == {False} and module.model.training  # decoded in eval mode, train mode restored
    assert res["refs"] == texts and res["n"] == 3 and len(res["stopped"]) == 3


def test_a_missing_codec_or_asr_skips_with_one_warning(tiny_run, tmp_path, caplog):
    asr = FakeASR([])
    monitor = ReadingMonitor(max_items=2, asr=asr)
    with caplog.at_level(logging.WARNING, logger="s2train.lit.callbacks"):
        trainer, module, dm = _fit(tiny_run, tmp_path, [monitor], steps=2, codec_dir=str(tmp_path / "gone"))
    assert "val/wer" not in trainer.callback_metrics and math.isfinite(trainer.callback_metrics["val/loss"])
    assert not asr.calls and monitor.validations == 2
    warned = [r.message for r in caplog.records if "ReadingMonitor" in r.message]
    assert len(warned) == 1 and "not found" in warned[0]  # one reason, said once

    # no codec named anywhere (module.codec_dir null, dataset summary without one)
    module.hparams.codec_dir, dm.codec_dir = None, None
    assert monitor.measure(trainer, module) is None and not asr.calls
    assert "no codec" in caplog.records[-1].message

    # the codec is there but the ASR cannot load: skipped before any decoding
    module.hparams.codec_dir = str(tiny_run["codec"])
    broken = ReadingMonitor(max_items=2, asr={"model": str(tmp_path / "no_whisper_here")})
    module.model.train()
    assert broken.measure(trainer, module) is None and module.model.training
    assert "the ASR is unavailable" in caplog.records[-1].message
    # a codec that does not fit the model (8 codebooks for a 4-codebook model) is a skip too
    from s2train.codec import build_codec, save_codec

    cfg = yaml.safe_load((ROOT / "configs" / "codec" / "tiny.yaml").read_text())
    cfg["codebook_sizes"] = [64] * 8
    module.hparams.codec_dir = str(save_codec(build_codec(cfg), tmp_path / "k8"))
    assert ReadingMonitor(max_items=2, asr=asr).measure(trainer, module) is None
    assert "does not fit the model" in caplog.records[-1].message
    with pytest.raises(ValueError, match="every_n_validations"):
        ReadingMonitor(every_n_validations=0)
    with pytest.raises(TypeError):
        ReadingMonitor(sampling={"temprature": 0.5})  # a typo fails at construction, not mid-run


def test_pretrain_recipe_has_the_monitor_and_override_removes_it(compose_train):
    cfg = compose_train("recipe=pretrain")
    node = cfg.callbacks.reading
    assert node._target_ == "s2train.lit.callbacks.ReadingMonitor"
    assert node.max_items == 16 and node.every_n_validations == 1
    assert "reading" not in compose_train("recipe=pretrain", "~callbacks.reading").callbacks


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED / "codec" / "config.json").exists(), reason="no shipped checkpoints")
def test_real_asr_reads_shipped_codec_speech_and_scores_the_shipped_base(tmp_path, monkeypatch):
    import shutil
    import subprocess

    from datasets import Dataset as HFDataset

    from s2train.codec import load_codec
    from s2train.data.audio import load_audio
    from s2train.inference.generate import GenerationResult, InferenceEngine

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "Please bring the blue folder to the meeting tomorrow.",
        "My sister moved to a small town near the coast.",
    ]
    codec = load_codec(SHIPPED / "codec")
    rows = {k: [] for k in ("id", "text", "speaker", "language", "split", "path", "codes")}
    for i, text in enumerate(sentences * 2):  # the first three are val, the copies train
        path = tmp_path / f"{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True)
        wav = load_audio(path, codec.sample_rate)
        with torch.no_grad():
            codes = codec.encode(wav.view(1, 1, -1))[0]
        for key, value in zip(rows, (f"u{i}", text, "espeak", "en", "val" if i < 3 else "train", str(path),
                                     codes.tolist())):  # fmt: skip
            rows[key].append(value)
    HFDataset.from_dict(rows).save_to_disk(str(tmp_path / "codes"))
    (tmp_path / "codes" / "summary.json").write_text(json.dumps({"codec": str(SHIPPED / "codec")}))
    bundle = json.loads((SHIPPED / "dualar" / "config.json").read_text())
    tok_dir = str(SHIPPED / "dualar" / "tokenizer")
    dm = CodesDataModule(str(tmp_path / "codes"), tok_dir, batch_size=3, num_semantic=1024)
    module = DualARLitModule(bundle["model"], tok_dir, init_from=str(SHIPPED / "dualar"))
    truth = [torch.as_tensor(c) for c in rows["codes"][:3]]

    def validate():
        monitor = ReadingMonitor(max_items=3, asr={"cpu_threads": 1})
        trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, limit_val_batches=1,
                             callbacks=[monitor], default_root_dir=tmp_path, enable_model_summary=False)  # fmt: skip
        trainer.validate(module, datamodule=dm)
        return trainer.callback_metrics["val/wer"].item()

    real_generate = InferenceEngine.generate

    def oracle(order):
        def generate(self, prompts, params=None, max_frames=512, seed=None, **kw):
            assert len(prompts) == 3
            return GenerationResult(codes=[truth[j] for j in order], stopped=[True] * 3)

        return generate

    monkeypatch.setattr(InferenceEngine, "generate", oracle([0, 1, 2]))
    right = validate()
    monkeypatch.setattr(InferenceEngine, "generate", oracle([1, 2, 0]))
    swapped = validate()
    print(f"tiny.en on shipped-codec espeak speech: WER {right:.3f} right, {swapped:.3f} swapped")
    assert right < 0.35 and swapped > 0.7  # the judge hears the codec's audio, item by item

    monkeypatch.setattr(InferenceEngine, "generate", real_generate)
    base = validate()
    print(f"shipped base, greedy, no reference: val/wer {base:.3f}")
    assert math.isfinite(base) and base >= 0
