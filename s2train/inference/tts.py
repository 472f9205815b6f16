"""The TTS facade: text (+ reference voices) -> waveform, in one call or streamed.

tts = TTS.from_bundle("runs/demo/bundle")
wav, sr = tts.synthesize("Hello there.", references=[("ref.wav", "transcript of ref")], seed=0)
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2train.inference.generate import InferenceEngine
from s2train.inference.kv_cache import VoicePrefixCache
from s2train.inference.sampling import SamplingParams
from s2train.inference.streaming import StreamStats, stream_audio

log = logging.getLogger(__name__)


class TTS:
    """Synthesize speech with a Dual-AR model, its tokenizer and its codec.

    Args:
        model: `s2train.ar.DualAR` (eval mode, any device/dtype).
        tokenizer: `s2train.text.S2Tokenizer`.
        codec: `s2train.codec.Codec` whose codes the model was trained on.
        mode: decode mode ("auto": CUDA graphs on CUDA, eager on CPU).
        voice_cache_size: entries of the voice-prefix KV cache (repeated voices skip their prefill).
        max_seconds: default cap on generated audio length.
    """

    def __init__(
        self,
        model,
        tokenizer,
        codec,
        mode: str = "auto",
        voice_cache_size: int = 16,
        max_seconds: float = 30.0,
    ):
        cfg = model.config
        if codec.num_codebooks != cfg.num_codebooks:
            raise ValueError(f"codec has {codec.num_codebooks} codebooks, model expects {cfg.num_codebooks}")
        if tokenizer.semantic_start != cfg.semantic_start:
            raise ValueError(
                f"tokenizer semantic_start={tokenizer.semantic_start} != model semantic_start={cfg.semantic_start}"
            )
        self.model, self.tokenizer, self.codec = model, tokenizer, codec
        self.voice_cache = VoicePrefixCache(voice_cache_size)
        self.engine = InferenceEngine(model, tokenizer.im_end_id, mode=mode, voice_cache=self.voice_cache)
        self.max_seconds = max_seconds
        self._warned_chars: set[str] = set()  # unseen characters already warned about (once per TTS)
        self._ref_codes: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.last_stats: dict[str, Any] = {}

    @classmethod
    def from_bundle(cls, bundle_dir: str | Path, device: str = "cpu", dtype: torch.dtype | None = None,
                    codec_dir: str | Path | None = None, **kwargs) -> TTS:  # fmt: skip
        """Load a bundle written by `s2train.bundle.export_bundle` (codec from the bundle unless `codec_dir`)."""
        from s2train.bundle import load_pretrained
        from s2train.codec import load_codec

        model, tokenizer, bundle_codec = load_pretrained(bundle_dir, device=device, dtype=dtype)
        codec_dir = codec_dir or bundle_codec
        if codec_dir is None:
            raise ValueError(
                f"bundle {bundle_dir} records no codec; pass codec_dir= (eval.py: codec_dir=<dir>)"
            )
        return cls(model, tokenizer, load_codec(codec_dir, device=device), **kwargs)

    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    # -- input checks and prompt ---------------------------------------------------------------------------
    def _params(self, sampling: dict[str, Any]) -> SamplingParams:
        try:
            params = SamplingParams(**sampling)
        except TypeError as e:
            raise ValueError(f"unknown sampling option: {e}") from e
        return params.validate(self.model.config.num_codebooks)

    def _check_reference_audio(self, audio, i: int) -> tuple[str | None, torch.Tensor | None]:
        """-> (path, None) or (None, wav [1, 1, S] at the codec rate); raises on a wrong sample rate."""
        if isinstance(audio, str | Path):
            if not Path(audio).is_file():
                raise FileNotFoundError(f"reference {i}: no such file {audio}")
            return str(audio), None
        if isinstance(audio, tuple) and len(audio) == 2:
            wav, sr = audio
            if int(sr) != self.sample_rate:
                raise ValueError(
                    f"reference {i}: sample rate {sr} Hz, the codec needs {self.sample_rate} Hz (resample it first)"
                )
            audio = wav
        wav = torch.as_tensor(np.asarray(audio, dtype=np.float32)).reshape(1, 1, -1)
        if wav.numel() == 0 or not torch.isfinite(wav).all():
            raise ValueError(f"reference {i}: audio is empty or not finite")
        return None, wav

    def _reference_codes(self, path: str | None, wav: torch.Tensor | None) -> torch.Tensor:
        if path is not None and path in self._ref_codes:
            self._ref_codes.move_to_end(path)
            return self._ref_codes[path]
        if path is not None:
            from s2train.data.audio import load_audio

            wav = load_audio(path, self.sample_rate).reshape(1, 1, -1)
        device = next(self.codec.parameters()).device
        with torch.inference_mode():
            codes = self.codec.encode(wav.to(device))[0].cpu()
        if path is not None:
            self._ref_codes[path] = codes
            while len(self._ref_codes) > 64:
                self._ref_codes.popitem(last=False)
        return codes

    def prompt(self, text: str, references: Sequence = ()):
        """Check inputs and build the inference prompt (reference audio is encoded here)."""
        from s2train.text import Reference, build_prompt

        if not isinstance(text, str) or not text.strip():
            raise ValueError("synthesize: text is empty")
        self._warn_unseen(text)
        cfg = self.model.config
        n_text = len(self.tokenizer.encode(text))
        if n_text + 16 >= cfg.max_seq_len:
            raise ValueError(
                f"synthesize: text is {n_text} tokens, too long for max_seq_len={cfg.max_seq_len}"
            )
        checked = []
        for i, ref in enumerate(references):
            if hasattr(ref, "codes"):
                checked.append((None, None, ref))
                continue
            if not isinstance(ref, tuple | list) or len(ref) != 2:
                raise ValueError(
                    f"reference {i}: expected (wav_or_path, transcript), got {type(ref).__name__}"
                )
            audio, transcript = ref
            if not isinstance(transcript, str):
                raise ValueError(f"reference {i}: transcript must be a str")
            checked.append((*self._check_reference_audio(audio, i), transcript))
        refs = []
        for i, (path, wav, item) in enumerate(checked):
            if isinstance(item, str):
                refs.append(Reference(text=item, codes=self._reference_codes(path, wav), speaker=i))
            else:
                refs.append(item)
        return build_prompt(self.tokenizer, text, references=refs, num_codebooks=cfg.num_codebooks)

    def _warn_unseen(self, text: str) -> None:
        """Warn (once per character) about text in a script the tokenizer was not trained on."""
        from s2train.text.coverage import describe_unseen, unseen_characters

        new = [c for c in unseen_characters(self.tokenizer, self.tokenizer.transcript(text))
               if c not in self._warned_chars]  # fmt: skip
        if new:
            self._warned_chars.update(new)
            log.warning(
                "synthesize: the tokenizer never saw %s in training (it spells them as raw bytes): the model "
                "was not trained on this script and will not pronounce it",
                describe_unseen(new),
            )

    def _max_frames(self, prompt, max_seconds: float | None) -> int:
        cfg = self.model.config
        room = cfg.max_seq_len - len(prompt) - 1
        if room < 1:
            raise ValueError(
                f"synthesize: the prompt is {len(prompt)} tokens (text + references), no room left in "
                f"max_seq_len={cfg.max_seq_len}; use a shorter reference or text"
            )
        want = int((max_seconds or self.max_seconds) * self.codec.frame_rate)
        return max(1, min(want, room))

    # -- synthesis -----------------------------------------------------------------------------------------
    def synthesize(self, text: str, references: Sequence = (), seed: int | None = None,
                   max_seconds: float | None = None, **sampling) -> tuple[np.ndarray, int]:  # fmt: skip
        """Text (+ references) -> (float32 mono waveform [S], sample_rate).

        Args:
            text: what to say (inline `[tags]` and `<|speaker:i|>` markers allowed).
            references: `(wav_or_path, transcript)` pairs; wav is a path, `(array, sample_rate)` or an array at
                the codec rate; or ready `s2train.text.Reference` objects.
            seed: sampling seed.  max_seconds: cap on the audio length.
            **sampling: `SamplingParams` fields (temperature, top_p, top_k, do_sample, ...).
        """
        params = self._params(sampling)
        prompt = self.prompt(text, references)
        max_frames = self._max_frames(prompt, max_seconds)
        res = self.engine.generate([prompt], params, max_frames, seed)
        codes = res.codes[0]
        # Not stopped by <|im_end|>: generation ran into the length cap and the audio is cut off there.
        self.last_stats = dict(res.stats, stopped=res.stopped[0], frames_out=codes.shape[1],
                               max_frames=max_frames, stopped_at_cap=not res.stopped[0])  # fmt: skip
        if codes.shape[1] == 0:
            log.warning("synthesize: the model stopped before the first frame; returning silence")
            return np.zeros(0, dtype=np.float32), self.sample_rate
        device = next(self.codec.parameters()).device
        with torch.inference_mode():
            wav = self.codec.decode(codes[None].to(device))
        return wav.reshape(-1).float().cpu().numpy(), self.sample_rate

    def stream(self, text: str, references: Sequence = (), seed: int | None = None, max_seconds: float | None = None,
               chunk_frames: int = 8, **sampling) -> Iterator[np.ndarray]:  # fmt: skip
        """Like `synthesize`, but yields audio chunks as frames arrive; `last_stats["ttfa_s"]` holds the
        time-to-first-audio once the first chunk is out, counted from this call (prompt building and
        reference encoding included)."""
        t0 = time.perf_counter()
        params = self._params(sampling)  # errors raise here, at the call, not at the first next()
        prompt = self.prompt(text, references)
        return self._stream(prompt, params, self._max_frames(prompt, max_seconds), seed, chunk_frames, t0)

    def _stream(self, prompt, params, max_frames, seed, chunk_frames, t0: float) -> Iterator[np.ndarray]:
        stats = StreamStats()
        self.last_stats = {"stream": stats, "max_frames": max_frames}
        for chunk in stream_audio(
            self.engine, self.codec, prompt, params, max_frames, seed, chunk_frames, stats, t0
        ):
            self.last_stats.update(ttfa_s=stats.ttfa_s, frames_out=stats.frames)
            yield chunk
        self.last_stats["stopped_at_cap"] = stats.frames >= max_frames
