"""Time codec encode + decode on CPU and print the real-time factor.

    python scripts/bench_codec.py [--size demo] [--seconds 20] [--threads 1] [--repeats 3] [--train-seconds 0]

Warm-up (one 1 s encode/decode) is excluded. ``--train-seconds N`` also measures training steps/s of
``CodecLitModule``'s generator+discriminator step on random crops for about N seconds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from s2train.codec import build_codec

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def bench_codec(size: str, seconds: float, repeats: int) -> dict:
    cfg = yaml.safe_load((CONFIGS / "codec" / f"{size}.yaml").read_text())
    torch.manual_seed(0)
    codec = build_codec(cfg).eval()
    sr = codec.sample_rate
    wav = torch.randn(1, 1, int(seconds * sr)) * 0.1
    with torch.inference_mode():
        codec.decode(codec.encode(wav[..., :sr]))  # warm-up
        enc, dec, cpu = [], [], []
        for _ in range(repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            codes = codec.encode(wav)
            t1 = time.perf_counter()
            codec.decode(codes)
            t2, c2 = time.perf_counter(), time.process_time()
            enc.append(t1 - t0)
            dec.append(t2 - t1)
            cpu.append(c2 - c0)
    best = min(e + d for e, d in zip(enc, dec))
    return {
        "params_M": sum(p.numel() for p in codec.parameters()) / 1e6,
        "encode_s": min(enc),
        "decode_s": min(dec),
        "realtime_x": seconds / best,
        # CPU seconds used: on a shared, oversubscribed machine this approximates the idle wall time.
        "realtime_x_cpu": seconds / min(cpu),
    }


def bench_train(size: str, seconds: float, crop: float, batch: int, disc: bool) -> float:
    """Batches/s of ``CodecLitModule.training_step`` (the real recipe losses) in a Lightning Trainer."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from s2train.lit.codec import CodecLitModule

    recipe = yaml.safe_load((CONFIGS / "recipe" / "codec.yaml").read_text())["module"]
    cfg = yaml.safe_load((CONFIGS / "codec" / f"{size}.yaml").read_text())
    module = CodecLitModule(
        codec=cfg,
        discriminator=recipe["discriminator"],
        mel=recipe["mel"],
        mel_warmup_steps=0 if disc else 10**9,
        sample_every_n_steps=0,
    )
    crops = [{"wav": torch.randn(1, int(crop * cfg["sample_rate"])) * 0.1} for _ in range(batch * 1000)]
    stamps: list[float] = []

    class Clock(pl.Callback):
        def on_train_batch_end(self, *args) -> None:
            stamps.append(time.perf_counter())

    trainer = pl.Trainer(
        accelerator="cpu",
        max_time={"seconds": seconds},
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[Clock()],
    )
    trainer.fit(module, DataLoader(crops, batch_size=batch))
    if len(stamps) < 3:
        raise RuntimeError(f"only {len(stamps)} steps in {seconds} s; raise --train-seconds")
    return (len(stamps) - 2) / (stamps[-1] - stamps[1])  # first step is warm-up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="demo")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-seconds", type=float, default=0.0)
    ap.add_argument("--crop", type=float, default=0.64)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    r = bench_codec(args.size, args.seconds, args.repeats)
    print(
        f"codec={args.size} params={r['params_M']:.2f}M threads={args.threads} audio={args.seconds:.0f}s "
        f"encode={r['encode_s']:.3f}s decode={r['decode_s']:.3f}s -> {r['realtime_x']:.1f}x real time "
        f"(by process CPU time: {r['realtime_x_cpu']:.1f}x)"
    )
    if args.train_seconds > 0:
        for disc in (False, True):
            sps = bench_train(args.size, args.train_seconds, args.crop, args.batch, disc)
            print(
                f"train steps/s (batch {args.batch} x {args.crop}s, discriminators {'on' if disc else 'off'}): {sps:.2f}"
            )


if __name__ == "__main__":
    main()
