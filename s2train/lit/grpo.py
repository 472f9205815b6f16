"""GRPO alignment of a pretrained Dual-AR (the S2 RL stage), as a thin LightningModule.

Per step: rollouts (``s2train.rl.rollout``, through inference, no grad) -> rewards scored on a worker thread
(``s2train.rl.reward_pool``) while the reference/behaviour log-probs are computed -> group-relative
advantages -> ``L = L_slow + gamma * L_fast`` (``s2train.rl.loss``), for ``ppo_epochs`` optimizer steps.
The policy is LoRA on the base weights (MLP-only rsLoRA r16/alpha64 by default), so the reference policy is
the same model with the adapter disabled: no second model in memory. Without LoRA a frozen copy is kept.
"""

from __future__ import annotations

import copy
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from s2train.rl.advantages import group_advantages, group_stats
from s2train.rl.logprobs import PackedCompletions, completion_logprobs
from s2train.rl.loss import PolicyLogProbs, dual_ar_grpo_loss
from s2train.rl.reward_pool import RewardPool
from s2train.rl.rewards import RewardStack
from s2train.rl.rollout import RolloutBatch, RolloutEngine

log = logging.getLogger(__name__)

DEFAULT_REWARDS = {"intelligibility": 1.0, "speaker_sim": 0.5, "length": 0.5, "repetition": 0.5}


def _rows(packed: PackedCompletions, idx: slice) -> PackedCompletions:
    return PackedCompletions(*(getattr(packed, f)[idx] for f in packed.__dataclass_fields__))


def _rows_lp(lp: PolicyLogProbs | None, idx: slice) -> PolicyLogProbs | None:
    if lp is None:
        return None
    return PolicyLogProbs(lp.slow[idx], lp.slow_mask[idx], lp.fast[idx], lp.fast_mask[idx])


