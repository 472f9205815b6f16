"""Inference speed: cached decode (`s2train.inference.InferenceEngine`) vs the full-recompute reference.

Random weights, random prompts, `min_frames = max_frames` so every run decodes the same number of frames.
Warm-up (including CUDA-graph capture) is excluded from timings. Prints a markdown table and a JSON line.

    PYTHONPATH=. python scripts/bench_inference.py --shapes reference --batches 1 8
    PYTHONPATH=. python scripts/bench_inference.py --shapes s2pro --batches 1 8 64 --device cuda --no-naive
"""

from __future__ import annotations

import argparse
import json
import resource
import sys

import torch

from s2train.ar import DualAR, DualARConfig, preset
from s2train.ar.sizes import count_params, weight_bytes_per_frame
from s2train.inference import InferenceEngine, SamplingParams
from s2train.inference.benchmark import time_generation, time_naive

TEXT_VOCAB = 2048  # text ids + specials before the semantic range for the small shapes


def _small(dim, layers, heads, kv, ffn, fast_layers, k, cb, fast_dim=None) -> dict:
    return dict(
        vocab_size=TEXT_VOCAB + cb, dim=dim, n_layers=layers, n_heads=heads, n_kv_heads=kv, head_dim=64,
        ffn_dim=ffn, max_seq_len=8192, num_codebooks=k, codebook_size=cb, semantic_start=TEXT_VOCAB,
        num_semantic=cb, fast_dim=fast_dim or dim, fast_n_layers=fast_layers, fast_n_heads=heads,
        fast_n_kv_heads=kv, fast_head_dim=64, fast_ffn_dim=ffn,
    )  # fmt: skip


SHAPES = {
    "tiny": lambda: DualARConfig.from_dict(_small(64, 2, 4, 2, 192, 1, 4, 64)),
    "reference": lambda: DualARConfig.from_dict(_small(256, 4, 4, 2, 768, 2, 10, 1024)),
    "d512": lambda: DualARConfig.from_dict(_small(512, 8, 8, 4, 1536, 2, 10, 1024)),
    "d1024": lambda: DualARConfig.from_dict(_small(1024, 12, 16, 8, 3072, 4, 10, 4096)),
    "demo": lambda: preset(
        "demo", vocab_size=TEXT_VOCAB + 1024, semantic_start=TEXT_VOCAB, num_semantic=1024
    ),
    "s2pro": lambda: preset("s2pro"),
}
STOP_ID = 1  # any non-semantic id; never sampled because min_frames = max_frames


