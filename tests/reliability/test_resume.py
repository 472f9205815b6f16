"""Checkpoints and resume under failure, through `s2train.entry.train` / `python train.py`.

- Exact resume: 2N steps in one go == N steps + `ckpt_path=last.ckpt` + N more (CPU,
  `trainer.deterministic=true`); compared: per-step losses (LossRecorder), a fingerprint of each batch (is
  the resumed run fed the same data?) and the final weights.
- Atomic checkpoints: a `train.py` subprocess saving every step, killed with SIGKILL, leaves only loadable
  `*.ckpt` files and resumes from `last.ckpt`.
- Non-finite guard: NaN losses are skipped and counted; many in a row stop with a last-good checkpoint.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from s2train.data.codes import write_synthetic_codes
from s2train.lit.callbacks import NonFiniteError
from tests.reliability.conftest import FAST_CODEC, ROOT, read_losses, recorder_overrides

# 15 train items at batch 4 -> 4 batches per epoch (the last one has 3 items).
AR_BATCHES_PER_EPOCH = 4


@pytest.fixture(scope="module")
def codes_dir(tmp_path_factory) -> Path:
    return write_synthetic_codes(tmp_path_factory.mktemp("resume") / "codes", num_items=18, num_codebooks=4)


def _ar_overrides(codes_dir: Path, out: Path, steps: int, total: int) -> list[str]:
    return [
        "recipe=pretrain", "model=tiny", "codec=tiny", f"data.dataset_dir={codes_dir}",
        f"data.tokenizer_dir={codes_dir.parent / 'tok'}", "data.batch_size=4", "data.vocab_size=300",
        "data.num_semantic=64", "logger=none", "callbacks=none", f"trainer.max_steps={steps}",
        "++trainer.limit_val_batches=0", "trainer.deterministic=true", "trainer.log_every_n_steps=1",
        "++trainer.enable_progress_bar=false", "module.warmup_steps=2", f"module.total_steps={total}",
        # data.ref_prob=1 makes the per-(epoch, index) reference draws matter
        "data.ref_prob=1.0", "++trainer.enable_checkpointing=true",
        "+callbacks.ckpt._target_=pytorch_lightning.callbacks.ModelCheckpoint",
        f"+callbacks.ckpt.dirpath={out}/checkpoints", "+callbacks.ckpt.save_last=true",
        "+callbacks.ckpt.every_n_train_steps=1", "+callbacks.ckpt.save_top_k=0",
        *recorder_overrides(out / "losses.jsonl"),
    ]  # fmt: skip


def _codec_overrides(manifest: Path, out: Path, steps: int) -> list[str]:
    return [
        "recipe=codec", *FAST_CODEC, f"data.manifest={manifest}", "data.batch_size=2", "logger=none",
        "callbacks=none", f"trainer.max_steps={steps}", "++trainer.limit_val_batches=0",
        "trainer.deterministic=true", "++trainer.enable_progress_bar=false", "module.mel_warmup_steps=1",
        "+callbacks.ckpt._target_=pytorch_lightning.callbacks.ModelCheckpoint",
        f"+callbacks.ckpt.dirpath={out}/checkpoints", "+callbacks.ckpt.save_last=true",
        "+callbacks.ckpt.every_n_train_steps=1", "+callbacks.ckpt.save_top_k=0",
        *recorder_overrides(out / "losses.jsonl"),
    ]  # fmt: skip


def _run(overrides: list[str], out: Path, ckpt: Path | None = None) -> dict[str, torch.Tensor]:
    from s2train.entry import train
    from tests.conftest import compose_config

    extra = [f"ckpt_path={ckpt}"] if ckpt else []
    cfg = compose_config("train", [*overrides, *extra], out)
    train(cfg)
    return torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def _straight_and_resumed(make, tmp_path: Path, n: int, total: int):
    """Returns (straight rows, resumed rows, straight weights, resumed weights)."""
    a, b = tmp_path / "straight", tmp_path / "resumed"
    w_a = _run(make(out=a, steps=total), a)
    _run(make(out=b, steps=n), b)
    w_b = _run(make(out=b, steps=total), b, ckpt=b / "checkpoints" / "last.ckpt")
    return read_losses(a / "losses.jsonl"), read_losses(b / "losses.jsonl"), w_a, w_b


def _assert_same(rows_a, rows_b, w_a, w_b):
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    assert [r["batch"] for r in rows_a] == [r["batch"] for r in rows_b], "resumed run was fed other batches"
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]
    assert w_a.keys() == w_b.keys()
    for k in w_a:
        assert torch.equal(w_a[k], w_b[k]), k


def _ar(codes_dir, total, *extra):
    def make(out, steps):
        return [*_ar_overrides(codes_dir, out, steps, total), *extra]

    return make


RNG_CALLBACK = "+callbacks.rng._target_=s2train.lit.callbacks.RNGStateCallback"


def test_ar_resume_at_epoch_boundary_is_exact(codes_dir, tmp_path):
    n = AR_BATCHES_PER_EPOCH
    rows_a, rows_b, w_a, w_b = _straight_and_resumed(_ar(codes_dir, 2 * n), tmp_path, n=n, total=2 * n)
    assert len(rows_a) == 2 * n
    _assert_same(rows_a, rows_b, w_a, w_b)


def test_ar_resume_mid_epoch_is_exact(codes_dir, tmp_path):
    """CodesDataModule's state_dict holds the data position: the resumed run continues the epoch at batch 3."""
    n = AR_BATCHES_PER_EPOCH // 2 + 1  # stop inside the first epoch
    rows_a, rows_b, w_a, w_b = _straight_and_resumed(_ar(codes_dir, 2 * n), tmp_path, n=n, total=2 * n)
    assert [r["batch_idx"] for r in rows_b] == [0, 1, 2, 3, 0, 1]
    _assert_same(rows_a, rows_b, w_a, w_b)


