"""Where a codec GAN batch spends its time: a `torch.profiler` window over the codec recipe's training step.

Builds `CodecLitModule` with the recipe's discriminators, mel loss and loss weights
(`configs/recipe/codec.yaml`) around a codec (default: the shipped `checkpoints/demo/codec`, its weights as
`init_from`), and trains it in a Lightning Trainer on random crops (kernel times depend on shapes, not on the
audio): `--mel-batches` mel-only batches, then the discriminators switch on, `--warmup` GAN batches, then
`--batches` GAN batches under the profiler. Batch times are taken outside the profiler window; the window
labels the forward of each generator part, each sub-discriminator and the mel loss
(`fwd:<module path>`), so the table shows which family costs what, and the top ops by device time show
what the backward adds.

    PYTHONPATH=. python scripts/profile_codec.py --out gpu_out/codec            # GPU, batch 64 x 1.0 s
    PYTHONPATH=. python scripts/profile_codec.py --codec-config configs/codec/tiny.yaml --device cpu \\
        --batch 2 --crop 0.1 --mel-batches 1 --warmup 1 --batches 2 --out /tmp/prof   # dry run

Writes `<out>/codec_profile.json` (environment, batch times, GAN slow-down, per-module forward times, top
ops) and `<out>/codec_profile.txt` (the profiler's table); `--trace` adds a gzipped Chrome trace.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


class _Noise(torch.utils.data.Dataset):
    """`n` crops of seeded noise, {"wav": [1, S]} (the codec recipe's batch layout after collation)."""

    def __init__(self, n: int, samples: int) -> None:
        self.n, self.samples = n, samples

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {"wav": 0.1 * torch.randn(1, self.samples, generator=g)}


def _labelled(module: torch.nn.Module, names: list[str]) -> list:
    """Wrap the forward of each named submodule in a profiler range `fwd:<name>`; returns the hook handles."""
    handles = []
    for name in names:
        sub = module.get_submodule(name)
        ranges: list = []

        def pre(_m, _inp, name=name, ranges=ranges):
            r = torch.profiler.record_function(f"fwd:{name}")
            r.__enter__()
            ranges.append(r)

        def post(_m, _inp, _out, ranges=ranges):
            ranges.pop().__exit__(None, None, None)

        handles += [sub.register_forward_pre_hook(pre), sub.register_forward_hook(post)]
    return handles


def _device_us(evt) -> float:
    return float(getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0.0) or 0.0)


def _self_device_us(evt) -> float:
    return float(
        getattr(evt, "self_device_time_total", None) or getattr(evt, "self_cuda_time_total", 0.0) or 0.0
    )


