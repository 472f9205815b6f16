"""Evaluation suites: generate audio for an eval set, score it with the judges, write a report.

``generate_fn(items, seed) -> [(wav [S] float32, sample_rate), ...]`` is any callable: the inference facade
for a trained model, :func:`ground_truth_generate_fn` for the ceiling run, or
:func:`codec_resynthesis_fn` for codec round trips. Suites:

* ``quick`` / ``full``: WER + SIM (``quick`` = a small sample of the same set);
* ``tags``: each tagged prompt rendered with and without its tags, paired acoustic check per tag;
* ``codec``: resynthesis through a codec, codec distances vs the original + WER/SIM;
* ``speed``: a benchmark callable returning ``{"rtf": ..., ...}``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from s2train.eval.asr import ASR
from s2train.eval.evalset import (
    EvalItem,
    EvalSet,
    GenerateFn,
    codec_resynthesis_fn,
    ground_truth_generate_fn,
    read_wav,
    tag_pairs,
)
from s2train.eval.metrics.sim import cosine_similarity, sim_report
from s2train.eval.metrics.tags import Taxonomy, load_taxonomy, tag_effects_for_text, tag_pass_rates
from s2train.eval.metrics.wer import utterance_errors, wer_report
from s2train.eval.speaker import SpeakerEncoder

__all__ = [
    "SUITES",
    "AudioMetric",
    "GenerateFn",
    "Judges",
    "codec_resynthesis_fn",
    "ground_truth_generate_fn",
    "read_wav",
    "build_evalset",
    "build_judges",
    "evaluate_from_config",
    "run_suite",
]

log = logging.getLogger(__name__)

SUITES = ("quick", "full", "tags", "codec", "speed")
# fn(reference [S], estimate [S], sample_rate) -> float
AudioMetric = Callable[[np.ndarray, np.ndarray, int], float]


@dataclass
class Judges:
    """The scorers a suite uses; None disables that metric."""

    asr: ASR | None = None
    speaker: SpeakerEncoder | None = None
    taxonomy: Taxonomy | None = None
    audio_metrics: dict[str, AudioMetric] = field(default_factory=dict)
    numbers: bool = False  # English number normalization before WER (off in Seed-TTS-eval)


def _fit_length(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(reference.size, estimate.size)
    return reference[:n], estimate[:n]


def _score_seed(
    items: Sequence[EvalItem],
    wavs: Sequence[tuple[np.ndarray, int]],
    judges: Judges,
    seed: int,
    wav_dir: Path,
) -> list[dict]:
    """Per-utterance rows for one seed (also writes the generated wavs)."""
    from s2train.eval.asr import prepare_wav

    wav_dir.mkdir(parents=True, exist_ok=True)
    hyps = [None] * len(items)
    if judges.asr is not None:
        hyps = (
            judges.asr.transcribe([w for w, _ in wavs], wavs[0][1])
            if len({sr for _, sr in wavs}) == 1
            else [judges.asr.transcribe([w], sr)[0] for w, sr in wavs]
        )
    ref_cache: dict[str, np.ndarray] = {}
    rows = []
    for it, (wav, sr), hyp in tqdm(
        zip(items, wavs, hyps), total=len(items), desc=f"score seed {seed}", leave=False
    ):
        path = wav_dir / f"{it.id.replace('/', '_')}.wav"
        sf.write(str(path), np.clip(wav, -1.0, 1.0), sr, subtype="PCM_16")
        row: dict[str, Any] = {
            "id": it.id,
            "seed": seed,
            "group": it.group,
            "kind": it.kind,
            "variant": it.variant,
            "speaker": it.speaker,
            "language": it.language,
            "text": it.text,
            "duration_s": round(wav.size / sr, 4),
            "wav": str(path.relative_to(wav_dir.parent.parent)),
        }
        if hyp is not None:
            err = utterance_errors(it.text, hyp, it.language, judges.numbers)
            row |= {"hyp": hyp} | {
                k: err[k]
                for k in (
                    "ref_norm",
                    "hyp_norm",
                    "wer",
                    "substitutions",
                    "deletions",
                    "insertions",
                    "ref_len",
                )
            }
        if judges.speaker is not None and it.prompt_wav:
            if it.prompt_wav not in ref_cache:
                ref_cache[it.prompt_wav] = judges.speaker.embed(*read_wav(it.prompt_wav))
            row["sim"] = cosine_similarity(judges.speaker.embed(wav, sr), ref_cache[it.prompt_wav])
        if judges.audio_metrics and it.target_wav:
            ref = read_wav(it.target_wav)
            ref_wav, est = _fit_length(prepare_wav(ref[0], ref[1], sr), np.asarray(wav, np.float32))
            for name, fn in judges.audio_metrics.items():
                row[name] = float(fn(ref_wav, est, sr))
        rows.append(row)
    return rows


def _tag_rows(items: Sequence[EvalItem], wavs: Sequence[tuple[np.ndarray, int]], taxonomy: Taxonomy) -> list:
    """Paired tag checks: one TagResult per tag of each ``with_tag`` item."""
    from s2train.eval.asr import prepare_wav

    by_id = {it.id: (it, w) for it, w in zip(items, wavs)}
    results = []
    for it, (wav, sr) in zip(items, wavs):
        if it.variant != "without_tag":
            continue
        tagged, (wav_with, sr_with) = by_id[it.pair_id]
        plain = prepare_wav(wav, sr, sr_with)
        for res in tag_effects_for_text(wav_with, plain, sr_with, tagged.text, taxonomy):
            results.append((tagged.id, res))
    return results


def _seed_metrics(name: str, rows: list[dict], tag_results: list, judges: Judges) -> tuple[dict, dict]:
    """Scalar metrics of one seed and the per-family tag summary."""
    metrics: dict[str, float] = {"eval/n_utterances": float(len(rows))}
    if rows and "stopped_at_cap" in rows[0]:
        metrics["eval/stopped_at_cap_rate"] = float(np.mean([bool(r.get("stopped_at_cap")) for r in rows]))
    if judges.asr is not None and rows:
        rep = wer_report(
            [r["text"] for r in rows], [r["hyp"] for r in rows], [r["language"] for r in rows], judges.numbers
        )
        metrics |= {
            "eval/wer": rep["wer"],
            "eval/wer_corpus": rep["wer_corpus"],
            "eval/substitutions": float(rep["substitutions"]),
            "eval/deletions": float(rep["deletions"]),
            "eval/insertions": float(rep["insertions"]),
        }
        for group in sorted({r["group"] for r in rows}):
            scored = [r["wer"] for r in rows if r["group"] == group and r.get("wer") is not None]
            if scored and len({r["group"] for r in rows}) > 1:
                metrics[f"eval/{group}/wer"] = float(np.mean(scored))
    if judges.speaker is not None:
        sims = [r.get("sim") for r in rows]
        rep = sim_report(sims)
        if rep["n"]:
            metrics["eval/sim"] = rep["sim"]
    for metric in judges.audio_metrics:
        vals = [r[metric] for r in rows if metric in r and math.isfinite(r[metric])]
        if vals:
            metrics[f"eval/{metric}"] = float(np.mean(vals))
    summary: dict = {}
    if name == "tags" and tag_results:
        summary = tag_pass_rates([res for _, res in tag_results])
        metrics["eval/tag_pass_rate"] = summary["pass_rate"]
        metrics["eval/tag_macro_pass_rate"] = summary["macro_pass_rate"]
        for fam, s in summary["families"].items():
            metrics[f"eval/tag/{fam}/pass_rate"] = s["pass_rate"]
            metrics[f"eval/tag/{fam}/effect"] = s["effect_median"]
    return metrics, summary


def _aggregate(per_seed: Mapping[int, Mapping[str, float]]) -> dict[str, float]:
    """Mean over seeds under the metric key and the spread under ``<key>_std`` (0 with one seed)."""
    keys = sorted({k for m in per_seed.values() for k in m})
    out: dict[str, float] = {}
    for key in keys:
        vals = np.asarray([m[key] for m in per_seed.values() if key in m], dtype=np.float64)
        out[key] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
        if key != "eval/n_utterances":
            out[f"{key}_std"] = float(np.nanstd(vals)) if np.isfinite(vals).any() else float("nan")
    return out


def run_suite(
    name: str,
    generate_fn: GenerateFn | None,
    evalset: EvalSet | None,
    judges: Judges,
    out_dir: str | Path,
    seeds: Sequence[int] = (0,),
    benchmark_fn: Callable[[], Mapping[str, float]] | None = None,
    config: Mapping[str, Any] | None = None,
    log_to_wandb: bool = True,
    ckpt: str | Path | None = None,
) -> dict:
    """Runs one evaluation suite and writes its report.

    Args:
        name: one of :data:`SUITES`.
        generate_fn: ``(items, seed) -> [(wav [S], sr)]``; for ``tags`` it receives both the tagged and the
            untagged variant of each prompt (``item.variant``). Unused by ``speed``. An ``item_info()``
            attribute returning one dict per item of the last call (``stopped_at_cap``) adds those columns
            to the per-utterance table (and ``eval/stopped_at_cap_rate``).
        evalset: the items to render (unused by ``speed``).
        judges: ASR / speaker encoder / taxonomy / codec metrics.
        out_dir: result directory (``metrics.json``, ``utterances.jsonl/.csv``, ``report.md``, plots, wavs).
        seeds: one generation per seed; metrics are the mean over seeds with ``_std`` beside them.
        benchmark_fn: ``() -> {"rtf": ..., ...}`` for ``speed``; its values are logged as ``eval/<key>``.
        config: the suite configuration (hashed into ``metrics.json`` for provenance).
        log_to_wandb: also log to the active wandb run, if any.
        ckpt: the checkpoint scored (None: ground truth / codec); recorded with its weights hash in ``meta``.

    Returns:
        The ``metrics.json`` content: flat ``eval/...`` scalars plus ``meta``, ``per_seed`` and
        ``tag_families``.
    """
    from s2train.eval import report

    if name not in SUITES:
        raise ValueError(f"run_suite: unknown suite {name!r} (one of {SUITES})")
    seeds = [int(s) for s in seeds] or [0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    per_seed: dict[int, dict[str, float]] = {}
    rows: list[dict] = []
    all_tags: list = []
    generated: dict[int, list] = {}
    if name == "speed":
        if benchmark_fn is None:
            raise ValueError("run_suite('speed') needs benchmark_fn")
        for seed in seeds:
            res = benchmark_fn()
            per_seed[seed] = {k if k.startswith("eval/") else f"eval/{k}": float(v) for k, v in res.items()}
    else:
        if generate_fn is None or evalset is None or not len(evalset):
            raise ValueError(f"run_suite({name!r}) needs generate_fn and a non-empty evalset")
        taxonomy = (judges.taxonomy or load_taxonomy()) if name == "tags" else None
        items = tag_pairs(evalset) if name == "tags" else list(evalset.items)
        if not items:
            raise ValueError(f"run_suite({name!r}): the eval set {evalset.name!r} has no usable items")
        for seed in seeds:
            # Accept [S], [1, S] arrays or CPU tensors from any generator; score float32 [S].
            wavs = [
                (np.asarray(w, dtype=np.float32).reshape(-1), int(sr)) for w, sr in generate_fn(items, seed)
            ]
            if len(wavs) != len(items):
                raise ValueError(
                    f"generate_fn returned {len(wavs)} clips for {len(items)} items (seed {seed})"
                )
            seed_rows = _score_seed(items, wavs, judges, seed, out / "wavs" / f"seed{seed}")
            item_info = getattr(generate_fn, "item_info", None)  # e.g. stopped_at_cap of a TTS generator
            for row, extra in zip(seed_rows, item_info() if callable(item_info) else []):
                row.update(extra)
            tag_results = _tag_rows(items, wavs, taxonomy) if name == "tags" else []
            by_id = {r["id"]: r for r in seed_rows}
            for item_id, res in tag_results:
                by_id[item_id].setdefault("tags", []).append(res.as_dict())
            per_seed[seed], _ = _seed_metrics(name, seed_rows, tag_results, judges)
            if callable(
                getattr(generate_fn, "seed_metrics", None)
            ):  # e.g. codebook use of a codec round trip
                per_seed[seed].update(generate_fn.seed_metrics())
            all_tags += [res for _, res in tag_results]
            rows += seed_rows
            generated[seed] = [(it, w) for it, w in zip(items, wavs)]
    metrics = _aggregate(per_seed)
    tag_summary = tag_pass_rates(all_tags) if name == "tags" else {}  # pooled over seeds
    meta = report.provenance(name, seeds, config, evalset, judges, time.perf_counter() - start, ckpt)
    result = {
        **metrics,
        "meta": meta,
        "per_seed": {str(k): v for k, v in per_seed.items()},
        "tag_families": tag_summary,
    }
    report.write_outputs(out, result, rows)
    if log_to_wandb:
        report.log_wandb(result, rows, generated)
    log.info(
        "suite %s done: %s", name, {k: round(v, 4) for k, v in metrics.items() if not k.endswith("_std")}
    )
    return result


def _audio_metric_fns(names: Sequence[str]) -> dict[str, AudioMetric]:
    """Codec distances from :mod:`s2train.eval.metrics.audio` as ``fn(reference, estimate, sr)``."""
    if not names:
        return {}
    import torch

    from s2train.eval.metrics import audio

    table = {
        "mel_distance": lambda ref, est, sr: audio.multiscale_mel_distance(est, ref, sr),
        "stft_distance": lambda ref, est, sr: audio.stft_distance(est, ref),
        "si_sdr": lambda ref, est, sr: audio.si_sdr(est, ref),
    }
    unknown = set(names) - set(table)
    if unknown:
        raise ValueError(f"unknown audio_metrics {sorted(unknown)} (available: {sorted(table)})")

    def wrap(fn):
        return lambda ref, est, sr: fn(
            torch.from_numpy(ref)[None, None], torch.from_numpy(est)[None, None], sr
        )

    return {n: wrap(table[n]) for n in names}


def build_judges(cfg: Mapping[str, Any]) -> Judges:
    """Judges from a suite config (``asr``, ``speaker``, ``taxonomy``, ``audio_metrics``, ``numbers``)."""
    from s2train.eval.asr import build_asr
    from s2train.eval.speaker import build_speaker_encoder

    return Judges(
        asr=build_asr(cfg["asr"]) if cfg.get("asr") else None,
        speaker=build_speaker_encoder(cfg["speaker"]) if cfg.get("speaker") else None,
        taxonomy=load_taxonomy(cfg["taxonomy"]) if cfg.get("taxonomy") else None,
        audio_metrics=_audio_metric_fns(list(cfg.get("audio_metrics") or [])),
        numbers=bool(cfg.get("numbers", False)),
    )


def build_evalset(cfg: Mapping[str, Any]) -> EvalSet:
    """Eval set from ``{kind: demo|seedtts, path, subsets, max_items, sample_seed, languages, language}``."""
    from s2train.eval.evalset import DEMO_SUBSETS, demo_evalset, read_seedtts_meta

    kind = cfg.get("kind", "demo")
    path = Path(str(cfg.get("path")))
    if not path.exists():
        hint = (
            "build the demo corpus first (python -m s2train.data.demo out=data/demo size=small; after bash "
            "scripts/demo.sh it is under data/demo_run: pass paths.data_dir=data/demo_run) or "
            if kind == "demo"
            else ""
        )
        raise FileNotFoundError(
            f"eval set not found: {path}: {hint}point suite.evalset.path at a manifest.jsonl or a corpus "
            "folder (LJSpeech, fish-speech, audiofolder; <codes>/manifest.jsonl from s2train.data.encode)"
        )
    if kind == "demo":
        subsets = list(cfg.get("subsets") or DEMO_SUBSETS)
        return demo_evalset(
            cfg["path"], subsets, cfg.get("max_items"), int(cfg.get("sample_seed", 0)), cfg.get("languages")
        )
    if kind == "seedtts":
        return read_seedtts_meta(cfg["path"], cfg.get("language", "en"), cfg.get("max_items"))
    raise ValueError(f"evalset.kind must be demo or seedtts, got {kind!r}")


def evaluate_from_config(
    cfg: Mapping[str, Any],
    generate_fn: GenerateFn | None = None,
    benchmark_fn: Callable[[], Mapping[str, float]] | None = None,
) -> dict:
    """Entry point behind ``eval.py``: runs the configured suite, or compares result directories.

    Args:
        cfg: the composed eval config. The suite settings are read from ``cfg.eval`` (``configs/suite/*.yaml``),
            else ``cfg.suite`` when it is a mapping, else ``cfg`` itself. Top-level keys used: ``compare``
            (list of result dirs -> :func:`s2train.eval.compare.compare_runs`), ``ckpt``, ``codec_dir``,
            ``seed``, ``paths.output_dir``.
        generate_fn: overrides generation. Otherwise: ``generator._target_`` in the suite config is
            instantiated with ``ckpt=cfg.ckpt`` and must return a generate_fn; for ``codec`` a codec dir
            (``cfg.codec_dir``) gives :func:`codec_resynthesis_fn`; with neither and no ``ckpt`` the
            ground-truth audio is scored (the ceiling run).
        benchmark_fn: for ``speed``; otherwise ``benchmark._target_`` is instantiated with ``ckpt``.

    Returns:
        The ``metrics.json`` content (or ``{"compare": markdown}``).
    """
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:
        pass
    cfg = dict(cfg)
    out_root = Path((cfg.get("paths") or {}).get("output_dir") or cfg.get("out_dir") or "outputs/eval")
    if cfg.get("compare"):
        from s2train.eval.compare import compare_runs

        return {"compare": compare_runs(list(cfg["compare"]), out_root)}
    suite_cfg = cfg.get("eval") if isinstance(cfg.get("eval"), Mapping) else None
    suite_cfg = suite_cfg or (cfg["suite"] if isinstance(cfg.get("suite"), Mapping) else cfg)
    name = suite_cfg.get("name") or suite_cfg.get("suite")
    if name not in SUITES:
        raise ValueError(f"evaluate_from_config: suite name {name!r} is not one of {SUITES}")
    ckpt = cfg.get("ckpt")
    if name == "speed" and benchmark_fn is None:
        if not suite_cfg.get("benchmark"):
            raise ValueError("suite 'speed' needs benchmark._target_ (a factory(ckpt=...) -> benchmark_fn)")
        from hydra.utils import instantiate

        benchmark_fn = instantiate(suite_cfg["benchmark"], ckpt=ckpt)
    evalset = build_evalset(suite_cfg["evalset"]) if name != "speed" else None
    if name != "speed" and generate_fn is None:
        if suite_cfg.get("generator"):
            from hydra.utils import instantiate

            generate_fn = instantiate(suite_cfg["generator"], ckpt=ckpt)
        elif name == "codec" and cfg.get("codec_dir"):
            from s2train.codec import load_codec

            generate_fn = codec_resynthesis_fn(load_codec(cfg["codec_dir"]), suite_cfg.get("device", "cpu"))
        elif ckpt:
            raise ValueError(
                f"ckpt={ckpt!r} given but no generator configured: set eval.generator._target_ to a "
                "factory(ckpt=...) returning generate_fn(items, seed)"
            )
        else:
            log.info("no ckpt: scoring the ground-truth audio (ceiling run)")
            generate_fn = ground_truth_generate_fn
    seeds = suite_cfg.get("seeds") or [cfg.get("seed", 0)]
    return run_suite(
        name,
        generate_fn,
        evalset,
        build_judges(suite_cfg),
        Path(suite_cfg.get("out_dir") or out_root / name),
        seeds=seeds,
        benchmark_fn=benchmark_fn,
        config=suite_cfg,
        ckpt=ckpt,
    )