def test_ar_resume_in_a_later_epoch_is_exact(codes_dir, tmp_path):
    """Stop mid-epoch 1: the sampler order and the per-epoch reference draws must both be those of epoch 1."""
    n = AR_BATCHES_PER_EPOCH + 2
    rows_a, rows_b, w_a, w_b = _straight_and_resumed(_ar(codes_dir, n + 2), tmp_path, n=n, total=n + 2)
    assert [r["epoch"] for r in rows_b] == [0] * 4 + [1] * 4
    _assert_same(rows_a, rows_b, w_a, w_b)


def test_ar_resume_inside_the_duration_curriculum_is_exact(codes_dir, tmp_path):
    """data.curriculum_steps=6 spans epoch 0 and half of epoch 1; stop at step 5, inside it, and resume."""
    n = AR_BATCHES_PER_EPOCH + 1
    make = _ar(codes_dir, n + 3, "data.curriculum_steps=6")
    rows_a, rows_b, w_a, w_b = _straight_and_resumed(make, tmp_path, n=n, total=n + 3)
    assert [r["epoch"] for r in rows_b] == [0] * 4 + [1] * 4
    _assert_same(rows_a, rows_b, w_a, w_b)
    plain = tmp_path / "plain"
    _run(_ar(codes_dir, n + 3)(out=plain, steps=n + 3), plain)
    plain_rows = read_losses(plain / "losses.jsonl")
    assert [r["batch"] for r in rows_a] != [
        r["batch"] for r in plain_rows
    ]  # the curriculum changed the order


def test_codes_dataset_follows_the_sampler_epoch(codes_dir, tmp_path):
    from s2train.data.codes import CodesDataModule

    dm = CodesDataModule(str(codes_dir), str(tmp_path / "tok"), batch_size=4, num_semantic=64, vocab_size=300)
    dm.setup()
    dl = dm.train_dataloader()
    dl.batch_sampler.sampler.set_epoch(3)  # what Lightning's fit loop does at each epoch start
    assert dm.train_set.epoch == 3
    assert {i[1] for batch in dl.batch_sampler for i in batch} == {3}  # indices are tagged with the epoch


def _codec(manifest, *extra):
    def make(out, steps):
        return [*_codec_overrides(manifest, out, steps), *extra]

    return make


@pytest.fixture(scope="module")
def codec_manifest(tmp_path_factory) -> Path:
    """8 clean 0.5 s train clips (batch 2 -> 4 batches per epoch)."""
    import soundfile as sf

    from s2train.data.manifest import ManifestItem, write_manifest
    from tests.reliability.conftest import SR, tone

    folder = tmp_path_factory.mktemp("codec_resume")
    items = []
    for i in range(8):
        path = folder / f"c{i}.wav"
        sf.write(path, tone(0.5, freq=120 + 50 * i, seed=i), SR, subtype="PCM_16")
        items.append(ManifestItem(f"c{i}", str(path), f"clip {i}", "spk0", split="train"))
    return write_manifest(items, folder / "manifest.jsonl")


# global_step counts optimizer steps: 1 for the warm-up batch, then 2 per batch (generator + discriminator),
# so 7 steps = 4 batches = one epoch. Resume at that epoch boundary, then 7 -> 11 (2 more batches).
CODEC_N, CODEC_TOTAL = 7, 11


