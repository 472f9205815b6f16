"""Stopping a run never loses it: Ctrl-C, SIGTERM and the time cadence leave `last.ckpt` and the loss curves;
`resume=true` continues in the same run folder, exactly (s2train/lit/checkpointing.py, s2train/run_dir.py)."""

from __future__ import annotations

import os
import signal
import warnings
from pathlib import Path

import pytest
import torch
from pytorch_lightning import Callback

from s2train.data.codes import write_synthetic_codes
from tests.reliability.conftest import read_losses, recorder_overrides


class InterruptAt(Callback):
    """At the end of training step `step`: raise KeyboardInterrupt (`how="raise"`) or send this process a signal."""

    def __init__(self, step: int, how: str = "raise") -> None:
        self.step, self.how = step, how

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
        if self.how == "raise":
            raise KeyboardInterrupt
        os.kill(os.getpid(), getattr(signal, self.how))


@pytest.fixture(scope="module")
def codes_dir(tmp_path_factory) -> Path:
    return write_synthetic_codes(
        tmp_path_factory.mktemp("interrupt") / "codes", num_items=18, num_codebooks=4
    )


def _overrides(codes_dir: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        "recipe=pretrain", "model=tiny", "codec=tiny", f"data.dataset_dir={codes_dir}",
        f"data.tokenizer_dir={codes_dir.parent / 'tok'}", "data.batch_size=4", "data.vocab_size=300",
        "data.num_semantic=64", "logger=none", f"trainer.max_steps={steps}", "++trainer.limit_val_batches=0",
        "trainer.deterministic=true", "trainer.log_every_n_steps=1", "++trainer.enable_progress_bar=false",
        "module.warmup_steps=2", f"module.total_steps={steps}", "data.ref_prob=1.0",
        "~callbacks.lr_monitor", "~callbacks.progress_bar", *recorder_overrides(out / "losses.jsonl"), *extra,
    ]  # fmt: skip


def _train(overrides: list[str], out: Path) -> None:
    from s2train.entry import train
    from tests.conftest import compose_config

    train(compose_config("train", overrides, out))


def _step_of(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


STOP = ["+callbacks.stop._target_=tests.reliability.test_interrupt.InterruptAt", "+callbacks.stop.step=3"]


def test_keyboard_interrupt_saves_and_resume_true_continues_exactly(codes_dir, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(SystemExit):  # Lightning's KeyboardInterrupt path ends with sys.exit(1)
        _train(_overrides(codes_dir, run, 6, *STOP), run)
    last = run / "checkpoints" / "last.ckpt"
    assert _step_of(last) == 3
    assert (run / "loss_curves.png").is_file()
    assert not list((run / "checkpoints").glob("step_*.ckpt"))  # the step cadence (500) never fired

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _train(_overrides(codes_dir, run, 6, "resume=true"), run)
    # the sampler resumes exactly (asserted below), so Lightning's "not resumable" warning is silenced
    assert not [w for w in seen if "not resumable" in str(w.message) or "is not empty" in str(w.message)]
    rows = read_losses(run / "losses.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert _step_of(last) == 6
    history = torch.load(last, map_location="cpu", weights_only=False)["callbacks"]["LossCurvePlot"][
        "history"
    ]
    assert [s for s, _ in history["train/loss"]] == [1, 2, 3, 4, 5, 6]  # curves span the whole run

    straight = tmp_path / "straight"
    _train(_overrides(codes_dir, straight, 6), straight)
    assert [r["loss"] for r in read_losses(straight / "losses.jsonl")] == [r["loss"] for r in rows]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_finishes_the_step_saves_and_stops(codes_dir, tmp_path, sig):
    stop = [*STOP[:1], "+callbacks.stop.step=2", f"+callbacks.stop.how={sig}"]
    with pytest.raises(SystemExit):
        _train(_overrides(codes_dir, tmp_path, 6, *stop), tmp_path)
    assert _step_of(tmp_path / "checkpoints" / "last.ckpt") == 2
    assert [r["step"] for r in read_losses(tmp_path / "losses.jsonl")] == [1, 2]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler was put back


def test_time_cadence_writes_last_ckpt_without_step_checkpoints(codes_dir, tmp_path):
    _train(
        _overrides(
            codes_dir, tmp_path, 3, "~callbacks.model_checkpoint", "callbacks.run_saver.every_n_minutes=1e-9"
        ),
        tmp_path,
    )
    assert _step_of(tmp_path / "checkpoints" / "last.ckpt") == 3


def test_resume_true_without_a_checkpoint_starts_fresh(codes_dir, tmp_path):
    _train(_overrides(codes_dir, tmp_path, 2, "resume=true"), tmp_path)
    assert [r["step"] for r in read_losses(tmp_path / "losses.jsonl")] == [1, 2]
