"""Command line synthesis from an exported bundle.

    python -m s2train.infer bundle=runs/demo/bundle text="Hello there." ref=ref.wav ref_text="..." out=out.wav

Prints a JSON summary; `"stopped_at_cap": true` (and a warning) when generation hit the max_seconds cap
without the end token, i.e. the audio is cut off. Text in a script the bundle's tokenizer never saw (Chinese or
emoji into an English model) is warned about.

Options (key=value): seed, temperature, top_p, top_k, greedy=true, cfg_scale (classifier-free guidance on
the text, 1 = off; needs a model trained with data.text_dropout > 0), max_seconds, device (cpu|cuda),
dtype (float32|bfloat16), mode (auto|eager|cudagraph|compile), stream=true (print time-to-first-audio),
codec=<dir> (override the bundle's codec). Several references: ref=a.wav,b.wav ref_text="text a|text b".
"""

from __future__ import annotations

import json
import logging
import sys
import time
import wave
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

KNOWN = {
    "bundle", "text", "ref", "ref_text", "out", "seed", "temperature", "top_p", "top_k", "greedy", "max_seconds",
    "cfg_scale", "device", "dtype", "mode", "stream", "codec", "chunk_frames",
}  # fmt: skip


def parse_args(argv: list[str]) -> dict[str, str]:
    """`key=value` pairs -> dict; `--help` prints the usage and exits; unknown keys and missing
    `bundle`/`text` raise ValueError."""
    from s2train.cli import exit_on_help

    exit_on_help(argv, __doc__)
    args = {}
    for item in argv:
        if "=" not in item:
            raise ValueError(f"expected key=value, got {item!r} (keys: {sorted(KNOWN)})")
        key, value = item.split("=", 1)
        if key not in KNOWN:
            raise ValueError(f"unknown option {key!r} (keys: {sorted(KNOWN)})")
        args[key] = value
    for required in ("bundle", "text"):
        if required not in args:
            raise ValueError(f"missing {required}=... (usage: {__doc__.strip().splitlines()[2].strip()})")
    return args


def write_wav(path: str | Path, wav: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono wav with the standard library (no soundfile needed)."""
    pcm = (np.clip(wav, -1.0, 1.0) * 32767.0).astype("<i2")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(pcm.tobytes())


def main(argv: list[str] | None = None) -> dict:
    """Run the CLI; returns a summary dict (also printed as JSON)."""
    from s2train.inference.tts import TTS

    args = parse_args(sys.argv[1:] if argv is None else argv)
    refs = []
    if "ref" in args:
        paths = args["ref"].split(",")
        texts = args.get("ref_text", "").split("|") if "ref_text" in args else [""] * len(paths)
        if len(texts) != len(paths):
            raise ValueError(f"{len(paths)} ref files but {len(texts)} ref_text entries (separate with '|')")
        refs = list(zip(paths, texts))
    sampling = {}
    for key, cast in (("temperature", float), ("top_p", float), ("top_k", int), ("cfg_scale", float)):
        if key in args:
            sampling[key] = cast(args[key])
    if args.get("greedy", "false").lower() in ("1", "true", "yes"):
        sampling["do_sample"] = False
    dtype = getattr(torch, args["dtype"]) if "dtype" in args else None
    tts = TTS.from_bundle(args["bundle"], device=args.get("device", "cpu"), dtype=dtype,
                          codec_dir=args.get("codec"), mode=args.get("mode", "auto"))  # fmt: skip
    seed = int(args.get("seed", 0))
    max_seconds = float(args["max_seconds"]) if "max_seconds" in args else None
    t0 = time.perf_counter()
    if args.get("stream", "false").lower() in ("1", "true", "yes"):
        chunks = list(tts.stream(args["text"], refs, seed=seed, max_seconds=max_seconds,
                                 chunk_frames=int(args.get("chunk_frames", 8)), **sampling))  # fmt: skip
        wav, sr = (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), tts.sample_rate
    else:
        wav, sr = tts.synthesize(args["text"], refs, seed=seed, max_seconds=max_seconds, **sampling)
    elapsed = time.perf_counter() - t0
    out = args.get("out", "out.wav")
    write_wav(out, wav, sr)
    seconds = wav.size / sr
    at_cap = bool(tts.last_stats.get("stopped_at_cap"))
    if at_cap:
        log.warning(
            "generation stopped at the length cap (%d frames, %.1f s) without the end token: the audio is cut "
            "off; raise max_seconds=, shorten the text, or the model did not learn to stop",
            tts.last_stats.get("max_frames", 0), seconds,
        )  # fmt: skip
    summary = {
        "out": out, "seconds": round(seconds, 3), "elapsed_s": round(elapsed, 3),
        "rtf": round(elapsed / seconds, 3) if seconds else None,
        "ttfa_s": tts.last_stats.get("ttfa_s"), "voice_cache_hit_rate": tts.voice_cache.hit_rate,
        "stopped_at_cap": at_cap,
    }  # fmt: skip
    sys.stdout.write(json.dumps(summary) + "\n")
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)
