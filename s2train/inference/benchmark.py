"""Timing of the generation path users run: one place for the speed benchmark script and `eval.py suite=speed`.

Warm-up runs the exact request that is then timed (same batch, prompt lengths and `max_frames`), so the
timed run reuses a decode session that is already allocated, captured and replayed once, and the peak-memory
counter (reset after the warm-up) holds no other session. Every run decodes exactly `frames` frames
(`min_frames = max_frames`) so batch sizes and paths compare on equal work.

Memory-bandwidth utilization (MBU) counts the bytes one decoded frame must read from device memory: the
weights (`s2train.ar.sizes.weight_bytes_per_frame`, read once per frame whatever the batch) plus the KV
caches the frame attends over (the whole session: static shapes read every slot, masked or not; the fast
AR's small cache once per fast step). Traffic the implementation adds on top (activations, logits, copies of
K/V) is not counted: it is overhead, not work, so it lowers MBU instead of inflating it.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from s2train.ar.sizes import weight_bytes_per_frame
from s2train.inference.generate import InferenceEngine
from s2train.inference.kv_cache import DecodeCaches
from s2train.inference.naive import naive_generate
from s2train.inference.sampling import SamplingParams

# Peak HBM bandwidth (GB/s) by a substring of torch.cuda.get_device_name(); more specific names first.
PEAK_HBM_GB_PER_S = {
    "H200": 4800.0, "H100 PCIe": 2000.0, "H100 NVL": 3900.0, "H100": 3350.0, "A100-SXM4-80GB": 2039.0,
    "A100 80GB PCIe": 1935.0, "A100": 1555.0, "L40S": 864.0, "4090": 1008.0,
}  # fmt: skip

REPO = Path(__file__).resolve().parents[2]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_bandwidth_gb_per_s(device: torch.device) -> float | None:
    """Peak device-memory bandwidth of a known CUDA card (None on CPU or an unknown card)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for key, v in PEAK_HBM_GB_PER_S.items() if key in name), None)


def git_commit() -> str | None:
    """The commit measured: `$GIT_COMMIT`, else `git rev-parse HEAD` (+ "-dirty"), else `.whl/COMMIT`.

    The lent GPU machine receives the working tree without `.git`; `scripts/gpu_prepare.sh` writes the commit
    into the carried `.whl/COMMIT` for it.
    """
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO, capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    stamp = REPO / ".whl" / "COMMIT"
    if stamp.is_file():
        return stamp.read_text().strip() or None
    return None


def environment(device: torch.device | str | None = None) -> dict[str, Any]:
    """Where and when a measurement ran: date (UTC), card, torch/CUDA/cuDNN versions, git commit."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "card": f"cpu ({platform.machine()}, {os.cpu_count()} cores)",
        "device": str(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "git_commit": git_commit(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(card=props.name, card_memory_gb=round(props.total_memory / 1e9, 1))
        env["peak_hbm_gb_per_s"] = peak_bandwidth_gb_per_s(device)
    return env


def decode_session_bytes(engine: InferenceEngine) -> dict[str, int] | None:
    """KV bytes of the engine's most recently used decode session: {"slow": ..., "fast": ...} (None if none)."""
    sessions = getattr(engine, "_sessions", None)
    if not sessions:
        return None
    last = next(reversed(sessions.values()))
    caches = next((x for x in last if isinstance(x, DecodeCaches)), None)
    if caches is None:
        return None

    def nbytes(layers) -> int:
        return sum(t.numel() * t.element_size() for c in layers for t in c.tensors())

    return {"slow": nbytes(caches.slow), "fast": nbytes(caches.fast)}


