"""scripts/gpu_run.sh: every stage's CPU dry run writes the JSON the GPU call will, and a failing step is recorded
while the stage goes on (a broken script is caught here, not in a lent GPU window)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV_KEYS = {"date", "card", "torch", "cuda", "git_commit"}


def run_stage(
    stage: str, out: Path, python: str = sys.executable, timeout: int = 400, **env
) -> tuple[int, dict]:
    full_env = {**os.environ, "OUT": str(out), "PYTHON": python, "DRY": "1", **env}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_run.sh"), stage], env=full_env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    summary = out / stage / "summary.json"
    assert summary.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.returncode, json.loads(summary.read_text())


def test_speed_dry_run_writes_every_result(tmp_path):
    rc, summary = run_stage("speed", tmp_path)
    steps = {s["step"]: s for s in summary["steps"]}
    assert list(steps) == ["wheels", "bench_s2pro", "parity", "train_mfu", "parity_compile"]
    assert rc == 0 and summary["ok"], steps
    # The GPU call has to end well inside 200 s: step timeouts + 10 s for the report.
    assert summary["timeouts_sum_s"] + 10 < 200
    assert ENV_KEYS <= summary["environment"].keys()
    res = summary["results"]
    for name in ("bench_s2pro", "parity", "parity_compile", "train_mfu"):
        assert ENV_KEYS <= res[name]["environment"].keys(), name

    rows = res["bench_s2pro"]["rows"]
    assert [r["batch"] for r in rows] == [1, 2]
    for r in rows:
        for key in ("frames_per_s", "ms_per_frame", "rtf", "peak_mem_mb", "weight_GB_per_frame", "kv_GB_per_frame",
                    "hbm_GB_per_s"):  # fmt: skip
            assert r[key] > 0, key
        assert "mbu" in r  # None on a CPU: no peak bandwidth to divide by
    assert rows[0]["ttfa_ms"] > 0 and rows[0]["ttfa_voice_hit_ms"] > 0

    checks = [(r["check"], r["parity"]) for r in res["parity"]["rows"] + res["parity_compile"]["rows"]]
    assert ("greedy_vs_eager", True) in checks and ("sampled_replay", True) in checks
    assert all(ok for _, ok in checks)
    assert res["train_mfu"]["tokens_per_s"] > 0 and "mfu" in res["train_mfu"]
    md = (tmp_path / "speed" / "summary.md").read_text()
    assert "### Cached decode" in md and "| B |" in md and "### Training step" in md


def test_a_failing_step_is_recorded_and_the_stage_goes_on(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'case "$*" in\n'
        "*bench_inference*|*bench_train*) echo boom >&2; exit 3 ;;\n"
        f'*) exec {sys.executable} "$@" ;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    rc, summary = run_stage("speed", tmp_path / "out", python=str(fake), timeout=120)
    status = {s["step"]: (s["status"], s["rc"]) for s in summary["steps"]}
    assert rc != 0 and not summary["ok"]
    assert status["bench_s2pro"] == status["parity"] == status["parity_compile"] == ("failed", 3)
    assert status["train_mfu"] == ("failed", 3)
    assert "boom" in (tmp_path / "out" / "speed" / "bench_s2pro.log").read_text()


def test_codec_dry_run_profiles_gan_batches(tmp_path):
    rc, summary = run_stage("codec", tmp_path)
    steps = {s["step"]: s["status"] for s in summary["steps"]}
    assert rc == 0 and steps["codec_profile"] == "ok", steps
    prof = summary["results"]["codec_profile"]
    assert ENV_KEYS <= prof["environment"].keys()
    assert prof["mel_batch_s"] > 0 and prof["gan_batch_s"] > 0 and prof["gan_slowdown"] > 0
    kinds = {m["kind"] for m in prof["modules_forward"].values()}
    assert {"PeriodDiscriminator", "STFTMagnitudeDiscriminator", "ComplexSTFTDiscriminator"} <= kinds
    # each sub-discriminator runs 4 times per GAN batch: D on real and fake, G on real and fake
    assert all(
        m["calls_per_batch"] == 4 for m in prof["modules_forward"].values() if "Discriminator" in m["kind"]
    )
    assert prof["top_ops"] and (tmp_path / "codec" / "codec_profile.txt").is_file()


@pytest.mark.slow
def test_reading_dry_run_trains_and_exports(tmp_path):
    rc, summary = run_stage("reading", tmp_path, timeout=600)
    assert rc == 0 and summary["ok"], summary["steps"]
    assert (tmp_path / "reading" / "dualar" / "model.safetensors").is_file()
