"""Side-by-side comparison of evaluation result directories (each holding a ``metrics.json``)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

from s2train.eval.report import ckpt_label, fmt

__all__ = ["compare_runs", "load_metrics", "result_dirs"]

log = logging.getLogger(__name__)

# Lower is better for these; everything else (sim, pass rates, si_sdr) higher is better.
_LOWER_IS_BETTER = (
    "wer", "cer", "substitutions", "deletions", "insertions", "distance", "rtf", "latency", "stopped_at_cap",
)  # fmt: skip


def result_dirs(run_dir: str | Path) -> list[Path]:
    """The suite result folders of ``run_dir``: itself when it holds ``metrics.json``, else its sub-folders
    that do (``eval.py`` writes ``outputs/eval/runs/<time>/<suite>/metrics.json``)."""
    run = Path(run_dir)
    if (run / "metrics.json").is_file():
        return [run]
    found = sorted(p.parent for p in run.glob("*/metrics.json")) if run.is_dir() else []
    if not found:
        raise FileNotFoundError(
            f"compare: no metrics.json in {run} or its sub-folders (is it an eval.py run or suite folder?)"
        )
    return found


def load_metrics(run_dir: str | Path) -> dict:
    """Reads ``<run_dir>/metrics.json`` (or the one of its single suite sub-folder)."""
    dirs = result_dirs(run_dir)
    if len(dirs) > 1:
        raise ValueError(f"compare: {run_dir} holds several suites {[d.name for d in dirs]}: name one")
    return json.loads((dirs[0] / "metrics.json").read_text())


def _labels(dirs: Sequence[Path], runs: Sequence[dict]) -> list[str]:
    """Column labels by checkpoint (``name@hash``); folder names where that is unknown or ambiguous."""
    labels = [ckpt_label(r.get("meta", {}), f"{d.parent.name}/{d.name}") for d, r in zip(dirs, runs)]
    for i, lab in enumerate(labels):
        if labels.count(lab) > 1:  # same checkpoint in several results: add the suite, then the run folder
            suite = runs[i].get("meta", {}).get("suite") or dirs[i].name
            labels[i] = f"{lab} ({suite}, {dirs[i].parent.name})"
    return labels


def _lower_better(key: str) -> bool:
    return any(tok in key for tok in _LOWER_IS_BETTER)


def compare_runs(
    run_dirs: Sequence[str | Path], out_dir: str | Path, names: Sequence[str] | None = None
) -> str:
    """Builds a markdown table of every ``eval/...`` metric across runs and a bar chart of the headline ones.

    Args:
        run_dirs: result directories of :func:`s2train.eval.suite.run_suite`, or ``eval.py`` run folders
            (each suite sub-folder with a ``metrics.json`` becomes a column).
        out_dir: where ``compare.md`` and ``compare.png`` are written.
        names: column labels (default: the checkpoint scored and its weights hash, from ``meta``).

    Returns:
        The markdown table (also logged).
    """
    if len(run_dirs) < 1:
        raise ValueError("compare_runs: give at least one result directory")
    dirs = [d for run in run_dirs for d in result_dirs(run)]
    runs = [json.loads((d / "metrics.json").read_text()) for d in dirs]
    labels = list(names) if names else _labels(dirs, runs)
    if len(labels) != len(runs):
        raise ValueError(f"compare_runs: {len(labels)} names for {len(runs)} runs")
    keys = sorted({k for r in runs for k in r if k.startswith("eval/") and not k.endswith("_std")})
    header = "| metric | " + " | ".join(labels) + " |"
    lines = [header, "|---" * (len(labels) + 1) + "|"]
    for key in keys:
        vals = [r.get(key) for r in runs]
        finite = [v for v in vals if isinstance(v, float | int) and math.isfinite(v)]
        best = (min(finite) if _lower_better(key) else max(finite)) if len(finite) > 1 else None
        cells = []
        for r, v in zip(runs, vals):
            std = r.get(key + "_std")
            cell = fmt(v) + (f" ± {fmt(std)}" if isinstance(std, float) and std > 0 else "")
            cells.append(f"**{cell}**" if best is not None and v == best else cell)
        lines.append(f"| `{key}` | " + " | ".join(cells) + " |")
    suites = ", ".join(f"{lab}: {r.get('meta', {}).get('suite')}" for lab, r in zip(labels, runs))
    sources = "".join(
        f"- {lab}: `{d}` (ckpt `{r.get('meta', {}).get('ckpt')}`)\n" for lab, d, r in zip(labels, dirs, runs)
    )
    table = "\n".join(lines)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(
        f"# Run comparison\n\nSuites: {suites}\n\n{sources}\n{table}\n\n![compare](compare.png)\n"
    )
    _bar_chart(out / "compare.png", runs, labels)
    log.info("run comparison:\n%s", table)
    return table


def _bar_chart(path: Path, runs: list[dict], labels: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    headline = [
        k
        for k in ("eval/wer", "eval/wer_corpus", "eval/sim", "eval/tag_pass_rate", "eval/rtf")
        if any(k in r for r in runs)
    ]
    if not headline:
        headline = sorted({k for r in runs for k in r if k.startswith("eval/") and not k.endswith("_std")})[
            :6
        ]
    fig, axes = plt.subplots(1, max(1, len(headline)), figsize=(3 * max(1, len(headline)), 3), squeeze=False)
    for ax, key in zip(axes[0], headline):
        vals = [float(r.get(key, float("nan"))) for r in runs]
        errs = [float(r.get(key + "_std", 0.0) or 0.0) for r in runs]
        ax.bar(np.arange(len(runs)), vals, yerr=errs, color=[f"C{i}" for i in range(len(runs))])
        ax.set_xticks(np.arange(len(runs)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(key, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
