"""Causal spectral encoder and iSTFT decoder (Vocos-style) for small codecs that must train on a CPU.

The DAC-style encoder/decoder spends most of its compute on convolutions at the audio rate. Here both ends
work on STFT frames instead (``frame_hop`` samples apart, e.g. 160 = 100 frames/s at 16 kHz):

- ``SpectralEncoder``: a strided causal conv initialised to the windowed DFT (a learnable STFT), log
  magnitude, ConvNeXt blocks at the STFT frame rate, then strided causal convs down to the code frame rate.
- ``ISTFTDecoder``: causal transposed convs up to the STFT frame rate, ConvNeXt blocks, a projection to log
  magnitude and phase per bin, and ``ISTFTHead``: inverse FFT, synthesis window and overlap-add.

Causality and delay. Frame ``j`` of the encoder sees samples ``< (j + 1) * frame_hop``. Its synthesis window
spans ``n_fft`` samples, so a sample is complete only when the ``n_fft / frame_hop`` frames that overlap it
are in. The decoder therefore emits audio ``delay = n_fft - frame_hop`` samples late: output sample ``n``
reconstructs input sample ``n - delay`` (30 ms with the demo's 640/160). In exchange, streaming is exact:
``ISTFTHead`` keeps the overlap tail as stream state, so chunked decoding concatenates to the full decode.
Callers that compare a reconstruction with its input use ``Codec.align``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from s2train.codec.layers import (
    CausalConv1d,
    CausalConvTranspose1d,
    ChannelLayerNorm,
    ConvNeXtBlock,
    StreamingModule,
)


def _check_fft(n_fft: int, frame_hop: int) -> None:
    if n_fft % frame_hop or n_fft < 2 * frame_hop:
        raise ValueError(f"n_fft {n_fft} must be a multiple of frame_hop {frame_hop} and at least twice it")


class SpectralEncoder(nn.Module):
    """Waveform ``[B, 1, S]`` -> latent ``[B, latent_dim, S // hop]`` with ``hop = frame_hop * prod(strides)``.

    Args:
        n_fft: STFT window length in samples.
        frame_hop: STFT hop in samples.
        dim: channels of the ConvNeXt blocks at the STFT frame rate.
        blocks: number of ConvNeXt blocks at the STFT frame rate.
        strides: downsampling factors from the STFT frame rate to the code frame rate.
        latent_dim: output channels.
    """

    def __init__(
        self, n_fft: int, frame_hop: int, dim: int, blocks: int, strides: list[int], latent_dim: int
    ):
        super().__init__()
        _check_fft(n_fft, frame_hop)
        bins = n_fft // 2 + 1
        self.stft = CausalConv1d(1, 2 * bins, n_fft, stride=frame_hop)
        with torch.no_grad():  # start as the Hann-windowed DFT (real parts, then imaginary parts)
            n = torch.arange(n_fft, dtype=torch.float64)
            k = torch.arange(bins, dtype=torch.float64)[:, None]
            window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
            angle = 2 * math.pi * k * n / n_fft
            basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window
            self.stft.conv.weight.copy_(basis[:, None, :].float())
            self.stft.conv.bias.zero_()
        self.proj = nn.Conv1d(bins, dim, 1)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(dim) for _ in range(blocks)])
        down: list[nn.Module] = [ChannelLayerNorm(dim)]
        ch = dim
        for s in strides:
            down += [CausalConv1d(ch, latent_dim, 2 * s, stride=s), ConvNeXtBlock(latent_dim)]
            ch = latent_dim
        if not strides:
            down.append(nn.Conv1d(ch, latent_dim, 1))
        self.down = nn.Sequential(*down)
        self.hop_length = frame_hop * math.prod(strides)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        re, im = self.stft(wav).chunk(2, dim=1)
        logmag = 0.5 * torch.log(re * re + im * im + 1e-6)
        return self.down(self.blocks(self.proj(logmag)))


class ISTFTHead(StreamingModule):
    """``[B, 2 * bins, J]`` (log magnitude, phase) -> waveform ``[B, 1, J * frame_hop]`` by overlap-add.

    Output sample ``n`` collects every frame whose window covers it; with stream state attached, the
    ``n_fft - frame_hop`` samples still waiting for later frames are carried to the next call.

    Args:
        n_fft: inverse FFT length (= synthesis window length).
        frame_hop: hop between frames.
    """

    def __init__(self, n_fft: int, frame_hop: int):
        super().__init__()
        _check_fft(n_fft, frame_hop)
        self.n_fft, self.frame_hop = n_fft, frame_hop
        window = torch.hann_window(n_fft, periodic=True)
        # Steady-state overlap-add gain of the squared window at each position within a hop.
        envelope = window.pow(2).view(-1, frame_hop).sum(0)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("envelope", envelope, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logmag, phase = x.float().chunk(2, dim=1)
        mag = torch.exp(logmag.clamp(max=6.0))  # |X| <= e^6 ~ 400 keeps early training finite
        spec = torch.polar(mag, phase)
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=1) * self.window[:, None]  # [B, n_fft, J]
        b, _, j = frames.shape
        length = (j - 1) * self.frame_hop + self.n_fft
        ola = F.fold(frames, (1, length), (1, self.n_fft), stride=(1, self.frame_hop)).view(b, 1, length)
        if self._stream is not None:
            tail = self._get_state()
            if tail is not None:
                ola = torch.cat([ola[..., : tail.shape[-1]] + tail, ola[..., tail.shape[-1] :]], dim=-1)
            self._set_state(ola[..., j * self.frame_hop :])
        out = ola[..., : j * self.frame_hop]
        return out / self.envelope.repeat(j)


class ISTFTDecoder(nn.Module):
    """Latent ``[B, latent_dim, T]`` -> waveform ``[B, 1, T * hop]``, ``delay`` samples late (module doc).

    Args:
        n_fft: synthesis window length.
        frame_hop: STFT hop.
        dim: channels of the ConvNeXt blocks.
        blocks: number of ConvNeXt blocks at the STFT frame rate.
        strides: the encoder's downsampling factors (applied here as upsampling, in reverse).
        latent_dim: input channels.
    """

    def __init__(
        self, n_fft: int, frame_hop: int, dim: int, blocks: int, strides: list[int], latent_dim: int
    ):
        super().__init__()
        layers: list[nn.Module] = []
        ch = latent_dim
        for s in reversed(list(strides)):
            layers += [ConvNeXtBlock(ch), CausalConvTranspose1d(ch, dim, s)]
            ch = dim
        if ch != dim:
            layers.append(nn.Conv1d(ch, dim, 1))
        layers += [ConvNeXtBlock(dim) for _ in range(blocks)]
        layers += [ChannelLayerNorm(dim), nn.Conv1d(dim, n_fft + 2, 1)]
        self.net = nn.Sequential(*layers)
        self.head = ISTFTHead(n_fft, frame_hop)
        self.delay = n_fft - frame_hop

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        wav = self.head(self.net(z))
        return wav if self.training else wav.clamp(-1.0, 1.0)
