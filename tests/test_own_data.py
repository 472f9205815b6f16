"""The README's "Your own data, end to end" block, command for command, on an 8-clip espeak-ng LJSpeech folder.

Each README line runs as a subprocess with its paths moved under tmp_path and tiny-budget overrides appended
(2 optimizer steps, 2 eval items capped at 1 s), so the README and this test cannot drift apart.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data.own_data import make_ljspeech_folder

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- own-data commands: tests/test_own_data.py runs this block -->"

TINY = {
    "s2train.data.encode": ["batch_size=4"],
    "train.py": ["trainer.max_steps=2", "trainer.val_check_interval=null", "data.batch_size=2", "logger=csv"],
    "eval.py": ["logger=none", "suite.evalset.max_items=2", "suite.generator.max_seconds=1"],
}


def readme_commands() -> list[str]:
    """The command lines of the README block after MARKER (comments dropped)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(re.escape(MARKER) + r"\s*```bash\n(.*?)```", text, re.S)
    assert block, "README lost its own-data block"
    return [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_readme_block_covers_the_whole_path():
    cmds = readme_commands()
    assert [c.split()[1] if c.split()[1] != "-m" else c.split()[2] for c in cmds] == [
        "s2train.data.encode", "train.py", "train.py", "eval.py", "eval.py", "eval.py",
    ]  # fmt: skip
    assert "recipe=finetune" in cmds[1] and "recipe=lora" in cmds[2] and "compare=" in cmds[5]


@pytest.mark.slow
def test_own_data_path_as_written(tmp_path):
    make_ljspeech_folder(tmp_path / "mine")
    moves = {"data/mine_codes": tmp_path / "mine_codes", "data/mine": tmp_path / "mine",
             "outputs/mine": tmp_path / "outputs"}  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}
    for line in readme_commands():
        for old, new in moves.items():
            line = line.replace(old, str(new))
        argv = shlex.split(line)
        assert argv[0] == "python"
        tool = argv[2] if argv[1] == "-m" else argv[1]
        extra = list(TINY.get(tool, []))
        if tool == "train.py":
            run = tmp_path / "runs" / next(a for a in argv if a.startswith("recipe=")).split("=")[1]
            extra += [f"hydra.run.dir={run}", f"paths.log_dir={run}"]
        proc = subprocess.run([sys.executable, *argv[1:], *extra], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        assert proc.returncode == 0, f"{line}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"

    summary = json.loads((tmp_path / "mine_codes" / "summary.json").read_text())
    assert summary["encoded"] == 8 and summary["splits"] == {"train": 6, "val": 1, "test": 1}
    for name in ("finetune", "lora"):
        meta = json.loads((tmp_path / "outputs" / "eval" / name / "quick" / "metrics.json").read_text())[
            "meta"
        ]
        assert meta["ckpt"] == str((tmp_path / "outputs" / name).resolve()) and meta["ckpt_hash"]
        rows = (tmp_path / "outputs" / "eval" / name / "quick" / "utterances.jsonl").read_text().splitlines()
        assert rows and all("stopped_at_cap" in json.loads(r) for r in rows)
    header = (tmp_path / "outputs" / "eval" / "compare" / "compare.md").read_text()
    assert "finetune@" in header and "lora@" in header
