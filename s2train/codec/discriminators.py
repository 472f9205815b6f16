"""GAN discriminators for codec training: multi-period, multi-resolution STFT-magnitude, multi-scale complex STFT.

Every sub-discriminator maps a waveform ``[B, 1, S]`` to ``(logits, feature_maps)``; ``CodecDiscriminator``
returns the list of those pairs over all sub-discriminators, which is what the adversarial and
feature-matching losses in ``s2train.codec.losses`` consume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

DiscOut = tuple[torch.Tensor, list[torch.Tensor]]


def _conv2d(
    cin: int, cout: int, k: tuple[int, int], s: tuple[int, int] = (1, 1), d: tuple[int, int] = (1, 1)
):
    pad = ((k[0] - 1) * d[0] // 2, (k[1] - 1) * d[1] // 2)
    return weight_norm(nn.Conv2d(cin, cout, k, stride=s, dilation=d, padding=pad))


def _stft(wav: torch.Tensor, n_fft: int, window: torch.Tensor) -> torch.Tensor:
    """Complex STFT of `wav` [B, 1, S] with hop n_fft // 4 -> [B, F, T] (shared by the spectral discriminators)."""
    # float32: cuFFT has no bf16 kernels, and under bf16 autocast the generator's output arrives as bf16
    x = wav[:, 0].float()
    return torch.stft(x, n_fft, n_fft // 4, window=window.float(), return_complex=True, pad_mode="constant")


class _Conv2dStack(nn.Module):
    """Shared body: 2D convs with leaky ReLU, the last one a 1-channel logit map."""

    def __init__(self, layers: list[nn.Module], last_ch: int, last_k: tuple[int, int]):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.out = _conv2d(last_ch, 1, last_k)

    def forward(self, x: torch.Tensor) -> DiscOut:
        fmaps = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.1)
            fmaps.append(x)
        x = self.out(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class PeriodDiscriminator(nn.Module):
    """Looks at the waveform folded into ``period`` columns (HiFi-GAN MPD member).

    Args:
        period: fold period in samples.
        channels: conv widths.
    """

    def __init__(self, period: int, channels: list[int]):
        super().__init__()
        self.period = period
        chans = [1, *channels]
        layers = [_conv2d(chans[i], chans[i + 1], (5, 1), (3, 1)) for i in range(len(channels) - 1)]
        layers.append(_conv2d(chans[-2], chans[-1], (5, 1)))
        self.body = _Conv2dStack(layers, chans[-1], (3, 1))

    def forward(self, wav: torch.Tensor) -> DiscOut:
        b, c, s = wav.shape
        if s % self.period:
            wav = F.pad(
                wav, (0, self.period - s % self.period), mode="reflect" if s > self.period else "constant"
            )
        return self.body(wav.view(b, c, -1, self.period))


class STFTMagnitudeDiscriminator(nn.Module):
    """Judges the log-magnitude spectrogram at one resolution (multi-resolution member).

    Args:
        n_fft: FFT size (window = n_fft, hop = n_fft // 4).
        channels: conv width.
        num_layers: strided conv layers.
    """

    def __init__(self, n_fft: int, channels: int, num_layers: int = 3):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        layers = [_conv2d(1, channels, (3, 9))]
        layers += [_conv2d(channels, channels, (3, 9), (1, 2)) for _ in range(num_layers)]
        layers.append(_conv2d(channels, channels, (3, 3)))
        self.body = _Conv2dStack(layers, channels, (3, 3))

    def forward(self, wav: torch.Tensor) -> DiscOut:
        spec = _stft(wav, self.n_fft, self.window)
        mag = torch.log1p(spec.abs()).transpose(1, 2).unsqueeze(1)  # [B, 1, T, F]
        return self.body(mag)


class ComplexSTFTDiscriminator(nn.Module):
    """Judges the real and imaginary STFT parts at one scale, with time dilations (multi-scale member).

    Args:
        n_fft: FFT size (window = n_fft, hop = n_fft // 4).
        channels: conv width.
        dilations: time dilations of the middle convs.
    """

    def __init__(self, n_fft: int, channels: int, dilations: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        layers = [_conv2d(2, channels, (3, 9))]
        layers += [_conv2d(channels, channels, (3, 9), (1, 2), (d, 1)) for d in dilations]
        layers.append(_conv2d(channels, channels, (3, 3)))
        self.body = _Conv2dStack(layers, channels, (3, 3))

    def forward(self, wav: torch.Tensor) -> DiscOut:
        spec = _stft(wav, self.n_fft, self.window)
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, T, F]
        return self.body(x)


class CodecDiscriminator(nn.Module):
    """All three discriminator families together.

    Args:
        periods: MPD periods, e.g. ``[2, 3, 5, 7, 11]`` (empty list disables MPD).
        period_channels: MPD conv widths.
        stft_ffts: FFT sizes of the STFT-magnitude discriminators (empty disables).
        complex_ffts: FFT sizes of the complex STFT discriminators (empty disables).
        spec_channels: conv width of both spectral families.
    """

    def __init__(
        self,
        periods: list[int] = (2, 3, 5, 7, 11),
        period_channels: list[int] = (32, 128, 512, 1024, 1024),
        stft_ffts: list[int] = (2048, 1024, 512),
        complex_ffts: list[int] = (2048, 1024, 512),
        spec_channels: int = 32,
    ):
        super().__init__()
        subs: list[nn.Module] = [PeriodDiscriminator(p, list(period_channels)) for p in periods]
        subs += [STFTMagnitudeDiscriminator(n, spec_channels) for n in stft_ffts]
        subs += [ComplexSTFTDiscriminator(n, spec_channels) for n in complex_ffts]
        if not subs:
            raise ValueError("CodecDiscriminator needs at least one sub-discriminator")
        self.subs = nn.ModuleList(subs)

    def forward(self, wav: torch.Tensor) -> list[DiscOut]:
        """Args: wav: [B, 1, S]. Returns: one ``(logits [B, N], feature_maps)`` per sub-discriminator."""
        return [d(wav) for d in self.subs]
