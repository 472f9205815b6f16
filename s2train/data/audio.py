"""Audio file io: decode, mono mix-down, resample, and reject files that would poison training.

Every loader in s2train goes through :func:`load_audio`, so a bad file fails the same way everywhere: a
:class:`BadAudioError` carrying the path and a short machine-readable reason (see :data:`BAD_REASONS`).
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

log = logging.getLogger(__name__)

#: RMS below this (about -80 dBFS) counts as digital silence: nothing a codec or TTS can learn from.
SILENCE_RMS = 1e-4
#: Clips shorter than this are rejected by default (one codec frame at most; useless as a sample).
DEFAULT_MIN_SECONDS = 0.05

#: Every reason a :class:`BadAudioError` (or a bad manifest item) can carry.
BAD_REASONS = (
    "missing",  # file does not exist
    "corrupt",  # undecodable or truncated bytes
    "empty",  # decodes to zero samples
    "non_finite",  # NaN or Inf samples
    "silent",  # RMS below SILENCE_RMS
    "too_short",  # shorter than min_seconds
    "too_long",  # longer than a caller-given maximum (manifest validation only)
    "empty_text",  # blank transcript (manifest validation only)
)


class BadAudioError(ValueError):
    """An audio file that cannot be used for training.

    Attributes:
        path: the offending file.
        reason: one of :data:`BAD_REASONS`.
        detail: human-readable explanation.
    """

    def __init__(self, path: str | Path, reason: str, detail: str = ""):
        if reason not in BAD_REASONS:
            raise ValueError(f"unknown bad-audio reason {reason!r}; expected one of {BAD_REASONS}")
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}" + (f" ({detail})" if detail else ""))


def _check_wav_truncation(path: Path) -> None:
    """Raise ``corrupt`` when a RIFF/WAVE file's data chunk claims more bytes than the file holds.

    libsndfile silently returns the frames that are present, so a download cut in half would
    otherwise load as a shorter, valid-looking clip.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # not a plain RIFF wav; leave it to libsndfile
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_len = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                # 0xFFFFFFFF / 0 are streaming placeholders some writers use: not a truncation signal.
                if chunk_len not in (0, 0xFFFFFFFF) and pos + 8 + chunk_len > size:
                    raise BadAudioError(
                        path,
                        "corrupt",
                        f"truncated: data chunk declares {chunk_len} bytes, file has {size - pos - 8}",
                    )
                return
            pos += 8 + chunk_len + (chunk_len & 1)


def audio_info(path: str | Path) -> tuple[int, int]:
    """Return ``(num_frames, sample_rate)`` of a file without decoding it; raises BadAudioError."""
    path = Path(path)
    if not path.is_file():
        raise BadAudioError(path, "missing", "no such file")
    if path.stat().st_size == 0:
        raise BadAudioError(path, "empty", "zero-byte file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise BadAudioError(path, "corrupt", str(e).splitlines()[0]) from e
    return int(info.frames), int(info.samplerate)


def load_audio(
    path: str | Path,
    sample_rate: int,
    max_seconds: float | None = None,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    check: bool = True,
) -> torch.Tensor:
    """Decode an audio file to mono float32 at ``sample_rate``.

    Stereo/multichannel is averaged to mono; other sample rates are resampled (neither is an error).

    Args:
        path: any format libsndfile reads (wav, flac, ogg, mp3 with libsndfile >= 1.1).
        sample_rate: target rate in Hz.
        max_seconds: if set, keep only the first ``max_seconds`` (decoding stops early).
        min_seconds: reject clips shorter than this (after truncation) as ``too_short``.
        check: run the finiteness/silence/length checks (turn off in hot loops over pre-validated data).

    Returns:
        wav: [1, S] float32 in [-1, 1] for PCM sources.

    Raises:
        BadAudioError: missing, corrupt/truncated, empty, non-finite, silent or too-short audio.
    """
    path = Path(path)
    _, src_rate = audio_info(path)
    if check:
        _check_wav_truncation(path)
    frames = -1 if max_seconds is None else max(int(round(max_seconds * src_rate)), 0)
    try:
        data, src_rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise BadAudioError(path, "corrupt", str(e).splitlines()[0]) from e
    if data.shape[0] == 0:
        raise BadAudioError(path, "empty", "zero samples")
    if check and not np.isfinite(data).all():
        raise BadAudioError(path, "non_finite", f"{int((~np.isfinite(data)).sum())} NaN/Inf samples")
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))[None]  # [1, S]
    if src_rate != sample_rate:
        wav = AF.resample(wav, src_rate, sample_rate)
    if check:
        seconds = wav.shape[-1] / sample_rate
        if seconds < min_seconds:
            raise BadAudioError(path, "too_short", f"{seconds:.3f}s < {min_seconds}s")
        rms = float(wav.pow(2).mean().sqrt())
        if rms < SILENCE_RMS:
            raise BadAudioError(path, "silent", f"rms {rms:.2e} < {SILENCE_RMS:.0e}")
    return wav


def save_audio(path: str | Path, wav: torch.Tensor | np.ndarray, sample_rate: int) -> Path:
    """Write mono or multichannel audio as 16-bit PCM wav (parent folders are created).

    Args:
        path: output file.
        wav: [S], [1, S] or [C, S] float in [-1, 1]; values outside are clipped rather than wrapped.
        sample_rate: rate in Hz.
    """
    path = Path(path)
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().float().numpy()
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 1:
        wav = wav[None]
    if wav.ndim != 2:
        raise ValueError(f"save_audio({path}): expected [S] or [C, S], got shape {tuple(wav.shape)}")
    if not np.isfinite(wav).all():
        raise ValueError(f"save_audio({path}): refusing to write NaN/Inf samples")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wav, -1.0, 1.0).T, sample_rate, subtype="PCM_16")
    return path
