"""Codec reconstruction metrics: multi-scale mel distance, STFT distance, SI-SDR, codebook usage.

Plain functions on tensors (pure torch), so the Lightning codec module, the eval suites and notebooks share
one definition.
"""

from __future__ import annotations

import functools

import torch

from s2train.codec.losses import MultiScaleMelLoss, multi_resolution_stft_loss


@functools.lru_cache(maxsize=8)
def _mel_loss(
    sample_rate: int, window_lengths: tuple[int, ...], n_mels: tuple[int, ...]
) -> MultiScaleMelLoss:
    return MultiScaleMelLoss(sample_rate, list(window_lengths), list(n_mels))


@torch.no_grad()
def multiscale_mel_distance(
    pred: torch.Tensor,
    target: torch.Tensor,
    sample_rate: int,
    window_lengths: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048),
    n_mels: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320),
) -> float:
    """DAC's multi-scale mel distance (log + linear mel L1 summed over scales); 0 for identical audio.

    Args:
        pred, target: [B, 1, S] (trimmed to the shorter length).
        sample_rate: rate of both signals.
        window_lengths, n_mels: the scales.
    """
    loss = _mel_loss(sample_rate, tuple(window_lengths), tuple(n_mels)).to(pred.device)
    return float(loss(pred, target))


@torch.no_grad()
def stft_distance(
    pred: torch.Tensor, target: torch.Tensor, ffts: tuple[int, ...] = (2048, 1024, 512, 256)
) -> float:
    """Multi-resolution STFT distance (spectral convergence + log-magnitude L1); 0 for identical audio.

    Args:
        pred, target: [B, 1, S].
        ffts: FFT sizes.
    """
    return float(multi_resolution_stft_loss(pred, target, list(ffts)))


@torch.no_grad()
def si_sdr(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> float:
    """Scale-invariant SDR in dB, averaged over the batch (both signals mean-removed).

    Args:
        pred, target: [B, 1, S] or [B, S].

    Returns:
        Mean SI-SDR in dB; unchanged when ``pred`` is rescaled.
    """
    n = min(pred.shape[-1], target.shape[-1])
    x = pred.reshape(pred.shape[0], -1)[:, :n].double()
    y = target.reshape(target.shape[0], -1)[:, :n].double()
    x = x - x.mean(-1, keepdim=True)
    y = y - y.mean(-1, keepdim=True)
    alpha = (x * y).sum(-1, keepdim=True) / (y.pow(2).sum(-1, keepdim=True) + eps)
    proj = alpha * y
    noise = x - proj
    ratio = proj.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps)
    return float((10 * torch.log10(ratio + eps)).mean())


@torch.no_grad()
def codebook_usage(codes: torch.Tensor, sizes: list[int]) -> tuple[list[float], list[float]]:
    """Per-codebook fraction of entries used and perplexity of the code distribution.

    Args:
        codes: [B, K, T] or [K, T] integer codes.
        sizes: entries per codebook (length K).

    Returns:
        ``(used_fraction[K], perplexity[K])``; uniform use of all C entries gives perplexity C.
    """
    if codes.dim() == 2:
        codes = codes[None]
    if codes.shape[1] != len(sizes):
        raise ValueError(f"codes have {codes.shape[1]} codebooks but {len(sizes)} sizes were given")
    used, ppl = [], []
    for k, size in enumerate(sizes):
        counts = torch.bincount(codes[:, k].reshape(-1).long(), minlength=size).double()
        p = counts / counts.sum().clamp_min(1)
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        used.append(float((counts > 0).sum()) / size)
        ppl.append(float(entropy.exp()))
    return used, ppl
