"""Timing of the generation path users run: one place for the speed benchmark script and `eval.py suite=speed`.

Warm-up (allocator, kernels, graph capture) is excluded; every run decodes exactly `frames` frames
(`min_frames = max_frames`) so batch sizes and paths compare on equal work.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from s2train.inference.generate import InferenceEngine
from s2train.inference.naive import naive_generate
from s2train.inference.sampling import SamplingParams


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_generation(engine: InferenceEngine, prompts: Sequence, params: SamplingParams, frames: int,
                    frame_rate: float) -> dict[str, float]:  # fmt: skip
    """Time the cached path (`InferenceEngine.generate`) on `prompts` for exactly `frames` frames.

    Returns:
        `frames`, `decode_s`, `prefill_s`, `cpu_s` (process CPU time), `frames_per_s` (aggregate over the
        batch), `ms_per_frame`, `prefill_ms`, `codebook_tokens_per_s`, `rtf` (wall / audio seconds at
        `frame_rate`). On CUDA the peak-memory counter is reset after the warm-up.
    """
    device = next(engine.model.parameters()).device
    engine.generate(prompts, params, 4, seed=0, min_frames=4)  # first-call allocator/kernel warm-up
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cpu0 = time.process_time()
    res = engine.generate(prompts, params, frames, seed=0, min_frames=frames)
    _sync(device)
    cpu_s = time.process_time() - cpu0
    n, b = res.stats["frames"], len(prompts)
    decode_s, prefill_s = res.stats["decode_s"], res.stats["prefill_s"]
    return {
        "frames": n, "decode_s": decode_s, "prefill_s": prefill_s, "cpu_s": cpu_s,
        "frames_per_s": b * n / decode_s, "ms_per_frame": 1000 * decode_s / n, "prefill_ms": 1000 * prefill_s,
        "codebook_tokens_per_s": b * n * engine.model.config.num_codebooks / decode_s,
        "rtf": (decode_s + prefill_s) / (n / frame_rate),
    }  # fmt: skip


def time_naive(model, prompts: Sequence, params: SamplingParams, frames: int, stop_token_id: int) -> float:
    """Aggregate frames/s of the full-recompute reference decoder (no KV cache) on the same work."""
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    naive_generate(model, prompts, params, frames, seed=0, stop_token_id=stop_token_id, min_frames=frames)
    _sync(device)
    return len(prompts) * frames / (time.perf_counter() - t0)
