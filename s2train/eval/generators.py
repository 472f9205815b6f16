"""Factories the eval suites instantiate with `ckpt=...`: generation and speed measured through the one
inference path users run (`s2train.inference.TTS` / `InferenceEngine`).

`configs/suite/*.yaml` name them as `generator._target_` / `benchmark._target_`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from s2train.eval.evalset import EvalItem, ground_truth_generate_fn

log = logging.getLogger(__name__)


def resolve_bundle(ckpt: str | Path) -> Path:
    """An exported bundle directory for `ckpt`: the directory itself, or, for a Lightning checkpoint of
    `recipe=pretrain|finetune|lora` (`.ckpt`), a bundle exported once next to it (`<name>_bundle/`, LoRA
    merged). GRPO runs export their bundle at the end of training (`<run>/export`)."""
    path = Path(ckpt)
    if not path.exists():
        raise FileNotFoundError(f"ckpt={ckpt}: no such bundle directory or checkpoint file")
    if path.is_dir():
        return path
    out = path.parent / f"{path.stem}_bundle"
    if (out / "config.json").exists() and out.stat().st_mtime >= path.stat().st_mtime:
        return out
    import torch

    hparams = torch.load(str(path), map_location="cpu", weights_only=False).get("hyper_parameters", {})
    if "tokenizer_dir" not in hparams:
        raise ValueError(
            f"ckpt={ckpt}: not a Dual-AR training checkpoint (recipe=pretrain|finetune|lora); pass the "
            "exported bundle directory (<run>/export) instead"
        )
    from s2train.lit.ar import DualARLitModule

    module = DualARLitModule.load_from_checkpoint(str(path), map_location="cpu")
    module.export(out)
    log.info("exported %s to the bundle %s for evaluation", path, out)
    return out


def tts_generator(ckpt: str | Path | None = None, device: str = "cpu", max_seconds: float = 20.0,
                  mode: str = "auto", codec_dir: str | Path | None = None, **sampling: Any):  # fmt: skip
    """Return `generate_fn(items, seed) -> [(wav, sr)]` that synthesizes each item with the bundle's TTS.

    Each item is voiced with its prompt audio (`prompt_wav` + `prompt_text`) as the reference. Per-item seeds
    are derived from `seed` and the item position, so a run is reproducible and items are independent.
    Without `ckpt` the ground-truth audio is returned (the ceiling run). `codec_dir` overrides the codec the
    bundle records (needed for a bundle that records none).
    """
    if ckpt is None:
        log.info("no ckpt: the suite scores the ground-truth audio (ceiling)")
        return ground_truth_generate_fn
    from tqdm.auto import tqdm

    from s2train.inference.tts import TTS

    tts = TTS.from_bundle(
        resolve_bundle(ckpt), device=device, mode=mode, max_seconds=max_seconds, codec_dir=codec_dir
    )

    info: list[dict] = []

    def generate(items: Sequence[EvalItem], seed: int = 0) -> list[tuple[np.ndarray, int]]:
        out = []
        info.clear()
        for i, it in enumerate(tqdm(items, desc=f"synthesize (seed {seed})", leave=False)):
            refs = [(it.prompt_wav, it.prompt_text)] if it.prompt_wav else []
            wav, sr = tts.synthesize(it.text, references=refs, seed=seed * 100_003 + i, **sampling)
            out.append((np.asarray(wav, dtype=np.float32), int(sr)))
            info.append({"stopped_at_cap": bool(tts.last_stats.get("stopped_at_cap"))})
        capped = sum(r["stopped_at_cap"] for r in info)
        if capped:
            log.warning("%d of %d items stopped at the %.0f s cap (cut off, no end token)", capped, len(info),
                        max_seconds)  # fmt: skip
        return out

    generate.item_info = lambda: list(info)  # run_suite merges these into the per-utterance rows
    return generate


def speed_benchmark(ckpt: str | Path, device: str = "cpu", batch_sizes: Sequence[int] = (1, 8),
                    frames: int = 150, prompt_len: int = 60, mode: str = "auto", naive: bool = True):  # fmt: skip
    """Return `() -> metrics` timing the bundle's model through `InferenceEngine` (warm-up excluded).

    Metrics per batch size B: `b{B}/frames_per_s`, `b{B}/ms_per_frame`, `b{B}/prefill_ms`, `b{B}/rtf`, and
    at B=1 the flat `rtf`, `frames_per_s` and (with `naive`) `speedup_vs_naive` of the cached path over a
    full-recompute decode.
    """
    from s2train.bundle import load_pretrained
    from s2train.codec import load_codec
    from s2train.inference import InferenceEngine, SamplingParams
    from s2train.inference.benchmark import time_generation, time_naive
    from s2train.text import build_prompt

    model, tok, codec_dir = load_pretrained(resolve_bundle(ckpt), device=device)
    frame_rate = float(load_codec(codec_dir).frame_rate) if codec_dir else 21.5
    k = model.config.num_codebooks
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * 8)
    prompt = build_prompt(tok, text[: max(8, prompt_len)], num_codebooks=k)
    params = SamplingParams(temperature=0.8, top_p=0.9)
    stop = tok.im_end_id

    def run() -> dict[str, float]:
        out: dict[str, float] = {"frame_rate": frame_rate}
        for b in batch_sizes:
            t = time_generation(
                InferenceEngine(model, stop, mode=mode), [prompt] * b, params, frames, frame_rate
            )
            for key in ("frames_per_s", "ms_per_frame", "prefill_ms", "rtf"):
                out[f"b{b}/{key}"] = t[key]
        first = batch_sizes[0]
        out["rtf"], out["frames_per_s"] = out[f"b{first}/rtf"], out[f"b{first}/frames_per_s"]
        if naive:
            out["naive_frames_per_s"] = time_naive(model, [prompt], params, frames, stop)
            out["speedup_vs_naive"] = (
                out["b1/frames_per_s"] / out["naive_frames_per_s"] if 1 in batch_sizes else float("nan")
            )
        return out

    return run