def test_codec_resume_restores_both_gan_optimizers(codec_manifest, tmp_path):
    make = _codec(codec_manifest, RNG_CALLBACK)
    rows_a, rows_b, w_a, w_b = _straight_and_resumed(make, tmp_path, n=CODEC_N, total=CODEC_TOTAL)
    assert [r["step"] for r in rows_a] == [1, 3, 5, 7, 9, 11]
    ck = torch.load(
        tmp_path / "resumed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    assert len(ck["optimizer_states"]) == 2 and len(ck["lr_schedulers"]) == 2
    assert any(k.startswith("disc.") for k in w_a)
    _assert_same(rows_a, rows_b, w_a, w_b)


def test_codec_resume_mid_epoch_is_exact_with_both_fixes(codec_manifest, tmp_path):
    """AudioDataModule's data position + RNG state in the checkpoint: a mid-epoch codec resume is exact."""
    make = _codec(codec_manifest, RNG_CALLBACK)
    rows_a, rows_b, w_a, w_b = _straight_and_resumed(
        make, tmp_path, n=5, total=CODEC_TOTAL
    )  # 5 = after batch 3
    assert [r["batch_idx"] for r in rows_b] == [0, 1, 2, 3, 0, 1]
    _assert_same(rows_a, rows_b, w_a, w_b)


def test_default_callbacks_keep_rng_state_in_checkpoints(tmp_path):
    """The exact codec resume above needs RNGStateCallback; the stock callback config must include it."""
    from tests.conftest import compose_config

    cfg = compose_config("train", [], tmp_path)
    targets = [c.get("_target_") for c in cfg.callbacks.values()]
    assert "s2train.lit.callbacks.RNGStateCallback" in targets


# ---------------------------------------------------------------- atomic checkpoints, non-finite guard
def _pretrain(codes_dir: Path, tok: Path) -> list[str]:
    return [
        "recipe=pretrain", "model=tiny", "codec=tiny", f"data.dataset_dir={codes_dir}", f"data.tokenizer_dir={tok}",
        "data.batch_size=4", "data.vocab_size=300", "data.num_semantic=64", "logger=none",
        "++trainer.limit_val_batches=0", "module.warmup_steps=1", "~callbacks.lr_monitor",
        "~callbacks.progress_bar", "~callbacks.loss_plot", "++trainer.enable_progress_bar=false",
    ]  # fmt: skip


def test_sigkill_during_checkpointing_leaves_only_loadable_checkpoints(codes_dir, tmp_path):
    """A real `python train.py` run saving every step, killed with SIGKILL, then resumed from last.ckpt."""
    out = tmp_path / "run"
    ckpt_dir = out / "checkpoints"
    cmd = [
        sys.executable, str(ROOT / "train.py"), *_pretrain(codes_dir, tmp_path / "tok"),
        "trainer.max_steps=100000", "callbacks.model_checkpoint.every_n_train_steps=1",
        f"paths.output_dir={out}", f"paths.log_dir={out}", f"hydra.run.dir={out}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(list(ckpt_dir.glob("step_*.ckpt"))) < 6:
            if proc.poll() is not None:
                pytest.fail(
                    f"train.py exited early ({proc.returncode}): {proc.stderr.read().decode()[-3000:]}"
                )
            assert time.monotonic() < deadline, "no checkpoints within 120 s"
            time.sleep(0.05)
        time.sleep(0.137)  # land somewhere inside a later save, not right after one
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    ckpts = sorted(ckpt_dir.glob("*.ckpt"))
    assert len(ckpts) >= 7 and (ckpt_dir / "last.ckpt") in ckpts
    steps = []
    for path in ckpts:  # every file under a final name is a complete checkpoint
        ck = torch.load(path, map_location="cpu", weights_only=False)
        assert ck["state_dict"] and len(ck["optimizer_states"]) == 1, path
        steps.append(ck["global_step"])
    last = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
    # ModelCheckpoint writes step_N.ckpt, then last.ckpt: a kill in between leaves last one step behind
    assert max(steps) - 1 <= last <= max(steps)
    leftovers = [p.name for p in ckpt_dir.iterdir() if not p.name.endswith(".ckpt")]
    assert all(n.startswith(".") and n.endswith(".tmp") for n in leftovers), leftovers  # at most a temp file

    # and the killed run resumes from last.ckpt
    from s2train.entry import train
    from tests.conftest import compose_config

    cfg = compose_config(
        "train",
        [*_pretrain(codes_dir, tmp_path / "tok"), f"trainer.max_steps={last + 2}", f"ckpt_path={ckpt_dir / 'last.ckpt'}",
         *recorder_overrides(tmp_path / "resumed.jsonl")],
        out,
    )  # fmt: skip
    train(cfg)
    assert [r["step"] for r in read_losses(tmp_path / "resumed.jsonl")] == [last + 1, last + 2]


def _nan_at(monkeypatch, cls_path: str, attr: str, bad_steps: set[int], step_of=None) -> list[int]:
    """Make `cls.attr`'s loss output NaN when `step_of(module)` (default: the call index) is in bad_steps."""
    import importlib

    mod_name, cls_name = cls_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(mod_name), cls_name)
    original = getattr(cls, attr)
    seen: list[int] = []

    def patched(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if not self.training:
            return out
        step = step_of(self) if step_of else len(seen)
        seen.append(step)
        if step in bad_steps:
            if isinstance(out, dict):
                out = {**out, "loss": out["loss"] * float("nan")}
            else:
                out = out * float("nan")
        return out

    monkeypatch.setattr(cls, attr, patched)
    return seen


def _weights(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_nonfinite_loss_is_skipped_and_counted_in_pretrain(codes_dir, tmp_path, monkeypatch):
    from s2train.entry import train
    from tests.conftest import compose_config

    # batches (global steps) 1 and 2 give a NaN loss; 0, 3, 4 are fine
    _nan_at(monkeypatch, "s2train.lit.ar.DualARLitModule", "forward", {1, 2}, lambda m: m.trainer.global_step)
    cfg = compose_config(
        "train",
        [*_pretrain(codes_dir, tmp_path / "tok"), "trainer.max_steps=5", "trainer.log_every_n_steps=1",
         "callbacks.non_finite_guard.max_consecutive=3", *recorder_overrides(tmp_path / "l.jsonl")],
        tmp_path,
    )  # fmt: skip
    metrics = train(cfg)
    rows = read_losses(tmp_path / "l.jsonl")
    assert [math.isnan(r["loss"]) for r in rows] == [False, True, True, False, False]
    assert metrics["train/nonfinite_skipped"] == 2.0
    assert math.isfinite(metrics["train/loss"])
    ck = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point())
    assert ck["callbacks"]["NonFiniteGuard"] == {"skipped": 2, "consecutive": 0}


def test_many_nonfinite_steps_stop_with_a_last_good_checkpoint(codes_dir, tmp_path, monkeypatch):
    from s2train.entry import train
    from s2train.lit.ar import DualARLitModule
    from tests.conftest import compose_config

    _nan_at(
        monkeypatch,
        "s2train.lit.ar.DualARLitModule",
        "forward",
        set(range(2, 99)),
        lambda m: m.trainer.global_step,
    )
    good: dict[str, torch.Tensor] = {}
    original_end = DualARLitModule.on_train_batch_end

    def remember(self, outputs, batch, batch_idx):  # weights after each optimizer step
        good[self.trainer.global_step] = _weights(self)
        return original_end(self, outputs, batch, batch_idx)

    monkeypatch.setattr(DualARLitModule, "on_train_batch_end", remember)
    cfg = compose_config(
        "train",
        [*_pretrain(codes_dir, tmp_path / "tok"), "trainer.max_steps=50",
         "callbacks.non_finite_guard.max_consecutive=3"],
        tmp_path,
    )  # fmt: skip
    with pytest.raises(
        NonFiniteError, match=r"3 consecutive optimizer steps had non-finite gradients"
    ) as err:
        train(cfg)
    path = tmp_path / "checkpoints" / "last_good_before_nonfinite.ckpt"
    assert str(path) in str(err.value)
    ck = torch.load(path, map_location="cpu", weights_only=False)
    # steps 0 and 1 trained; 2, 3, 4 were NaN and skipped, so the weights are those after step 1
    after_two = good[2]
    for k, v in ck["state_dict"].items():
        assert torch.isfinite(v).all() if v.is_floating_point() else True
        assert torch.equal(v, after_two[k]), k


def test_nonfinite_guard_skips_manual_gan_steps_in_codec(tiny_codec_dir, tmp_path, monkeypatch, bad_corpus):
    from s2train.entry import train
    from tests.conftest import compose_config

    # the generator loss of the second batch is NaN: its generator step is skipped, the rest train
    _nan_at(monkeypatch, "s2train.codec.losses.MultiScaleMelLoss", "forward", {1})
    cfg = compose_config(
        "train",
        ["recipe=codec", *FAST_CODEC, f"data.manifest={bad_corpus}", "data.batch_size=2", "logger=none",
         "trainer.max_steps=5", "++trainer.limit_val_batches=0", "module.mel_warmup_steps=1",
         "~callbacks.lr_monitor", "~callbacks.progress_bar", "~callbacks.loss_plot",
         "++trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1"],
        tmp_path,
    )  # fmt: skip
    metrics = train(cfg)
    assert metrics["train/nonfinite_skipped"] >= 1
    ck = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point())
