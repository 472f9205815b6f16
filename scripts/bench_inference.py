"""Inference speed: cached decode (`s2train.inference.InferenceEngine`) vs the full-recompute reference.

Random weights, random prompts, `min_frames = max_frames` so every run decodes the same number of frames.
Warm-up (the same request, untimed: session, CUDA-graph capture, first replay) is excluded from timings
(`s2train.inference.benchmark`). Per batch: frames/s, ms/frame, RTF, peak memory, bytes per frame and MBU;
at batch 1 the time to first audio (`--ttfa-chunk` frames on the host, prompt building and prefill
included) without and with a voice-prefix cache hit. Prints a markdown table and a JSON line; `--json` also
writes {"environment", "args", "rows"} (rewritten after every row, so a timeout keeps what finished).

    PYTHONPATH=. python scripts/bench_inference.py --shapes reference --batches 1 8
    PYTHONPATH=. python scripts/bench_inference.py --shapes s2pro --batches 1 8 64 --device cuda --no-naive
    PYTHONPATH=. python scripts/bench_inference.py --parity --modes cudagraph --json parity.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

import torch

from s2train.ar import DualAR, DualARConfig, preset
from s2train.ar.sizes import count_params
from s2train.inference import InferenceEngine, SamplingParams, VoicePrefixCache
from s2train.inference.benchmark import environment, time_generation, time_naive, time_ttfa

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


def voice_prompt(cfg: DualARConfig, ref_frames: int, text_len: int, seed: int) -> tuple:
    """A prompt with a system turn (a few text tokens + `ref_frames` reference frames, closed by the stop id:
    the voice prefix a `VoicePrefixCache` keys on) and a `text_len`-token user turn drawn from `seed`."""
    g = torch.Generator().manual_seed(0)  # the voice: the same for every seed
    head = torch.randint(2, cfg.semantic_start, (4,), generator=g)
    ref = torch.randint(0, cfg.num_semantic, (cfg.num_codebooks, ref_frames), generator=g)
    text = torch.randint(2, cfg.semantic_start, (text_len,), generator=torch.Generator().manual_seed(seed))
    tokens = torch.cat([head, cfg.semantic_start + ref[0], torch.tensor([STOP_ID]), text])
    audio = torch.zeros(tokens.numel(), dtype=torch.bool)
    audio[4 : 4 + ref_frames] = True
    codes = torch.zeros(cfg.num_codebooks, tokens.numel(), dtype=torch.long)
    codes[:, audio] = ref
    return tokens, codes, audio


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_model(cfg: DualARConfig, device: torch.device, dtype: torch.dtype) -> DualAR:
    """Random weights (seed 0), initialized where they run."""
    torch.manual_seed(0)
    with torch.device(device):
        return DualAR(cfg).to(device, dtype).eval()


def bench_ttfa(model: DualAR, cfg: DualARConfig, args, device: torch.device) -> dict:
    """Time to first audio at batch 1: a cold prompt (full prefill) and a voice-prefix cache hit."""
    params = SamplingParams(temperature=0.8, top_p=0.9)
    out = {}
    for key, cache in (("ttfa_ms", None), ("ttfa_voice_hit_ms", VoicePrefixCache(4))):
        engine = InferenceEngine(model, STOP_ID, mode=args.mode, voice_cache=cache)
        seeds = iter(range(1, 1000))

        def start(engine=engine, seeds=seeds):
            # A new sentence per request in the same voice; building it is part of the request.
            prompt = voice_prompt(cfg, args.ttfa_ref_frames, args.ttfa_text, next(seeds))
            return engine.stream(prompt, params, args.frames, seed=0, chunk_frames=args.ttfa_chunk)

        out[key] = time_ttfa(start, device, repeats=args.ttfa_repeats)["ttfa_ms"]
        del engine
    return out


def bench_one(name, cfg, model, batch, args, device, dtype) -> dict:
    prompts = make_prompts(cfg, batch, args.prompt_len, seed=batch)
    params = SamplingParams(temperature=0.8, top_p=0.9)
    engine = InferenceEngine(model, STOP_ID, mode=args.mode)
    t = time_generation(engine, prompts, params, args.frames, args.frame_rate)  # warm-up included, untimed
    frames, decode_s, prefill_s = t["frames"], t["decode_s"], t["prefill_s"]
    row = {
        "shape": name, "batch": batch, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        "mode": engine.mode, "params_M": round(count_params(cfg)["total"] / 1e6, 1), "frames": frames,
        "prompt_len": args.prompt_len,
        **{k: t[k] for k in ("frames_per_s", "ms_per_frame", "prefill_ms", "codebook_tokens_per_s", "rtf")},
        "peak_mem_mb": peak_memory_mb(device),
        **{k: t[k] for k in ("weight_GB_per_frame", "kv_GB_per_frame", "hbm_GB_per_s", "mbu")},
    }  # fmt: skip
    if device.type == "cpu":
        # On a shared machine wall time includes waiting for a core; CPU time shows the path's own cost.
        row["cpu_util"] = t["cpu_s"] / (decode_s + prefill_s)
        row["frames_per_cpu_s"] = batch * frames / t["cpu_s"]
    del engine
    if batch == 1 and args.ttfa:
        row.update(bench_ttfa(model, cfg, args, device))
    if args.naive:
        row["naive_frames_per_s"] = time_naive(model, prompts, params, args.frames, STOP_ID)
        row["speedup_vs_naive"] = row["frames_per_s"] / row["naive_frames_per_s"]
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def _first_mismatch(ref: list[torch.Tensor], got: list[torch.Tensor]) -> str | None:
    """None if every row's codes are equal, else where the first row differs."""
    for i, (e, g) in enumerate(zip(ref, got)):
        if e.shape != g.shape:
            return f"row {i}: {tuple(e.shape)} vs {tuple(g.shape)}"
        cols = (e != g).any(0).nonzero()
        if cols.numel():
            return f"row {i}: first differing frame {int(cols[0])} of {e.shape[1]}"
    return None