def bandwidth(engine: InferenceEngine, ms_per_frame: float) -> dict[str, float | None]:
    """Bytes one frame reads (weights + KV, see the module docstring), the rate achieved and MBU."""
    cfg, device = engine.model.config, engine.device
    w = weight_bytes_per_frame(cfg, torch.finfo(engine.dtype).bits // 8)
    kv = decode_session_bytes(engine) or {"slow": 0, "fast": 0}
    # The slow step reads its whole cache once; each of the K-1 fast calls reads the (K+1)-slot fast cache.
    kv_read = kv["slow"] + kv["fast"] * (cfg.num_codebooks - 1)
    gb_per_s = (w + kv_read) / (ms_per_frame / 1000) / 1e9
    peak = peak_bandwidth_gb_per_s(device)
    return {
        "weight_GB_per_frame": w / 1e9, "kv_GB_per_frame": kv_read / 1e9, "hbm_GB_per_s": gb_per_s,
        "mbu": gb_per_s / peak if peak else None,
    }  # fmt: skip


def time_generation(engine: InferenceEngine, prompts: Sequence, params: SamplingParams, frames: int,
                    frame_rate: float) -> dict[str, float]:  # fmt: skip
    """Time the cached path (`InferenceEngine.generate`) on `prompts` for exactly `frames` frames.

    The same request runs once untimed first (see the module docstring).

    Returns:
        `frames`, `decode_s`, `prefill_s`, `cpu_s` (process CPU time), `frames_per_s` (aggregate over the
        batch), `ms_per_frame`, `prefill_ms`, `codebook_tokens_per_s`, `rtf` (wall / audio seconds at
        `frame_rate`, prefill included), and the `bandwidth` figures (weight/KV GB per frame, GB/s, MBU).
        On CUDA the peak-memory counter is reset after the warm-up.
    """
    device = engine.device
    engine.generate(prompts, params, frames, seed=0, min_frames=frames)  # warm-up: this very session
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cpu0 = time.process_time()
    res = engine.generate(prompts, params, frames, seed=0, min_frames=frames)
    _sync(device)
    cpu_s = time.process_time() - cpu0
    n, b = res.stats["frames"], len(prompts)
    decode_s, prefill_s = res.stats["decode_s"], res.stats["prefill_s"]
    out = {
        "frames": n, "decode_s": decode_s, "prefill_s": prefill_s, "cpu_s": cpu_s,
        "frames_per_s": b * n / decode_s, "ms_per_frame": 1000 * decode_s / n, "prefill_ms": 1000 * prefill_s,
        "codebook_tokens_per_s": b * n * engine.model.config.num_codebooks / decode_s,
        "rtf": (decode_s + prefill_s) / (n / frame_rate),
    }  # fmt: skip
    out.update(bandwidth(engine, out["ms_per_frame"]))
    return out


def time_ttfa(start_stream: Callable[[], Iterator], device: torch.device | str, repeats: int = 3) -> dict:
    """Time to first audio: from the request to its first chunk on the host.

    Args:
        start_stream: issues one request and returns its chunk iterator (`InferenceEngine.stream`,
            `TTS.stream`); everything it does counts: prompt building, reference encoding, prefill, the
            first chunk's frames (and, through `TTS.stream`, their codec decode).
        repeats: timed requests after one untimed request (session allocation, graph capture, and the fill
            of a voice-prefix cache if the engine has one, so timed requests with the same voice hit it).
    Returns:
        `ttfa_ms` (median), `ttfa_ms_min`, `ttfa_first_ms` (the untimed first request, capture included).
    """
    device = torch.device(device)

    def once() -> float:
        _sync(device)
        t0 = time.perf_counter()
        chunks = start_stream()
        first = next(chunks, None)
        _sync(device)
        dt = time.perf_counter() - t0
        if first is None:
            raise RuntimeError("time_ttfa: the stream ended before its first chunk")
        getattr(chunks, "close", lambda: None)()
        return 1000 * dt

    first = once()
    times = [once() for _ in range(repeats)]
    return {"ttfa_ms": statistics.median(times), "ttfa_ms_min": min(times), "ttfa_first_ms": first}


def time_naive(model, prompts: Sequence, params: SamplingParams, frames: int, stop_token_id: int) -> float:
    """Aggregate frames/s of the full-recompute reference decoder (no KV cache) on the same work."""
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    naive_generate(model, prompts, params, frames, seed=0, stop_token_id=stop_token_id, min_frames=frames)
    _sync(device)
    return len(prompts) * frames / (time.perf_counter() - t0)
