"""Streaming synthesis: frames from `InferenceEngine.stream` through the codec's stateful stream decoder."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from s2train.inference.generate import InferenceEngine
from s2train.inference.sampling import SamplingParams


@dataclass
class StreamStats:
    """Filled while a stream runs.

    Attributes:
        ttfa_s: time from the request to the first audio chunk (time-to-first-audio), None until then.
        total_s: time until the last chunk.  frames / samples: emitted so far.  chunks: count.
    """

    ttfa_s: float | None = None
    total_s: float = 0.0
    frames: int = 0
    samples: int = 0
    chunks: int = 0
    extra: dict = field(default_factory=dict)


def stream_audio(
    engine: InferenceEngine,
    codec,
    prompt,
    params: SamplingParams | None = None,
    max_frames: int = 512,
    seed: int | None = None,
    chunk_frames: int = 8,
    stats: StreamStats | None = None,
    t0: float | None = None,
) -> Iterator[np.ndarray]:
    """Yield float32 mono audio chunks ([t * hop]) as frames arrive.

    Args:
        engine: the inference engine (its model produced codes for `codec`).
        codec: a `s2train.codec.Codec` (its `stream_decoder().push(codes[1, K, t])` returns [1, 1, t * hop]).
        prompt: a `Prompt` or (tokens, codes, audio_mask) triple.
        chunk_frames: frames per chunk (smaller = earlier first audio, more overhead).
        stats: optional `StreamStats` updated in place (time-to-first-audio etc.).
        t0: `time.perf_counter()` at the request, the start of `ttfa_s`; default: the first `next()` (this
            generator's body starts there, after whatever prepared the prompt).
    """
    stats = stats if stats is not None else StreamStats()
    t0 = time.perf_counter() if t0 is None else t0
    decoder = codec.stream_decoder()
    codec_device = next(codec.parameters()).device
    for codes in engine.stream(prompt, params, max_frames, seed, chunk_frames):
        with torch.inference_mode():
            wav = decoder.push(codes[None].to(codec_device))
        chunk = wav.reshape(-1).float().cpu().numpy()
        stats.frames += codes.shape[1]
        stats.samples += chunk.size
        stats.chunks += 1
        if stats.ttfa_s is None:
            stats.ttfa_s = time.perf_counter() - t0
        stats.total_s = time.perf_counter() - t0
        yield chunk