class GRPOLitModule(pl.LightningModule):
    """GRPO on a pretrained bundle.

    Args:
        init_from: bundle directory (``s2train.bundle.load_pretrained``); its codec is used unless ``codec``.
        lora: LoRA preset name or dict (``s2train.lit.lora``); None trains all weights (frozen reference copy).
        group_size: ``G`` completions per prompt (>= 2).
        rewards: reward name -> weight (``s2train.rl.rewards.REWARDS``).
        reward_kwargs: reward name -> extra keyword arguments (e.g. ``{"repetition": {"n": 6}}``).
        advantage_scale: ``none`` (Dr.GRPO), ``group`` or ``batch``.
        beta: k3 KL weight (0: KL is only logged, when ``track_kl``).
        clip_eps: PPO clip range (active when ``ppo_epochs > 1``).
        gamma_fast: weight of the fast-AR (residual codebook) loss.
        aggregation: ``token``, ``sequence`` or ``constant`` (see ``grpo_loss``).
        ppo_epochs: optimizer steps per batch of rollouts.
        micro_batch_size: rows per backward (None: all ``B*G`` at once); gradients are accumulated.
        temperature / top_p / top_k: sampling parameters of the rollouts.
        ras_window: repetition-aware sampling window of the sampler; 0 (default) turns it off because the
            teacher-forced log-probs cannot model the re-draw, and the repetition reward teaches the policy
            itself not to loop.
        max_frames: frame budget per completion.
        lr / betas / weight_decay / grad_clip: AdamW and gradient-norm clipping (manual optimization).
        track_kl: compute reference log-probs for ``rl/kl`` even when ``beta == 0``.
        untagged_baseline: render tagged prompts without tags for the tag reward.
        reward_workers: reward threads; reward_cache_size: cached (sample, reward) scores.
        sample_every_n_steps: log one rollout's audio to wandb every N steps (0: never).
        rollout_mode: decode mode of the inference engine (``auto``, ``eager``, ``cudagraph``, ``compile``).
        codec: codec directory overriding the bundle's.
        seed: base seed of the rollouts (step ``s`` uses ``seed + s``).
    """

    def __init__(
        self,
        init_from: str,
        lora: dict | str | None = "mlp_rslora",
        group_size: int = 4,
        rewards: dict[str, float] | None = None,
        reward_kwargs: dict[str, dict] | None = None,
        advantage_scale: str = "none",
        beta: float = 0.0,
        clip_eps: float = 0.2,
        gamma_fast: float = 1.0,
        aggregation: str = "token",
        ppo_epochs: int = 1,
        micro_batch_size: int | None = None,
        temperature: float = 0.8,
        top_p: float = 0.9,
        top_k: int = 0,
        ras_window: int = 0,
        max_frames: int = 400,
        lr: float = 1e-5,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.0,
        grad_clip: float | None = 1.0,
        track_kl: bool = True,
        untagged_baseline: bool = False,
        reward_workers: int = 1,
        reward_cache_size: int = 8192,
        sample_every_n_steps: int = 50,
        rollout_mode: str = "auto",
        codec: str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False  # ppo_epochs optimizer steps per rollout batch
        if ppo_epochs < 1:
            raise ValueError(f"ppo_epochs must be >= 1, got {ppo_epochs}")
        if not init_from:
            raise ValueError("GRPO needs a pretrained bundle: python train.py recipe=grpo init_from=<bundle>")
        # Validate rewards first: a config error must not wait for a model load.
        self.reward_stack = RewardStack(rewards or DEFAULT_REWARDS, group_size, reward_kwargs=reward_kwargs)

        from s2train.bundle import load_pretrained
        from s2train.codec import load_codec

        self.model, self.tokenizer, codec_dir = load_pretrained(init_from)
        self.codec_dir = Path(codec) if codec else codec_dir
        if self.codec_dir is None:
            raise ValueError(f"init_from={init_from}: the bundle names no codec; pass module.codec=<dir>")
        # Held outside the module tree: frozen, never checkpointed, moved to the device in on_fit_start.
        self._frozen: dict[str, torch.nn.Module] = {"codec": load_codec(self.codec_dir).requires_grad_(False)}
        if lora is not None:
            from s2train.lit.lora import apply_lora

            apply_lora(self.model, lora)
        else:
            self._frozen["reference"] = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.engine = RolloutEngine(
            self.tokenizer,
            self._frozen["codec"],
            group_size=group_size,
            max_frames=max_frames,
            sampling={
                "temperature": temperature,
                "top_p": top_p,
                "top_k": int(top_k or 0),
                "ras_window": ras_window,
            },
            untagged_baseline=untagged_baseline,
            mode=rollout_mode,
        )
        self._pool: RewardPool | None = None

    # ------------------------------------------------------------------ setup
    @property
    def reward_pool(self) -> RewardPool:
        if self._pool is None:
            hp = self.hparams
            self._pool = RewardPool(
                self.reward_stack, max_workers=hp.reward_workers, cache_size=hp.reward_cache_size
            )
        return self._pool

    def on_fit_start(self) -> None:
        for m in self._frozen.values():
            m.to(self.device)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Dropout off for the whole step: the loss compares log-probs of one network (policy vs reference,
        # new vs old), and dropout noise alone made them differ (rl/kl 1-3 nats/token at step 0 with the
        # session-5 base, dropout 0.1). Lightning puts the module back in train mode after each
        # validation, so this runs per batch. Gradients do not depend on the mode.
        self.model.eval()

    def on_fit_end(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("GRPO: the policy has no trainable parameters (check the LoRA target_modules)")
        hp = self.hparams
        return torch.optim.AdamW(params, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)

    @contextmanager
    def reference_policy(self):
        """Yields the reference model: the policy with adapters disabled, or the frozen copy."""
        if "reference" in self._frozen:
            yield self._frozen["reference"]
        else:
            from s2train.lit.lora import adapters_disabled

            with adapters_disabled(self.model) as base:
                yield base

    # ------------------------------------------------------------------ step
    def rollout(self, batch: list[dict[str, Any]]) -> RolloutBatch:
        was = self.model.training
        self.model.eval()
        try:
            return self.engine(self.model, batch, seed=int(self.hparams.seed) + int(self.global_step))
        finally:
            self.model.train(was)

    def _logprobs(self, model, packed: PackedCompletions) -> PolicyLogProbs:
        hp = self.hparams
        return completion_logprobs(model, packed, temperature=hp.temperature, eos_id=self.tokenizer.im_end_id)

    def training_step(self, batch: list[dict[str, Any]], batch_idx: int):
        hp = self.hparams
        opt = self.optimizers()
        ro = self.rollout(batch)
        future = self.reward_pool.submit(ro.samples, ro.items)
        packed = ro.packed.to(self.device)
        with torch.no_grad():  # overlaps with reward scoring on the worker thread
            ref = None
            if hp.beta > 0 or hp.track_kl:
                with self.reference_policy() as ref_model:
                    ref = self._logprobs(ref_model, packed)
            old = self._logprobs(self.model, packed).detach() if hp.ppo_epochs > 1 else None
        rewards = future.result()
        total = rewards.total.to(self.device)
        adv = group_advantages(total, hp.group_size, scale=hp.advantage_scale)

        n = packed.tokens.shape[0]
        mb = int(hp.micro_batch_size or n)
        n_updates = hp.ppo_epochs * -(-n // mb)  # stats are averaged over every (epoch, chunk)
        stats_sum: dict[str, float] = {}
        for _ in range(hp.ppo_epochs):
            opt.zero_grad()
            for lo in range(0, n, mb):
                idx = slice(lo, min(lo + mb, n))
                new = self._logprobs(self.model, _rows(packed, idx))
                loss, stats = dual_ar_grpo_loss(
                    new, _rows_lp(old, idx), _rows_lp(ref, idx), adv[idx],
                    gamma_fast=hp.gamma_fast, clip_eps=hp.clip_eps, beta=hp.beta,
                    aggregation=hp.aggregation, max_tokens=hp.max_frames + 1,
                )  # fmt: skip
                # Chunks are weighted by their share of rows (exact for "sequence"/"constant" aggregation).
                self.manual_backward(loss * ((idx.stop - idx.start) / n))
                stats["loss"] = loss.detach()
                for k, v in stats.items():
                    stats_sum[k] = stats_sum.get(k, 0.0) + float(v) / n_updates
            if hp.grad_clip:
                self.clip_gradients(opt, gradient_clip_val=hp.grad_clip, gradient_clip_algorithm="norm")
            opt.step()

        self._log_step(ro, rewards, adv, stats_sum)
        return torch.tensor(stats_sum["loss"])

    def _log_step(self, ro: RolloutBatch, rewards, adv: torch.Tensor, stats: dict[str, float]) -> None:
        g = self.hparams.group_size
        b = len(ro.items)
        logs = {f"rl/reward/{k}/mean": float(v.nanmean()) for k, v in rewards.components.items()}
        for k, v in rewards.components.items():
            ok = v[torch.isfinite(v)]
            logs[f"rl/reward/{k}/std"] = float(ok.std(unbiased=False)) if ok.numel() > 1 else 0.0
        logs["rl/reward/total"] = float(rewards.total.mean())
        logs["rl/reward_failures"] = float(rewards.num_failures)
        logs["rl/advantage_std"] = float(adv.std(unbiased=False))
        logs.update({f"rl/{k}": v for k, v in group_stats(rewards.total, g).items()})
        frames = ro.num_frames.float()
        logs["rl/completion/mean_frames"] = float(frames.mean())
        logs["rl/completion/hit_max_frac"] = float(
            sum(s["hit_max_frames"] for s in ro.samples) / len(ro.samples)
        )
        for k in (
            "loss",
            "kl",
            "clip_frac",
            "kl_slow",
            "kl_fast",
            "clip_frac_slow",
            "clip_frac_fast",
            "loss_slow",
        ):
            if k in stats:
                logs[f"rl/{k}"] = stats[k]
        self.log("rl/reward/total", logs.pop("rl/reward/total"), on_step=True, prog_bar=True, batch_size=b)
        self.log_dict(logs, on_step=True, prog_bar=False, batch_size=b)
        every = int(self.hparams.sample_every_n_steps or 0)
        if every and self.global_step % every == 0:
            self._log_audio(ro, rewards)

    def _log_audio(self, ro: RolloutBatch, rewards) -> None:
        from pytorch_lightning.loggers import WandbLogger

        for lg in self.loggers:
            if not isinstance(lg, WandbLogger):
                continue
            best = int(torch.argmax(rewards.total[: ro.group_size]))
            clips = [ro.samples[i]["wav"].reshape(-1).numpy() for i in (best, (best + 1) % ro.group_size)]
            try:
                lg.log_audio(
                    "rl/samples", clips, step=self.global_step, sample_rate=[ro.samples[0]["sample_rate"]] * 2,
                    caption=[f"best R={float(rewards.total[best]):.3f}: {ro.items[0]['text'][:80]}", "sibling"],
                )  # fmt: skip
            except Exception as err:  # audio logging must never stop training
                log.warning("could not log rollout audio: %s", err)

    # ------------------------------------------------------------------ export
    def export(self, out_dir: str | Path) -> Path:
        """Write a merged bundle (and the bare adapter under ``adapter/`` when LoRA is on)."""
        from s2train.bundle import export_bundle
        from s2train.lit.lora import has_lora, merge_lora, save_adapter

        out = Path(out_dir)
        model = self.model
        if has_lora(model):
            save_adapter(model, out / "adapter")
            model = merge_lora(copy.deepcopy(model))
        return export_bundle(
            model,
            None,
            self.tokenizer,
            self.codec_dir,
            out,
            metadata={"recipe": "grpo", "step": int(self.global_step)},
        )


__all__ = ["DEFAULT_REWARDS", "GRPOLitModule"]
