"""Semantic distillation: a head on the codebook-0 latent regresses a frozen teacher's features.

A teacher is any callable ``teacher(wav[B, 1, S] at 16 kHz) -> feats[B, T', D]`` with attributes
``sample_rate`` (16000) and ``dim`` (D). The codec resamples its input to ``teacher.sample_rate``, calls the
teacher under ``torch.no_grad()``, and linearly interpolates the features in time to the codec frame rate.
The loss is ``1 - cosine(head(first_latent), teacher_feats)`` averaged over frames (Mimi-style).

Plugging a self-supervised teacher:

* WavLM / HuBERT via torchaudio: ``TorchaudioSSLTeacher("WAVLM_BASE_PLUS", layer=6)`` (weights download
  on first use, so fetch them on a machine with network first; ``dim`` = 768).
* w2v-BERT 2.0 (S2's teacher, layer 16, dim 1024): wrap ``transformers.Wav2Vec2BertModel`` in a small
  class with ``sample_rate = 16000``, ``dim = 1024`` and a ``__call__`` that runs its feature extractor
  and returns ``hidden_states[16]`` as ``[B, T', 1024]``; pass the instance as ``teacher=`` to
  ``DACStyleCodec`` (or register it in ``TEACHERS``). The codec package itself never imports transformers.

The teacher is not part of the codec's state dict: it is frozen and only needed in training.
"""

from __future__ import annotations

import logging
from typing import Protocol

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

log = logging.getLogger(__name__)


class SemanticTeacher(Protocol):
    """A frozen feature extractor used as the distillation target."""

    sample_rate: int
    dim: int

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        """Args: wav: [B, 1, S] at ``sample_rate``. Returns: [B, T', dim]."""


class MelTeacher(nn.Module):
    """Cheap deterministic teacher: log-mel frames through a fixed random projection (tests, demos).

    Args:
        dim: output feature size.
        n_mels: mel bands.
        hop_length: hop in samples at 16 kHz (320 = 50 Hz, like WavLM).
        n_fft: FFT size.
        seed: seed of the fixed projection.
    """

    sample_rate = 16000

    def __init__(
        self, dim: int = 64, n_mels: int = 64, hop_length: int = 320, n_fft: int = 1024, seed: int = 0
    ):
        super().__init__()
        self.dim, self.n_fft = dim, n_fft
        self.mel = torchaudio.transforms.MelSpectrogram(
            16000, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels
        )
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", torch.randn(n_mels, dim, generator=g) / n_mels**0.5)
        self.requires_grad_(False)

    @torch.no_grad()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.shape[-1] <= self.n_fft // 2:  # reflect padding inside the STFT needs a longer input
            wav = F.pad(wav, (0, self.n_fft // 2 + 1 - wav.shape[-1]))
        mel = torch.log(self.mel(wav[:, 0]).clamp_min(1e-5))  # [B, n_mels, T']
        return mel.transpose(1, 2) @ self.proj


class TorchaudioSSLTeacher(nn.Module):
    """Layer ``layer`` of a torchaudio SSL bundle (e.g. ``WAVLM_BASE_PLUS``, ``HUBERT_BASE``).

    Args:
        bundle: attribute name in ``torchaudio.pipelines``.
        layer: 1-based transformer layer whose output is the target.
    """

    sample_rate = 16000

    def __init__(self, bundle: str = "WAVLM_BASE_PLUS", layer: int = 6):
        super().__init__()
        b = getattr(torchaudio.pipelines, bundle)
        self.model = b.get_model().eval().requires_grad_(False)
        self.dim = b._params["encoder_embed_dim"]
        self.layer = layer

    @torch.no_grad()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        feats, _ = self.model.extract_features(wav[:, 0], num_layers=self.layer)
        return feats[-1]


TEACHERS = {"mel": MelTeacher, "torchaudio_ssl": TorchaudioSSLTeacher}


def build_teacher(cfg: dict) -> nn.Module:
    """Build a teacher from ``{"name": <key of TEACHERS>, **kwargs}``."""
    cfg = dict(cfg)
    name = cfg.pop("name")
    if name not in TEACHERS:
        raise ValueError(f"unknown semantic teacher {name!r}; choose from {sorted(TEACHERS)}")
    return TEACHERS[name](**cfg)


class SemanticHead(nn.Module):
    """Small causal projection from the codebook-0 latent to the teacher's feature space.

    Args:
        latent_dim: codec latent channels D.
        teacher_dim: teacher feature size.
    """

    def __init__(self, latent_dim: int, teacher_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(latent_dim, latent_dim, 1), nn.GELU(), nn.Conv1d(latent_dim, teacher_dim, 1)
        )

    def forward(self, first_latent: torch.Tensor) -> torch.Tensor:
        """Args: first_latent: [B, D, T]. Returns: [B, T, teacher_dim]."""
        return self.net(first_latent).transpose(1, 2)


def teacher_targets(teacher, wav: torch.Tensor, sample_rate: int, num_frames: int) -> torch.Tensor:
    """Teacher features of ``wav`` resampled in time to ``num_frames``.

    Args:
        teacher: a ``SemanticTeacher``.
        wav: [B, 1, S] at ``sample_rate``.
        sample_rate: rate of ``wav``.
        num_frames: codec frames T.

    Returns:
        [B, T, teacher.dim] detached features.
    """
    with torch.no_grad():
        x = (
            wav
            if sample_rate == teacher.sample_rate
            else torchaudio.functional.resample(wav, sample_rate, teacher.sample_rate)
        )
        feats = teacher(x).float()  # [B, T', D]
        return F.interpolate(
            feats.transpose(1, 2), size=num_frames, mode="linear", align_corners=False
        ).transpose(1, 2)


def distillation_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cosine`` between ``pred`` and ``target``, both [B, T, D]."""
    return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
