"""Checkpoints that do not wait for the step cadence: on a time cadence, on Ctrl-C and on SIGTERM.

`ModelCheckpoint` saves every `every_n_train_steps`; a run stopped between two of those saves loses
everything since the last one. `RunSaver` writes `<dirpath>/last.ckpt` (atomically, through the trainer's
`AtomicCheckpointIO`) when:

- `every_n_minutes` of wall clock passed since the last save (rank 0's clock, broadcast under DDP);
- Ctrl-C was pressed: the first Ctrl-C lets the running step finish, saves and stops (exit status 1);
  a second one stops at once (Lightning's `KeyboardInterrupt` path, saved from `on_exception` best effort);
- SIGTERM arrived (Lightning's signal connector sets `trainer.received_sigterm`): saved after the running
  step, then the run stops instead of running on to the end of the epoch;
- a `KeyboardInterrupt` is raised from anywhere else in the loop (`on_exception`).

Saves made at the end of a training batch are exact resume points (`tests/reliability/test_interrupt.py`):
the data module, loops, optimizers and RNG states are those of a step boundary. Resume with
`python train.py <same overrides> resume=true` (see `s2train.run_dir`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class RunSaver(Checkpoint):
    """Save `<dirpath>/last.ckpt` every `every_n_minutes` and when the run is interrupted.

    A `Checkpoint` subclass so Lightning runs it after the other callbacks' batch-end hooks (their state,
    e.g. a loss recorder's, already includes the step that is saved).

    Args:
        dirpath: checkpoint directory (the `ModelCheckpoint` one, so `resume=true` finds `last.ckpt`).
        every_n_minutes: time cadence; None or 0: only on interrupt.
        filename: file name of the checkpoint.
        on_interrupt: save on Ctrl-C / SIGTERM.
    """

    def __init__(
        self,
        dirpath: str | Path,
        every_n_minutes: float | None = 10.0,
        filename: str = "last.ckpt",
        on_interrupt: bool = True,
    ) -> None:
        if every_n_minutes is not None and every_n_minutes < 0:
            raise ValueError(f"RunSaver: every_n_minutes must be >= 0 or null, got {every_n_minutes}")
        self.path = Path(dirpath) / filename
        self.seconds = float(every_n_minutes or 0) * 60.0
        self.on_interrupt = on_interrupt
        self._last_save = time.monotonic()
        self._saved_step: int | None = None
        self._stop_requested = False
        self._previous_sigint: Any = None

    # -- Ctrl-C ------------------------------------------------------------------------------------------
    def _on_sigint(self, signum, frame) -> None:
        self._stop_requested = True
        # a second Ctrl-C stops at once
        signal.signal(signal.SIGINT, self._previous_sigint or signal.default_int_handler)
        log.warning("Ctrl-C: saving a checkpoint after this step and stopping (Ctrl-C again to stop now)")

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # after Lightning's signal connector took its snapshot of the handlers (it restores them at teardown)
        self._last_save = time.monotonic()
        if self.on_interrupt and threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._on_sigint)

    def _restore_sigint(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) == self._on_sigint:  # not replaced meanwhile (Ctrl-C, Lightning)
            signal.signal(signal.SIGINT, self._previous_sigint or signal.default_int_handler)
        self._previous_sigint = None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore_sigint()

    # -- saving --------------------------------------------------------------------------------------------
    def save(self, trainer: Trainer, why: str) -> Path:
        """Write the checkpoint now (every rank must call it: `trainer.save_checkpoint` is collective)."""
        trainer.save_checkpoint(self.path)
        self._saved_step = trainer.global_step
        self._last_save = time.monotonic()
        if trainer.is_global_zero:
            log.info("checkpoint at step %d (%s): %s", trainer.global_step, why, self.path)
        return self.path

    def _decide(self, trainer: Trainer) -> tuple[bool, bool]:
        """(stop now, save for time), rank 0's view under DDP so every rank saves and stops together."""
        stop = self.on_interrupt and (
            self._stop_requested or bool(getattr(trainer, "received_sigterm", False))
        )
        due = self.seconds > 0 and time.monotonic() - self._last_save >= self.seconds
        if trainer.world_size > 1:
            stop, due = trainer.strategy.broadcast((stop, due), src=0)
        return stop, due

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        stop, due = self._decide(trainer)
        if stop:
            self.save(trainer, "interrupted")
            if getattr(trainer, "received_sigterm", False):
                raise SIGTERMException()
            raise KeyboardInterrupt
        if due:
            self.save(trainer, f"every {self.seconds / 60:g} min")
            from s2train.lit.callbacks import LossCurvePlot

            for cb in trainer.callbacks:  # the curves on disk follow the checkpoints
                if isinstance(cb, LossCurvePlot):
                    cb.write(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore_sigint()
        if not self.on_interrupt or not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        if self._saved_step != trainer.global_step:
            if trainer.world_size > 1:  # a collective save from an exception handler can hang the ranks
                log.warning("interrupted at step %d under DDP: no checkpoint saved", trainer.global_step)
                return
            # a KeyboardInterrupt raised inside a step: the state is that of the last finished step, plus
            # whatever the interrupted one had drawn from the RNGs; good to resume from, not bit-exact
            self.save(trainer, "interrupted mid-step")
        if trainer.is_global_zero:
            log.warning(
                "stopped at step %d; continue in the same run folder with: python train.py <same overrides> "
                "resume=true  (or ckpt_path=%s)",
                trainer.global_step,
                self.path,
            )
