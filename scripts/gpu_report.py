"""Summary of one `scripts/gpu_run.sh` stage: steps (status, seconds, timeout) and the result tables.

    python scripts/gpu_report.py gpu_out/speed --stage speed

Reads `<dir>/steps.jsonl` and the result JSONs the stage's steps wrote; writes `<dir>/summary.json`
(stage, environment, steps, results, ok) and `<dir>/summary.md`, and prints the markdown. Needs no torch
unless no result recorded the environment.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

RESULTS = ["bench_s2pro", "parity", "parity_compile", "train_mfu", "codec_profile"]
# Lightning CSV logs that scripts/gpu_demo.sh copies out (reading, codec fine-tune): their last values.
METRICS = ["pretrain_metrics.csv", "finetune/codec_metrics.csv"]

DECODE_COLUMNS = [
    ("batch", "B", "{}"), ("frames_per_s", "frames/s", "{:.1f}"), ("ms_per_frame", "ms/frame", "{:.2f}"),
    ("rtf", "RTF", "{:.3f}"), ("prefill_ms", "prefill ms", "{:.1f}"), ("ttfa_ms", "TTFA ms", "{:.1f}"),
    ("ttfa_voice_hit_ms", "TTFA voice-hit ms", "{:.1f}"), ("peak_mem_mb", "peak MB", "{:.0f}"),
    ("weight_GB_per_frame", "weights GB/frame", "{:.3f}"), ("kv_GB_per_frame", "KV GB/frame", "{:.3f}"),
    ("hbm_GB_per_s", "GB/s", "{:.0f}"), ("mbu", "MBU", "{:.2f}"),
]  # fmt: skip
PARITY_COLUMNS = [
    ("check", "check", "{}"), ("shape", "shape", "{}"), ("mode", "mode", "{}"), ("dtype", "dtype", "{}"),
    ("parity", "equal", "{}"), ("strict", "required", "{}"), ("mismatch", "first mismatch", "{}"),
]  # fmt: skip
TRAIN_COLUMNS = [
    ("size", "size", "{}"), ("params_M", "params M", "{:.0f}"), ("batch_size", "batch", "{}"),
    ("seq_len", "seq", "{}"), ("step_s", "step s", "{:.3f}"), ("tokens_per_s", "tokens/s", "{:.0f}"),
    ("achieved_tflops", "TFLOP/s", "{:.1f}"), ("mfu", "MFU", "{:.3f}"), ("peak_mem_gb", "peak GB", "{:.1f}"),
]  # fmt: skip
MODULE_COLUMNS = [
    ("name", "forward of", "{}"), ("kind", "kind", "{}"), ("calls_per_batch", "calls/batch", "{:.0f}"),
    ("device_ms_per_batch", "device ms/batch", "{:.1f}"), ("cpu_ms_per_batch", "CPU ms/batch", "{:.1f}"),
]  # fmt: skip
STEP_COLUMNS = [
    ("step", "step", "{}"), ("status", "status", "{}"), ("rc", "rc", "{}"), ("seconds", "s", "{:.1f}"),
    ("timeout_s", "timeout s", "{}"),
]  # fmt: skip


def table(rows: list[dict], columns) -> str:
    """Markdown table of the columns some row has ("-" where a row lacks the value)."""
    cols = [c for c in columns if any(r.get(c[0]) is not None for r in rows)]
    if not rows or not cols:
        return "(none)"
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [c[2].format(r[c[0]]) if r.get(c[0]) is not None else "-" for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load(directory: Path) -> tuple[list[dict], dict]:
    steps_file = directory / "steps.jsonl"
    steps = (
        [json.loads(line) for line in steps_file.read_text().splitlines() if line.strip()]
        if steps_file.exists()
        else []
    )
    results = {}
    for name in RESULTS:
        path = directory / f"{name}.json"
        if path.is_file():
            try:
                results[name] = json.loads(path.read_text())
            except json.JSONDecodeError as e:  # a step killed mid-write
                results[name] = {"error": f"unreadable: {e}"}
    return steps, results


def metrics_tail(path: Path) -> dict:
    """Last logged value of each `val/*` and `train/loss*` column (and the last step) of a Lightning CSV."""
    last: dict = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if value not in (None, "") and (key == "step" or key.startswith(("val/", "train/loss"))):
                    last[key] = float(value)
    return last


def environment(results: dict) -> dict:
    for res in results.values():
        if isinstance(res, dict) and res.get("environment"):
            return res["environment"]
    try:
        from s2train.inference.benchmark import environment as env

        return env()
    except Exception as e:  # noqa: BLE001 - a summary without an environment beats none
        return {"error": repr(e)}


def markdown(stage: str, env: dict, steps: list[dict], results: dict, dry: bool) -> str:
    card = env.get("card", "?")
    head = (
        f"## gpu_run {stage}{' (dry run)' if dry else ''}: {card}, torch {env.get('torch')}, "
        f"CUDA {env.get('cuda')}, commit {str(env.get('git_commit'))[:12]}, {env.get('date')}"
    )
    used = sum(s["seconds"] for s in steps)
    budget = sum(s["timeout_s"] for s in steps)
    parts = [head, "", table(steps, STEP_COLUMNS), "", f"{used:.0f} s used; timeouts sum to {budget} s."]
    bench = results.get("bench_s2pro")
    if bench and bench.get("rows"):
        r0, a = bench["rows"][0], bench.get("args", {})
        parts += [
            "", f"### Cached decode: {r0['shape']}, {r0['dtype']}, random weights, mode {r0.get('mode')}, "
            f"{r0['frames']} frames after a {r0.get('prompt_len')}-token prompt; RTF at {a.get('frame_rate')} "
            f"frames/s; TTFA = {a.get('ttfa_chunk')} frames on the host, {a.get('ttfa_ref_frames')}-frame "
            "reference, prompt building and prefill included", "", table(bench["rows"], DECODE_COLUMNS),
        ]  # fmt: skip
    rows = [r for key in ("parity", "parity_compile") for r in (results.get(key) or {}).get("rows", [])]
    if rows:
        parts += ["", "### Decode parity (graph/compile vs eager, greedy) and seeded sampled replay", ""]
        parts.append(table(rows, PARITY_COLUMNS))
    train = results.get("train_mfu")
    if train and "step_s" in train:
        parts += ["", "### Training step (bench_train.py)", "", table([train], TRAIN_COLUMNS)]
    prof = results.get("codec_profile")
    if prof and "modules_forward" in prof:
        mods = [{"name": k, **v} for k, v in prof["modules_forward"].items()]
        mods.sort(key=lambda m: -(m["device_ms_per_batch"] or m["cpu_ms_per_batch"]))

        def fmt(x):
            return "-" if x is None else f"{x:.3f}"

        parts += [
            "", f"### Codec GAN profile: mel-only batch {fmt(prof['mel_batch_s'])} s, GAN batch "
            f"{fmt(prof['gan_batch_s'])} s (x{fmt(prof['gan_slowdown'])}); batch {prof['args']['batch']} x "
            f"{prof['args']['crop']} s", "", table(mods, MODULE_COLUMNS),
        ]  # fmt: skip
    for name in METRICS:
        if results.get(name):
            rows = [{"metric": k, "value": v} for k, v in sorted(results[name].items())]
            parts += ["", f"### Last logged values ({name})", ""]
            parts.append(table(rows, [("metric", "metric", "{}"), ("value", "value", "{:.4g}")]))
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("directory")
    ap.add_argument("--stage", required=True)
    ap.add_argument("--dry", type=int, default=0)
    args = ap.parse_args(argv)
    directory = Path(args.directory)
    steps, results = load(directory)
    for name in METRICS:
        if (directory / name).is_file():
            results[name] = metrics_tail(directory / name)
    env = environment(results)
    summary = {
        "stage": args.stage, "dry": bool(args.dry), "environment": env, "steps": steps,
        "seconds": round(sum(s["seconds"] for s in steps), 1), "timeouts_sum_s": sum(s["timeout_s"] for s in steps),
        "ok": all(s["status"] in ("ok", "skipped") for s in steps), "results": results,
    }  # fmt: skip
    (directory / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    md = markdown(args.stage, env, steps, results, bool(args.dry))
    (directory / "summary.md").write_text(md)
    sys.stdout.write(md)
    return summary


if __name__ == "__main__":
    main()
