"""Print a table of a training run's validation metrics and write them as JSON with the run's provenance.

    python scripts/summarize_run.py <metrics.csv> <out.json> [--keys val/text_gap val/loss_slow ...]

Reads the CSV logger's metrics file (one row per logged step), keeps the rows that carry validation metrics,
and records date, device name, torch / CUDA versions and the git commit beside them, so a run made on a lent
GPU lands in `docs/measurements/` with what made it.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import subprocess
from pathlib import Path

DEFAULT_KEYS = ("val/text_gap", "val/wer", "val/loss_slow", "val/acc_cb0", "val/loss_fast", "val/align/mass",
                "val/align/monotonic", "val/align/diag_err", "train/align/prior_weight")  # fmt: skip


def provenance() -> dict:
    """Date, device, torch/CUDA versions and git commit of the machine this runs on."""
    import torch

    # A lent GPU machine gets a copy of the tree without its history: scripts/gpu_prepare.sh stamps the commit
    stamp = Path(".whl/COMMIT")
    if stamp.is_file():
        commit = stamp.read_text().strip()
    else:
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        except OSError:
            commit = ""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "git_commit": commit or None,
    }


def summarize(metrics_csv: Path, keys: tuple[str, ...] = DEFAULT_KEYS) -> list[dict]:
    """Rows `{step, <key>: value}` for every step where a validation metric was logged (forward-filled
    train keys from the nearest earlier train row)."""
    rows = list(csv.DictReader(metrics_csv.open()))
    out: list[dict] = []
    last_train: dict[str, float] = {}
    for r in rows:
        for k in keys:
            if k.startswith("train/") and r.get(k):
                last_train[k] = float(r[k])
        if not any(r.get(k) for k in keys if k.startswith("val/")):
            continue
        step = int(float(r["step"]))
        entry = next((e for e in out if e["step"] == step), None)
        if entry is None:
            entry = {"step": step}
            out.append(entry)
        for k in keys:
            if k.startswith("val/") and r.get(k):
                entry[k] = float(r[k])
            elif k in last_train:
                entry[k] = last_train[k]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("metrics_csv", type=Path)
    ap.add_argument("out_json", type=Path)
    ap.add_argument("--keys", nargs="+", default=list(DEFAULT_KEYS))
    ap.add_argument("--extra", default="{}", help="a JSON object stored as `run` (settings of the run)")
    a = ap.parse_args()
    if not a.metrics_csv.is_file():
        raise SystemExit(f"{a.metrics_csv}: no metrics file (did the run log anything?)")
    table = summarize(a.metrics_csv, tuple(a.keys))
    keys = [k for k in a.keys if any(k in e for e in table)]
    print("| step | " + " | ".join(keys) + " |")
    print("|---:|" + "---:|" * len(keys))
    for e in table:
        print(f"| {e['step']} | " + " | ".join(f"{e[k]:.4f}" if k in e else "" for k in keys) + " |")
    a.out_json.parent.mkdir(parents=True, exist_ok=True)
    a.out_json.write_text(json.dumps({**provenance(), "run": json.loads(a.extra), "val": table}, indent=1))
    print(f"wrote {a.out_json}")


if __name__ == "__main__":
    main()