def check_graph_parity(shape: str = "tiny", modes=("cudagraph", "compile"), dtypes=("float32", "bfloat16"),
                       frames: int = 24, device: str = "cuda", compile_bf16: bool = False,
                       report=None) -> list[dict]:  # fmt: skip
    """Greedy codes of graph-captured / compiled decode must equal eager decode exactly.

    Runs two requests per engine so the second one reuses the captured graph with new prompts. "compile" is
    only required to match in fp32: inductor's fused kernels round differently, which can flip bf16
    near-ties; `compile_bf16` adds that row for information (`strict: False`). Mode "eager" (against eager)
    runs the same code on a CPU (dry runs). Returns one row per (mode, dtype) with `parity` (bool) and
    `mismatch` (where the first difference is); `report(row)` is called after each row.
    """
    cfg = SHAPES[shape]()
    prompts = [make_prompts(cfg, 1, n, seed=n)[0] for n in (9, 16, 4)]
    greedy = SamplingParams(do_sample=False)
    rows = []
    for dtype_name in dtypes:
        # compile is only required to match in fp32 (see above)
        todo = [(m, m != "compile" or dtype_name == "float32") for m in modes]
        todo = [(m, strict) for m, strict in todo if strict or compile_bf16]
        if not todo:
            continue
        model = build_model(cfg, torch.device(device), getattr(torch, dtype_name))
        eager = InferenceEngine(model, STOP_ID, mode="eager").generate(prompts, greedy, frames).codes
        for mode, strict in todo:
            engine = InferenceEngine(model, STOP_ID, mode=mode)
            mismatch = None
            for attempt in range(2):
                got = engine.generate(prompts, greedy, frames).codes
                where = _first_mismatch(eager, got)
                if where and mismatch is None:
                    mismatch = f"request {attempt}, {where}"
            row = {"check": "greedy_vs_eager", "shape": shape, "mode": mode, "dtype": dtype_name,
                   "frames": frames, "parity": mismatch is None, "mismatch": mismatch, "strict": strict}  # fmt: skip
            rows.append(row)
            if report:
                report(row)
            del engine
        del model
    return rows


def check_sampled_replay(shape: str = "tiny", modes=("cudagraph",), dtype: str = "bfloat16", frames: int = 24,
                         device: str = "cuda", report=None) -> list[dict]:  # fmt: skip
    """Sampling inside the captured/compiled frame is seeded: two runs with one seed give the same codes,
    another seed gives other codes, and the frames vary (top-k + top-p sorts and repetition-aware
    resampling all exercised). Returns one row per mode with `parity` = all three hold."""
    cfg = SHAPES[shape]()
    prompts = [make_prompts(cfg, 1, n, seed=n)[0] for n in (9, 16, 4)]
    params = SamplingParams(temperature=1.0, top_p=0.9, top_k=50, ras_window=8, ras_threshold=0.2)
    model = build_model(cfg, torch.device(device), getattr(torch, dtype))
    rows = []
    for mode in modes:
        engine = InferenceEngine(model, STOP_ID, mode=mode)
        a, b, c = (
            engine.generate(prompts, params, frames, seed=s, min_frames=frames).codes for s in (1, 1, 2)
        )
        row = {
            "check": "sampled_replay", "shape": shape, "mode": mode, "dtype": dtype, "frames": frames,
            "replay_equal": _first_mismatch(a, b) is None, "seeds_differ": _first_mismatch(a, c) is not None,
            "frames_vary": all(len(set(x[0].tolist())) > 1 for x in a), "strict": True,
        }  # fmt: skip
        row["parity"] = row["replay_equal"] and row["seeds_differ"] and row["frames_vary"]
        row["mismatch"] = None if row["replay_equal"] else _first_mismatch(a, b)
        rows.append(row)
        if report:
            report(row)
        del engine
    return rows


