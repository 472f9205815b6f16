"""``DACStyleCodec``: causal conv encoder -> [transformer] -> ResidualVQ -> [transformer] -> causal decoder."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from s2train.codec.encoder import Decoder, Encoder
from s2train.codec.interface import Codec, to_plain
from s2train.codec.quantizer import ResidualVQ
from s2train.codec.semantic import SemanticHead, build_teacher, distillation_loss, teacher_targets
from s2train.codec.spectral import ISTFTDecoder, SpectralEncoder
from s2train.codec.transformer import CausalTransformer

log = logging.getLogger(__name__)


@dataclass
class CodecOutput:
    """Training forward result.

    Attributes:
        wav: [B, 1, S'] reconstruction (S' = input length rounded up to whole frames).
        codes: [B, K, T].
        commitment_loss / codebook_loss: scalars from the quantizer.
        semantic_loss: scalar distillation loss, or None without a teacher.
    """

    wav: torch.Tensor
    codes: torch.Tensor
    commitment_loss: torch.Tensor
    codebook_loss: torch.Tensor
    semantic_loss: torch.Tensor | None


def _build_ends(encoder_type, decoder_type, spectral, encoder_dim, decoder_dim, strides, extra, latent_dim):
    """Encoder and decoder modules for the ``encoder_type`` / ``decoder_type`` pair (see the class doc)."""
    kinds = {
        "encoder_type": (encoder_type, ("conv", "spectral")),
        "decoder_type": (decoder_type, ("conv", "istft")),
    }
    for key, (value, allowed) in kinds.items():
        if value not in allowed:
            raise ValueError(f"codec {key}={value!r}: expected one of {list(allowed)}")
    sp = dict(spectral or {})
    if (encoder_type == "spectral" or decoder_type == "istft") and not {"n_fft", "frame_hop", "dim"} <= set(
        sp
    ):
        raise ValueError(
            "codec encoder_type=spectral / decoder_type=istft need spectral: {n_fft, frame_hop, dim}"
        )
    fft = (sp.get("n_fft"), sp.get("frame_hop"), sp.get("dim"))
    if encoder_type == "spectral":
        encoder = SpectralEncoder(*fft, sp.get("encoder_blocks", 4), list(extra), latent_dim)
    else:
        encoder = Encoder(encoder_dim, list(strides), latent_dim, list(extra))
    if decoder_type == "istft":
        decoder = ISTFTDecoder(*fft, sp.get("decoder_blocks", 8), list(extra), latent_dim)
        up = sp["frame_hop"] * math.prod(extra)
    else:
        decoder = Decoder(decoder_dim, list(strides), latent_dim, list(extra))
        up = math.prod(strides) * math.prod(extra)
    if up != encoder.hop_length:
        raise ValueError(
            f"codec decoder hop {up} != encoder hop {encoder.hop_length}; check strides/spectral"
        )
    return encoder, decoder


class DACStyleCodec(Codec):
    """Causal DAC-style RVQ codec (see ``configs/codec/*.yaml`` for sizes).

    Args:
        sample_rate: audio rate in Hz.
        codebook_sizes: entries per codebook; index 0 is the semantic codebook.
        encoder_dim: width of the first encoder conv (doubles per stride).
        decoder_dim: width of the first decoder conv (halves per stride).
        strides: residual-block strides, e.g. ``[2, 4, 8, 8]``.
        extra_strides: extra downsampling stages after the blocks, e.g. ``[2, 2]``.
        latent_dim: channels of the quantized latent.
        codebook_dim: factorized lookup dimension.
        quantizer_dropout: fraction of training samples with a random number of residual codebooks.
        dead_code_steps: re-initialize codes unused for this many training steps (0: off).
        transformer: ``None`` or ``{layers, heads, window, ff_mult}`` for the sliding-window transformers
            placed before and after the quantizer.
        semantic: ``None`` or ``{"teacher": {"name": ..., **kwargs}}`` to add the distillation head on
            codebook 0 (see ``s2train.codec.semantic``).
        encoder_type: ``"conv"`` (DAC-style, audio-rate convs) or ``"spectral"`` (``SpectralEncoder``).
        decoder_type: ``"conv"`` (DAC-style, ends in tanh) or ``"istft"`` (``ISTFTDecoder``: output is
            ``delay`` samples late, see ``s2train.codec.spectral``).
        spectral: settings of the spectral ends, ``{n_fft, frame_hop, dim, encoder_blocks,
            decoder_blocks}``; with them the hop is ``frame_hop * prod(extra_strides)`` and ``strides``,
            ``encoder_dim`` and ``decoder_dim`` are unused.
    """

    def __init__(
        self,
        sample_rate: int,
        codebook_sizes: list[int],
        encoder_dim: int = 64,
        decoder_dim: int = 1536,
        strides: list[int] = (2, 4, 8, 8),
        extra_strides: list[int] = (),
        latent_dim: int = 1024,
        codebook_dim: int = 8,
        quantizer_dropout: float = 0.5,
        dead_code_steps: int = 0,
        transformer: dict | None = None,
        semantic: dict | None = None,
        encoder_type: str = "conv",
        decoder_type: str = "conv",
        spectral: dict | None = None,
    ):
        super().__init__()
        self.config = to_plain(dict(locals()))
        for k in ("self", "__class__"):
            self.config.pop(k, None)
        self._sample_rate = int(sample_rate)
        self.encoder, self.decoder = _build_ends(
            encoder_type, decoder_type, spectral, encoder_dim, decoder_dim, strides, extra_strides, latent_dim
        )
        self._hop = self.encoder.hop_length
        self._delay = int(getattr(self.decoder, "delay", 0))
        if transformer:
            t = dict(transformer)
            kw = dict(num_heads=t.get("heads", 8), window=t.get("window", 128), ff_mult=t.get("ff_mult", 4))
            self.pre_transformer = CausalTransformer(latent_dim, t["layers"], **kw)
            self.post_transformer = CausalTransformer(latent_dim, t["layers"], **kw)
        else:
            self.pre_transformer = self.post_transformer = nn.Identity()
        self.quantizer = ResidualVQ(
            latent_dim, list(codebook_sizes), codebook_dim, quantizer_dropout, dead_code_steps
        )
        self._teacher: list = []  # held outside the module tree: frozen, not saved with the codec
        self.semantic_head = None
        if semantic:
            teacher = build_teacher(semantic["teacher"])
            self._teacher.append(teacher)
            self.semantic_head = SemanticHead(latent_dim, teacher.dim)

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def hop_length(self) -> int:
        return self._hop

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self.quantizer.codebook_sizes)

    @property
    def delay(self) -> int:
        return self._delay

    @property
    def teacher(self):
        """The semantic teacher, or None."""
        return self._teacher[0] if self._teacher else None

    def set_teacher(self, teacher) -> None:
        """Swap in another teacher (same ``dim`` as the head was built for)."""
        if self.semantic_head is None:
            raise ValueError("this codec was built without a semantic head (semantic=None)")
        self._teacher[:] = [teacher]

    # --- public API ---------------------------------------------------------------------------------------
    def latent(self, wav: torch.Tensor) -> torch.Tensor:
        """Args: wav: [B, 1, T * hop]. Returns: [B, latent_dim, T] pre-quantization latent."""
        return self.pre_transformer(self.encoder(wav))

    @torch.no_grad()
    def encode(
        self, wav: torch.Tensor, sample_rate: int | None = None, chunk_frames: int | None = None
    ) -> torch.Tensor:
        """Encode audio to codes.

        Args:
            wav: [B, 1, S] at ``self.sample_rate`` (shorter than one frame is padded to one frame).
            sample_rate: optional check; must equal ``self.sample_rate``.
            chunk_frames: encode in chunks of this many frames with carried state (bounded activation
                memory for long inputs; same codes as one pass).

        Returns:
            codes: [B, K, ceil(S / hop)] int64.
        """
        x = self._prepare(wav, sample_rate)
        if chunk_frames:
            from s2train.codec.streaming import StreamEncoder

            enc, step = StreamEncoder(self), chunk_frames * self._hop
            return torch.cat([enc.push(x[..., i : i + step]) for i in range(0, x.shape[-1], step)], dim=-1)
        return self._codes(self.latent(x))

    def _codes(self, z: torch.Tensor) -> torch.Tensor:
        was = self.quantizer.training
        self.quantizer.eval()  # no dropout / dead-code updates while encoding
        try:
            return self.quantizer(z).codes
        finally:
            self.quantizer.train(was)

    def decode_latent(self, z_q: torch.Tensor) -> torch.Tensor:
        """Args: z_q: [B, latent_dim, T]. Returns: wav [B, 1, T * hop] (``delay`` samples late)."""
        return self.decoder(self.post_transformer(z_q))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode codes to audio.

        Args:
            codes: [B, K', T] with K' <= K (fewer codebooks give a coarser decode).

        Returns:
            wav: [B, 1, T * hop] in [-1, 1].
        """
        self.check_codes(codes)
        return self.decode_latent(self.quantizer.decode_codes(codes.long()))

    def stream_decoder(self):
        from s2train.codec.streaming import StreamDecoder

        return StreamDecoder(self)

    def forward(self, wav: torch.Tensor) -> CodecOutput:
        """Training forward (quantizer dropout and dead-code updates active in train mode).

        Args:
            wav: [B, 1, S] at ``self.sample_rate``.
        """
        x = self._prepare(wav, None)
        z = self.latent(x)
        q = self.quantizer(z)
        sem = None
        if self.semantic_head is not None:
            teacher = self.teacher
            if isinstance(teacher, nn.Module):
                teacher.to(x.device)
            target = teacher_targets(teacher, x, self.sample_rate, z.shape[-1])
            sem = distillation_loss(self.semantic_head(q.first_latent), target)
        return CodecOutput(self.decode_latent(q.z_q), q.codes, q.commitment_loss, q.codebook_loss, sem)
