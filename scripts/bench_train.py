"""Dual-AR training throughput: optimizer steps on synthetic prompt batches, warm-up excluded.

Runs the same path as training (build_prompt -> collate -> DualARLitModule forward/backward -> AdamW) and
reports target frames/s and tokens/s (all positions, padding excluded), model TFLOP/s and, on a known CUDA
card (or with --peak-tflops), the MFU (`s2train.ar.sizes.train_step_flops`; 6 x weights x positions +
attention, the PaLM convention).

    python scripts/bench_train.py --size demo --batch-size 4 --frames 150 --steps 5 --warmup 2
    python scripts/bench_train.py --size demo --device cuda --dtype bf16 --batch-size 16 --frames 400
    python scripts/bench_train.py --size s2pro --device cuda --dtype bf16 --batch-size 1 --frames 400  # MFU

Needs torch, PyYAML, Lightning, tokenizers, safetensors and peft (through `s2train.lit.ar`), not Hydra.
`--json PATH` also writes the result with the environment (date, card, torch/CUDA versions, git commit).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch
import yaml

from s2train.ar.config import DualARConfig
from s2train.ar.sizes import PEAK_BF16_TFLOPS, PRESETS, train_step_flops
from s2train.data.codes import collate_prompts
from s2train.inference.benchmark import environment
from s2train.lit.ar import DualARLitModule
from s2train.text import Reference, S2Tokenizer, build_prompt

log = logging.getLogger("bench_train")


def make_batch(tok: S2Tokenizer, k: int, codebook_size: int, batch_size: int, frames: int, seed: int) -> dict:
    """A batch of prompts with a reference (half the target length) and `frames` target frames each."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(batch_size):
        codes = torch.randint(0, min(codebook_size, tok.num_semantic), (k, frames), generator=g)
        ref = torch.randint(0, min(codebook_size, tok.num_semantic), (k, frames // 2), generator=g)
        text = f"<|speaker:0|>benchmark sentence number {i} with a few words [laugh] in it."
        p = build_prompt(
            tok, text, references=[Reference("a reference transcript.", ref)], target_codes=codes
        )
        items.append(
            {"tokens": p.tokens, "codes": p.codes, "audio_mask": p.audio_mask, "loss_mask": p.loss_mask}
        )
    return collate_prompts(items, tok.pad_id)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="demo", choices=sorted(PRESETS))
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--frames", type=int, default=150, help="target frames per item")
    ap.add_argument("--steps", type=int, default=5, help="timed optimizer steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a model size field, e.g. --set n_layers=8 (an s2pro-wide slow AR that fits one GPU with AdamW)",
    )  # fmt: skip
    ap.add_argument(
        "--peak-tflops", type=float, default=None,
        help="peak TFLOP/s for MFU (default: the dense bf16 peak of a known CUDA card; none on CPU)",
    )  # fmt: skip
    ap.add_argument("--json", default=None, help="also write the result (with the environment) to this file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    spec = dict(PRESETS[args.size])
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in DualARConfig.__dataclass_fields__:
            raise SystemExit(f"--set {item}: unknown model field {key!r}")
        spec[key] = yaml.safe_load(value)
    k, cb = spec["num_codebooks"], spec["codebook_size"]
    num_semantic = spec.get("num_semantic") or cb
    with tempfile.TemporaryDirectory() as tmp:
        texts = [f"benchmark sentence number {i} with a few words." for i in range(50)]
        S2Tokenizer.train(texts, vocab_size=512, num_semantic=num_semantic).save(tmp)
        model = {
            kk: v for kk, v in spec.items() if kk not in ("vocab_size", "semantic_start", "num_semantic")
        }
        module = DualARLitModule(model=model, tokenizer_dir=tmp, warmup_steps=0)
        tok = module.tokenizer
    device = torch.device(args.device)
    module.to(device)
    opt = module.configure_optimizers()["optimizer"]
    batch = {key: v.to(device) for key, v in make_batch(tok, k, cb, args.batch_size, args.frames, 0).items()}
    n_tokens = int(batch["lengths"].sum())
    n_frames = int((batch["loss_mask"] & batch["audio_mask"]).sum())
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = module(batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        return float(loss.detach())

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    losses = [step() for _ in range(args.steps)]
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    result = {
        "size": args.size + "".join(f",{x}" for x in args.set),
        "params_M": round(module.model.num_params() / 1e6, 2),
        "device": str(device),
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "seq_len": int(batch["tokens"].shape[1]),
        "step_s": round(dt / args.steps, 3),
        "frames_per_s": round(n_frames * args.steps / dt, 1),
        "tokens_per_s": round(n_tokens * args.steps / dt, 1),
        "loss_first": round(losses[0], 3),
        "loss_last": round(losses[-1], 3),
    }
    flops = train_step_flops(module.model.config, batch["lengths"].tolist(), n_frames)
    peak = args.peak_tflops
    if peak is None and device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for key, v in PEAK_BF16_TFLOPS.items() if key in name), None)
    achieved = flops["total"] * args.steps / dt / 1e12
    result["model_tflops_per_step"] = round(flops["total"] / 1e12, 4)
    result["slow_share"] = round(flops["slow"] / flops["total"], 3)
    result["achieved_tflops"] = round(achieved, 3)
    result["mfu"] = round(achieved / peak, 4) if peak else None
    if device.type == "cuda":
        result["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
    print(json.dumps(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"environment": environment(device), **result}, indent=1) + "\n"
        )
    return result


if __name__ == "__main__":
    main()
