"""CLI and bundle export for the released S2 Pro layout (`python -m s2train.ar.upstream export|info`).

Split from `s2train.ar.upstream` (tensor mapping, import, `export_s2pro`), which keeps the `-m` entry point.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch

from s2train.ar.upstream import (
    export_s2pro,
    import_s2pro,
    is_upstream_dir,
    mapping_table,
    parse_size,
    read_upstream_config,
)

log = logging.getLogger(__name__)


def export_bundle_to_s2pro(
    bundle_dir: str | Path,
    out_dir: str | Path,
    base_dir: str | Path | None = None,
    dtype: torch.dtype = torch.bfloat16,
    shard_size: int | str = "5GB",
) -> Path:
    """Write a trained model (an s2train bundle, e.g. `<run>/export` of `recipe=finetune|lora|grpo` started
    from a released directory) back in the released layout, so upstream tools (fish-speech, sglang-omni) run it.

    Args:
        bundle_dir: an s2train bundle (LoRA already merged by the recipe's export) or a released directory.
        out_dir: the new released-layout directory (must not be `base_dir`).
        base_dir: the released directory the run started from: its config.json fields beyond the model sizes,
            its tokenizer files and its `codec.pth` are carried over. Without it the bundle's own tokenizer is
            written and no codec is copied.
        dtype: weight dtype on disk (the release is bf16).
        shard_size: max bytes per safetensors shard.
    Returns:
        out_dir, after re-importing it strictly and checking every tensor equals what was written.
    """
    from s2train.bundle import load_pretrained  # bundle pulls in text/tokenizers; ar itself stays torch-only

    out = Path(out_dir)
    base = Path(base_dir) if base_dir is not None else None
    if base is not None:
        if not is_upstream_dir(base):
            raise ValueError(f"--base {base}: not a released S2 Pro directory (config.json + safetensors)")
        if base.resolve() == out.resolve():
            raise ValueError(f"out_dir {out} is the base directory; write the export somewhere else")
    model, tokenizer, _ = load_pretrained(bundle_dir, dtype=dtype)
    if base is not None:
        base_config = read_upstream_config(base)
        tok_dir: Path | None = base if (base / "tokenizer.json").is_file() else None
    else:
        base_config, tok_dir = None, None
        bundle_tok = Path(bundle_dir) / "tokenizer"
        if (bundle_tok / "tokenizer.json").is_file():
            tok_dir = bundle_tok
    export_s2pro(
        model, model.config, out, shard_size=shard_size, tokenizer_dir=tok_dir, base_config=base_config
    )
    if base is not None and (base / "codec.pth").is_file():
        shutil.copyfile(base / "codec.pth", out / "codec.pth")
    # the written directory must import strictly and hold exactly the exported weights
    back, _, _ = import_s2pro(out)
    ours, theirs = model.state_dict(), back.state_dict()
    bad = [k for k in ours if k in theirs and not torch.equal(ours[k].cpu(), theirs[k])]
    if bad or ours.keys() != theirs.keys():
        raise RuntimeError(f"export to {out} does not re-import to the same weights: {bad[:10]}")
    log.info("wrote %s (%d tensors, %s, vocabulary %d)", out, len(ours), dtype, model.config.vocab_size)
    return out


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m s2train.ar.upstream export <bundle> <out_dir> [--base <s2-pro dir>]`` or
    ``info <s2-pro dir>``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m s2train.ar.upstream", description="S2 Pro released-layout tools"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="write an s2train bundle in the released fish_qwen3_omni layout")
    exp.add_argument("bundle", help="s2train bundle dir (e.g. <run>/export) or a released dir")
    exp.add_argument("out_dir")
    exp.add_argument(
        "--base", help="the released dir the run started from (config fields, tokenizer, codec.pth)"
    )
    exp.add_argument("--dtype", choices=["bfloat16", "float32", "float16"], default="bfloat16")
    exp.add_argument("--shard-size", default="5GB")
    info = sub.add_parser("info", help="import a released dir strictly and print its sizes and key table")
    info.add_argument("directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "export":
        out = export_bundle_to_s2pro(
            args.bundle, args.out_dir, args.base, getattr(torch, args.dtype), parse_size(args.shard_size)
        )
        print(f"exported {args.bundle} -> {out}")
        return
    model, cfg, meta = import_s2pro(args.directory)
    print(f"{args.directory}: {meta['num_tensors']} tensors, {model.num_params():,} parameters")
    print(f"slow AR dim {cfg.dim} x {cfg.n_layers} layers, fast AR dim {cfg.fast_dim} x {cfg.fast_n_layers}, "
          f"K = {cfg.num_codebooks} x {cfg.codebook_size}, vocabulary {cfg.vocab_size}, "
          f"semantic ids {cfg.semantic_start}..{cfg.semantic_start + cfg.num_semantic - 1}")  # fmt: skip
    for up, ours, count in mapping_table(meta["layout"]):
        print(f"  {up:60s} -> {ours:45s} x{count}")


if __name__ == "__main__":
    main()
