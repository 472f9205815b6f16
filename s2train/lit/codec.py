"""LightningModule that trains the RVQ codec with mel, feature-matching, adversarial and VQ losses.

Manual optimization: per batch one discriminator AdamW step (once the mel-only warm-up is over) and one
generator AdamW step, each with its own grad clipping and exponential LR schedule. Note that Lightning's
``global_step`` (and so ``trainer.max_steps``) counts *optimizer* steps: two per batch once the
discriminators are on. ``self.train_step`` counts batches and drives warm-up and audio sampling.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch

from s2train.codec import build_codec, save_codec
from s2train.codec.discriminators import CodecDiscriminator
from s2train.codec.losses import (
    MultiScaleMelLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adv_loss,
)
from s2train.eval.metrics.audio import codebook_usage, si_sdr, stft_distance

log = logging.getLogger(__name__)


class CodecLitModule(pl.LightningModule):
    """GAN training of a ``DACStyleCodec`` on ``{"wav": Tensor[B, 1, S]}`` batches.

    Args:
        codec: ``DACStyleCodec`` constructor args (``configs/codec/*.yaml``).
        discriminator: ``CodecDiscriminator`` kwargs.
        mel: ``MultiScaleMelLoss`` kwargs besides ``sample_rate`` (window_lengths, n_mels).
        lambda_mel, lambda_fm, lambda_adv, lambda_commit, lambda_codebook, lambda_semantic: loss weights.
        adv_loss: ``"hinge"`` or ``"lsgan"``.
        lr, betas, weight_decay: AdamW settings of the generator.
        disc_lr: discriminator LR (default ``lr``).
        lr_gamma: per-batch factor of the exponential LR schedulers.
        mel_warmup_steps: batches trained on reconstruction losses only before the discriminators start.
        grad_clip, disc_grad_clip: max grad norms.
        sample_every_n_steps: log audio samples every this many batches (0 disables).
        num_samples: how many batch items to log as audio.
        init_from: a codec folder (``save_codec`` / a previous run's ``export``) whose generator weights start
            this run (continue training on a new machine, or fine-tune on new data); the discriminators and
            optimizers start fresh. Its config must match ``codec`` (a mismatch is a clear error).
    """

    def __init__(
        self,
        codec: dict,
        discriminator: dict | None = None,
        mel: dict | None = None,
        lambda_mel: float = 15.0,
        lambda_fm: float = 2.0,
        lambda_adv: float = 1.0,
        lambda_commit: float = 0.25,
        lambda_codebook: float = 1.0,
        lambda_semantic: float = 1.0,
        adv_loss: str = "hinge",
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.8, 0.99),
        weight_decay: float = 0.0,
        disc_lr: float | None = None,
        lr_gamma: float = 0.999996,
        mel_warmup_steps: int = 0,
        grad_clip: float = 1000.0,
        disc_grad_clip: float = 10.0,
        sample_every_n_steps: int = 1000,
        num_samples: int = 2,
        init_from: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.codec = build_codec(codec)
        if init_from:
            self._init_generator(str(init_from))
        self.disc = CodecDiscriminator(**(discriminator or {}))
        self.mel_loss = MultiScaleMelLoss(self.codec.sample_rate, **(mel or {}))
        self.register_buffer("_train_step", torch.zeros((), dtype=torch.long))

    def _init_generator(self, path: str) -> None:
        from s2train.codec import load_codec

        src = load_codec(path)
        if src.config != self.codec.config:
            raise ValueError(
                f"init_from={path}: its codec config {src.config} differs from the run's codec "
                f"config {self.codec.config}; pass the matching codec=... preset"
            )
        self.codec.load_state_dict(src.state_dict(), strict=True)
        log.info("codec generator initialized from %s", path)

    @property
    def train_step(self) -> int:
        """Training batches seen (restored on resume)."""
        return int(self._train_step)

    def configure_optimizers(self):
        hp = self.hparams
        opt_g = torch.optim.AdamW(
            self.codec.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay
        )
        opt_d = torch.optim.AdamW(
            self.disc.parameters(),
            lr=hp.disc_lr or hp.lr,
            betas=tuple(hp.betas),
            weight_decay=hp.weight_decay,
        )
        sch_g = torch.optim.lr_scheduler.ExponentialLR(opt_g, gamma=hp.lr_gamma)
        sch_d = torch.optim.lr_scheduler.ExponentialLR(opt_d, gamma=hp.lr_gamma)
        return [opt_g, opt_d], [sch_g, sch_d]

    def _step_opt(self, opt, loss: torch.Tensor, params, clip: float) -> None:
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        hp = self.hparams
        wav = batch["wav"]
        opt_g, opt_d = self.optimizers()
        sch_g, sch_d = self.lr_schedulers()
        use_disc = self.train_step >= hp.mel_warmup_steps

        out = self.codec(wav)
        recon, wav = self.codec.align(out.wav, wav)  # same span of audio (a delayed decoder lags its input)

        if use_disc:
            d_loss = discriminator_loss(self.disc(wav), self.disc(recon.detach()), hp.adv_loss)
            self._step_opt(opt_d, d_loss, self.disc.parameters(), hp.disc_grad_clip)
            sch_d.step()
            self.log("train/loss_disc", d_loss, prog_bar=True)

        loss_mel = self.mel_loss(recon, wav)
        loss = (
            hp.lambda_mel * loss_mel
            + hp.lambda_commit * out.commitment_loss
            + hp.lambda_codebook * out.codebook_loss
        )
        if out.semantic_loss is not None:
            loss = loss + hp.lambda_semantic * out.semantic_loss
            self.log("train/loss_semantic", out.semantic_loss)
        if use_disc:
            # Discriminator params stop requiring grad here: no wasted grads, and DDP sees each param once.
            with self.toggled_optimizer(opt_g):
                real, fake = self.disc(wav), self.disc(recon)
            loss_adv = generator_adv_loss(fake, hp.adv_loss)
            loss_fm = feature_matching_loss(real, fake)
            loss = loss + hp.lambda_adv * loss_adv + hp.lambda_fm * loss_fm
            self.log("train/loss_adv", loss_adv)
            self.log("train/loss_fm", loss_fm)
        self._step_opt(opt_g, loss, self.codec.parameters(), hp.grad_clip)
        sch_g.step()

        self.log("train/loss", loss, prog_bar=True)
        self.log("train/loss_mel", loss_mel, prog_bar=True)
        self.log("train/loss_commit", out.commitment_loss)
        self.log("train/loss_codebook", out.codebook_loss)
        self.log("train/lr", sch_g.get_last_lr()[0])
        used, ppl = codebook_usage(out.codes, self.codec.codebook_sizes)
        for k, (u, p) in enumerate(zip(used, ppl)):
            self.log(f"train/cb{k}_usage", u)
            self.log(f"train/cb{k}_perplexity", p)

        if hp.sample_every_n_steps and self.train_step % hp.sample_every_n_steps == 0:
            self._log_audio("train", wav, recon)
        self._train_step += 1
        return loss.detach()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        wav = batch["wav"]
        recon, wav = self.codec.align(self.codec.decode(self.codec.encode(wav)), wav)
        self.log("val/mel_distance", self.mel_loss(recon, wav), prog_bar=True, sync_dist=True)
        self.log("val/stft_distance", stft_distance(recon, wav), sync_dist=True)
        self.log("val/si_sdr", si_sdr(recon, wav), sync_dist=True)
        if batch_idx == 0:
            self._log_audio("val", wav, recon)

    def _log_audio(self, split: str, wav: torch.Tensor, recon: torch.Tensor) -> None:
        """Send a few (original, reconstruction) pairs to wandb or TensorBoard; no-op for other loggers."""
        if self.logger is None or self.trainer is None or not self.trainer.is_global_zero:
            return
        n = min(self.hparams.num_samples, wav.shape[0])
        sr = self.codec.sample_rate
        pairs = [
            (f"{split}/audio_{i}_{kind}", x[i, 0].detach().float().cpu())
            for i in range(n)
            for kind, x in (("real", wav), ("recon", recon))
        ]
        name = type(self.logger).__name__
        if name == "WandbLogger":
            self.logger.log_audio(
                f"{split}/audio",
                [a.numpy() for _, a in pairs],
                caption=[k for k, _ in pairs],
                sample_rate=[sr] * len(pairs),
            )
        elif name == "TensorBoardLogger":
            for key, a in pairs:
                self.logger.experiment.add_audio(key, a[None], self.train_step, sample_rate=sr)

    def export(self, directory, fp16: bool = False):
        """Save the generator as a standalone codec folder (``config.json`` + ``model.safetensors``)."""
        return save_codec(self.codec, directory, fp16=fp16)

    def on_train_start(self) -> None:
        n = sum(p.numel() for p in self.codec.parameters())
        log.info(
            "codec: %.2fM params, %d Hz, hop %d (%.2f frames/s), codebooks %s",
            n / 1e6,
            self.codec.sample_rate,
            self.codec.hop_length,
            self.codec.frame_rate,
            self.codec.codebook_sizes,
        )
