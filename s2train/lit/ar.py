"""LightningModule for Dual-AR pre-training, fine-tuning and LoRA (thin: losses, logging, optimizers).

The loss-curve PNG is written by the `LossCurvePlot` callback (configs/callbacks/default.yaml), not here.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from s2train.ar.config import DualARConfig
from s2train.ar.dual_ar import DualAR
from s2train.ar.losses import dual_ar_loss
from s2train.ar.losses import fast_weights as resolve_fast_weights
from s2train.ar.prior import AttnPrior, alignment_prior_loss, alignment_stats, attention_prior_bias
from s2train.bundle import export_bundle, is_bundle, load_init_weights, read_bundle_config
from s2train.lit.lora import apply_lora, has_lora, merge_lora, save_adapter
from s2train.lit.schedules import build_scheduler
from s2train.text.tokenizer import S2Tokenizer

log = logging.getLogger(__name__)


def resolve_model_config(model: dict[str, Any] | DualARConfig, tokenizer: S2Tokenizer) -> DualARConfig:
    """Fill `vocab_size`, `semantic_start`, `num_semantic` from the tokenizer; check given values agree."""
    d = model.to_dict() if isinstance(model, DualARConfig) else dict(model)
    d = {k: v for k, v in d.items() if not str(k).startswith("_")}
    if d.get("vocab_size") is None:
        d["vocab_size"] = tokenizer.vocab_size
    elif d["vocab_size"] < tokenizer.vocab_size:
        raise ValueError(f"model.vocab_size={d['vocab_size']} < tokenizer vocab_size={tokenizer.vocab_size}")
    for key, value in (
        ("semantic_start", tokenizer.semantic_start),
        ("num_semantic", tokenizer.num_semantic),
    ):
        if d.get(key) is None:
            d[key] = value
        elif d[key] != value:
            raise ValueError(f"model.{key}={d[key]} disagrees with the tokenizer ({key}={value})")
    return DualARConfig.from_dict(d).validate()


def param_groups(
    model: torch.nn.Module, lr: float, audio_lr: float, weight_decay: float
) -> list[dict[str, Any]]:
    """AdamW groups: {backbone, audio} x {decay, no decay}.

    Audio modules = codebook embeddings and the whole fast AR (S2 trains them with a higher LR than the text
    backbone). No weight decay on norms, biases and embedding tables. Frozen parameters are left out.
    """
    buckets: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        audio = name.startswith("fast.") or "codebook_emb" in name
        no_decay = p.ndim < 2 or "norm" in name or "emb" in name
        buckets.setdefault((audio, no_decay), []).append(p)
    groups = []
    for (audio, no_decay), params in sorted(buckets.items()):
        groups.append({
            "params": params,
            "lr": audio_lr if audio else lr,
            "weight_decay": 0.0 if no_decay else weight_decay,
            "name": f"{'audio' if audio else 'backbone'}{'_nodecay' if no_decay else ''}",
        })  # fmt: skip
    if not groups:
        raise ValueError("no trainable parameters")
    return groups


_REPO_ROOT = Path(__file__).resolve().parents[2]


def _absolute(path: str | None) -> str | None:
    """``path`` made absolute: from the working directory, else (an older checkpoint's relative path, loaded
    from elsewhere) from the repository root; unchanged when it exists in neither."""
    if not path or Path(path).is_absolute():
        return path
    for base in (Path.cwd(), _REPO_ROOT):
        if (base / path).exists():
            return str((base / path).resolve())
    return path


class DualARLitModule(pl.LightningModule):
    """Trains a DualAR on prompt batches from `s2train.data.codes.CodesDataModule`.

    Args:
        model: DualARConfig fields (a `configs/model/*.yaml` node); tokenizer fields may be null.
        tokenizer_dir: saved S2Tokenizer (the data module trains it there if missing).
        fast_weights: w(k) for the fast loss: "ones" (pre-training), "sft" (k=0 dropped, decaying) or K floats.
        fast_weight_decay: decay of the "sft" scheme.
        lambda_slow / lambda_fast: loss term weights.
        max_fast_frames: cap on target frames fed to the fast AR per batch (None: all).
        lr / audio_lr: AdamW LR of the backbone / of audio modules (None: same as lr).
        betas, eps, weight_decay: AdamW settings.
        scheduler: "wsd", "cosine" or "constant"; warmup_steps, decay_fraction, min_lr_ratio shape it.
        total_steps: schedule length (None: the trainer's estimated stepping batches).
        init_from: bundle dir or Lightning checkpoint with full weights to start from (strict).
        lora: None, a preset name or a LoRA dict (`s2train.lit.lora`); injected after `init_from`.
        lora_adapter_only_ckpt: with LoRA, checkpoints hold only trainable weights (resume re-reads
            `init_from` for the frozen base).
        codec_dir: codec recorded in exported bundles (None: the data module's `codec_dir`, read from the
            code dataset's summary.json when it names one, else the codec of the `init_from` bundle).
        align_weight: weight of the alignment-prior loss (`s2train.ar.prior.alignment_prior_loss`; 0 = off).
            It guides `align_heads` query heads of slow layer `align_layer` toward the transcript token being
            spoken (prior width `align_sigma`) and logs `align_loss` and `align_mass`.
        attn_prior: training-only forward-pass attention prior (`s2train.ar.prior.AttnPrior` fields: heads,
            layers, sigma, floor, hold_steps, anneal_steps; None = off): an additive bias on the attention
            logits of the first `heads` heads of the chosen slow layers, weight 1 to `hold_steps` then annealed
            to 0 by `anneal_steps`. Validation, inference and exported bundles never see it. Logs
            `align/prior_weight` and, for slow layer `align_layer` without the bias, `align/mass`,
            `align/monotonic` and `align/diag_err` (`s2train.ar.prior.alignment_stats`).
    """

    def __init__(
        self,
        model: dict[str, Any],
        tokenizer_dir: str,
        fast_weights: str | Sequence[float] = "ones",
        fast_weight_decay: float = 0.8,
        lambda_slow: float = 1.0,
        lambda_fast: float = 1.0,
        max_fast_frames: int | None = None,
        lr: float = 3e-4,
        audio_lr: float | None = None,
        betas: Sequence[float] = (0.9, 0.95),
        eps: float = 1e-5,
        weight_decay: float = 0.1,
        scheduler: str = "wsd",
        warmup_steps: int = 100,
        decay_fraction: float = 0.2,
        min_lr_ratio: float = 0.1,
        total_steps: int | None = None,
        init_from: str | None = None,
        lora: dict[str, Any] | str | None = None,
        lora_adapter_only_ckpt: bool = True,
        codec_dir: str | None = None,
        align_weight: float = 0.0,
        align_layer: int = 1,
        align_heads: int = 1,
        align_sigma: float = 0.2,
        attn_prior: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # Checkpoints record these paths (save_hyperparameters reads the locals): store them absolute so a
        # checkpoint loads from any directory; an older checkpoint's relative path is tried from the repo root.
        tokenizer_dir = _absolute(tokenizer_dir)
        init_from = _absolute(init_from)
        codec_dir = _absolute(codec_dir)
        self.save_hyperparameters()
        self.tokenizer = S2Tokenizer.load(tokenizer_dir) if S2Tokenizer.exists(tokenizer_dir) else None
        if self.tokenizer is None:
            raise FileNotFoundError(
                f"no tokenizer in {tokenizer_dir} (working directory {os.getcwd()}): a checkpoint records the "
                "tokenizer_dir of its training run, so run from that directory or pass the run's exported "
                "bundle (<run>/export); for a new run, the data module trains one (CodesDataModule)"
            )
        self.model_config = resolve_model_config(model, self.tokenizer)
        self.model = DualAR(self.model_config)
        self._init_codec_dir: str | None = None
        self._ckpt_codec_dir: str | None = None  # set when loaded from a checkpoint that records one
        if init_from:
            load_init_weights(self.model, init_from)
            if is_bundle(init_from):
                codec = read_bundle_config(init_from).get("codec")
                if codec:
                    path = Path(init_from) / codec["path"] if codec.get("copied") else Path(codec["path"])
                    self._init_codec_dir = str(path)
        if lora is not None:
            apply_lora(self.model, lora)
            if lora_adapter_only_ckpt and not init_from:
                log.warning(
                    "LoRA without init_from: checkpoints keep the full weights (the base is not on disk)"
                )
                self.hparams.lora_adapter_only_ckpt = False
            elif lora_adapter_only_ckpt:
                # Frozen base weights are not in the checkpoint; they come from init_from on resume.
                self.strict_loading = False
        if align_weight < 0 or align_sigma <= 0 or align_heads < 1:
            raise ValueError(
                f"align_weight={align_weight} must be >= 0, align_sigma={align_sigma} > 0, align_heads={align_heads} >= 1"
            )
        n_layers = len(self.model.slow.layers)
        self.attn_prior = AttnPrior.from_config(attn_prior, n_layers, self.model_config.n_heads)
        # The slow layer whose q/k are captured for the alignment loss and statistics (an index, not a module
        # attribute: a second reference to the layer would duplicate its weights in checkpoints).
        self._align_layer: int | None = None
        if align_weight > 0 or self.attn_prior is not None:
            if not 0 <= align_layer < n_layers:
                raise ValueError(f"align_layer={align_layer} must be in [0, {n_layers}) (slow AR layers)")
            self._align_layer = align_layer
            self.model.slow.layers[align_layer].attn.capture = True
        self.weights = resolve_fast_weights(fast_weights, self.model_config.num_codebooks, fast_weight_decay)
        log.info("fast loss weights w(k) = %s", [round(w, 3) for w in self.weights])

    # ------------------------------------------------------------------ steps
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Losses and metrics for one collated batch (see `s2train.ar.losses.dual_ar_loss`)."""
        # Logits only at target positions: the [B, L, V] tensor is the memory peak at S2 vocab sizes.
        hp = self.hparams
        bias, prior = None, self.attn_prior
        if prior is not None and self.training:
            weight = prior.weight(self.global_step)
            if weight > 0:
                bias = attention_prior_bias(batch, prior, self.model_config.n_heads, weight)
        out = self.model(
            batch["tokens"], batch["codes"], batch["audio_mask"], compute_logits=False,
            attn_bias=bias, bias_layers=None if prior is None else prior.layers,
        )  # fmt: skip
        metrics = dual_ar_loss(
            None, out.hidden, batch, self.model.fast_forward, self.weights,
            hp.lambda_slow, hp.lambda_fast, hp.max_fast_frames, logits_fn=self.model.slow.logits,
        )  # fmt: skip
        if self._align_layer is not None:
            attn = self.model.slow.layers[self._align_layer].attn
            q, k = attn.captured  # kept by the forward above (rotated q/k: the bias is not in them)
            attn.captured = None
            if hp.align_weight > 0:
                align, mass = alignment_prior_loss(q, k, batch, hp.align_heads, hp.align_sigma)
                metrics["loss"] = metrics["loss"] + hp.align_weight * align
                metrics["align_loss"] = align.detach()
                metrics["align_mass"] = mass
            if prior is not None:
                stats = alignment_stats(q, k, batch, prior.heads)
                metrics.update({f"align/{key}": value for key, value in stats.items()})
                if self.training:
                    w = prior.weight(self.global_step)
                    metrics["align/prior_weight"] = torch.tensor(w, device=q.device)
        return metrics

    def _log_metrics(self, stage: str, metrics: dict[str, torch.Tensor], batch_size: int) -> None:
        on_step = stage == "train"
        for key, value in metrics.items():
            if key.startswith("n_"):
                continue
            self.log(
                f"{stage}/{key}", value.detach() if key == "loss" else value, on_step=on_step, on_epoch=not on_step,
                prog_bar=key in ("loss", "loss_slow", "loss_fast"), batch_size=batch_size, sync_dist=not on_step,
            )  # fmt: skip
        if on_step:
            self.log(
                "train/frames", metrics["n_frames"], on_step=True, reduce_fx="sum", batch_size=batch_size
            )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        metrics = self(batch)
        self._log_metrics("train", metrics, batch["tokens"].shape[0])
        return metrics["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        metrics = self(batch)
        self._log_metrics("val", metrics, batch["tokens"].shape[0])

    # ------------------------------------------------------------------ optim
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        audio_lr = hp.audio_lr if hp.audio_lr is not None else hp.lr
        groups = param_groups(self.model, hp.lr, audio_lr, hp.weight_decay)
        opt = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps)
        total = hp.total_steps
        if total is None:
            est = self.trainer.estimated_stepping_batches if self._trainer is not None else float("inf")
            total = int(est) if est != float("inf") else 100_000
        sched = build_scheduler(opt, hp.scheduler, total, hp.warmup_steps, hp.decay_fraction, hp.min_lr_ratio)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["s2_model_config"] = self.model_config.to_dict()
        # so that a checkpoint exports (eval.py ckpt=<.ckpt>) with its codec, outside the training run
        checkpoint["s2_codec_dir"] = self.codec_dir()
        if self.hparams.lora is not None and self.hparams.lora_adapter_only_ckpt:
            trainable = {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._ckpt_codec_dir = checkpoint.get("s2_codec_dir")
        if not self.strict_loading:
            trainable = {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}
            missing = sorted(trainable - set(checkpoint["state_dict"]))
            if missing:
                raise ValueError(f"adapter checkpoint lacks trainable weights: {missing[:20]}")

    # ------------------------------------------------------------------ export
    def codec_dir(self) -> str | None:
        """The codec that made the training codes: `codec_dir`, else the first existing of the data module's
        (the code dataset's summary names it), the one recorded in the checkpoint this module was loaded
        from, and the codec of the `init_from` bundle."""
        if self.hparams.codec_dir is not None:
            return str(self.hparams.codec_dir)  # given explicitly: a missing dir is warned about at export
        found = getattr(self.trainer.datamodule, "codec_dir", None) if self._trainer is not None else None
        candidates = [str(c) for c in (found, self._ckpt_codec_dir, self._init_codec_dir) if c]
        # a code dataset can outlive the codec folder it names (moved or renamed): take the first that exists;
        # if none does, the first one (export warns that it is missing)
        return next((c for c in candidates if Path(c).exists()), candidates[0] if candidates else None)

    def merged_model(self) -> DualAR:
        """A copy of the model with LoRA merged (or the model itself without LoRA)."""
        if not has_lora(self.model):
            return self.model
        return merge_lora(copy.deepcopy(self.model))

    def export(self, out_dir: str | Path, copy_codec: bool = False) -> Path:
        """Export a bundle (`s2train.bundle`) with merged weights; with LoRA also `adapter/` inside it."""
        out = Path(out_dir)
        meta = {
            "global_step": int(self.global_step),
            "init_from": self.hparams.init_from,
            "lora": self.hparams.lora,
        }
        codec_dir = self.codec_dir()
        if codec_dir is not None and not Path(codec_dir).exists():
            log.warning("codec dir %s not found; the bundle records no codec", codec_dir)
            codec_dir = None
        export_bundle(self.merged_model(), self.model_config, self.tokenizer, codec_dir, out,
                      copy_codec=copy_codec, metadata=meta)  # fmt: skip
        if has_lora(self.model):
            save_adapter(self.model, out / "adapter")
        return out
