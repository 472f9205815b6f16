"""Reconstruction and GAN losses for codec training (pure torch).

``MultiScaleMelLoss`` is also the metric behind ``s2train.eval.metrics.audio.multiscale_mel_distance``.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn


class MultiScaleMelLoss(nn.Module):
    """L1 between log-mel (and linear mel) spectrograms at several window lengths (DAC-style).

    Args:
        sample_rate: audio rate.
        window_lengths: STFT windows (hop = window // 4).
        n_mels: mel bands per window (same length as ``window_lengths``).
        log_weight: weight of the log10-mel L1.
        mag_weight: weight of the linear-mel L1.
        clamp_eps: floor before the log.
    """

    def __init__(
        self,
        sample_rate: int,
        window_lengths: list[int] = (32, 64, 128, 256, 512, 1024, 2048),
        n_mels: list[int] = (5, 10, 20, 40, 80, 160, 320),
        log_weight: float = 1.0,
        mag_weight: float = 1.0,
        clamp_eps: float = 1e-5,
    ):
        super().__init__()
        if len(window_lengths) != len(n_mels):
            raise ValueError(f"window_lengths {window_lengths} and n_mels {n_mels} differ in length")
        self.log_weight, self.mag_weight, self.eps = log_weight, mag_weight, clamp_eps
        with warnings.catch_warnings():
            # Small windows give a few empty mel filters; harmless for a loss.
            warnings.simplefilter("ignore")
            self.mels = nn.ModuleList(
                torchaudio.transforms.MelSpectrogram(
                    sample_rate,
                    n_fft=w,
                    win_length=w,
                    hop_length=w // 4,
                    n_mels=m,
                    power=1.0,
                    center=True,
                    pad_mode="constant",
                )
                for w, m in zip(window_lengths, n_mels)
            )

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: pred, target: [B, 1, S]. Returns: scalar loss summed over scales."""
        n = min(pred.shape[-1], target.shape[-1])
        x, y = pred[..., :n].float(), target[..., :n].float()
        loss = x.new_zeros(())
        for mel in self.mels:
            mx, my = mel(x), mel(y)
            loss = loss + self.mag_weight * F.l1_loss(mx, my)
            loss = loss + self.log_weight * F.l1_loss(
                mx.clamp_min(self.eps).log10(), my.clamp_min(self.eps).log10()
            )
        return loss


def multi_resolution_stft_loss(
    pred: torch.Tensor, target: torch.Tensor, ffts: list[int] = (2048, 1024, 512, 256)
) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1, averaged over FFT sizes.

    Args:
        pred, target: [B, 1, S].
        ffts: FFT sizes (hop = n // 4).

    Returns:
        Scalar distance; 0 for identical inputs.
    """
    n = min(pred.shape[-1], target.shape[-1])
    x, y = pred[..., :n].float()[:, 0], target[..., :n].float()[:, 0]
    total = x.new_zeros(())
    for f in ffts:
        win = torch.hann_window(f, device=x.device)
        sx = torch.stft(x, f, f // 4, window=win, return_complex=True, pad_mode="constant").abs()
        sy = torch.stft(y, f, f // 4, window=win, return_complex=True, pad_mode="constant").abs()
        sc = torch.linalg.norm(sy - sx) / torch.linalg.norm(sy).clamp_min(1e-7)
        mag = F.l1_loss(sx.clamp_min(1e-7).log(), sy.clamp_min(1e-7).log())
        total = total + sc + mag
    return total / len(ffts)


def feature_matching_loss(real: list, fake: list) -> torch.Tensor:
    """Mean L1 between discriminator feature maps of real and fake audio (real detached).

    Args:
        real, fake: ``CodecDiscriminator`` outputs: lists of ``(logits, feature_maps)``.
    """
    terms = [F.l1_loss(f, r.detach()) for (_, fr), (_, ff) in zip(real, fake) for r, f in zip(fr, ff)]
    return torch.stack(terms).sum() / len(real)


def generator_adv_loss(fake: list, kind: str = "hinge") -> torch.Tensor:
    """Adversarial loss of the generator, averaged over sub-discriminators.

    Args:
        fake: discriminator outputs on generated audio.
        kind: ``"hinge"`` or ``"lsgan"``.
    """
    if kind == "hinge":
        terms = [F.relu(1 - logits).mean() for logits, _ in fake]
    elif kind == "lsgan":
        terms = [(1 - logits).pow(2).mean() for logits, _ in fake]
    else:
        raise ValueError(f"unknown adversarial loss {kind!r}; use 'hinge' or 'lsgan'")
    return torch.stack(terms).mean()


def discriminator_loss(real: list, fake: list, kind: str = "hinge") -> torch.Tensor:
    """Discriminator loss on real vs (detached) generated audio, averaged over sub-discriminators."""
    if kind == "hinge":
        terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for (r, _), (f, _) in zip(real, fake)]
    elif kind == "lsgan":
        terms = [(1 - r).pow(2).mean() + f.pow(2).mean() for (r, _), (f, _) in zip(real, fake)]
    else:
        raise ValueError(f"unknown adversarial loss {kind!r}; use 'hinge' or 'lsgan'")
    return torch.stack(terms).mean()