def build_module(args):
    from s2train.lit.codec import CodecLitModule

    recipe = yaml.safe_load((ROOT / "configs" / "recipe" / "codec.yaml").read_text())["module"]
    if args.codec_config:
        codec_cfg, init_from = yaml.safe_load(Path(args.codec_config).read_text()), None
    else:
        codec_cfg = json.loads((Path(args.codec_dir) / "config.json").read_text())["config"]
        init_from = args.codec_dir
    keep = ("discriminator", "mel", "lambda_mel", "lambda_fm", "lambda_adv", "lambda_commit", "lambda_codebook",
            "adv_loss", "betas", "weight_decay", "grad_clip", "disc_grad_clip")  # fmt: skip
    return CodecLitModule(
        codec=codec_cfg, init_from=init_from, lr=args.lr, mel_warmup_steps=args.mel_batches,
        sample_every_n_steps=0, **{k: recipe[k] for k in keep if k in recipe},
    )  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codec-dir", default=str(ROOT / "checkpoints" / "demo" / "codec"))
    ap.add_argument("--codec-config", default=None, help="a configs/codec/*.yaml instead (random init)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--crop", type=float, default=1.0, help="seconds per crop (gpu_demo.sh codec: 1.0)")
    ap.add_argument("--mel-batches", type=int, default=5, help="mel-only batches first (the first untimed)")
    ap.add_argument("--warmup", type=int, default=5, help="GAN batches before the window (the first untimed)")
    ap.add_argument("--batches", type=int, default=10, help="GAN batches in the profiler window")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--cudnn-benchmark", type=int, default=1, help="as gpu_demo.sh codec (fixed crop shapes)")
    ap.add_argument("--trace", action="store_true", help="also write a gzipped Chrome trace")
    ap.add_argument("--out", default="outputs/profile_codec")
    args = ap.parse_args(argv)

    import pytorch_lightning as pl

    from s2train.inference.benchmark import environment

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    torch.set_float32_matmul_precision("high")  # as train.py (configs/train.yaml): TF32 on Ampere+
    torch.manual_seed(0)
    module = build_module(args)
    sr = module.codec.sample_rate
    total = args.mel_batches + args.warmup + args.batches
    window = range(args.mel_batches + args.warmup, total)
    names = ["codec." + n for n, _ in module.codec.named_children()]
    names += [f"disc.subs.{i}" for i in range(len(module.disc.subs))] + ["mel_loss"]
    sub_kind = {f"disc.subs.{i}": type(m).__name__ for i, m in enumerate(module.disc.subs)}
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    times: dict[int, float] = {}
    state: dict = {}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    class Window(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == window.start:
                sync()
                state["handles"] = _labelled(pl_module, names)
                state["prof"] = torch.profiler.profile(activities=activities, record_shapes=False)
                state["prof"].__enter__()
                state["t_window"] = time.perf_counter()
            sync()
            state["t0"] = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            sync()
            times[batch_idx] = time.perf_counter() - state["t0"]
            if batch_idx == window.stop - 1:
                state["window_s"] = time.perf_counter() - state["t_window"]
                state["prof"].__exit__(None, None, None)
                for h in state.pop("handles"):
                    h.remove()

    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision="32-true", logger=False,
        max_epochs=1, limit_train_batches=total, limit_val_batches=0, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, benchmark=bool(args.cudnn_benchmark),
        callbacks=[Window()],
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(
        _Noise(total * args.batch, int(args.crop * sr)), batch_size=args.batch
    )
    trainer.fit(module, loader)
    if "prof" not in state or "window_s" not in state:
        raise SystemExit(f"profile_codec: the window did not complete ({len(times)} of {total} batches ran)")

    prof = state["prof"]
    events = prof.key_averages()
    n = args.batches
    modules = {}
    for evt in events:
        if evt.key.startswith("fwd:"):
            name = evt.key[4:]
            modules[name] = {
                "kind": sub_kind.get(name, name), "calls_per_batch": evt.count / n,
                "cpu_ms_per_batch": evt.cpu_time_total / 1000 / n, "device_ms_per_batch": _device_us(evt) / 1000 / n,
            }  # fmt: skip
    sort_key = _self_device_us if device.type == "cuda" else (lambda e: e.self_cpu_time_total)
    top = sorted((e for e in events if not e.key.startswith("fwd:")), key=sort_key, reverse=True)[:25]
    mel = [times[i] for i in range(1, args.mel_batches) if i in times]
    gan = [times[i] for i in range(args.mel_batches + 1, window.start) if i in times]
    med = {k: statistics.median(v) if v else None for k, v in (("mel", mel), ("gan", gan))}
    result = {
        "environment": environment(device),
        "args": vars(args),
        "codec_params_M": sum(p.numel() for p in module.codec.parameters()) / 1e6,
        "disc_params_M": sum(p.numel() for p in module.disc.parameters()) / 1e6,
        "samples_per_crop": int(args.crop * sr),
        "mel_batch_s": med["mel"],
        "gan_batch_s": med["gan"],
        "gan_slowdown": med["gan"] / med["mel"] if med["gan"] and med["mel"] else None,
        "window_batch_s": state["window_s"] / n,  # under the profiler (its overhead included)
        "batch_times_s": [times[i] for i in sorted(times)],
        "modules_forward": modules,
        "top_ops": [
            {
                "name": e.key,
                "calls_per_batch": e.count / n,
                "self_device_ms_per_batch": _self_device_us(e) / 1000 / n,
                "self_cpu_ms_per_batch": e.self_cpu_time_total / 1000 / n,
            }
            for e in top
        ],  # fmt: skip
    }
    (out / "codec_profile.json").write_text(json.dumps(result, indent=1) + "\n")
    table_key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    (out / "codec_profile.txt").write_text(events.table(sort_by=table_key, row_limit=40) + "\n")
    if args.trace:
        raw = out / "codec_trace.json"
        prof.export_chrome_trace(str(raw))
        with raw.open("rb") as src, gzip.open(str(raw) + ".gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        raw.unlink()
    print(
        json.dumps({k: result[k] for k in ("mel_batch_s", "gan_batch_s", "gan_slowdown", "window_batch_s")})
    )
    for name, m in sorted(
        modules.items(), key=lambda kv: -kv[1]["device_ms_per_batch"] - kv[1]["cpu_ms_per_batch"]
    ):
        print(f"{name:24s} {m['kind']:28s} calls {m['calls_per_batch']:4.1f}  cpu {m['cpu_ms_per_batch']:8.1f} ms  "
              f"device {m['device_ms_per_batch']:8.1f} ms")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
