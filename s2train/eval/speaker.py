"""Speaker encoders for voice similarity (SIM).

``ResemblyzerEncoder`` is the default: its GE2E weights ship inside the ``resemblyzer`` wheel, so it works
offline. Seed-TTS-eval's SIM uses a WavLM-large + ECAPA-TDNN verification model; ``WavLMECAPAEncoder`` is
the slot for such a checkpoint when one is available locally. Absolute SIM values from different encoders
are not comparable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from s2train.eval.asr import prepare_wav

__all__ = [
    "SPEAKER_SAMPLE_RATE",
    "ResemblyzerEncoder",
    "SpeakerEncoder",
    "WavLMECAPAEncoder",
    "build_speaker_encoder",
]

log = logging.getLogger(__name__)

SPEAKER_SAMPLE_RATE = 16000
_ENCODER_CACHE: dict[tuple, Any] = {}


@runtime_checkable
class SpeakerEncoder(Protocol):
    """Maps a waveform to a fixed-size speaker embedding."""

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """Embeds ``wav: [S]`` (any rate) into ``[D]`` float32."""
        ...


class ResemblyzerEncoder:
    """GE2E d-vector from ``resemblyzer`` (16 kHz, 256-dim, L2-normalized).

    Args:
        device: torch device for the LSTM encoder.
    """

    dim = 256

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def _encoder(self):
        key = ("resemblyzer", self.device)
        if key not in _ENCODER_CACHE:
            from resemblyzer import VoiceEncoder

            _ENCODER_CACHE[key] = VoiceEncoder(device=self.device, verbose=False)
        return _ENCODER_CACHE[key]

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """Embeds ``wav: [S]``; silent audio (nothing left after VAD trimming) gives a zero vector ``[256]``."""
        from resemblyzer import preprocess_wav

        audio = prepare_wav(wav, sample_rate, SPEAKER_SAMPLE_RATE)
        if not np.any(np.abs(audio) > 1e-6):
            log.warning("ResemblyzerEncoder: silent input; returning a zero embedding")
            return np.zeros(self.dim, np.float32)
        # Resampled already: resemblyzer's own path would resample through librosa, which is much slower.
        audio = preprocess_wav(audio, source_sr=SPEAKER_SAMPLE_RATE) if audio.size else audio
        if audio.size < SPEAKER_SAMPLE_RATE // 10:
            log.warning("ResemblyzerEncoder: no speech left after trimming; returning a zero embedding")
            return np.zeros(self.dim, np.float32)
        return np.asarray(self._encoder().embed_utterance(audio), dtype=np.float32)


class WavLMECAPAEncoder:
    """Speaker-verification embeddings from a local WavLM-based checkpoint (the Seed-TTS-eval SIM kind).

    Accepted checkpoints:
      * a ``transformers`` directory holding a ``WavLMForXVector``-style model (``config.json`` + weights),
        e.g. a local copy of ``microsoft/wavlm-base-plus-sv``;
      * a TorchScript file (``.pt``/``.ts``/``.jit``) whose module maps ``wav: [1, S]`` at 16 kHz to
        ``[1, D]`` or ``[D]`` - export the UniSpeech WavLM-large+ECAPA-TDNN model this way, since its raw
        ``.pth`` state dict needs the UniSpeech model code, which s2train does not ship.

    Args:
        checkpoint_path: path described above.
        device: torch device string.
    """

    def __init__(self, checkpoint_path: str | None, device: str = "cpu") -> None:
        if not checkpoint_path:
            raise ValueError(
                "WavLMECAPAEncoder needs checkpoint_path (a transformers WavLM x-vector directory or a "
                "TorchScript export of WavLM-large+ECAPA-TDNN); use speaker.backend=resemblyzer otherwise"
            )
        self.path = Path(checkpoint_path)
        if not self.path.exists():
            raise FileNotFoundError(f"WavLMECAPAEncoder: checkpoint {self.path} does not exist")
        self.device = device
        self._load()

    def _load(self) -> None:
        import torch

        key = ("wavlm", str(self.path.resolve()), self.device)
        if key in _ENCODER_CACHE:
            self._kind, self._model, self._extractor = _ENCODER_CACHE[key]
            return
        if self.path.is_dir():
            if not (self.path / "config.json").is_file():
                raise FileNotFoundError(f"WavLMECAPAEncoder: {self.path} has no config.json")
            from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

            extractor = AutoFeatureExtractor.from_pretrained(self.path, local_files_only=True)
            model = AutoModelForAudioXVector.from_pretrained(self.path, local_files_only=True)
            entry = ("xvector", model.to(self.device).eval(), extractor)
        else:
            try:
                model = torch.jit.load(str(self.path), map_location=self.device)
            except Exception as err:
                raise RuntimeError(
                    f"WavLMECAPAEncoder: {self.path} is not a TorchScript module ({err}). A raw UniSpeech .pth "
                    "state dict needs its model code: export it with torch.jit.script/trace first."
                ) from err
            entry = ("torchscript", model.eval(), None)
        _ENCODER_CACHE[key] = entry
        self._kind, self._model, self._extractor = entry

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """Embeds ``wav: [S]`` into ``[D]`` float32."""
        import torch

        audio = prepare_wav(wav, sample_rate, SPEAKER_SAMPLE_RATE)
        with torch.inference_mode():
            if self._kind == "xvector":
                feats = self._extractor(audio, sampling_rate=SPEAKER_SAMPLE_RATE, return_tensors="pt")
                out = self._model(**{k: v.to(self.device) for k, v in feats.items()}).embeddings
            else:
                out = self._model(torch.from_numpy(audio)[None].to(self.device))
        return out.reshape(-1).float().cpu().numpy()


def build_speaker_encoder(cfg: Mapping[str, Any] | None = None) -> SpeakerEncoder:
    """Builds a speaker encoder. Keys: ``backend`` (``resemblyzer`` | ``wavlm_ecapa``), ``device``,
    ``checkpoint_path`` (wavlm_ecapa only)."""
    cfg = dict(cfg or {})
    backend = cfg.get("backend", "resemblyzer")
    if backend == "resemblyzer":
        return ResemblyzerEncoder(device=cfg.get("device", "cpu"))
    if backend in ("wavlm_ecapa", "wavlm"):
        return WavLMECAPAEncoder(cfg.get("checkpoint_path"), device=cfg.get("device", "cpu"))
    raise ValueError(f"build_speaker_encoder: unknown backend {backend!r} (resemblyzer | wavlm_ecapa)")
