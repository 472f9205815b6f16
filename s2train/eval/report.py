"""Writing suite results: metrics.json, per-utterance JSONL/CSV, report.md with PNG plots, wandb logging."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ckpt_label", "config_hash", "fmt", "log_wandb", "provenance", "weights_hash", "write_outputs"]

log = logging.getLogger(__name__)


def config_hash(config: Mapping[str, Any] | None) -> str:
    """Short stable hash of a (possibly OmegaConf) config mapping."""
    if config is None:
        return ""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(config, DictConfig):
            config = OmegaConf.to_container(config, resolve=True)
    except ImportError:
        pass
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


_WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
_FULL_HASH_BYTES = 1 << 30  # above this, hash the size plus the first and last 64 MiB (seconds, not minutes)


def weights_hash(ckpt: str | Path | None) -> str | None:
    """Short sha256 of a checkpoint's weights: the file, or every weight file of a bundle directory.

    Two evaluations of the same weights get the same hash wherever the bundle was copied to, so compare
    tables can tell checkpoints apart by content and not by folder name. None when ``ckpt`` is None.
    """
    if ckpt is None:
        return None
    path = Path(ckpt)
    files = (
        sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
        if path.is_dir()
        else [path]
    )
    digest = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        digest.update(f"{f.relative_to(path).as_posix() if path.is_dir() else ''}:{size}".encode())
        with f.open("rb") as fh:
            if size <= _FULL_HASH_BYTES:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            else:
                digest.update(fh.read(64 << 20))
                fh.seek(size - (64 << 20))
                digest.update(fh.read())
    return digest.hexdigest()[:10]


def ckpt_label(meta: Mapping[str, Any], fallback: str) -> str:
    """Column label of a result: ``<checkpoint name>@<weights hash>``, ``ground truth``, or ``fallback``."""
    ckpt = meta.get("ckpt")
    if "ckpt" not in meta:
        return fallback
    if not ckpt:
        return "ground truth" if meta.get("suite") != "codec" else fallback
    p = Path(ckpt)
    # <run>/checkpoints/last.ckpt and <run>/export are named by the run folder: "last" says nothing
    name = p.stem if p.suffix else p.name
    if name in ("last", "export", "model") or name.startswith(("epoch=", "step=")):
        name = f"{p.parent.parent.name if p.parent.name == 'checkpoints' else p.parent.name}/{name}"
    return f"{name}@{meta['ckpt_hash']}" if meta.get("ckpt_hash") else name


def _hardware() -> dict:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("s2train", "torch", "numpy", "faster-whisper", "resemblyzer", "jiwer"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def provenance(
    name: str,
    seeds: Sequence[int],
    config: Any,
    evalset: Any,
    judges: Any,
    runtime_s: float,
    ckpt: str | Path | None = None,
) -> dict:
    """The ``meta`` block of metrics.json: what ran (``ckpt``, ``ckpt_hash``), on what, with which judges."""
    asr = getattr(judges, "asr", None)
    spk = getattr(judges, "speaker", None)
    return {
        "suite": name,
        "ckpt": str(Path(ckpt).resolve()) if ckpt else None,
        "ckpt_hash": weights_hash(ckpt) if ckpt and Path(ckpt).exists() else None,
        "seeds": list(seeds),
        "config_hash": config_hash(config),
        "evalset": getattr(evalset, "name", None),
        "n_items": len(evalset) if evalset is not None else 0,
        "n_missing": len(getattr(evalset, "missing", []) or []),
        "asr": getattr(asr, "model_name", getattr(asr, "model_path", type(asr).__name__)) if asr else None,
        "speaker_encoder": type(spk).__name__ if spk else None,
        "audio_metrics": sorted(getattr(judges, "audio_metrics", {}) or {}),
        "versions": _versions(),
        "hardware": _hardware(),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "runtime_s": round(runtime_s, 2),
    }


def fmt(value: Any, digits: int = 4) -> str:
    """Formats a table cell (floats rounded, nan as '-')."""
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def _write_rows(out: Path, rows: list[dict]) -> None:
    with (out / "utterances.jsonl").open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    columns = list(dict.fromkeys(k for row in rows for k in row if k != "tags"))
    with (out / "utterances.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns + (["tags"] if any("tags" in r for r in rows) else []))
        writer.writeheader()
        for row in rows:
            flat = dict(row)
            if "tags" in flat:
                flat["tags"] = ";".join(
                    f"{t['tag']}:{t['family']}:{fmt(t['effect'], 3)}:{t['passed']}" for t in flat["tags"]
                )
            writer.writerow(flat)


def _plots(out: Path, result: Mapping, rows: list[dict]) -> list[str]:
    """PNG plots; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    wer_rows = [r for r in rows if r.get("wer") is not None]
    if wer_rows:
        speakers = sorted({r["speaker"] for r in wer_rows})
        vals = [np.mean([r["wer"] for r in wer_rows if r["speaker"] == s]) for s in speakers]
        fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(speakers) + 2), 3))
        ax.bar(range(len(speakers)), vals, color="tab:blue")
        ax.set_xticks(range(len(speakers)), speakers, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("mean WER")
        ax.set_title("WER per speaker")
        fig.tight_layout()
        fig.savefig(out / "wer_per_speaker.png", dpi=100)
        plt.close(fig)
        made.append("wer_per_speaker.png")
    sims = [r["sim"] for r in rows if r.get("sim") is not None]
    if sims:
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.hist(sims, bins=min(20, max(5, len(sims))), range=(min(0.0, min(sims)), 1.0), color="tab:green")
        ax.set_xlabel("speaker similarity (cosine)")
        ax.set_ylabel("utterances")
        ax.set_title("SIM histogram")
        fig.tight_layout()
        fig.savefig(out / "sim_hist.png", dpi=100)
        plt.close(fig)
        made.append("sim_hist.png")
    fams = (result.get("tag_families") or {}).get("families") or {}
    if fams:
        names = sorted(fams)
        effects = {
            n: [t["effect"] for r in rows for t in r.get("tags", []) if t["family"] == n] for n in names
        }
        fig, ax = plt.subplots(figsize=(max(4, 0.7 * len(names) + 2), 3))
        for i, n in enumerate(names):
            ys = [e / fams[n]["min_effect"] for e in effects[n] if e is not None and math.isfinite(e)]
            ax.scatter([i] * len(ys), ys, color="tab:orange", s=12)
            ax.bar(i, np.median(ys) if ys else 0.0, alpha=0.4, color="tab:orange")
        ax.axhline(1.0, color="k", ls="--", lw=1)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("effect / min effect")
        ax.set_title("tag effect sizes (pass >= 1)")
        fig.tight_layout()
        fig.savefig(out / "tag_effects.png", dpi=100)
        plt.close(fig)
        made.append("tag_effects.png")
    return made


def _markdown(result: Mapping, rows: list[dict], plots: list[str]) -> str:
    meta = result["meta"]
    lines = [f"# Evaluation report: suite `{meta['suite']}`", ""]
    lines += [
        f"- eval set: `{meta['evalset']}` ({meta['n_items']} items, {meta['n_missing']} missing files skipped)"
    ]
    lines += [f"- seeds: {meta['seeds']}; ASR: `{meta['asr']}`; speaker encoder: `{meta['speaker_encoder']}`"]
    lines += [
        f"- config hash `{meta['config_hash']}`, torch {meta['versions'].get('torch')}, s2train "
        f"{meta['versions'].get('s2train')}, {meta['hardware'].get('gpu', meta['hardware']['processor'])}"
    ]
    lines += ["", "## Metrics", "", "| metric | mean | std over seeds |", "|---|---|---|"]
    for key, val in result.items():
        if key.startswith("eval/") and not key.endswith("_std"):
            lines.append(f"| `{key}` | {fmt(val)} | {fmt(result.get(key + '_std'))} |")
    fams = (result.get("tag_families") or {}).get("families") or {}
    if fams:
        lines += [
            "",
            "## Tag adherence",
            "",
            "| family | feature | n | pass rate | median effect | min effect |",
            "|---|---|---|---|---|---|",
        ]
        for fam, s in sorted(fams.items()):
            lines.append(
                f"| {fam} | {s['feature']} | {s['n']} | {fmt(s['pass_rate'], 3)} | "
                f"{fmt(s['effect_median'], 3)} | {fmt(s['min_effect'], 3)} |"
            )
    groups = sorted({r["group"] for r in rows})
    if rows and any("wer" in r or "sim" in r for r in rows):
        lines += ["", "## Per group", "", "| group | n | WER | SIM |", "|---|---|---|---|"]
        for g in groups:
            sel = [r for r in rows if r["group"] == g]
            wers = [r["wer"] for r in sel if r.get("wer") is not None]
            sims = [r["sim"] for r in sel if r.get("sim") is not None]
            lines.append(
                f"| {g} | {len(sel)} | {fmt(float(np.mean(wers)) if wers else None)} | "
                f"{fmt(float(np.mean(sims)) if sims else None)} |"
            )
        worst = sorted((r for r in rows if r.get("wer") is not None), key=lambda r: -r["wer"])[:10]
        if worst:
            lines += [
                "",
                "## Highest-WER utterances",
                "",
                "| id | seed | WER | reference | hypothesis | audio |",
                "|---|---|---|---|---|---|",
            ]
            for r in worst:
                lines.append(
                    f"| {r['id']} | {r['seed']} | {fmt(r['wer'], 3)} | {r['ref_norm']} | {r['hyp_norm']} | "
                    f"[wav]({r['wav']}) |"
                )
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, result: Mapping, rows: list[dict]) -> None:
    """Writes ``metrics.json``, ``utterances.jsonl``, ``utterances.csv``, plots and ``report.md`` to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2, sort_keys=True, default=float) + "\n")
    _write_rows(out, rows)
    plots = _plots(out, result, rows) if rows else []
    (out / "report.md").write_text(_markdown(result, rows, plots))
    log.info("wrote evaluation report to %s", out)


def log_wandb(result: Mapping, rows: list[dict], generated: Mapping[int, list]) -> bool:
    """Logs scalars under ``eval/...`` and a table with audio to the active wandb run; False when none."""
    try:
        import wandb
    except ImportError:
        return False
    if wandb.run is None:
        return False
    wandb.log({k: v for k, v in result.items() if k.startswith("eval/") and isinstance(v, float)})
    columns = ["id", "seed", "group", "speaker", "text", "hyp", "wer", "sim", "audio"]
    table = wandb.Table(columns=columns)
    audio = {(it.id, seed): w for seed, pairs in generated.items() for it, w in pairs}
    for r in rows:
        wav, sr = audio.get((r["id"], r["seed"]), (None, None))
        table.add_data(
            r["id"],
            r["seed"],
            r["group"],
            r["speaker"],
            r["text"],
            r.get("hyp"),
            r.get("wer"),
            r.get("sim"),
            wandb.Audio(np.asarray(wav), sample_rate=sr) if wav is not None else None,
        )
    wandb.log({"eval/utterances": table})
    return True
