"""Training-loop safety callbacks and the atomic checkpoint writer.

- `AtomicCheckpointIO`: checkpoints are written to a temporary file in the target directory and renamed
  (`os.replace`), so a run killed during a save leaves the previous checkpoint intact.
- `NonFiniteGuard`: a NaN/Inf loss or gradient skips that optimizer step and is counted; after
  `max_consecutive` bad steps in a row the run saves the last good state and stops with a clear error.
- `LossCurvePlot`: writes `loss_curves.png` (train/val losses against step) into the run directory at the end
  of fit and when the run is interrupted; its history is kept in checkpoints, so a resumed run's plot starts at
  step 0.
- `DiscriminatorStartTimer`: for time-boxed codec runs (`trainer.max_time`), ends the codec's mel-only warm-up
  after a wall-clock budget instead of a step count (the step rate of a new machine is not known in advance).
- `RNGStateCallback`: stores the torch / numpy / python RNG states in every checkpoint, so random draws in a
  step (quantizer dropout, dropout, reference sampling) continue exactly after a resume.
- `TextGapMonitor`: logs `val/text_gap` after each validation of a Dual-AR run: how much lower the slow loss
  is with the right transcripts than with shuffled ones (`s2train.eval.text_use`); the moment a model starts
  to read its text, which the losses alone do not show.
- `ReadingMonitor`: logs `val/wer` after a validation of a Dual-AR run: a few validation items greedy-decoded
  through `s2train.inference`, decoded with the run's codec and transcribed by the project's ASR; what the
  text gap predicts, measured on audio.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning import Callback, LightningModule, Trainer

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` that never leaves a half-written checkpoint under the final name."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


class NonFiniteError(RuntimeError):
    """Raised after too many consecutive non-finite steps."""


class NonFiniteGuard(Callback):
    """Skip optimizer steps whose gradients are not finite; stop after `max_consecutive` in a row.

    Skipping works by dropping the gradients (`p.grad = None`) before the optimizer step, so the weights and
    the optimizer moments stay at the last good state. Works with automatic and manual optimization.
    """

    def __init__(self, max_consecutive: int = 10) -> None:
        self.max_consecutive = max_consecutive
        self.skipped = 0
        self.consecutive = 0

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            return
        norms = torch.stack([p.grad.detach().float().norm() for p in params])
        if bool(torch.isfinite(norms).all()):
            self.consecutive = 0
            return
        for p in params:
            p.grad = None
        self.skipped += 1
        self.consecutive += 1
        pl_module.log("train/nonfinite_skipped", float(self.skipped), rank_zero_only=True)
        log.warning(
            "non-finite gradient at step %d: step skipped (%d in a row, %d total)",
            trainer.global_step,
            self.consecutive,
            self.skipped,
        )
        if self.consecutive >= self.max_consecutive:
            ckpt = Path(trainer.default_root_dir) / "checkpoints" / "last_good_before_nonfinite.ckpt"
            trainer.save_checkpoint(ckpt)
            raise NonFiniteError(
                f"{self.consecutive} consecutive optimizer steps had non-finite gradients (step "
                f"{trainer.global_step}); the last good state was saved to {ckpt}. Lower the learning rate, "
                "check the data (s2train validates audio at load time) or enable gradient clipping."
            )

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = state_dict.get("skipped", 0)
        self.consecutive = state_dict.get("consecutive", 0)


class LossCurvePlot(Callback):
    """Collect logged `*loss*` scalars and plot them against the global step at the end of fit.

    GRPO runs also get a linear-scale panel of their reward curves (`rl/reward/total` and each
    `rl/reward/<fn>/mean`), the figure RL users look at first.
    """

    def __init__(self, out_dir: str | os.PathLike, filename: str = "loss_curves.png") -> None:
        self.out_dir = Path(out_dir)
        self.filename = filename
        self.history: dict[str, list[tuple[int, float]]] = defaultdict(list)

    @staticmethod
    def _is_reward(key: str) -> bool:
        return key == "rl/reward/total" or (key.startswith("rl/reward/") and key.endswith("/mean"))

    def _collect(self, trainer: Trainer, prefix: str) -> None:
        for key, value in trainer.callback_metrics.items():
            wanted = (key.startswith(prefix) and "loss" in key) or (
                prefix == "train/" and self._is_reward(key)
            )
            if wanted and torch.is_tensor(value) and value.numel() == 1:
                v = float(value)
                if math.isfinite(v):
                    self.history[key].append((trainer.global_step, v))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self._collect(trainer, "train/")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._collect(trainer, "val/")

    def on_fit_end(self, trainer, pl_module) -> None:
        self.write(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.write(trainer)  # an interrupted or crashed run keeps its curves

    def write(self, trainer: Trainer) -> Path | None:
        """Plot the history so far into `<out_dir>/<filename>` (rank zero; None when nothing was logged)."""
        if not trainer.is_global_zero or not self.history:
            return None
        return self.plot(self.out_dir / self.filename)

    # The history lives in checkpoints, so a resumed run plots its curves from step 0.
    def state_dict(self) -> dict[str, Any]:
        return {"history": {k: [[int(s), float(v)] for s, v in rows] for k, rows in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = defaultdict(list)
        for key, rows in state_dict.get("history", {}).items():
            self.history[key] = [(int(s), float(v)) for s, v in rows]

    def panels(self) -> list[tuple[str, list[str]]]:
        """Panels of the figure: the total and per-part losses, then per-codebook losses (`*_cb<k>`), if any."""
        rewards = sorted(k for k in self.history if self._is_reward(k))
        per_cb = sorted(k for k in self.history if re.search(r"_cb\d+$", k))
        main = sorted(k for k in self.history if k not in per_cb and k not in rewards)
        panels = [("losses", main)] if main else []
        if per_cb:
            panels.append(("per-codebook losses", per_cb))
        if rewards:
            panels.append(("rewards", rewards))
        return panels

    def plot(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        groups = self.panels()
        fig, axes = plt.subplots(1, len(groups), figsize=(8 * len(groups), 4.5), squeeze=False)
        for ax, (title, keys) in zip(axes[0], groups):
            for key in keys:
                steps, values = zip(*self.history[key])
                ax.plot(steps, values, label=key, marker="." if key.startswith("val/") else None)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("step")
            if title == "rewards":  # rewards can be negative: linear axis
                ax.set_ylabel("reward (batch mean)")
            else:
                ax.set_ylabel("loss")
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        log.info("loss curves written to %s", path)
        return path


class DiscriminatorStartTimer(Callback):
    """Switch the codec's discriminators on after `seconds` of training (wall clock, counted from fit start).

    Sets the module's ``mel_warmup_steps`` to the current batch count. The switch step is saved in checkpoints
    (callback state), so a resumed run keeps the discriminators on from that step. Works with any module that
    has ``hparams.mel_warmup_steps`` and a ``train_step`` counter (:class:`s2train.lit.codec.CodecLitModule`).
    """

    def __init__(self, seconds: float, check_every: int = 10) -> None:
        if seconds < 0 or check_every < 1:
            raise ValueError(
                f"DiscriminatorStartTimer: need seconds >= 0 and check_every >= 1, got {seconds}, {check_every}"
            )
        self.seconds = float(seconds)
        self.check_every = int(check_every)
        self._t0: float | None = None
        self.switched_at: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0 = time.monotonic()
        if not hasattr(pl_module.hparams, "mel_warmup_steps") or not hasattr(pl_module, "train_step"):
            raise TypeError(
                f"DiscriminatorStartTimer needs a codec module with mel_warmup_steps; got {type(pl_module).__name__}"
            )
        if self.switched_at is not None:  # restored from a checkpoint
            pl_module.hparams.mel_warmup_steps = min(pl_module.hparams.mel_warmup_steps, self.switched_at)

    def state_dict(self) -> dict[str, Any]:
        return {"switched_at": self.switched_at}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.switched_at = state_dict.get("switched_at")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.switched_at is not None or self._t0 is None:
            return
        step = int(pl_module.train_step)
        if step >= pl_module.hparams.mel_warmup_steps:  # already on (step-based warm-up or a resumed run)
            self.switched_at = int(pl_module.hparams.mel_warmup_steps)
            return
        if step % self.check_every:
            return
        # Every rank asks at the same batches and follows rank 0's clock, so DDP ranks switch together.
        if trainer.strategy.broadcast(time.monotonic() - self._t0 >= self.seconds, src=0):
            pl_module.hparams.mel_warmup_steps = step
            self.switched_at = step
            log.info("discriminators on at batch %d (after %.0f s of mel-only warm-up)", step, self.seconds)


class RNGStateCallback(Callback):
    """Keep the global RNG states in the checkpoint (Lightning saves weights, optimizers and loops, not RNGs).

    The state is stored as tensors and ints only, because Lightning resumes with `weights_only=True` loading.
    """

    def state_dict(self) -> dict[str, Any]:
        import random

        _, keys, pos, has_gauss, cached = np.random.get_state()
        version, py_state, gauss = random.getstate()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "python": [int(version), torch.tensor(py_state, dtype=torch.int64), gauss],
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        import random

        torch.set_rng_state(state_dict["torch"])
        keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        version, py_state, gauss = state_dict["python"]
        random.setstate((version, tuple(py_state.tolist()), gauss))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class TextGapMonitor(Callback):
    """Log `val/text_gap` (nats per codebook-0 token) on the first `max_items` validation items.

    The text-conditioning gap of `s2train.eval.text_use`: slow-AR loss with the transcripts shuffled among
    the items minus the loss with the right ones, teacher-forced, without voice references. Near 0 means
    the model predicts speech from speech alone and will babble in the right voice; a model that has learned
    the text-to-audio alignment shows a gap of a nat or more. Costs two forward passes over `max_items`
    items per validation. Does nothing (one warning) for modules without a DualAR `model` and `tokenizer`
    or data without a `val_set` of coded utterances.
    """

    def __init__(self, max_items: int = 64, batch_size: int = 8, seed: int = 0) -> None:
        self.max_items, self.batch_size, self.seed = int(max_items), int(batch_size), int(seed)
        self._warned = False

    def _skip(self, why: str) -> None:
        if not self._warned:
            log.warning("TextGapMonitor: not measuring the text gap (%s)", why)
            self._warned = True

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        from s2train.ar.dual_ar import DualAR
        from s2train.eval.text_use import text_use

        model, tok = getattr(pl_module, "model", None), getattr(pl_module, "tokenizer", None)
        val_set = getattr(getattr(trainer, "datamodule", None), "val_set", None)
        if not isinstance(model, DualAR) or tok is None:
            return self._skip("the module has no DualAR model with a tokenizer")
        rows = list(getattr(val_set, "items", []) or [])[: self.max_items]
        if len({r["text"] for r in rows}) < 2:
            return self._skip("fewer than 2 distinct validation transcripts")
        res = text_use(model, tok, rows, self.batch_size, self.seed)
        pl_module.log("val/text_gap", res.gap, batch_size=len(rows))
        pl_module.log("val/text_gap_loss_shuffled", res.loss_shuffled, batch_size=len(rows))


class ReadingMonitor(Callback):
    """Log `val/wer`: does the model say the words it is given?

    After every `every_n_validations`-th validation (the 1st, the (n+1)-th, ...), the first `max_items`
    validation items (in data order, the same every time; `languages` only) are greedy-decoded from their
    transcripts alone, without a voice reference, through the one inference path
    (`s2train.inference.tts.TTS`: its prompt builder and batched `InferenceEngine`), decoded with the run's
    codec (the module's `codec_dir()`), transcribed by the ASR (`s2train.eval.asr.build_asr`, default
    faster-whisper `bundled-tiny.en`, greedy) and scored as one corpus WER (total edits / total reference
    words, `s2train.eval.metrics.wer`, project normalization: markup stripped, case and punctuation ignored).
    A model that babbles scores about 1; an empty output scores exactly 1.

    Each item may run to `max_length_ratio` times its ground-truth frames (a model that never stops would
    otherwise fill the context). Rank 0 measures and broadcasts; the global RNG states are restored afterwards
    (generation reseeds them) and so is the model's train/eval mode. Skips with one warning per reason, and
    never stops the run, when the codec or the ASR cannot be loaded, or the module/data are not a Dual-AR run.

    Args:
        max_items: validation items read per measurement.
        every_n_validations: measure at every n-th validation (1 = each).
        asr: `build_asr` config mapping (None: its defaults), or any object with
            `transcribe(wavs, sample_rate) -> list[str]`.
        languages: item languages kept (the default ASR is English-only); None keeps all.
        max_length_ratio: frames budget per item, relative to its ground-truth frames.
        sampling: `SamplingParams` fields over the greedy default (`do_sample=False`, `ras_window=0`).
        mode: decode mode of the inference engine ("auto": CUDA graphs on CUDA, eager on CPU).
        seed: generation seed.
    """

    def __init__(
        self,
        max_items: int = 16,
        every_n_validations: int = 1,
        asr: Any = None,
        languages: Sequence[str] | None = ("en",),
        max_length_ratio: float = 2.0,
        sampling: dict[str, Any] | None = None,
        mode: str = "auto",
        seed: int = 0,
    ) -> None:
        from s2train.inference import SamplingParams

        if max_items < 1 or every_n_validations < 1 or max_length_ratio <= 0:
            raise ValueError(
                f"ReadingMonitor: need max_items >= 1, every_n_validations >= 1 and max_length_ratio > 0, got "
                f"{max_items}, {every_n_validations}, {max_length_ratio}"
            )
        self.max_items, self.every_n_validations = int(max_items), int(every_n_validations)
        self.max_length_ratio, self.mode, self.seed = float(max_length_ratio), mode, int(seed)
        self.languages = None if languages is None else {str(x) for x in languages}
        self.params = SamplingParams(**{"do_sample": False, "ras_window": 0, **dict(sampling or {})})
        self._asr_spec = asr
        self._asr: Any = None
        self._codec: Any = None
        self._codec_dir: str | None = None
        self._warned: set[str] = set()
        self._announced = False
        self.validations = 0

    def state_dict(self) -> dict[str, Any]:
        return {"validations": self.validations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.validations = int(state_dict.get("validations", 0))

    def _skip(self, why: str) -> None:
        if why not in self._warned:
            log.warning("ReadingMonitor: not measuring val/wer (%s)", why)
            self._warned.add(why)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.validations += 1
        if (self.validations - 1) % self.every_n_validations:
            return
        res = self.measure(trainer, pl_module) if trainer.is_global_zero else None
        wer_n = None if res is None else (res["wer"], res["n"])
        if trainer.world_size > 1:
            wer_n = trainer.strategy.broadcast(wer_n, src=0)
        if wer_n is not None:  # every rank logs the same number (a monitored key must exist on all ranks)
            pl_module.log("val/wer", wer_n[0], batch_size=wer_n[1])

    # -- pieces --------------------------------------------------------------------------------------------
    def _items(self, trainer: Trainer) -> list[dict]:
        from s2train.eval.normalize import normalize_text

        val_set = getattr(getattr(trainer, "datamodule", None), "val_set", None)
        rows = []
        for row in getattr(val_set, "items", None) or []:
            lang = str(row.get("language") or "en")
            if self.languages is not None and lang not in self.languages:
                continue
            if normalize_text(str(row["text"]), lang):  # something to score
                rows.append(row)
            if len(rows) == self.max_items:
                break
        return rows

    def _load_codec(self, pl_module: LightningModule, device: torch.device):
        codec_dir = pl_module.codec_dir() if callable(getattr(pl_module, "codec_dir", None)) else None
        if not codec_dir:
            return self._skip("no codec: module.codec_dir is null and the code dataset's summary names none")
        if not Path(codec_dir).exists():
            return self._skip(f"codec {codec_dir} not found")
        if self._codec is None or self._codec_dir != str(codec_dir):
            from s2train.codec import load_codec

            try:
                self._codec = load_codec(codec_dir, device=device).requires_grad_(False)
            except Exception as err:  # any unreadable codec folder: report it, keep training
                return self._skip(f"cannot load the codec {codec_dir}: {err}")
            self._codec_dir = str(codec_dir)
        return self._codec.to(device)

    def _load_asr(self):
        if self._asr is None:
            if hasattr(self._asr_spec, "transcribe"):
                self._asr = self._asr_spec
            else:
                from s2train.eval.asr import ASR_SAMPLE_RATE, build_asr

                try:
                    asr = build_asr(self._asr_spec)
                    # a short tone: loads the model now, before any decoding is spent on it
                    t = np.arange(ASR_SAMPLE_RATE // 2, dtype=np.float32) / ASR_SAMPLE_RATE
                    asr.transcribe([0.1 * np.sin(2 * np.pi * 220 * t)], ASR_SAMPLE_RATE)
                except Exception as err:  # missing package / weights / backend: report it, keep training
                    return self._skip(f"the ASR is unavailable: {err}")
                self._asr = asr
        return self._asr

    def measure(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any] | None:
        """Decode, transcribe and score the items; `{"wer", "n", "refs", "hyps", "stopped"}` or None (skipped).

        Does not log; `on_validation_epoch_end` does."""
        from s2train.ar.dual_ar import DualAR

        model, tok = getattr(pl_module, "model", None), getattr(pl_module, "tokenizer", None)
        if not isinstance(model, DualAR) or tok is None:
            return self._skip("the module has no DualAR model with a tokenizer")
        if "fsdp" in type(trainer.strategy).__name__.lower():
            return self._skip("FSDP shards the weights; rank 0 cannot decode alone")
        device = next(model.parameters()).device
        gpus = (
            [device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda"
            else []
        )
        # building the codec and generating draw from / reseed the global RNGs: the training stream continues as
        # if nothing ran
        with torch.random.fork_rng(devices=gpus):
            return self._measure(trainer, pl_module, model, tok, device)

    def _measure(self, trainer: Trainer, pl_module: LightningModule, model, tok, device: torch.device):
        rows = self._items(trainer)
        if not rows:
            langs = "any language" if self.languages is None else f"languages {sorted(self.languages)}"
            return self._skip(f"no validation items with text in {langs}")
        codec = self._load_codec(pl_module, device)
        if codec is None:
            return None
        asr = self._load_asr()
        if asr is None:
            return None
        from s2train.inference.tts import TTS

        try:
            tts = TTS(model, tok, codec, mode=self.mode)
        except ValueError as err:  # the codec does not fit the model (K, semantic range)
            return self._skip(f"codec {self._codec_dir} does not fit the model: {err}")
        if not self._announced:
            self._announced = True
            log.info(
                "ReadingMonitor: every %d validation(s), %d val items greedy-decoded from text alone (up to %.1fx "
                "their frames), codec %s, ASR %s -> val/wer (corpus WER)",
                self.every_n_validations, len(rows), self.max_length_ratio, self._codec_dir,
                getattr(asr, "model_name", type(asr).__name__),
            )  # fmt: skip
        t0 = time.perf_counter()
        was_training = model.training
        try:
            with torch.autocast(device.type, enabled=False):
                model.eval()
                kept, wavs, stopped = self._read(tts, rows)
        finally:
            model.train(was_training)
        if not kept:
            return self._skip("no validation item fits the context with room to speak")
        from s2train.eval.metrics.wer import wer_report

        hyps = asr.transcribe(wavs, tts.sample_rate)
        refs = [str(r["text"]) for r in kept]
        report = wer_report(refs, hyps, [str(r.get("language") or "en") for r in kept])
        log.info(
            "ReadingMonitor: val/wer %.3f on %d items (step %d, %d stopped, %.1f s); e.g. %r -> %r",
            report["wer_corpus"], len(refs), trainer.global_step, sum(stopped), time.perf_counter() - t0,
            report["per_utterance"][0]["ref_norm"], report["per_utterance"][0]["hyp_norm"],
        )  # fmt: skip
        return {
            "wer": float(report["wer_corpus"]),
            "n": len(refs),
            "refs": refs,
            "hyps": hyps,
            "stopped": stopped,
        }

    @torch.no_grad()
    def _read(self, tts, rows: list[dict]) -> tuple[list[dict], list[np.ndarray], list[bool]]:
        """Greedy-decode `rows` in one batch -> (the rows that fit the context, waveforms [S], stopped flags)."""
        prompts, caps, kept = [], [], []
        for row in rows:
            try:
                prompt = tts.prompt(str(row["text"]))
            except ValueError:  # transcript too long for the context
                continue
            prompts.append(prompt)
            caps.append(
                max(1, math.ceil(self.max_length_ratio * int(torch.as_tensor(row["codes"]).shape[-1])))
            )
            kept.append(row)
        room = tts.model.config.max_seq_len - max((len(p) for p in prompts), default=0) - 1
        if not prompts or room < 1:
            return [], [], []
        res = tts.engine.generate(prompts, self.params, min(max(caps), room), seed=self.seed)
        device = next(tts.codec.parameters()).device
        wavs = []
        for codes, cap in zip(res.codes, caps):
            codes = codes[:, :cap]
            if codes.shape[1] == 0:
                wavs.append(np.zeros(0, dtype=np.float32))
                continue
            wav = tts.codec.decode(codes[None].to(device))
            wavs.append(wav.reshape(-1).float().cpu().numpy())
        return kept, wavs, list(res.stopped)
