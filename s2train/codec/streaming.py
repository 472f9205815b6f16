"""Chunked encoding and frame-by-frame decoding with cached left context.

``StreamDecoder.push(codes[B, K, t])`` returns the ``t * hop`` samples of those frames. Every causal conv,
transposed conv and attention layer of the decode path keeps its left context in this object's ``state``
dict (attached to the modules only for the duration of a push), so the concatenated chunks equal
``codec.decode`` of the whole sequence up to float rounding, and several streams can share one model.
"""

from __future__ import annotations

import torch

from s2train.codec.layers import StreamingModule


class StreamDecoder:
    """Stateful decoder for one batch of streams.

    Args:
        codec: a ``DACStyleCodec`` (anything with ``check_codes``, ``quantizer``, ``decode_latent``).
    """

    def __init__(self, codec):
        self.codec = codec
        self.state: dict = {}
        self.frames = 0
        self._modules = [
            m
            for part in (codec.post_transformer, codec.decoder)
            for m in part.modules()
            if isinstance(m, StreamingModule)
        ]

    @torch.no_grad()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode the next frames.

        Args:
            codes: [B, K, t] codes of the next ``t >= 1`` frames (same B and K on every push).

        Returns:
            wav: [B, 1, t * hop].
        """
        self.codec.check_codes(codes)
        for m in self._modules:
            m._stream = self.state
        try:
            wav = self.codec.decode_latent(self.codec.quantizer.decode_codes(codes.long()))
        finally:
            for m in self._modules:
                m._stream = None
        self.frames += codes.shape[-1]
        return wav

    def reset(self) -> None:
        """Forget all cached context (start a new utterance)."""
        self.state.clear()
        self.frames = 0


class StreamEncoder:
    """Stateful encoder: ``push(wav[B, 1, n * hop]) -> codes[B, K, n]`` equal to the full ``encode``.

    Every causal conv (strided ones included: chunks are whole frames, so each stride divides them) and
    attention layer of the encode path carries its left context in ``state``.

    Args:
        codec: a ``DACStyleCodec``.
    """

    def __init__(self, codec):
        self.codec = codec
        self.state: dict = {}
        self._modules = [
            m
            for part in (codec.encoder, codec.pre_transformer)
            for m in part.modules()
            if isinstance(m, StreamingModule)
        ]

    @torch.no_grad()
    def push(self, wav: torch.Tensor) -> torch.Tensor:
        """Args: wav: [B, 1, n * hop]. Returns: codes [B, K, n]."""
        if wav.shape[-1] % self.codec.hop_length:
            raise ValueError(
                f"chunk of {wav.shape[-1]} samples is not a multiple of the hop {self.codec.hop_length}"
            )
        for m in self._modules:
            m._stream = self.state
        try:
            z = self.codec.latent(wav)
        finally:
            for m in self._modules:
                m._stream = None
        return self.codec._codes(z)
