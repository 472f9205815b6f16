"""Non-finite guard, atomic checkpoints and the loss plot, on a toy LightningModule."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from s2train.lit.callbacks import AtomicCheckpointIO, LossCurvePlot, NonFiniteError, NonFiniteGuard


class Toy(pl.LightningModule):
    def __init__(self, nan_steps=()):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)
        self.nan_steps = set(nan_steps)

    def training_step(self, batch, idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.lin(x), y)
        if self.global_step in self.nan_steps:
            loss = loss * float("nan")
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


def _loader(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(-1, keepdim=True)), batch_size=8)


def _trainer(tmp_path, callbacks, steps):
    return pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=callbacks,
        default_root_dir=tmp_path,
        plugins=[AtomicCheckpointIO()],
    )


def test_nonfinite_step_is_skipped_and_weights_stay_finite(tmp_path):
    guard = NonFiniteGuard(max_consecutive=5)
    model = Toy(nan_steps={2, 4})
    _trainer(tmp_path, [guard], 8).fit(model, _loader())
    assert guard.skipped == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_too_many_nonfinite_steps_stop_with_checkpoint(tmp_path):
    guard = NonFiniteGuard(max_consecutive=3)
    model = Toy(nan_steps=set(range(100)))
    with pytest.raises(NonFiniteError, match="3 consecutive"):
        _trainer(tmp_path, [guard], 20).fit(model, _loader())
    ckpt = tmp_path / "checkpoints" / "last_good_before_nonfinite.ckpt"
    state = torch.load(ckpt, weights_only=False)
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values())


def test_atomic_save_killed_mid_write_keeps_previous(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    # A child process starts writing a big checkpoint to the same name and is killed mid-write.
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        from s2train.lit.callbacks import AtomicCheckpointIO
        real_save = torch.save
        def slow_save(obj, f):
            f.write(b"partial-bytes" * 1000); f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = slow_save
        AtomicCheckpointIO().save_checkpoint({{"step": 2, "w": torch.zeros(3)}}, {str(path)!r})
        """
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert res.returncode != 0  # killed
    state = AtomicCheckpointIO().load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))


def test_loss_plot_written(tmp_path):
    plot = LossCurvePlot(out_dir=tmp_path)
    trainer = _trainer(tmp_path, [plot], 6)
    trainer.log_every_n_steps = 1
    trainer.fit(Toy(), _loader())
    assert (tmp_path / "loss_curves.png").stat().st_size > 1000
    assert plot.panels() == [("losses", ["train/loss"])]
    plot.history["train/loss_cb0"] = [(1, 2.0), (2, 1.0)]
    plot.history["val/loss_cb1"] = [(2, 3.0)]
    assert [p for _, p in plot.panels()] == [["train/loss"], ["train/loss_cb0", "val/loss_cb1"]]
    plot.plot(tmp_path / "two_panels.png")
    assert (tmp_path / "two_panels.png").stat().st_size > 1000


class _RewardToy(Toy):
    def training_step(self, batch, idx):
        self.log("rl/reward/total", -1.0 + 0.1 * idx)  # negative rewards: the panel must be linear
        self.log("rl/reward/asr_likelihood/mean", 0.2 + 0.01 * idx)
        self.log("rl/reward/asr_likelihood/std", 0.05)  # spreads are not plotted
        self.log("rl/kl", 0.0)
        return super().training_step(batch, idx)


def test_loss_plot_adds_a_reward_panel_for_grpo_runs(tmp_path):
    plot = LossCurvePlot(out_dir=tmp_path)
    trainer = _trainer(tmp_path, [plot], 5)
    trainer.log_every_n_steps = 1
    trainer.fit(_RewardToy(), _loader())
    assert plot.panels() == [
        ("losses", ["train/loss"]),
        ("rewards", ["rl/reward/asr_likelihood/mean", "rl/reward/total"]),
    ]
    assert [v for _, v in plot.history["rl/reward/total"]][:2] == pytest.approx([-1.0, -0.9])
    assert (tmp_path / "loss_curves.png").stat().st_size > 1000


class _WarmupToy(Toy):
    """Toy with the codec module's warm-up interface: hparams.mel_warmup_steps and a train_step counter."""

    def __init__(self, mel_warmup_steps: int):
        super().__init__()
        self.save_hyperparameters()
        self.train_step = 0
        self.disc_on: list[bool] = []

    def training_step(self, batch, idx):
        self.disc_on.append(self.train_step >= self.hparams.mel_warmup_steps)
        self.train_step += 1
        return super().training_step(batch, idx)


def test_discriminator_timer_switches_once_and_survives_a_checkpoint(tmp_path):
    from s2train.lit.callbacks import DiscriminatorStartTimer

    timer = DiscriminatorStartTimer(seconds=0.0, check_every=3)
    model = _WarmupToy(mel_warmup_steps=10_000)
    _trainer(tmp_path, [timer], 8).fit(model, _loader())
    # first check at batch 0 with a zero budget: on from the first batch, and recorded in the hparams
    assert timer.switched_at == 0 and model.hparams.mel_warmup_steps == 0
    assert all(model.disc_on)

    never = DiscriminatorStartTimer(seconds=3600.0)
    model = _WarmupToy(mel_warmup_steps=10_000)
    _trainer(tmp_path, [never], 8).fit(model, _loader())
    assert never.switched_at is None and not any(model.disc_on)

    # a resumed run restores the switch step from the callback state
    restored = DiscriminatorStartTimer(seconds=3600.0)
    restored.load_state_dict(timer.state_dict())
    model = _WarmupToy(mel_warmup_steps=10_000)
    _trainer(tmp_path, [restored], 4).fit(model, _loader())
    assert model.hparams.mel_warmup_steps == 0 and all(model.disc_on)


def test_discriminator_timer_rejects_modules_without_warmup(tmp_path):
    from s2train.lit.callbacks import DiscriminatorStartTimer

    with pytest.raises(TypeError, match="mel_warmup_steps"):
        _trainer(tmp_path, [DiscriminatorStartTimer(1.0)], 2).fit(Toy(), _loader())
    with pytest.raises(ValueError, match="seconds"):
        DiscriminatorStartTimer(-1.0)