COLUMNS = [
    ("shape", "shape", "{}"), ("batch", "B", "{}"), ("frames_per_s", "frames/s", "{:.1f}"),
    ("ms_per_frame", "ms/frame", "{:.2f}"), ("prefill_ms", "prefill ms", "{:.1f}"),
    ("codebook_tokens_per_s", "cb tok/s", "{:.0f}"), ("rtf", "RTF", "{:.3f}"),
    ("ttfa_ms", "TTFA ms", "{:.1f}"), ("ttfa_voice_hit_ms", "TTFA voice-hit ms", "{:.1f}"),
    ("peak_mem_mb", "peak MB", "{:.0f}"), ("hbm_GB_per_s", "GB/s", "{:.1f}"), ("mbu", "MBU", "{:.2f}"),
    ("naive_frames_per_s", "naive frames/s", "{:.1f}"), ("speedup_vs_naive", "cached/naive", "{:.1f}x"),
    ("cpu_util", "CPU util", "{:.2f}"), ("frames_per_cpu_s", "frames/CPU-s", "{:.1f}"),
]  # fmt: skip


def markdown(rows: list[dict], columns=COLUMNS) -> str:
    """A markdown table of the columns any row has ("-" where a row lacks one or holds None)."""
    cols = [c for c in columns if any(r.get(c[0]) is not None for r in rows)]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [c[2].format(r[c[0]]) if r.get(c[0]) is not None else "-" for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


class JsonReport:
    """Rows written to `path` (if any) as {"environment", "args", "rows"} after every row."""

    def __init__(self, path: str | None, device, args) -> None:
        self.path, self.rows = path, []
        self.head = {"environment": environment(device), "args": vars(args)}
        self.write()

    def __call__(self, row: dict) -> None:
        self.rows.append(row)
        sys.stderr.write(json.dumps(row) + "\n")
        self.write()

    def write(self) -> None:
        if self.path:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.path).write_text(json.dumps({**self.head, "rows": self.rows}, indent=1) + "\n")


def run_parity(args) -> list[dict]:
    """Greedy parity (tiny fp32/bf16; reference bf16 for CUDA graphs), then seeded sampled replay."""
    report = JsonReport(args.json, args.device, args)
    check_graph_parity("tiny", args.modes, frames=args.frames, device=args.device,
                       compile_bf16=args.compile_bf16, report=report)  # fmt: skip
    if "cudagraph" in args.modes:
        check_graph_parity("reference", ("cudagraph",), ("bfloat16",), 16, args.device, report=report)
    replay_dtype = "bfloat16" if torch.device(args.device).type == "cuda" else "float32"
    check_sampled_replay("tiny", args.modes, replay_dtype, args.frames, args.device, report=report)
    return report.rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["reference"], choices=sorted(SHAPES))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--frames", type=int, default=None, help="frames per request (150; parity: 24)")
    ap.add_argument("--prompt-len", type=int, default=60)
    ap.add_argument("--frame-rate", type=float, default=21.5, help="codec frames per second of audio (RTF)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="float32 | bfloat16 (default: bf16 on CUDA, fp32 on CPU)")
    ap.add_argument("--mode", default="auto", help="auto | eager | cudagraph | compile")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--no-naive", dest="naive", action="store_false", help="skip the full-recompute baseline")
    ap.add_argument("--no-ttfa", dest="ttfa", action="store_false", help="skip time to first audio (batch 1)")
    ap.add_argument(
        "--ttfa-chunk", type=int, default=8, help="frames in the first chunk (TTS.stream default)"
    )
    ap.add_argument("--ttfa-ref-frames", type=int, default=215, help="reference frames (10 s at 21.5 Hz)")
    ap.add_argument("--ttfa-text", type=int, default=40, help="text tokens of each TTFA request")
    ap.add_argument("--ttfa-repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--parity", action="store_true", help="only the graph/compile == eager and replay checks")
    ap.add_argument("--modes", nargs="+", default=["cudagraph", "compile"], help="--parity: modes to check")
    ap.add_argument("--compile-bf16", action="store_true", help="--parity: also compile vs eager in bf16")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.parity:
        args.frames = args.frames or 24
        rows = run_parity(args)
        sys.stdout.write(markdown(rows, PARITY_COLUMNS) + "\n\n" + json.dumps(rows) + "\n")
        if not all(r["parity"] for r in rows if r["strict"]):
            raise SystemExit("parity: FAILED")
        return rows
    args.frames = args.frames or 150
    device = torch.device(args.device)
    dtype = (
        getattr(torch, args.dtype)
        if args.dtype
        else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    )
    report = JsonReport(args.json, device, args)
    for name in args.shapes:
        if name == "s2pro" and device.type != "cuda":
            sys.stderr.write("skipping s2pro: needs CUDA\n")
            continue
        cfg = SHAPES[name]()
        model = build_model(cfg, device, dtype)
        for b in args.batches:
            report(bench_one(name, cfg, model, b, args, device, dtype))
        del model
    sys.stdout.write(markdown(report.rows) + "\n\n" + json.dumps(report.rows) + "\n")
    return report.rows


PARITY_COLUMNS = [
    ("check", "check", "{}"), ("shape", "shape", "{}"), ("mode", "mode", "{}"), ("dtype", "dtype", "{}"),
    ("parity", "equal", "{}"), ("strict", "required", "{}"), ("mismatch", "first mismatch", "{}"),
]  # fmt: skip


if __name__ == "__main__":
    main()
