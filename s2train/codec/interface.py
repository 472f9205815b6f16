"""The ``Codec`` interface the rest of s2train sees, plus save/load/build helpers.

Files written by ``save_codec``: ``config.json`` (``{"class": ..., "config": {constructor args},
"dtype": "float32"|"float16"}``) and ``model.safetensors``. ``load_codec`` always returns a float32 model in
eval mode on the requested device.

Sample rate contract: ``encode`` takes audio at ``codec.sample_rate``. Callers resample first (e.g. with
``torchaudio.functional.resample``); passing ``sample_rate=`` that differs raises instead of silently
resampling.
"""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

log = logging.getLogger(__name__)


class Codec(nn.Module, abc.ABC):
    """Neural audio codec: waveform <-> ``K`` parallel streams of discrete codes at ``frame_rate``."""

    #: constructor arguments, stored in ``config.json`` so ``load_codec`` can rebuild the model.
    config: dict

    @property
    @abc.abstractmethod
    def sample_rate(self) -> int:
        """Audio sample rate in Hz."""

    @property
    @abc.abstractmethod
    def hop_length(self) -> int:
        """Samples per code frame."""

    @property
    def frame_rate(self) -> float:
        """Code frames per second."""
        return self.sample_rate / self.hop_length

    @property
    @abc.abstractmethod
    def codebook_sizes(self) -> list[int]:
        """Entries per codebook; index 0 is the semantic codebook."""

    @property
    def delay(self) -> int:
        """Samples by which ``decode`` output lags the encoded input (0 for sample-aligned codecs)."""
        return 0

    def align(self, recon: torch.Tensor, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cut a reconstruction and its input ``[..., S]`` to the span where they correspond.

        Drops the first ``delay`` samples of ``recon`` and the same number at the end of ``wav``, after
        trimming ``recon`` to ``wav``'s length. Compare reconstructions with inputs only through this.
        """
        d = self.delay
        recon = recon[..., : wav.shape[-1]]
        if d == 0:
            return recon, wav
        if wav.shape[-1] <= d:
            raise ValueError(f"audio of {wav.shape[-1]} samples is shorter than the codec delay {d}")
        return recon[..., d:], wav[..., : wav.shape[-1] - d]

    @property
    def num_codebooks(self) -> int:
        """Number of codebooks K."""
        return len(self.codebook_sizes)

    def _prepare(self, wav: torch.Tensor, sample_rate: int | None) -> torch.Tensor:
        """Check ``wav [B, 1, S]`` (rate, shape, finite) and pad it on the right to whole frames
        (inputs shorter than one frame become one frame)."""
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            raise ValueError(
                f"encode got audio at {sample_rate} Hz but this codec runs at {self.sample_rate} Hz; "
                "resample first (torchaudio.functional.resample)"
            )
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"expected wav of shape [B, 1, S], got {tuple(wav.shape)}")
        if not torch.isfinite(wav).all():
            raise ValueError("wav contains NaN or Inf samples; clean the audio before encoding")
        frames = max(1, -(-wav.shape[-1] // self.hop_length))
        return torch.nn.functional.pad(wav, (0, frames * self.hop_length - wav.shape[-1]))

    def check_codes(self, codes: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the codebook and value of any out-of-range code in ``codes[B, K, T]``."""
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.num_codebooks:
            raise ValueError(
                f"expected codes [B, 1 <= K <= {self.num_codebooks}, T], got {tuple(codes.shape)}"
            )
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got {codes.dtype}")
        sizes = self.codebook_sizes
        for k in range(codes.shape[1]):
            bad = (codes[:, k] < 0) | (codes[:, k] >= sizes[k])
            if bad.any():
                value = int(codes[:, k][bad][0])
                raise ValueError(f"codebook {k}: code {value} out of range [0, {sizes[k]})")

    @abc.abstractmethod
    def encode(self, wav: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """Args: wav: [B, 1, S] at ``self.sample_rate``. Returns: codes [B, K, ceil(S / hop)] (int64)."""

    @abc.abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Args: codes: [B, K, T]. Returns: wav [B, 1, T * hop] in [-1, 1]."""

    @abc.abstractmethod
    def stream_decoder(self):
        """A stateful decoder whose ``push(codes[B, K, t])`` returns the audio ``[B, 1, t * hop]`` of those frames."""


def to_plain(obj):
    """Recursively convert mapping/sequence containers (e.g. OmegaConf nodes) to dicts and lists."""
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, Sequence) and not isinstance(obj, str | bytes):
        return [to_plain(v) for v in obj]
    return obj


def _registry() -> dict[str, type[Codec]]:
    from s2train.codec.model import DACStyleCodec
    from s2train.codec.upstream import UpstreamDACCodec

    return {"DACStyleCodec": DACStyleCodec, "UpstreamDACCodec": UpstreamDACCodec}


def build_codec(cfg: Mapping) -> Codec:
    """Build a codec from a plain mapping of ``DACStyleCodec`` constructor args (``configs/codec/*.yaml``)."""
    return _registry()["DACStyleCodec"](**to_plain(cfg))


def save_codec(codec: Codec, directory: str | Path, fp16: bool = False) -> Path:
    """Write ``config.json`` + ``model.safetensors`` to ``directory``.

    Args:
        codec: the codec to save.
        directory: output folder (created).
        fp16: store the weights in float16 (half the size; loaded back as float32).

    Returns:
        The directory.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if fp16 else torch.float32
    state = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in codec.state_dict().items()
    }
    save_file(state, str(out / "model.safetensors"))
    meta = {"class": type(codec).__name__, "config": codec.config, "dtype": str(dtype).removeprefix("torch.")}
    (out / "config.json").write_text(json.dumps(meta, indent=2))
    log.info("saved codec (%s, %s) to %s", meta["class"], meta["dtype"], out)
    return out


def _is_codec_folder(path: Path) -> bool:
    """Whether ``path`` holds a ``save_codec`` folder (its config.json names a codec class)."""
    try:
        return "class" in json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False


def load_codec(directory: str | Path, device: str | torch.device = "cpu") -> Codec:
    """Load a codec: float32, eval mode, on ``device``.

    Args:
        directory: a folder written by ``save_codec``; or a released S2 Pro ``codec.pth`` (fish-speech
            modified DAC), given as the file or as a folder that holds it without ``model.safetensors``
            (e.g. the downloaded ``s2-pro`` directory), loaded by ``s2train.codec.upstream.load_s2_codec``.
        device: where the model goes.
    """
    path = Path(directory)
    pth = path if path.is_file() else path / "codec.pth"
    if pth.is_file() and not _is_codec_folder(path):
        from s2train.codec.upstream import load_s2_codec

        return load_s2_codec(pth, device=device, dtype=torch.float32)
    cfg_path, weights = path / "config.json", path / "model.safetensors"
    for f in (cfg_path, weights):
        if not f.is_file():
            raise FileNotFoundError(f"codec folder {path} lacks {f.name}")
    meta = json.loads(cfg_path.read_text())
    registry = _registry()
    if meta.get("class") not in registry:
        raise ValueError(f"{cfg_path}: unknown codec class {meta.get('class')!r}; known: {sorted(registry)}")
    codec = registry[meta["class"]](**meta["config"])
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(weights)).items()}
    codec.load_state_dict(state, strict=True)
    return codec.to(device).eval()