def make_prompts(cfg: DualARConfig, batch: int, length: int, seed: int) -> list[tuple]:
    """Random prompts of `length` tokens, the middle half audio frames (a reference-like layout)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batch):
        codes = torch.randint(0, cfg.num_semantic, (cfg.num_codebooks, length), generator=g)
        audio = torch.zeros(length, dtype=torch.bool)
        audio[length // 4 : 3 * length // 4] = True
        tokens = torch.randint(2, cfg.semantic_start, (length,), generator=g)
        out.append((torch.where(audio, cfg.semantic_start + codes[0], tokens), codes, audio))
    return out


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_one(name, cfg, batch, args, device, dtype) -> dict:
    torch.manual_seed(0)
    with torch.device(device):
        model = DualAR(cfg).to(device, dtype).eval()
    prompts = make_prompts(cfg, batch, args.prompt_len, seed=batch)
    params = SamplingParams(temperature=0.8, top_p=0.9)
    engine = InferenceEngine(model, STOP_ID, mode=args.mode)
    engine.warmup(batch, args.prompt_len, args.frames, params)  # buffers + graph capture / compile
    t = time_generation(engine, prompts, params, args.frames, args.frame_rate)
    frames, decode_s, prefill_s = t["frames"], t["decode_s"], t["prefill_s"]
    row = {
        "shape": name, "batch": batch, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        "params_M": round(count_params(cfg)["total"] / 1e6, 1), "frames": frames,
        **{k: t[k] for k in ("frames_per_s", "ms_per_frame", "prefill_ms", "codebook_tokens_per_s", "rtf")},
        "peak_mem_mb": peak_memory_mb(device),
    }  # fmt: skip
    if device.type == "cpu":
        # On a shared machine wall time includes waiting for a core; CPU time shows the path's own cost.
        row["cpu_util"] = t["cpu_s"] / (decode_s + prefill_s)
        row["frames_per_cpu_s"] = batch * frames / t["cpu_s"]
    if device.type == "cuda":
        wb = weight_bytes_per_frame(cfg, torch.finfo(dtype).bits // 8)
        row["weight_GB_per_s"] = wb / (decode_s / frames) / 1e9
    if args.naive:
        row["naive_frames_per_s"] = time_naive(model, prompts, params, args.frames, STOP_ID)
        row["speedup_vs_naive"] = row["frames_per_s"] / row["naive_frames_per_s"]
    del model, engine
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def check_graph_parity(shape: str = "tiny", modes=("cudagraph", "compile"), dtypes=("float32", "bfloat16"),
                       frames: int = 24) -> list[dict]:  # fmt: skip
    """Greedy codes of graph-captured / compiled decode must equal eager decode exactly (CUDA only).

    Runs two requests per engine so the second one reuses the captured graph with new prompts. "compile"
    is only compared in fp32: inductor's fused kernels round differently, which can flip bf16 near-ties.
    Raises AssertionError on any mismatch; returns one row per (mode, dtype).
    """
    cfg = SHAPES[shape]()
    prompts = [make_prompts(cfg, 1, n, seed=n)[0] for n in (9, 16, 4)]
    greedy = SamplingParams(do_sample=False)
    rows = []
    for dtype_name in dtypes:
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = DualAR(cfg).to("cuda", getattr(torch, dtype_name)).eval()
        eager = InferenceEngine(model, STOP_ID, mode="eager").generate(prompts, greedy, frames).codes
        for mode in modes:
            if mode == "compile" and dtype_name != "float32":
                continue
            engine = InferenceEngine(model, STOP_ID, mode=mode)
            for attempt in range(2):
                got = engine.generate(prompts, greedy, frames).codes
                same = all(torch.equal(e, g) for e, g in zip(eager, got))
                if not same:
                    raise AssertionError(f"{mode} decode != eager ({shape}, {dtype_name}, request {attempt})")
            rows.append({"shape": shape, "mode": mode, "dtype": dtype_name, "parity": True})
        del model
    return rows


COLUMNS = [
    ("shape", "shape", "{}"), ("batch", "B", "{}"), ("frames_per_s", "frames/s", "{:.1f}"),
    ("ms_per_frame", "ms/frame", "{:.2f}"), ("prefill_ms", "prefill ms", "{:.1f}"),
    ("codebook_tokens_per_s", "cb tok/s", "{:.0f}"), ("rtf", "RTF", "{:.3f}"), ("peak_mem_mb", "peak MB", "{:.0f}"),
    ("naive_frames_per_s", "naive frames/s", "{:.1f}"), ("speedup_vs_naive", "cached/naive", "{:.1f}x"),
    ("weight_GB_per_s", "weights GB/s", "{:.0f}"), ("cpu_util", "CPU util", "{:.2f}"),
    ("frames_per_cpu_s", "frames/CPU-s", "{:.1f}"),
]  # fmt: skip


def markdown(rows: list[dict]) -> str:
    cols = [c for c in COLUMNS if any(c[0] in r for r in rows)]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(c[2].format(r[c[0]]) if c[0] in r else "-" for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["reference"], choices=sorted(SHAPES))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--prompt-len", type=int, default=60)
    ap.add_argument("--frame-rate", type=float, default=21.5, help="codec frames per second of audio (RTF)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="float32 | bfloat16 (default: bf16 on CUDA, fp32 on CPU)")
    ap.add_argument("--mode", default="auto", help="auto | eager | cudagraph | compile")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--no-naive", dest="naive", action="store_false", help="skip the full-recompute baseline")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--parity", action="store_true", help="only run the CUDA graph/compile == eager checks")
    args = ap.parse_args(argv)
    if args.parity:
        rows = check_graph_parity()
        rows += check_graph_parity("reference", modes=("cudagraph",), dtypes=("bfloat16",), frames=16)
        sys.stdout.write(json.dumps(rows) + "\n")
        return rows
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = (
        getattr(torch, args.dtype)
        if args.dtype
        else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    )
    rows = []
    for name in args.shapes:
        if name == "s2pro" and device.type != "cuda":
            sys.stderr.write("skipping s2pro: needs CUDA\n")
            continue
        cfg = SHAPES[name]()
        for b in args.batches:
            rows.append(bench_one(name, cfg, b, args, device, dtype))
            sys.stderr.write(json.dumps(rows[-1]) + "\n")
    sys.stdout.write(markdown(rows) + "\n\n" + json.dumps(rows) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
