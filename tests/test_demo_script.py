"""The README's main job at smoke scale: `SIZE=tiny recipes/demo/run.sh` runs every stage and resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow  # ~3 min on 2 cores
def test_demo_pipeline_tiny_runs_every_stage_and_resumes(tmp_path):
    env = {**os.environ, "SIZE": "tiny", "WORK": str(tmp_path / "work"), "PY": sys.executable}
    run = subprocess.run(["bash", "recipes/demo/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    work = tmp_path / "work"
    for name in ("base", "lora", "grpo"):
        metrics = json.loads((work / "eval" / name / "metrics.json").read_text())
        assert 0.0 <= metrics["eval/wer"] <= 5.0
    assert (work / "eval" / "compare" / "compare.md").exists()
    again = subprocess.run(["bash", "recipes/demo/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    ran = run.stdout.count(" s -> ")  # "[demo] stage NAME: 12 s -> OUTPUT" per stage that ran
    # prepare, encode, pretrain, lora, grpo, 3 evals (+ codec when no shipped codec is linked)
    assert ran >= 8, run.stdout[-3000:]
    assert again.returncode == 0 and again.stdout.count("done already") == ran, again.stdout[-3000:]
